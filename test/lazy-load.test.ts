/**
 * Lazy doors and pure worker entries. `pickscore --version` and `--help` load no native addon (sharp,
 * onnxruntime-node, better-sqlite3), nor does importing the library until it is used; importing the
 * library inside a user's Worker posts nothing to the user's thread.
 *
 * A native addon is a shared object the process maps: /proc/self/maps lists the `.node` files, however
 * they were loaded. Linux only; elsewhere these tests skip with a notice.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';
import { cliEntry } from './helpers/pipe-cli.js';
import { withTempDir } from './helpers/temp-dir.js';

const skipWithoutProcMaps = existsSync('/proc/self/maps') ? false : 'no /proc/self/maps here to list the native addons a process loaded';
const NATIVE_ADDONS = /^(sharp-.*|onnxruntime_binding|better_sqlite3)\.node$/;

/**
 * The native addons a node process maps after importing `entry` with `argv` (stdout silenced), and
 * after `then` (a snippet run afterwards, if any).
 */
function addonsLoadedBy(dir: string, entry: string, argv: string[], then = ''): string[] {
  const probe = path.join(dir, 'probe.mjs');
  writeFileSync(probe, [
    `process.argv = [process.argv[0], ${JSON.stringify(fileURLToPath(entry))}, ...${JSON.stringify(argv)}];`,
    'const out = process.stdout.write.bind(process.stdout);',
    'process.stdout.write = () => true;',
    `const loaded = await import(${JSON.stringify(entry)});`,
    then,
    "const maps = (await import('node:fs')).readFileSync('/proc/self/maps', 'utf8');",
    "const files = maps.split('\\n').map((line) => line.split(/\\s+/)[5]).filter((file) => file && file.endsWith('.node'));",
    "out(JSON.stringify([...new Set(files.map((file) => file.split('/').pop()))]));",
  ].join('\n'));
  const stdout = execFileSync(process.execPath, [probe], { encoding: 'utf8', env: { ...process.env, PICKSCORE_HOME: path.join(dir, 'home') } });
  return (JSON.parse(stdout) as string[]).filter((name) => NATIVE_ADDONS.test(name));
}

const bin = pathToFileURL(cliEntry[0]).href;
const library = new URL('../src/index.js', import.meta.url).href;

test('pickscore --version and --help load no native addon', { skip: skipWithoutProcMaps }, async () => {
  await withTempDir('lazy', async (dir) => {
    assert.deepEqual(addonsLoadedBy(dir, bin, ['--version']), []);
    assert.deepEqual(addonsLoadedBy(dir, bin, ['--help']), []);
    assert.deepEqual(addonsLoadedBy(dir, bin, ['rank', '--help']), []);
  });
});

test('importing the library loads no native addon until it is used, and the probe sees an addon once one loads', { skip: skipWithoutProcMaps }, async () => {
  await withTempDir('lazy', async (dir) => {
    assert.deepEqual(addonsLoadedBy(dir, library, []), []);
    // The same probe after a use that needs an addon: opening the embedding cache loads better-sqlite3.
    const cacheUse = `const { EmbeddingCache } = await import(${JSON.stringify(new URL('../src/io/embedding-cache.js', import.meta.url).href)});`
      + ` EmbeddingCache.open(${JSON.stringify(path.join(dir, 'cache'))}).close();`;
    assert.deepEqual(addonsLoadedBy(dir, library, [], cacheUse), ['better_sqlite3.node']);
  });
});

test('importing the library inside a Worker posts nothing to the thread that started it', async () => {
  const worker = new Worker(`import(${JSON.stringify(library)}).then((api) => { if (typeof api.PickScore !== 'function') throw new Error('no PickScore'); });`,
    { eval: true, workerData: undefined, env: { ...process.env, PICKSCORE_HOME: path.join(os.tmpdir(), 'pickscore-lazy-unused') } });
  const messages: unknown[] = [];
  worker.on('message', (message) => messages.push(message));
  const errors: unknown[] = [];
  worker.on('error', (err) => errors.push(err));
  const code = await new Promise<number>((resolve) => worker.once('exit', resolve));
  assert.deepEqual(errors, []);
  assert.equal(code, 0);
  assert.deepEqual(messages, [], 'nothing posted to the parent');
});
