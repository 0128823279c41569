/**
 * decodeImage on every supported format and on bad input. Each bad file is generated here; each case
 * gets a clear InputError (or a defined result, e.g. an animation's first frame).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import { InputError, UsageError } from '../src/errors.js';
import { decodeImage, decodeResizeFast, thumbnailDataUri, type DecodeOptions } from '../src/image/codec.js';
import { DEFAULT_MAX_PIXELS, parseExifMode, parseResizeMode } from '../src/image/image.js';
import { resolveScorerOptions } from '../src/pipeline/options.js';
import { compareBytes, pillowAvailable, pillowDecodeRgb, seededRandom } from './helpers/image-pillow.js';
import { pngBombHeader, pngFromSamples } from './helpers/image-files.js';

const opts: DecodeOptions = { exif: 'ignore', maxPixels: DEFAULT_MAX_PIXELS };
const hasPillow = pillowAvailable();

function noise(length: number, seed: number): Buffer {
  const random = seededRandom(seed);
  const out = Buffer.alloc(length);
  for (let i = 0; i < length; i++) out[i] = Math.floor(random() * 256);
  return out;
}

async function rejectsWith(bytes: Uint8Array, pattern: RegExp, decodeOptions: DecodeOptions = opts): Promise<void> {
  await assert.rejects(decodeImage(bytes, decodeOptions), (err: unknown) => {
    assert.ok(err instanceof InputError, `expected an InputError, got ${String(err)}`);
    assert.match(err.message, pattern);
    return true;
  });
}

/** Our decode against Pillow's convert("RGB") on the same file, when Pillow is installed. */
async function assertSameAsPillow(bytes: Buffer, ext: string): Promise<void> {
  if (!hasPillow) return;
  const dir = mkdtempSync(path.join(tmpdir(), 'pickscore-codec-'));
  try {
    const file = path.join(dir, `image.${ext}`);
    writeFileSync(file, bytes);
    const theirs = pillowDecodeRgb(file);
    const ours = await decodeImage(bytes, opts);
    assert.deepEqual([ours.width, ours.height], [theirs.width, theirs.height]);
    const result = compareBytes(ours.data, theirs.data);
    assert.equal(result.maxDiff, 0, `${ext}: ${result.total - result.identical} of ${result.total} values differ from Pillow`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const rgb = noise(37 * 23 * 3, 1);
const rgbImage = () => sharp(rgb, { raw: { width: 37, height: 23, channels: 3 } });

test('decodes JPEG, PNG, WebP, GIF, AVIF and TIFF to RGB with their format', async () => {
  const encoded: [string, Buffer][] = [
    ['jpeg', await rgbImage().jpeg().toBuffer()],
    ['png', await rgbImage().png().toBuffer()],
    ['webp', await rgbImage().webp({ lossless: true }).toBuffer()],
    ['gif', await rgbImage().gif().toBuffer()],
    ['avif', await rgbImage().avif().toBuffer()],
    ['tiff', await rgbImage().tiff({ compression: 'lzw' }).toBuffer()],
  ];
  for (const [format, bytes] of encoded) {
    const image = await decodeImage(bytes, opts);
    assert.equal(image.format, format);
    assert.deepEqual([image.width, image.height, image.data.length], [37, 23, 37 * 23 * 3], format);
  }
  for (const format of ['png', 'webp', 'tiff']) {
    const image = await decodeImage(encoded.find(([f]) => f === format)![1], opts);
    assert.deepEqual(Buffer.from(image.data), rgb, `${format} is lossless`);
  }
});

test('alpha is dropped, not composited or premultiplied', async () => {
  const rgba = noise(16 * 9 * 4, 2);
  for (let i = 3; i < rgba.length; i += 16) rgba[i] = 0;
  for (const bytes of [await sharp(rgba, { raw: { width: 16, height: 9, channels: 4 } }).png().toBuffer(), await sharp(rgba, { raw: { width: 16, height: 9, channels: 4 } }).webp({ lossless: true, exact: true }).toBuffer()]) {
    const image = await decodeImage(bytes, opts);
    for (let p = 0; p < 16 * 9; p++) assert.deepEqual([...image.data.subarray(p * 3, p * 3 + 3)], [...rgba.subarray(p * 4, p * 4 + 3)], `pixel ${p}`);
  }
});

test('grey and grey+alpha are replicated to three channels', async () => {
  const grey = noise(11 * 7 * 2, 3);
  const image = await decodeImage(pngFromSamples(11, 7, 8, 4, grey), opts);
  for (let p = 0; p < 11 * 7; p++) assert.deepEqual([...image.data.subarray(p * 3, p * 3 + 3)], [grey[p * 2], grey[p * 2], grey[p * 2]]);
});

test('16-bit PNG: colour keeps the high byte, grey is clamped to 255, as Pillow converts them', async () => {
  const samples = noise(9 * 5 * 6, 4);
  const colour = pngFromSamples(9, 5, 16, 2, samples);
  const image = await decodeImage(colour, opts);
  for (let i = 0; i < 9 * 5 * 3; i++) assert.equal(image.data[i], samples[i * 2], `sample ${i}`);
  await assertSameAsPillow(colour, 'png');

  const greySamples = noise(9 * 5 * 2, 5);
  for (let i = 0; i < greySamples.length; i += 6) greySamples[i] = 0; // some values below 256
  const grey = pngFromSamples(9, 5, 16, 0, greySamples);
  const greyImage = await decodeImage(grey, opts);
  for (let p = 0; p < 9 * 5; p++) {
    const value = greySamples.readUInt16BE(p * 2);
    assert.equal(greyImage.data[p * 3], Math.min(value, 255), `pixel ${p}: 16-bit value ${value}`);
  }
  await assertSameAsPillow(grey, 'png');
  await assertSameAsPillow(pngFromSamples(9, 5, 16, 6, noise(9 * 5 * 8, 6)), 'png');
  await assertSameAsPillow(pngFromSamples(9, 5, 16, 4, noise(9 * 5 * 4, 8)), 'png');
});

test('CMYK JPEG converts with Pillow\'s arithmetic', async () => {
  const cmyk = await rgbImage().toColourspace('cmyk').jpeg().toBuffer();
  assert.equal((await sharp(cmyk).metadata()).space, 'cmyk');
  const image = await decodeImage(cmyk, opts);
  assert.deepEqual([image.width, image.height, image.data.length], [37, 23, 37 * 23 * 3]);
  await assertSameAsPillow(cmyk, 'jpg');
});

test('animated GIF and WebP give their first frame', async () => {
  const frames = Buffer.alloc(8 * 6 * 2 * 3);
  for (let p = 0; p < 8 * 6 * 2; p++) frames.set(p < 48 ? [250, 10, 10] : [10, 10, 250], p * 3);
  const animated = () => sharp(frames, { raw: { width: 8, height: 12, channels: 3, pageHeight: 6 } });
  for (const bytes of [await animated().gif().toBuffer(), await animated().webp({ lossless: true }).toBuffer()]) {
    assert.equal((await sharp(bytes).metadata()).pages, 2);
    const image = await decodeImage(bytes, opts);
    assert.deepEqual([image.width, image.height], [8, 6]);
    assert.ok(image.data[0] > 200 && image.data[2] < 50, `first frame is red, got ${[...image.data.subarray(0, 3)]}`);
  }
});

test('bad input: each a clear InputError', async () => {
  const jpeg = await rgbImage().jpeg().toBuffer();
  const png = await rgbImage().png().toBuffer();
  await rejectsWith(new Uint8Array(0), /empty file \(0 bytes\)/);
  await rejectsWith(jpeg.subarray(0, jpeg.length >> 1), /truncated or corrupt jpeg data/);
  await rejectsWith(png.subarray(0, png.length >> 1), /truncated or corrupt png data/);
  await rejectsWith(noise(5000, 7), /unsupported or unrecognised image format/);
  await rejectsWith(Buffer.from('<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>'), /SVG is a vector format/);
  await rejectsWith(pngBombHeader(30000, 30000), /image too large: 30000x30000 is 900000000 pixels, over the limit of 178956970/);
  await rejectsWith(png, /image too large: 37x23/, { exif: 'ignore', maxPixels: 100 });
  await rejectsWith(Buffer.from('%PDF-1.4\n'), /unsupported/);
});

test('a file cut short inside its header says what it was: truncated JPEG, WebP, PNG, GIF, TIFF, AVIF; a BMP says BMP is not supported', async () => {
  for (const format of ['jpeg', 'webp', 'png', 'gif', 'tiff', 'avif'] as const) {
    const full = await rgbImage()[format]().toBuffer();
    // 40 bytes: past each format's signature, short of the size fields its header parser needs.
    await rejectsWith(full.subarray(0, 40), new RegExp(`^truncated or corrupt ${format} data \\(`));
    await rejectsWith(full.subarray(0, Math.floor(full.length * 0.6)), new RegExp(`^truncated or corrupt ${format} data`));
  }
  // A BMP header (BITMAPINFOHEADER, 2x2, 24-bit) and its pixels: sharp's libvips has no BMP loader.
  const bmp = Buffer.alloc(70);
  bmp.write('BM', 0, 'latin1');
  bmp.writeUInt32LE(70, 2);
  bmp.writeUInt32LE(54, 10);
  bmp.writeUInt32LE(40, 14);
  bmp.writeInt32LE(2, 18);
  bmp.writeInt32LE(2, 22);
  bmp.writeUInt16LE(1, 26);
  bmp.writeUInt16LE(24, 28);
  await rejectsWith(bmp, /^BMP is not supported/);
});

test('the EXIF and resize modes are checked where options are resolved, by one function each', () => {
  assert.equal(parseExifMode('ignore'), 'ignore');
  assert.equal(parseResizeMode('fast'), 'fast');
  assert.throws(() => parseExifMode('sideways'), (err: unknown) => err instanceof UsageError && err.message === 'Expected one of apply, ignore for exif but received "sideways"');
  assert.throws(() => parseResizeMode(2), (err: unknown) => err instanceof UsageError && err.message === 'Expected one of exact, fast for resize but received number 2');
  assert.throws(() => resolveScorerOptions({ maxPixels: 0 }), (err: unknown) => err instanceof UsageError && err.message === 'Expected a positive integer for maxPixels but received number 0');
});

test('fast resize gives the crop size and stays close to the exact path', async () => {
  const smooth = Buffer.alloc(300 * 200 * 4);
  for (let p = 0; p < 300 * 200; p++) smooth.set([p % 300, (p / 300) | 0, 128, p % 7 === 0 ? 0 : 255], p * 4);
  const bytes = await sharp(smooth, { raw: { width: 300, height: 200, channels: 4 } }).png().toBuffer();
  const fast = await decodeResizeFast(bytes, opts, 224);
  assert.deepEqual([fast.width, fast.height, fast.sourceWidth, fast.sourceHeight, fast.data.length], [224, 224, 300, 200, 224 * 224 * 3]);
  const { resizeAndCrop, CLIP_PREPROCESS } = await import('../src/image/preprocess.js');
  const exact = resizeAndCrop(await decodeImage(bytes, opts), CLIP_PREPROCESS);
  // Alpha is dropped before sharp resizes; premultiplying it would pull every 7th pixel towards black.
  assert.ok(compareBytes(fast.data, exact.data).maxDiff <= 3, 'within 3 levels on a smooth image');
});

test('thumbnails are small WebP data URIs', async () => {
  const uri = await thumbnailDataUri(await rgbImage().png().toBuffer(), 16, { exif: 'apply', maxPixels: DEFAULT_MAX_PIXELS });
  assert.match(uri, /^data:image\/webp;base64,/);
  const meta = await sharp(Buffer.from(uri.split(',')[1], 'base64')).metadata();
  assert.deepEqual([meta.width, meta.height], [16, 10]);
  await assert.rejects(thumbnailDataUri(new Uint8Array(0), 16, { exif: 'apply', maxPixels: DEFAULT_MAX_PIXELS }), InputError);
});

test('fuzz: mutated and truncated images resolve or fail with an InputError, never crash or hang', async () => {
  const random = seededRandom(Number(process.env.PICKSCORE_FUZZ_SEED ?? 11));
  const iterations = Number(process.env.PICKSCORE_FUZZ_ITERATIONS ?? 300);
  const seeds = [await rgbImage().jpeg().toBuffer(), await rgbImage().png().toBuffer(), await rgbImage().webp().toBuffer(), await rgbImage().gif().toBuffer(), pngFromSamples(9, 5, 16, 0, noise(90, 9))];
  let decoded = 0;
  for (let i = 0; i < iterations; i++) {
    const bytes = Buffer.from(seeds[i % seeds.length]);
    const mutations = 1 + Math.floor(random() * 6);
    for (let m = 0; m < mutations; m++) bytes[Math.floor(random() * bytes.length)] = Math.floor(random() * 256);
    const input = random() < 0.2 ? bytes.subarray(0, Math.floor(random() * bytes.length)) : bytes;
    try {
      const image = await decodeImage(input, opts);
      assert.equal(image.data.length, image.width * image.height * 3, `iteration ${i}: RGB buffer size`);
      decoded++;
    } catch (err) {
      assert.ok(err instanceof InputError, `iteration ${i}: ${String(err)}`);
    }
  }
  process.stdout.write(`# decode fuzz: ${iterations} inputs, ${decoded} decoded, ${iterations - decoded} InputErrors\n`);
});
