import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { after, describe, test } from 'node:test';
import Database from 'better-sqlite3';
import { CACHE_APPLICATION_ID, EmbeddingCache, embeddingCachePath } from '../src/io/embedding-cache.js';
import { makeTempDir, removeTempDirs } from './helpers/hub-temp.js';

after(removeTempDirs);

const run = promisify(execFile);
const tempDir = () => makeTempDir('cache');
const vec = (...values: number[]) => Float32Array.from(values);

describe('EmbeddingCache', () => {
  test('stores text and image embeddings under their full keys, bit for bit', async () => {
    const dir = await tempDir();
    const cache = EmbeddingCache.open(dir);
    const tiny = vec(1.5, -0, Number.MIN_VALUE, 3.4028234663852886e38);
    cache.putText('fp-a', 'a cat', tiny);
    cache.putImage('fp-a', 'hash1', 'exif=apply,resize=exact', vec(4, 5));
    assert.deepEqual(cache.getText('fp-a', 'a cat'), tiny);
    assert.equal(cache.getText('fp-b', 'a cat'), undefined, 'another model fingerprint');
    assert.equal(cache.getText('fp-a', 'a cat '), undefined, 'prompts are exact');
    assert.deepEqual(cache.getImage('fp-a', 'hash1', 'exif=apply,resize=exact'), vec(4, 5));
    assert.equal(cache.getImage('fp-a', 'hash1', 'exif=ignore,resize=exact'), undefined, 'another preprocessing mode');
    cache.close();
    const reopened = EmbeddingCache.open(dir);
    assert.deepEqual(reopened.getText('fp-a', 'a cat'), tiny, 'survives a reopen');
    reopened.close();
  });

  test('batched get and put keep order and report misses', async () => {
    const cache = EmbeddingCache.open(await tempDir());
    cache.putTexts('fp', [{ prompt: 'p1', embedding: vec(1) }, { prompt: 'p3', embedding: vec(3) }]);
    assert.deepEqual(cache.getTexts('fp', ['p1', 'p2', 'p3']), [vec(1), undefined, vec(3)]);
    cache.putImages('fp', 'm', [{ contentHash: 'h2', embedding: vec(2) }]);
    assert.deepEqual(cache.getImages('fp', 'm', ['h1', 'h2']), [undefined, vec(2)]);
    cache.close();
  });

  test('the file is in WAL mode and marked with the application id', async () => {
    const dir = await tempDir();
    EmbeddingCache.open(dir).close();
    const db = new Database(embeddingCachePath(dir), { readonly: true });
    assert.equal(db.pragma('journal_mode', { simple: true }), 'wal');
    assert.equal(db.pragma('application_id', { simple: true }), CACHE_APPLICATION_ID);
    db.close();
  });

  test('info counts rows per kind and model; clear empties it', async () => {
    const dir = await tempDir();
    const cache = EmbeddingCache.open(dir);
    cache.putTexts('fp-a', [{ prompt: 'x', embedding: vec(1) }, { prompt: 'y', embedding: vec(2) }]);
    cache.putImage('fp-b', 'h', 'm', vec(3));
    const info = cache.info();
    assert.equal(info.path, embeddingCachePath(dir));
    assert.ok(info.bytes > 0);
    assert.equal(info.textRows, 2);
    assert.equal(info.imageRows, 1);
    assert.deepEqual(info.models, [{ fingerprint: 'fp-a', textRows: 2, imageRows: 0 }, { fingerprint: 'fp-b', textRows: 0, imageRows: 1 }]);
    assert.deepEqual(cache.clear(), { textRows: 2, imageRows: 1 });
    assert.deepEqual({ ...cache.info(), bytes: 0 }, { path: info.path, bytes: 0, textRows: 0, imageRows: 0, models: [] });
    cache.close();
  });

  for (const [label, makeFile] of [
    ['random bytes', (file: string) => writeFile(file, Buffer.alloc(8192, 0x5a))],
    ['another application\'s SQLite database', async (file: string) => {
      const db = new Database(file);
      db.exec('CREATE TABLE notes (body TEXT); INSERT INTO notes VALUES (\'keep me\')');
      db.close();
    }],
    ['a cache of another schema version', async (file: string) => {
      const db = new Database(file);
      db.exec("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT); INSERT INTO meta VALUES ('schema_version', '99')");
      db.pragma(`application_id = ${CACHE_APPLICATION_ID}`);
      db.close();
    }],
  ] as const) {
    test(`${label} is reported, moved aside and rebuilt`, async () => {
      const dir = await tempDir();
      const file = embeddingCachePath(dir);
      await makeFile(file);
      const original = await readFile(file);
      const warnings: string[] = [];
      const cache = EmbeddingCache.open(dir, { onWarning: (m) => warnings.push(m) });
      cache.putText('fp', 'works again', vec(7));
      assert.deepEqual(cache.getText('fp', 'works again'), vec(7));
      cache.close();
      assert.equal(warnings.length, 1);
      assert.match(warnings[0], /embedding cache .*embeddings\.sqlite was unusable .* moved it to .*\.corrupt-/);
      const aside = (await readdir(dir)).filter((name) => /^embeddings\.sqlite\.corrupt-[\dT-]+Z$/.test(name));
      assert.equal(aside.length, 1);
      assert.deepEqual(await readFile(path.join(dir, aside[0])), original, 'the old file is kept untouched');
    });
  }

  test('two processes writing at once lose nothing', async () => {
    const dir = await tempDir();
    const writer = fileURLToPath(new URL('./helpers/cache-writer.js', import.meta.url));
    const count = 150;
    const children = await Promise.all(['w1', 'w2'].map((name) => run(process.execPath, [writer, dir, name, String(count)])));
    assert.deepEqual(children.map((c) => c.stderr), ['', ''], 'no warnings: neither process took the other\'s new file for a foreign one');
    assert.deepEqual((await readdir(dir)).filter((name) => name.includes('.corrupt-')), []);
    const cache = EmbeddingCache.open(dir);
    const info = cache.info();
    assert.equal(info.textRows, 2 * count + 10);
    assert.equal(info.imageRows, 2 * count);
    for (const name of ['w1', 'w2']) {
      assert.deepEqual(cache.getText('fp-shared', `${name} prompt ${count - 1}`), Float32Array.from({ length: 8 }, (_, k) => count - 1 + k / 10));
    }
    cache.close();
  });

  test('two processes meeting the same corrupt file replace it once and lose nothing after', async () => {
    const dir = await tempDir();
    await writeFile(embeddingCachePath(dir), Buffer.alloc(8192, 0xa5));
    const writer = fileURLToPath(new URL('./helpers/cache-writer.js', import.meta.url));
    await Promise.all(['w1', 'w2'].map((name) => run(process.execPath, [writer, dir, name, '20'])));
    assert.equal((await readdir(dir)).filter((name) => /\.corrupt-[\dT-]+Z$/.test(name)).length, 1);
    const cache = EmbeddingCache.open(dir);
    assert.equal(cache.info().textRows, 2 * 20 + 10);
    cache.close();
  });
});
