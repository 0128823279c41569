import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { after, describe, test } from 'node:test';
import Database from 'better-sqlite3';
import { CACHE_APPLICATION_ID, EmbeddingCache, EmbeddingCacheUnavailable, embeddingCachePath } from '../src/io/embedding-cache.js';
import { damageTable } from './helpers/damaged-cache.js';
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

  /** A cache of many rows, closed (so its WAL is checkpointed into the file), then one table damaged. */
  async function damagedCache(table: 'text_embeddings' | 'image_embeddings'): Promise<{ dir: string; damaged: Buffer }> {
    const dir = await tempDir();
    const cache = EmbeddingCache.open(dir);
    cache.putTexts('fp', Array.from({ length: 50 }, (_, i) => ({ prompt: `prompt ${i}`, embedding: vec(i, 1) })));
    cache.putImages('fp', 'm', Array.from({ length: 300 }, (_, i) => ({ contentHash: `hash ${i}`, embedding: vec(i, 2) })));
    cache.close();
    await damageTable(embeddingCachePath(dir), table);
    return { dir, damaged: await readFile(embeddingCachePath(dir)) };
  }

  async function assertMovedAside(dir: string, damaged: Buffer, warnings: string[], found: RegExp): Promise<void> {
    assert.equal(warnings.length, 1, warnings.join('\n'));
    assert.match(warnings[0], /embedding cache .*embeddings\.sqlite was unusable \(database disk image is malformed, found while .*\); moved it to .*\.corrupt-[\dT-]+Z and started an empty cache/);
    assert.match(warnings[0], found);
    const aside = (await readdir(dir)).filter((name) => /^embeddings\.sqlite\.corrupt-[\dT-]+Z$/.test(name));
    assert.equal(aside.length, 1);
    assert.ok(warnings[0].includes(path.join(dir, aside[0])), 'the warning names the file kept aside');
    assert.deepEqual(await readFile(path.join(dir, aside[0])), damaged, 'the damaged file is kept as it was');
  }

  test('damaged pages that the open does not read are met mid-run: the read is a miss, the file is moved aside once, the cache works on', async () => {
    const { dir, damaged } = await damagedCache('image_embeddings');
    const warnings: string[] = [];
    const cache = EmbeddingCache.open(dir, { onWarning: (m) => warnings.push(m) });
    assert.deepEqual(warnings, [], 'the open reads only the header and the text table');
    assert.deepEqual(cache.getText('fp', 'prompt 3'), vec(3, 1), 'undamaged tables still read');
    assert.equal(cache.getImage('fp', 'hash 7', 'm'), undefined);
    await assertMovedAside(dir, damaged, warnings, /found while reading an image embedding/);
    assert.deepEqual(cache.getImages('fp', 'm', ['hash 7']), [undefined], 'the fresh file is empty');
    cache.putImage('fp', 'hash 7', 'm', vec(7, 2));
    assert.deepEqual(cache.getImage('fp', 'hash 7', 'm'), vec(7, 2));
    cache.close();
    assert.equal(warnings.length, 1, 'one warning in all');
  });

  test('damaged pages met by a write: the write goes to a fresh file', async () => {
    const { dir, damaged } = await damagedCache('image_embeddings');
    const warnings: string[] = [];
    const cache = EmbeddingCache.open(dir, { onWarning: (m) => warnings.push(m) });
    cache.putImages('fp', 'm', [{ contentHash: 'new', embedding: vec(9) }]);
    await assertMovedAside(dir, damaged, warnings, /found while writing image embeddings/);
    assert.deepEqual(cache.getImage('fp', 'new', 'm'), vec(9));
    cache.close();
    const reopened = EmbeddingCache.open(dir, { onWarning: (m) => warnings.push(m) });
    assert.deepEqual(reopened.info().imageRows, 1);
    reopened.close();
    assert.equal(warnings.length, 1);
  });

  for (const [operation, act] of [
    ['info', (cache: EmbeddingCache) => assert.deepEqual([cache.info().textRows, cache.info().imageRows], [0, 0])],
    ['clear', (cache: EmbeddingCache) => assert.deepEqual(cache.clear(), { textRows: 0, imageRows: 0 })],
  ] as const) {
    test(`damaged pages met by ${operation}: it reports on a fresh file`, async () => {
      const { dir, damaged } = await damagedCache('image_embeddings');
      const warnings: string[] = [];
      const cache = EmbeddingCache.open(dir, { onWarning: (m) => warnings.push(m) });
      act(cache);
      cache.close();
      await assertMovedAside(dir, damaged, warnings, operation === 'info' ? /found while counting its rows/ : /found while clearing it/);
    });
  }

  test('a cache folder that cannot be created is EmbeddingCacheUnavailable naming it', async () => {
    const dir = await tempDir();
    await writeFile(path.join(dir, 'a-file'), 'x');
    const folder = path.join(dir, 'a-file', 'cache');
    assert.throws(() => EmbeddingCache.open(folder), (err: unknown) => err instanceof EmbeddingCacheUnavailable && err.message.includes(folder) && /ENOTDIR/.test(err.message));
  });

  test('a lock held past the busy timeout makes the cache unavailable, for this and every later call, and nothing is moved aside', async () => {
    const dir = await tempDir();
    const cache = EmbeddingCache.open(dir, { busyTimeoutMs: 50 });
    const holder = new Database(embeddingCachePath(dir));
    holder.exec('BEGIN IMMEDIATE');
    try {
      const isUnavailable = (err: unknown) => err instanceof EmbeddingCacheUnavailable
        && /^Cannot use the embedding cache .*embeddings\.sqlite \(writing text embeddings\): database is locked$/.test(err.message);
      assert.throws(() => cache.putText('fp', 'p', vec(1)), isUnavailable);
      assert.throws(() => cache.getText('fp', 'p'), isUnavailable, 'a cache that failed stays failed');
    } finally {
      holder.exec('ROLLBACK');
      holder.close();
      cache.close();
    }
    assert.deepEqual((await readdir(dir)).filter((name) => name.includes('.corrupt-')), []);
  });

  test('a full disk (the file capped by max_page_count) makes the cache unavailable with SQLite\'s own words; what was written stays', async () => {
    const dir = await tempDir();
    const cache = EmbeddingCache.open(dir, { maxPages: 8 });
    cache.putImages('fp', 'm', [{ contentHash: 'first', embedding: vec(1) }]);
    const big = Array.from({ length: 200 }, (_, i) => ({ contentHash: `hash ${i}`, embedding: new Float32Array(64).fill(i) }));
    assert.throws(() => cache.putImages('fp', 'm', big), (err: unknown) => err instanceof EmbeddingCacheUnavailable
      && /^Cannot use the embedding cache .*embeddings\.sqlite \(writing image embeddings\): database or disk is full$/.test(err.message));
    cache.close();
    const reopened = EmbeddingCache.open(dir);
    assert.deepEqual(reopened.getImage('fp', 'first', 'm'), vec(1), 'the earlier write is intact; the failed batch left nothing');
    assert.equal(reopened.info().imageRows, 1);
    reopened.close();
    assert.deepEqual((await readdir(dir)).filter((name) => name.includes('.corrupt-')), []);
  });
});
