/**
 * A bad embedding cache never costs a run, end to end through the real CLI: a file whose pages are
 * damaged where the open does not look, a disk that fills up under the cache, a cache folder that
 * cannot be made. Each run must give every row, the same rows as without the cache, exit as it would
 * have, and say once on stderr what happened to the cache. Rows read from the cache are checked
 * before use: one that is not a unit vector of the model's width is recomputed. The cache module's own
 * cases are in cache.test.ts.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import Database from 'better-sqlite3';
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { repoRoot, skipWithoutReference } from './helpers/paths.js';
import { tinyModel } from './helpers/tiny-model.js';
import { cliEntry, runCli, spawnCollecting, type CliResult } from './helpers/pipe-cli.js';
import { writeDistinctPngs } from './helpers/bad-inputs.js';
import { damageTable } from './helpers/damaged-cache.js';
import { withTempDir } from './helpers/temp-dir.js';

const SPAWNING = { skip: skipWithoutReference, timeout: 300_000 };

interface Stats { stats: { imagesEncoded: number; imageCacheHits: number; textsEncoded: number; textCacheHits: number } }

function rankArgs(images: string, model: string, cache: string[]): string[] {
  return ['rank', images, '--prompt', 'a gradient', '--model', model, '--device', 'cpu', '--threads', '1', '--batch-size', '2', '--format', 'jsonl', ...cache];
}

function lastJsonLine<T>(text: string): T {
  const lines = text.trim().split('\n');
  return JSON.parse(lines[lines.length - 1]) as T;
}

function warnings(stderr: string): string[] {
  return stderr.split('\n').filter((line) => line.startsWith('warning:'));
}

/** The CLI with files limited to `kib` KiB (RLIMIT_FSIZE): writes past it fail, as on a full disk. */
function runCliWithFileLimit(kib: number, args: string[]): Promise<CliResult> {
  return spawnCollecting('bash', ['-c', `ulimit -f ${kib} && exec "$@"`, 'bash', process.execPath, ...cliEntry, ...args], { cwd: repoRoot, env: process.env }).done;
}

test('a cache whose image pages are damaged is moved aside mid-run with one warning; the run gives the same rows and exit 0', SPAWNING, async () => {
  const model = await tinyModel();
  await withTempDir('cache-reliability', async (dir) => {
    const images = path.join(dir, 'images');
    await mkdir(images);
    await writeDistinctPngs(images, 12);
    const cacheDir = path.join(dir, 'cache');
    const args = rankArgs(images, model, ['--cache-dir', cacheDir]);
    const first = await runCli(args);
    assert.equal(first.code, 0, first.stderr);
    const file = path.join(cacheDir, 'embeddings.sqlite');
    await damageTable(file, 'image_embeddings');
    const damaged = await readFile(file);

    const second = await runCli([...args, '--stats']);
    assert.equal(second.code, 0, second.stderr);
    assert.equal(second.stdout, first.stdout, 'the same rows, byte for byte');
    const aside = (await readdir(cacheDir)).filter((name) => /^embeddings\.sqlite\.corrupt-/.test(name));
    assert.equal(aside.length, 1);
    assert.deepEqual(await readFile(path.join(cacheDir, aside[0])), damaged, 'the damaged file is kept for inspection');
    const warned = warnings(second.stderr);
    assert.equal(warned.length, 1, second.stderr);
    assert.match(warned[0], /^warning: the embedding cache .*embeddings\.sqlite was unusable \(database disk image is malformed, found while reading an image embedding\); moved it to .* and started an empty cache$/);
    assert.ok(warned[0].includes(path.join(cacheDir, aside[0])), 'the warning names the file kept aside');
    assert.equal(lastJsonLine<Stats>(second.stderr).stats.imagesEncoded, 12);

    const third = await runCli([...args, '--stats']);
    assert.equal(third.code, 0, third.stderr);
    assert.deepEqual(warnings(third.stderr), []);
    assert.equal(third.stdout, first.stdout);
    assert.equal(lastJsonLine<Stats>(third.stderr).stats.imageCacheHits, 12, 'the fresh cache serves the next run');
  });
});

test('a disk that fills up under the cache mid-run: one warning, the run goes on without the cache, the same rows, exit 0', { ...SPAWNING, skip: SPAWNING.skip || (process.platform === 'win32' && 'needs bash and ulimit') }, async () => {
  const model = await tinyModel();
  await withTempDir('cache-reliability', async (dir) => {
    const images = path.join(dir, 'images');
    await mkdir(images);
    await writeDistinctPngs(images, 24);
    const expected = await runCli(rankArgs(images, model, ['--no-cache']));
    assert.equal(expected.code, 0, expected.stderr);

    // 40 KiB: room to create the cache and its WAL index, not for a batch of writes every two images.
    const cacheDir = path.join(dir, 'cache');
    const full = await runCliWithFileLimit(40, rankArgs(images, model, ['--cache-dir', cacheDir]));
    assert.equal(full.code, 0, full.stderr);
    assert.equal(full.stdout, expected.stdout, 'every row, as without the cache');
    const warned = warnings(full.stderr);
    assert.equal(warned.length, 1, full.stderr);
    assert.match(warned[0], /^warning: Cannot use the embedding cache .*embeddings\.sqlite \(writing image embeddings\): .*; going on without the cache/);
    assert.deepEqual((await readdir(cacheDir)).filter((name) => name.includes('.corrupt-')), [], 'a full disk is not damage: nothing is moved aside');

    // Room for nothing: the cache cannot even be created.
    const none = await runCliWithFileLimit(2, rankArgs(images, model, ['--cache-dir', path.join(dir, 'cache-2')]));
    assert.equal(none.code, 0, none.stderr);
    assert.equal(none.stdout, expected.stdout);
    assert.equal(warnings(none.stderr).length, 1, none.stderr);
    assert.match(none.stderr, /^warning: Cannot use the embedding cache .*cache-2.*embeddings\.sqlite \(opening it\): .*; going on without the cache/m);
  });
});

test('a cache folder that cannot be created: one warning naming it, the run goes on, exit 0', SPAWNING, async () => {
  const model = await tinyModel();
  await withTempDir('cache-reliability', async (dir) => {
    const images = path.join(dir, 'images');
    await mkdir(images);
    await writeDistinctPngs(images, 3);
    await writeFile(path.join(dir, 'a-file'), 'not a folder');
    const cacheDir = path.join(dir, 'a-file', 'cache');
    const result = await runCli(rankArgs(images, model, ['--cache-dir', cacheDir]));
    assert.equal(result.code, 0, result.stderr);
    assert.equal(result.stdout.trim().split('\n').length, 3);
    assert.deepEqual(warnings(result.stderr), [`warning: Cannot create the cache folder ${cacheDir}: ENOTDIR: not a directory, mkdir '${cacheDir}'; going on without the cache (scores are the same, but this run saves nothing for the next)`]);
  });
});

test('cached embeddings of the wrong length, with non-finite values or not of unit length are misses: recomputed, replaced, one warning, the same rows', SPAWNING, async () => {
  const model = await tinyModel();
  await withTempDir('cache-reliability', async (dir) => {
    const images = path.join(dir, 'images');
    await mkdir(images);
    await writeDistinctPngs(images, 6);
    const cacheDir = path.join(dir, 'cache');
    const args = [...rankArgs(images, model, ['--cache-dir', cacheDir]), '--stats'];
    const first = await runCli(args);
    assert.equal(first.code, 0, first.stderr);

    const db = new Database(path.join(cacheDir, 'embeddings.sqlite'));
    const rows = db.prepare('SELECT content_hash AS hash, embedding FROM image_embeddings ORDER BY content_hash').all() as { hash: string; embedding: Buffer }[];
    assert.equal(rows.length, 6);
    const floats = (blob: Buffer) => new Float32Array(blob.buffer.slice(blob.byteOffset, blob.byteOffset + blob.length));
    const blob = (values: Float32Array) => Buffer.from(values.buffer);
    const tampered = [
      Buffer.alloc(4),                                                     // one float
      Buffer.concat([rows[1].embedding, Buffer.alloc(4)]),                 // one float too many
      blob(floats(rows[2].embedding).map((v, i) => (i === 3 ? Number.NaN : v))),
      blob(floats(rows[3].embedding).map((v, i) => (i === 0 ? Number.POSITIVE_INFINITY : v))),
      blob(floats(rows[4].embedding).map((v) => 2 * v)),                  // a score twice too large
    ];
    const update = db.prepare('UPDATE image_embeddings SET embedding = ? WHERE content_hash = ?');
    tampered.forEach((embedding, i) => update.run(embedding, rows[i].hash));
    const text = db.prepare('SELECT embedding FROM text_embeddings').get() as { embedding: Buffer };
    db.prepare('UPDATE text_embeddings SET embedding = ?').run(Buffer.alloc(text.embedding.length));   // all zero
    db.close();

    const second = await runCli(args);
    assert.equal(second.code, 0, second.stderr);
    const rowsOf = (stdout: string) => stdout.trim().split('\n');
    assert.deepEqual(rowsOf(second.stdout), rowsOf(first.stdout), 'the same rows as when the cache was sound');
    const stats = lastJsonLine<Stats>(second.stderr).stats;
    assert.deepEqual([stats.imagesEncoded, stats.imageCacheHits, stats.textsEncoded, stats.textCacheHits], [5, 1, 1, 0]);
    const warned = warnings(second.stderr);
    assert.equal(warned.length, 1, second.stderr);
    assert.match(warned[0], /^warning: the embedding cache .*embeddings\.sqlite holds an invalid (text|image) embedding \(.+\); it is recomputed and replaced, as is every other invalid row met in this run$/);

    const third = await runCli(args);
    assert.equal(third.code, 0, third.stderr);
    assert.deepEqual(warnings(third.stderr), [], 'the invalid rows were replaced');
    const after = lastJsonLine<Stats>(third.stderr).stats;
    assert.deepEqual([after.imagesEncoded, after.imageCacheHits, after.textsEncoded, after.textCacheHits], [0, 6, 0, 1]);
    assert.deepEqual(rowsOf(third.stdout), rowsOf(first.stdout));
  });
});
