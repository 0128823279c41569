/**
 * Pixel parity with the Python implementation: the reference tensors in ../shared/reference/pixels, and
 * a seeded randomised comparison against Debian's Pillow on generated images.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import { referenceDir, skipWithoutReference } from './helpers/paths.js';
import { pillowAvailable, pillowResizeAndCrop, seededRandom, compareBytes } from './helpers/image-pillow.js';
import { decodeImage } from '../src/image/codec.js';
import { DEFAULT_MAX_PIXELS } from '../src/image/image.js';
import { CLIP_PREPROCESS, normalizeInto, resizeAndCrop } from '../src/image/preprocess.js';

const cfg = CLIP_PREPROCESS;
const plane = cfg.cropWidth * cfg.cropHeight;

/** A reference CHW float tensor back at the uint8 level, interleaved: round((x * std + mean) * 255). */
function referenceUint8(tensor: Float32Array): Uint8Array {
  const out = new Uint8Array(plane * 3);
  for (let c = 0; c < 3; c++) {
    for (let i = 0; i < plane; i++) out[i * 3 + c] = Math.round((tensor[c * plane + i] * cfg.std[c] + cfg.mean[c]) * 255);
  }
  return out;
}

function readTensor(file: string): Float32Array {
  const bytes = readFileSync(file);
  return new Float32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.length));
}

const referenceImages = skipWithoutReference ? [] : JSON.parse(readFileSync(path.join(referenceDir, 'reference.json'), 'utf8')).images as { image: string; orientation: 'raw' | 'exif'; file: string; size: [number, number] }[];

test('every reference pixel tensor is reproduced at the uint8 level, in both orientations', { skip: skipWithoutReference }, async () => {
  assert.ok(referenceImages.length >= 20, `expected 10 images x 2 orientations, found ${referenceImages.length}`);
  let identical = 0;
  let total = 0;
  let maxDiff = 0;
  for (const ref of referenceImages) {
    const bytes = readFileSync(path.join(referenceDir, 'images', ref.image));
    const decoded = await decodeImage(bytes, { exif: ref.orientation === 'exif' ? 'apply' : 'ignore', maxPixels: DEFAULT_MAX_PIXELS });
    // reference.json gives the stored size; applying EXIF orientation may swap it.
    const size = ref.orientation === 'raw' ? [decoded.width, decoded.height] : [decoded.width, decoded.height].sort((a, b) => a - b);
    assert.deepEqual(size, ref.orientation === 'raw' ? ref.size : [...ref.size].sort((a, b) => a - b), `${ref.image} ${ref.orientation}: decoded size`);
    const tensor = readTensor(path.join(referenceDir, ref.file));
    const result = compareBytes(resizeAndCrop(decoded, cfg).data, referenceUint8(tensor));
    assert.ok(result.maxDiff <= 1, `${ref.image} ${ref.orientation}: max diff ${result.maxDiff} levels`);
    identical += result.identical;
    total += result.total;
    maxDiff = Math.max(maxDiff, result.maxDiff);
  }
  process.stdout.write(`# reference parity: ${referenceImages.length} tensors, max diff ${maxDiff} levels, ${((100 * identical) / total).toFixed(4)}% identical\n`);
  assert.ok(identical / total >= 0.99, `only ${identical} of ${total} values identical`);
});

test('normalised tensors match the reference floats', { skip: skipWithoutReference }, async () => {
  const ref = referenceImages.find((r) => r.image === 'astronaut.jpg' && r.orientation === 'raw');
  assert.ok(ref);
  const decoded = await decodeImage(readFileSync(path.join(referenceDir, 'images', ref.image)), { exif: 'ignore', maxPixels: DEFAULT_MAX_PIXELS });
  const batch = new Float32Array(plane * 3 * 2).fill(Number.NaN);
  normalizeInto(resizeAndCrop(decoded, cfg), cfg, batch, plane * 3);
  const expected = readTensor(path.join(referenceDir, ref.file));
  assert.ok(Number.isNaN(batch[plane * 3 - 1]), 'writes nothing before the offset');
  let worst = 0;
  for (let i = 0; i < expected.length; i++) worst = Math.max(worst, Math.abs(batch[plane * 3 + i] - expected[i]));
  assert.ok(worst < 1e-5, `max abs difference ${worst}`);
});

interface GeneratedImage { file: string; description: string }

/** Random sizes (upscales, extreme aspect ratios included), channel layouts and content, as PNG and JPEG. */
async function generateImages(dir: string, count: number, seed: number): Promise<GeneratedImage[]> {
  const random = seededRandom(seed);
  const pick = <T>(items: T[]): T => items[Math.floor(random() * items.length)];
  const fixedSizes: [number, number][] = [[5, 3], [1, 1], [2, 500], [900, 4], [224, 224], [225, 223], [448, 224], [1000, 17]];
  const images: GeneratedImage[] = [];
  for (let i = 0; i < count; i++) {
    const [width, height] = i < fixedSizes.length ? fixedSizes[i] : [1 + Math.floor(random() * 700), 1 + Math.floor(random() * 700)];
    const channels = pick([1, 2, 3, 4]);
    const smooth = random() < 0.5;
    const pixels = Buffer.alloc(width * height * channels);
    for (let p = 0; p < pixels.length; p++) {
      const x = Math.floor(p / channels) % width;
      pixels[p] = smooth ? Math.floor((x * 255) / width + random() * 16) & 255 : Math.floor(random() * 256);
    }
    const format = channels >= 3 && random() < 0.25 ? 'jpg' : 'png';
    const file = path.join(dir, `img${i}-${width}x${height}-c${channels}.${format}`);
    const encoder = sharp(pixels, { raw: { width, height, channels: channels as 1 | 2 | 3 | 4 } });
    writeFileSync(file, await (format === 'jpg' ? encoder.removeAlpha().jpeg({ quality: 90 }) : encoder.png()).toBuffer());
    images.push({ file, description: `${path.basename(file)} (${smooth ? 'gradient' : 'noise'})` });
  }
  return images;
}

test('randomised parity with Pillow on generated images', { skip: pillowAvailable() ? false : 'python3-pil is not installed' }, async () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'pickscore-parity-'));
  try {
    const images = await generateImages(dir, 40, 20260326);
    const expected = pillowResizeAndCrop(images.map((i) => i.file), cfg.shortestEdge, 'ignore');
    let identical = 0;
    let total = 0;
    for (const [i, image] of images.entries()) {
      const decoded = await decodeImage(readFileSync(image.file), { exif: 'ignore', maxPixels: DEFAULT_MAX_PIXELS });
      const result = compareBytes(resizeAndCrop(decoded, cfg).data, expected[i]);
      assert.equal(result.maxDiff, 0, `${image.description}: ${result.total - result.identical} values differ, by up to ${result.maxDiff}`);
      identical += result.identical;
      total += result.total;
    }
    process.stdout.write(`# Pillow parity: ${images.length} generated images, ${((100 * identical) / total).toFixed(4)}% identical\n`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('EXIF orientations 1 to 8 are applied as Pillow\'s exif_transpose applies them', { skip: pillowAvailable() ? false : 'python3-pil is not installed' }, async () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'pickscore-exif-'));
  try {
    const random = seededRandom(8);
    const pixels = Buffer.alloc(300 * 170 * 3);
    for (let i = 0; i < pixels.length; i++) pixels[i] = Math.floor(random() * 256);
    const files: string[] = [];
    for (let orientation = 1; orientation <= 8; orientation++) {
      const file = path.join(dir, `orientation${orientation}.jpg`);
      writeFileSync(file, await sharp(pixels, { raw: { width: 300, height: 170, channels: 3 } }).jpeg().withMetadata({ orientation }).toBuffer());
      files.push(file);
    }
    const expected = pillowResizeAndCrop(files, cfg.shortestEdge, 'apply');
    for (const [i, file] of files.entries()) {
      const decoded = await decodeImage(readFileSync(file), { exif: 'apply', maxPixels: DEFAULT_MAX_PIXELS });
      assert.deepEqual([decoded.width, decoded.height], i + 1 >= 5 ? [170, 300] : [300, 170], `orientation ${i + 1}: size`);
      const result = compareBytes(resizeAndCrop(decoded, cfg).data, expected[i]);
      assert.equal(result.maxDiff, 0, `orientation ${i + 1}: ${result.total - result.identical} values differ`);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
