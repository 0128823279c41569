/**
 * OpenAI `clip`'s preprocessing (CLIPScore, the aesthetic predictor) as options of the preprocess config:
 * torchvision's half-even crop offset and Pillow's resize in the image's own mode before the RGB
 * conversion, against torchvision 0.14 + Pillow 9.4 at the uint8 level; and the default config, which
 * must give what it gave before the options existed.
 */
import assert from 'node:assert/strict';
import { mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import sharp from 'sharp';
import { decodeImage, decodeImageWithMode } from '../src/image/codec.js';
import { DEFAULT_MAX_PIXELS } from '../src/image/image.js';
import { CLIP_PREPROCESS, resizeAndCrop, type PreprocessConfig } from '../src/image/preprocess.js';
import { InputError } from '../src/errors.js';
import { referenceDir, skipWithoutReference } from './helpers/paths.js';
import { compareBytes } from './helpers/image-pillow.js';
import { generateImages, torchvisionAvailable, torchvisionClip, type GeneratedImage } from './helpers/torchvision-transforms.js';

const OPENAI_CLIP: PreprocessConfig = { ...CLIP_PREPROCESS, cropRounding: 'half-even', convertToRgb: 'after-crop' };
const PLANE = 224 * 224;
const skipWithoutTorchvision = torchvisionAvailable() ? false : 'python3-torchvision is not installed';

let scratch: string;
before(async () => {
  scratch = await mkdtemp(path.join(os.tmpdir(), 'pickscore-clip-pre-'));
});
after(async () => rm(scratch, { recursive: true, force: true }));

/** A normalised CHW tensor back at the uint8 level, interleaved (every value is within 1e-5 of an integer level). */
function toUint8(tensor: Float32Array): Uint8Array {
  const out = new Uint8Array(PLANE * 3);
  for (let c = 0; c < 3; c++) {
    for (let i = 0; i < PLANE; i++) out[i * 3 + c] = Math.round((tensor[c * PLANE + i] * CLIP_PREPROCESS.std[c] + CLIP_PREPROCESS.mean[c]) * 255);
  }
  return out;
}

async function ours(file: string, cfg: PreprocessConfig): Promise<Uint8Array> {
  const decoded = await decodeImageWithMode(await readFile(file), { exif: 'ignore', maxPixels: DEFAULT_MAX_PIXELS });
  return resizeAndCrop(decoded, cfg).data;
}

const GENERATED: Omit<GeneratedImage, 'path'>[] = [
  { width: 640, height: 427, mode: 'RGB', seed: 21, smooth: true },    // 335x224: (335 - 224) % 4 == 3, offset 56 vs 55
  { width: 300, height: 451, mode: 'RGB', seed: 22 },                  // 224x336: % 4 == 0
  { width: 301, height: 200, mode: 'RGBA', seed: 23, smooth: true },   // 337x224: % 4 == 1
  { width: 120, height: 90, mode: 'LA', seed: 24 },                    // upscale with alpha
  { width: 500, height: 333, mode: 'P', seed: 25 },
  { width: 224, height: 300, mode: 'RGBA', seed: 26 },                 // short side already 224: no premultiplied round trip
  { width: 37, height: 23, mode: 'P', seed: 27 },                      // NEAREST upscale
];

describe("OpenAI clip's preprocessing matches torchvision + Pillow", { skip: skipWithoutTorchvision }, () => {
  test('the reference images: every value identical at the uint8 level', { skip: skipWithoutReference }, async (t) => {
    const files = (await readdir(path.join(referenceDir, 'images'))).sort().map((f) => path.join(referenceDir, 'images', f));
    const expected = torchvisionClip(files, path.join(scratch, 'ref.f32'));
    const differ: string[] = [];
    for (const [i, file] of files.entries()) {
      const theirs = toUint8(expected[i]);
      const result = compareBytes(await ours(file, OPENAI_CLIP), theirs);
      assert.equal(result.maxDiff, 0, `${path.basename(file)}: max diff ${result.maxDiff} levels, ${result.identical} of ${result.total} identical`);
      // The transformers pipeline (the default config) differs exactly where clip's differs from it.
      const byDefault = compareBytes((await decodeImage(await readFile(file), { exif: 'ignore', maxPixels: DEFAULT_MAX_PIXELS }).then((img) => resizeAndCrop(img, CLIP_PREPROCESS))).data, theirs);
      if (byDefault.identical !== byDefault.total) differ.push(`${path.basename(file)} (${byDefault.maxDiff} levels)`);
    }
    t.diagnostic(`the default config differs from clip on: ${differ.join(', ')}`);
    assert.deepEqual(differ.map((d) => d.split(' ')[0]).sort(), ['astronaut-rgba.png', 'palette.gif', 'rocket-exif6.jpg']);
  });

  test('generated images: crop offsets of every remainder, RGBA, grey+alpha and palette, up- and downscaled', async () => {
    const images = GENERATED.map((g, i) => ({ ...g, path: path.join(scratch, `gen-${i}-${g.width}x${g.height}-${g.mode}.png`) }));
    generateImages(images);
    const expected = torchvisionClip(images.map((g) => g.path), path.join(scratch, 'gen.f32'));
    for (const [i, image] of images.entries()) {
      const result = compareBytes(await ours(image.path, OPENAI_CLIP), toUint8(expected[i]));
      assert.equal(result.maxDiff, 0, `${path.basename(image.path)}: max diff ${result.maxDiff} levels`);
    }
  });
});

describe('the preprocess options', () => {
  const img = { data: Uint8Array.from({ length: 640 * 427 * 3 }, (_, i) => (i * 7919) % 251), width: 640, height: 427 };

  test('absent options are the transformers pipeline: floor offsets, RGB first (byte for byte)', () => {
    const base = resizeAndCrop(img, CLIP_PREPROCESS).data;
    assert.deepEqual(resizeAndCrop(img, { ...CLIP_PREPROCESS, cropRounding: 'floor', convertToRgb: 'before-resize' }).data, base);
    // A mode-decoded image under the default config is resized as RGB: its alpha is not used.
    const alpha = new Uint8Array(640 * 427).fill(7);
    assert.deepEqual(resizeAndCrop({ ...img, modeGroup: 'alpha', alpha }, CLIP_PREPROCESS).data, base);
    assert.deepEqual(resizeAndCrop({ ...img, modeGroup: 'palette' }, CLIP_PREPROCESS).data, base);
  });

  test('half-even offsets move the crop one pixel exactly when (size - crop) % 4 == 3', () => {
    const wide = (w: number) => ({ data: Uint8Array.from({ length: w * 224 * 3 }, (_, i) => Math.floor(i / 3) % w), width: w, height: 224 });
    for (const [width, shift] of [[335, 1], [336, 0], [337, 0], [338, 0], [339, 1]] as const) {
      const floor = resizeAndCrop(wide(width), CLIP_PREPROCESS).data;
      const even = resizeAndCrop(wide(width), { ...CLIP_PREPROCESS, cropRounding: 'half-even' }).data;
      assert.equal(even[0] - floor[0], shift, `width ${width}`);
    }
  });

  test('CMYK and 16-bit images under after-crop: an InputError, not pixels clip would not give', async () => {
    assert.throws(() => resizeAndCrop({ ...img, modeGroup: 'other' }, OPENAI_CLIP), (err: unknown) => err instanceof InputError && /CMYK, 16-bit grey or 16-bit with alpha/.test(err.message));
    const grey16 = await sharp(Buffer.from(new Uint16Array(40 * 30).fill(40000).buffer), { raw: { width: 40, height: 30, channels: 1 } }).toColourspace('grey16').png().toBuffer();
    assert.equal((await decodeImageWithMode(grey16, { exif: 'ignore', maxPixels: DEFAULT_MAX_PIXELS })).modeGroup, 'other');
    const cmyk = await sharp({ create: { width: 8, height: 8, channels: 3, background: '#3080c0' } }).toColourspace('cmyk').jpeg().toBuffer();
    assert.equal((await decodeImageWithMode(cmyk, { exif: 'ignore', maxPixels: DEFAULT_MAX_PIXELS })).modeGroup, 'other');
  });
});
