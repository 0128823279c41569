/** ImagePool: worker threads prepare images, report bad ones as ok:false, and shut down cleanly. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import { ImagePool, type ImagePoolOptions } from '../src/image/pool.js';
import { CLIP_PREPROCESS, normalizeInto, resizeAndCrop } from '../src/image/preprocess.js';
import { decodeImage } from '../src/image/codec.js';
import { DEFAULT_MAX_PIXELS } from '../src/image/image.js';
import { UsageError } from '../src/errors.js';
import { pngBombHeader } from './helpers/image-files.js';

const options: ImagePoolOptions = { threads: 2, preprocess: CLIP_PREPROCESS, image: { exif: 'apply', resize: 'exact', maxPixels: DEFAULT_MAX_PIXELS } };

test('prepares files and bytes in worker threads, exactly as the in-process path does', async () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'pickscore-pool-'));
  const pool = new ImagePool(options);
  try {
    const raw = Buffer.alloc(300 * 170 * 3);
    for (let i = 0; i < raw.length; i++) raw[i] = (i * 7919) % 251;
    const png = await sharp(raw, { raw: { width: 300, height: 170, channels: 3 } }).png().toBuffer();
    const file = path.join(dir, 'a.png');
    writeFileSync(file, png);
    const [fromFile, fromBytes] = await Promise.all([pool.prepare({ path: file }), pool.prepare({ bytes: png, label: 'a.png' })]);
    const expected = new Float32Array(3 * 224 * 224);
    normalizeInto(resizeAndCrop(await decodeImage(png, options.image), CLIP_PREPROCESS), CLIP_PREPROCESS, expected, 0);
    for (const prepared of [fromFile, fromBytes]) {
      assert.ok(prepared.ok, prepared.ok ? '' : prepared.error);
      assert.deepEqual([prepared.width, prepared.height], [300, 170]);
      assert.equal(prepared.contentHash, createHash('sha256').update(png).digest('hex'));
      assert.deepEqual(prepared.pixels, expected);
    }
    assert.equal(png.length, readFileSync(file).length, 'the caller\'s bytes are not detached');
  } finally {
    await pool.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('bad and unreadable images resolve with a reason, and the pool keeps working', async () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'pickscore-pool-'));
  const pool = new ImagePool({ ...options, threads: 1 });
  try {
    const folderNamedLikeImage = path.join(dir, 'folder.png');
    mkdirSync(folderNamedLikeImage);
    writeFileSync(path.join(dir, 'empty.jpg'), new Uint8Array(0));
    writeFileSync(path.join(dir, 'bomb.png'), pngBombHeader(30000, 30000));
    const good = await sharp({ create: { width: 20, height: 30, channels: 3, background: '#336699' } }).png().toBuffer();
    const results = await Promise.all([
      pool.prepare({ path: path.join(dir, 'missing.png') }),
      pool.prepare({ path: folderNamedLikeImage }),
      pool.prepare({ path: path.join(dir, 'empty.jpg') }),
      pool.prepare({ path: path.join(dir, 'bomb.png') }),
      pool.prepare({ bytes: Buffer.from('not an image at all'), label: 'junk.webp' }),
      pool.prepare({ bytes: good, label: 'good.png' }),
    ]);
    const errors = results.map((r) => (r.ok ? 'ok' : r.error));
    assert.equal(errors[0], 'file not found');
    assert.equal(errors[1], 'cannot read file: it is a directory');
    assert.equal(errors[2], 'empty file (0 bytes)');
    assert.match(errors[3], /^image too large: 30000x30000/);
    assert.match(errors[4], /^unsupported or unrecognised image format/);
    assert.equal(errors[5], 'ok');
    assert.equal(results[0].contentHash, undefined, 'no hash without bytes');
    const uncloneable = { path: 'x.png', toString: () => 'x' } as unknown as { path: string };
    const refused = await pool.prepare(uncloneable);
    assert.ok(!refused.ok && /^cannot pass the image to a worker thread/.test(refused.error));
    assert.ok((await pool.prepare({ bytes: good, label: 'good.png' })).ok, 'the worker is still free');
    assert.equal(results[2].contentHash, createHash('sha256').update('').digest('hex'));
  } finally {
    await pool.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('fast mode prepares the same shape', async () => {
  const pool = new ImagePool({ ...options, image: { ...options.image, resize: 'fast' }, threads: 1 });
  try {
    const jpeg = await sharp({ create: { width: 640, height: 480, channels: 3, background: '#808080' } }).jpeg().toBuffer();
    const prepared = await pool.prepare({ bytes: jpeg, label: 'grey.jpg' });
    assert.ok(prepared.ok);
    assert.deepEqual([prepared.width, prepared.height, prepared.pixels.length], [640, 480, 3 * 224 * 224]);
  } finally {
    await pool.close();
  }
});

test('a model whose crop is not the fast resize\'s square is refused, and a closed pool answers without work', async () => {
  assert.throws(() => new ImagePool({ ...options, image: { ...options.image, resize: 'fast' }, preprocess: { ...CLIP_PREPROCESS, cropWidth: 200 } }),
    (err: unknown) => err instanceof UsageError && /--resize fast needs a square crop/.test(err.message));
  const pool = new ImagePool(options);
  await pool.close();
  assert.deepEqual(await pool.prepare({ path: 'x.png' }), { ok: false, error: 'image pool is closed' });
});

test('recycled pixel buffers are written afresh: the next image has its own pixels, none of the last one', async () => {
  const pool = new ImagePool({ ...options, threads: 1 });
  try {
    const image = async (seed: number) => {
      const raw = Buffer.alloc(260 * 190 * 3);
      for (let i = 0; i < raw.length; i++) raw[i] = (i * 7919 + seed * 104729) % 253;
      const png = await sharp(raw, { raw: { width: 260, height: 190, channels: 3 } }).png().toBuffer();
      const expected = new Float32Array(3 * 224 * 224);
      normalizeInto(resizeAndCrop(await decodeImage(png, options.image), CLIP_PREPROCESS), CLIP_PREPROCESS, expected, 0);
      return { png, expected };
    };
    const a = await image(1);
    const b = await image(2);
    for (const { png, expected } of [a, b, a, b]) {
      const prepared = await pool.prepare({ bytes: png, label: 'x.png' });
      assert.ok(prepared.ok, prepared.ok ? '' : prepared.error);
      assert.deepEqual(prepared.pixels, expected);
      pool.recycle(prepared.pixels);
      assert.equal(prepared.pixels.length, 0, 'the buffer went back to the worker');
    }
    const notFromThePool = new Float32Array(4).fill(1);
    pool.recycle(notFromThePool);
    assert.deepEqual([...notFromThePool], [1, 1, 1, 1], 'pixels the pool did not make are left alone');
  } finally {
    await pool.close();
  }
});

test('read() hashes on a worker that holds the bytes: decode() gives what prepare() gives, drop() lets them go; each once', async () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'pickscore-pool-'));
  const pool = new ImagePool({ ...options, threads: 2, queueDepth: 1 });
  try {
    const pngs = await Promise.all([1, 2, 3, 4].map((seed) => sharp({ create: { width: 30 + seed, height: 20, channels: 3, background: { r: seed * 40, g: 90, b: 200 } } }).png().toBuffer()));
    const files = pngs.map((png, i) => {
      const file = path.join(dir, `${i}.png`);
      writeFileSync(file, png);
      return file;
    });
    // Reads before decodes, so each worker holds more than one image and must decode the right one.
    const reads = await Promise.all(files.map((file) => pool.read({ path: file })));
    reads.forEach((read, i) => {
      assert.ok(read.ok, read.ok ? '' : read.error);
      assert.equal(read.contentHash, createHash('sha256').update(pngs[i]).digest('hex'));
    });
    const held = reads.filter((read) => read.ok);
    held[1].drop();
    const [three, zero] = await Promise.all([held[3].decode(), held[0].decode()]);
    for (const [decoded, i] of [[three, 3], [zero, 0]] as const) {
      const direct = await pool.prepare({ path: files[i] });
      assert.ok(decoded.ok && direct.ok);
      assert.deepEqual([decoded.width, decoded.height, decoded.contentHash], [direct.width, direct.height, direct.contentHash]);
      assert.deepEqual(decoded.pixels, direct.pixels, `image ${i}`);
    }
    assert.throws(() => held[0].decode(), { name: 'InternalError' }, 'a ticket is decoded once');
    assert.throws(() => held[1].drop(), { name: 'InternalError' });
    const fromBytes = await pool.read({ bytes: pngs[2], label: '2.png' });
    assert.ok(fromBytes.ok);
    assert.equal(fromBytes.contentHash, reads[2].ok && reads[2].contentHash);
    fromBytes.drop();
    assert.deepEqual(await pool.read({ path: path.join(dir, 'missing.png') }), { ok: false, error: 'file not found' });
    const junk = await pool.read({ bytes: Buffer.from('not an image'), label: 'junk.png' });
    assert.ok(junk.ok, 'reading does not decode: junk hashes fine');
    const decodedJunk = await junk.decode();
    assert.ok(!decodedJunk.ok && /^unsupported or unrecognised image format/.test(decodedJunk.error));
    const last = held[2];
    await pool.close();
    assert.deepEqual(await last.decode(), { ok: false, error: 'image pool is closed' });
    assert.deepEqual(await pool.read({ path: files[0] }), { ok: false, error: 'image pool is closed' });
  } finally {
    await pool.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('decoded RGB pixels go the way of files: hashed with their size, resized in a worker, or refused with the shape expected', async () => {
  const pool = new ImagePool({ ...options, threads: 1 });
  try {
    const data = new Uint8Array(300 * 170 * 3).map((_, i) => (i * 7919) % 251);
    const rgb = { data, width: 300, height: 170 };
    const prepared = await pool.prepare({ rgb, label: 'images[0]' });
    const expected = new Float32Array(3 * 224 * 224);
    normalizeInto(resizeAndCrop(rgb, CLIP_PREPROCESS), CLIP_PREPROCESS, expected, 0);
    assert.ok(prepared.ok, prepared.ok ? '' : prepared.error);
    assert.deepEqual([prepared.width, prepared.height], [300, 170]);
    assert.equal(prepared.contentHash, createHash('sha256').update('rgb:300x170:').update(data).digest('hex'));
    assert.deepEqual(prepared.pixels, expected);
    assert.equal(data.length, 300 * 170 * 3, "the caller's pixels stay the caller's");
    const read = await pool.read({ rgb, label: 'images[0]' });
    assert.ok(read.ok);
    assert.equal(read.contentHash, prepared.contentHash);
    read.drop();
    assert.deepEqual(await pool.prepare({ rgb: { data: new Uint8Array(5), width: 2, height: 2 }, label: 'images[1]' }),
      { ok: false, error: 'Expected RGB data of 2x2x3 bytes for images[1] but received object' });
  } finally {
    await pool.close();
  }
});
