import assert from 'node:assert/strict';
import { open, readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { cacheClear, cacheInfo } from '../src/commands/cache.js';
import { modelConvert, modelInfo, modelList, modelVerify } from '../src/commands/model.js';
import { EmbeddingCache, embeddingCachePath } from '../src/io/embedding-cache.js';
import { CHECKSUM_FILE } from '../src/model-format.js';
import { modelsHome } from '../src/model/registry.js';
import { referenceDir, skipWithoutReference } from './helpers/paths.js';
import { makeTempDir, removeTempDirs } from './helpers/hub-temp.js';

after(removeTempDirs);

describe('model commands on the tiny reference CLIP', { skip: skipWithoutReference }, () => {
  let home: string;
  let converted: string;
  before(async () => {
    home = await makeTempDir('modelcmd');
    process.env.PICKSCORE_HOME = home;
    converted = path.join(modelsHome(), 'tiny-local');
    await modelConvert({ src: path.join(referenceDir, 'tiny-clip'), out: converted, precision: 'fp32', tokenizerDir: path.join(referenceDir, 'clip-tokenizer'), name: 'tiny-local' });
  });
  after(() => { delete process.env.PICKSCORE_HOME; });

  test('convert records a checksum for every file of the folder', async () => {
    const sums = (await readFile(path.join(converted, CHECKSUM_FILE), 'utf8')).trim().split('\n').map((l) => l.slice(66));
    assert.ok(['text.onnx', 'image.onnx', 'pickscore-model.json', 'vocab.json'].every((f) => sums.includes(f)), sums.join(', '));
  });

  test('verify passes on a fresh folder, inference included', async () => {
    const [result] = await modelVerify({ model: converted });
    assert.equal(result.ok, true, JSON.stringify(result.checks));
    assert.deepEqual(result.checks.map((c) => [c.name, c.ok, c.skipped ?? false]),
      [['manifest', true, false], ['files', true, false], ['source', true, false], ['inference', true, false]]);
  });

  test('verify names a damaged file', async () => {
    const damaged = path.join(modelsHome(), 'tiny-damaged');
    await modelConvert({ src: path.join(referenceDir, 'tiny-clip'), out: damaged, precision: 'fp32', tokenizerDir: path.join(referenceDir, 'clip-tokenizer') });
    const handle = await open(path.join(damaged, 'image.onnx'), 'r+');
    const size = (await handle.stat()).size;
    await handle.write(Buffer.from([0xff, 0x00, 0xff]), 0, 3, size - 100);
    await handle.close();
    const [result] = await modelVerify({ model: damaged, inference: false });
    assert.equal(result.ok, false);
    const files = result.checks.find((c) => c.name === 'files');
    assert.equal(files?.ok, false);
    assert.match(files?.detail ?? '', /^image\.onnx: sha256 [0-9a-f]{64}, expected [0-9a-f]{64}$/);
  });

  test('list shows known models and the converted folders in the cache; info tells a pulled model from one that is not', async () => {
    const entries = await modelList();
    const pick = entries.find((e) => e.name === 'pickscore-v1');
    assert.equal(pick?.default, true);
    assert.deepEqual(pick?.converted, []);
    const local = entries.find((e) => e.name === 'tiny-local');
    assert.equal(local?.converted[0].dir, converted);
    assert.ok((local?.converted[0].bytes ?? 0) > (await stat(path.join(converted, 'image.onnx'))).size);
    const info = await modelInfo({ model: 'pickscore-v1' });
    assert.equal(info.known?.weights.repo, 'yuvalkirstain/PickScore_v1');
    assert.deepEqual(info.converted, []);
    await assert.rejects(modelVerify({ model: 'pickscore-v1' }), /has not been converted yet; run `pickscore model pull pickscore-v1`/);
  });
});

describe('cache commands', () => {
  test('info on a folder with no cache reports it without creating one; clear empties a cache', async () => {
    const dir = await makeTempDir('cachecmd');
    const empty = await cacheInfo({ cacheDir: dir });
    assert.equal(empty.exists, false);
    await assert.rejects(stat(embeddingCachePath(dir)), 'no file was created');
    const cache = EmbeddingCache.open(dir);
    cache.putText('fp', 'a', Float32Array.of(1, 2));
    cache.putImage('fp', 'h', 'm', Float32Array.of(3, 4));
    cache.close();
    const info = await cacheInfo({ cacheDir: dir });
    assert.deepEqual([info.exists, info.textRows, info.imageRows], [true, 1, 1]);
    const cleared = await cacheClear({ cacheDir: dir });
    assert.deepEqual([cleared.textRows, cleared.imageRows], [1, 1]);
    assert.deepEqual([(await cacheInfo({ cacheDir: dir })).textRows, (await cacheInfo({ cacheDir: dir })).imageRows], [0, 0]);
  });
});
