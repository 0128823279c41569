import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFile, readdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, describe, test } from 'node:test';
import { EmbeddingCache, embeddingCachePath } from '../src/io/embedding-cache.js';
import { damageTable } from './helpers/damaged-cache.js';
import { makeTempDir, removeTempDirs } from './helpers/hub-temp.js';

after(removeTempDirs);

const cli = fileURLToPath(new URL('./helpers/hub-cli.js', import.meta.url));

/** Runs the model/cache CLI in a child process with stderr not a TTY, as in CI. */
function pickscore(args: string[], env: NodeJS.ProcessEnv): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [cli, ...args], { env: { ...process.env, ...env } }, (err, stdout, stderr) => {
      resolve({ code: err ? Number((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
  });
}

describe('pickscore model and cache commands', () => {
  test('model list --json lists the known models; an unknown model is a usage error naming it', async () => {
    const env = { PICKSCORE_HOME: await makeTempDir('hubcli') };
    const list = await pickscore(['model', 'list', '--json'], env);
    assert.equal(list.code, 0, list.stderr);
    const names = (JSON.parse(list.stdout) as { name: string }[]).map((e) => e.name);
    assert.deepEqual(names, ['clip-vit-h14-laion', 'hpsv2.1', 'laion-aesthetic-l14', 'openai-clip-vit-b32', 'openai-clip-vit-l14', 'pickscore-v1']);
    const unknown = await pickscore(['model', 'info', 'no-such-model'], env);
    assert.equal(unknown.code, 2);
    assert.match(unknown.stderr, /^error: Expected a known model .* but received "no-such-model"$/m);
    assert.equal(unknown.stdout, '');
  });

  test('model verify of a model never pulled exits with the model error code', async () => {
    const env = { PICKSCORE_HOME: await makeTempDir('hubcli') };
    const verify = await pickscore(['model', 'verify', 'pickscore-v1'], env);
    assert.equal(verify.code, 5);
    assert.match(verify.stderr, /has not been converted yet; run `pickscore model pull pickscore-v1`/);
  });

  test('cache info and clear on --cache-dir', async () => {
    const dir = await makeTempDir('hubcli-cache');
    const cache = EmbeddingCache.open(dir);
    cache.putTexts('fp', [{ prompt: 'a', embedding: Float32Array.of(1) }, { prompt: 'b', embedding: Float32Array.of(2) }]);
    cache.close();
    const info = await pickscore(['cache', 'info', '--json', '--cache-dir', dir], {});
    assert.equal(info.code, 0, info.stderr);
    assert.deepEqual((({ exists, textRows, imageRows }) => ({ exists, textRows, imageRows }))(JSON.parse(info.stdout)), { exists: true, textRows: 2, imageRows: 0 });
    const clear = await pickscore(['cache', 'clear', '--cache-dir', dir], {});
    assert.equal(clear.code, 0, clear.stderr);
    assert.match(clear.stdout, /removed 2 text and 0 image embeddings/);
    assert.equal(clear.stderr, '', 'nothing on stderr when it is not a terminal');
  });

  test('cache info and clear on a --cache-dir that is a file exit 4 naming it, and leave the file alone', async () => {
    const dir = await makeTempDir('hubcli');
    const file = path.join(dir, 'not-a-folder');
    await writeFile(file, 'hi');
    for (const sub of ['info', 'clear']) {
      const run = await pickscore(['cache', sub, '--cache-dir', file], {});
      assert.equal(run.code, 4, run.stderr);
      assert.match(run.stderr, /The cache folder .*not-a-folder is not a folder/);
    }
    assert.equal(await readFile(file, 'utf8'), 'hi');
  });

  test('a cache folder under /proc (where mkdir answers ENOENT) is an error, not an endless loop', async () => {
    // Node's recursive mkdir loops for ever there, deaf to signals; run it in a child with a deadline.
    const makeDirs = new URL('../src/io/make-dirs.js', import.meta.url).href;
    const script = `import(${JSON.stringify(makeDirs)}).then((m) => m.makeDirsSync('/proc/pickscore-nope/x')).catch((e) => { console.log(e.code); })`;
    const result = await new Promise<{ stdout: string; signal: string | null }>((resolve) => {
      execFile(process.execPath, ['-e', script], { timeout: 20_000, killSignal: 'SIGKILL' }, (err, stdout) => resolve({ stdout, signal: err?.signal ?? null }));
    });
    assert.equal(result.signal, null, 'makeDirsSync did not return');
    assert.equal(result.stdout.trim(), 'ENOENT');
  });

  test('cache info and clear on a file with damaged pages move it aside with one warning and work on a fresh one', async () => {
    for (const command of ['info', 'clear']) {
      const dir = await makeTempDir('hubcli-cache');
      const cache = EmbeddingCache.open(dir);
      cache.putImages('fp', 'm', Array.from({ length: 300 }, (_, i) => ({ contentHash: `h${i}`, embedding: Float32Array.of(i) })));
      cache.close();
      await damageTable(embeddingCachePath(dir), 'image_embeddings');
      const result = await pickscore(['cache', command, '--json', '--cache-dir', dir], {});
      assert.equal(result.code, 0, result.stderr);
      const aside = (await readdir(dir)).filter((name) => /^embeddings\.sqlite\.corrupt-/.test(name));
      assert.equal(aside.length, 1, command);
      assert.match(result.stderr, /^warning: the embedding cache .* was unusable \(database disk image is malformed, found while .*\); moved it to .* and started an empty cache\n$/);
      assert.ok(result.stderr.includes(path.join(dir, aside[0])), `${command}: the warning names the file kept aside`);
      const out = JSON.parse(result.stdout) as { textRows: number; imageRows: number };
      assert.deepEqual([out.textRows, out.imageRows], [0, 0], command);
    }
  });
});
