/**
 * HPSv2's image transform (src/image/hps-transform.ts) against torchvision: the reference images and
 * generated ones chosen for the transform's corners (round-half-even ties, a longer side already at 224,
 * upscales, 1x1, grey, RGBA), with both antialias settings, within 1e-4 in normalised units.
 */
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { decodeImage } from '../src/image/codec.js';
import { DEFAULT_MAX_PIXELS } from '../src/image/image.js';
import { HPSV2_TRANSFORM, hpsResizedSize, hpsTransformInto, roundHalfEven } from '../src/image/hps-transform.js';
import { InputError } from '../src/errors.js';
import { referenceDir, skipWithoutReference } from './helpers/paths.js';
import { generateImages, torchvisionAvailable, torchvisionHps, type GeneratedImage } from './helpers/torchvision-transforms.js';

const TOLERANCE = 1e-4;
const PLANE = 224 * 224;
const skipWithoutTorchvision = torchvisionAvailable() ? false : 'python3-torchvision is not installed';

let scratch: string;
before(async () => {
  scratch = await mkdtemp(path.join(os.tmpdir(), 'pickscore-hps-'));
});
after(async () => rm(scratch, { recursive: true, force: true }));

async function ours(file: string, antialias: boolean): Promise<Float32Array> {
  const decoded = await decodeImage(await readFile(file), { exif: 'ignore', maxPixels: DEFAULT_MAX_PIXELS });
  const out = new Float32Array(3 * PLANE);
  hpsTransformInto(decoded, { ...HPSV2_TRANSFORM, antialias }, out, 0);
  return out;
}

function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  let max = 0;
  for (let i = 0; i < b.length; i++) max = Math.max(max, Math.abs(a[i] - b[i]));
  return max;
}

/** Sizes for the transform's corners: ties that round to even, a longer side at 224, upscales, extreme shapes. */
const GENERATED: Omit<GeneratedImage, 'path'>[] = [
  { width: 256, height: 12, mode: 'RGB', seed: 1 },     // 12 * 224 / 256 = 10.5: round() gives 10, Math.round 11
  { width: 12, height: 256, mode: 'RGB', seed: 2 },
  { width: 448, height: 6, mode: 'RGB', seed: 3, smooth: true },   // 3.0 exactly
  { width: 64, height: 6, mode: 'RGB', seed: 4 },       // 21.0 and a 3.5x upscale
  { width: 224, height: 100, mode: 'RGB', seed: 5 },    // no resize; HPSv2 would not pad either (see the next test)
  { width: 224, height: 224, mode: 'RGB', seed: 6 },
  { width: 1, height: 1, mode: 'RGB', seed: 7 },
  { width: 5, height: 3, mode: 'L', seed: 8 },
  { width: 300, height: 299, mode: 'RGB', seed: 9, smooth: true },
  { width: 225, height: 17, mode: 'RGB', seed: 10 },
  { width: 700, height: 333, mode: 'RGBA', seed: 11, smooth: true },
  { width: 97, height: 389, mode: 'LA', seed: 12 },
];

describe("HPSv2's transform matches torchvision", { skip: skipWithoutTorchvision }, () => {
  let generated: string[];
  before(() => {
    const images = GENERATED.map((g, i) => ({ ...g, path: path.join(scratch, `gen-${i}-${g.width}x${g.height}-${g.mode}.png`) }));
    generateImages(images);
    generated = images.map((g) => g.path);
  });

  for (const antialias of [false, true]) {
    const label = antialias ? 'antialias=True (torchvision >= 0.17)' : 'antialias=False (torchvision <= 0.16, the default)';
    test(`${label}: the reference images within ${TOLERANCE}`, { skip: skipWithoutReference }, async (t) => {
      const files = (await import('node:fs')).readdirSync(path.join(referenceDir, 'images')).sort().map((f) => path.join(referenceDir, 'images', f));
      const expected = torchvisionHps(files, { antialias, padUnresized: false, outFile: path.join(scratch, `ref-${antialias}.f32`) });
      let worst = 0;
      for (const [i, file] of files.entries()) {
        const diff = maxAbsDiff(await ours(file, antialias), expected[i]);
        assert.ok(diff < TOLERANCE, `${path.basename(file)}: max abs diff ${diff}`);
        worst = Math.max(worst, diff);
      }
      t.diagnostic(`${files.length} reference images, max abs diff ${worst.toExponential(2)}`);
    });

    test(`${label}: generated corner cases within ${TOLERANCE}`, async (t) => {
      const expected = torchvisionHps(generated, { antialias, padUnresized: true, outFile: path.join(scratch, `gen-${antialias}.f32`) });
      let worst = 0;
      for (const [i, file] of generated.entries()) {
        const diff = maxAbsDiff(await ours(file, antialias), expected[i]);
        assert.ok(diff < TOLERANCE, `${path.basename(file)}: max abs diff ${diff}`);
        worst = Math.max(worst, diff);
      }
      t.diagnostic(`${generated.length} generated images, max abs diff ${worst.toExponential(2)}`);
    });
  }

  test('the two antialias settings differ (so each comparison above tests its own path)', async () => {
    const file = generated[8];
    assert.ok(maxAbsDiff(await ours(file, false), await ours(file, true)) > 1e-2);
  });

  test('a longer side already at 224: HPSv2 leaves it unpadded (and then fails); pickscore pads it, equal to HPSv2 inside', async () => {
    const file = generated[4];
    const [unpadded] = torchvisionHps([file], { antialias: false, padUnresized: false, outFile: path.join(scratch, 'unpadded.f32') });
    assert.equal(unpadded.length, 3 * 224 * 100);   // the tensor HPSv2's model rejects
    const padded = await ours(file, false);
    const top = (224 - 100) / 2;
    for (let c = 0; c < 3; c++) {
      for (let y = 0; y < 100; y++) {
        for (let x = 0; x < 224; x++) assert.equal(padded[c * PLANE + (top + y) * 224 + x], unpadded[c * 224 * 100 + y * 224 + x]);
      }
    }
  });
});

describe("HPSv2's transform: sizes and refusals", () => {
  test("sizes round half to even, as Python's round()", () => {
    assert.deepEqual(hpsResizedSize(256, 12, 224), { width: 224, height: 10 });
    assert.deepEqual(hpsResizedSize(12, 256, 224), { width: 10, height: 224 });
    assert.deepEqual([roundHalfEven(0.5), roundHalfEven(1.5), roundHalfEven(2.5), roundHalfEven(2.4999), roundHalfEven(3.5)], [0, 2, 2, 2, 4]);
    assert.deepEqual(hpsResizedSize(640, 427, 224), { width: 224, height: 149 });
    assert.deepEqual(hpsResizedSize(224, 100, 224), { width: 224, height: 100 });
  });

  test('an image whose short side would resize to 0 pixels is an InputError naming the sizes', () => {
    const img = { data: new Uint8Array(1000 * 1 * 3), width: 1000, height: 1 };
    assert.throws(() => hpsTransformInto(img, HPSV2_TRANSFORM, new Float32Array(3 * PLANE), 0),
      (err: unknown) => err instanceof InputError && /too thin for HPSv2's transform: 1000x1 would resize to 224x0 pixels/.test(err.message));
  });

  test('the padding is black before normalisation, and the odd pixel goes right and bottom', () => {
    const img = { data: new Uint8Array(224 * 101 * 3).fill(255), width: 224, height: 101 };
    const out = new Float32Array(3 * PLANE);
    hpsTransformInto(img, HPSV2_TRANSFORM, out, 0);
    const black = Math.fround(Math.fround(0 - Math.fround(0.48145466)) / Math.fround(0.26862954));
    assert.equal(out[0], black);
    const top = 61;   // (224 - 101) // 2; 62 rows below
    assert.notEqual(out[top * 224], black);
    assert.equal(out[(top - 1) * 224], black);
    assert.notEqual(out[(top + 100) * 224], black);
    assert.equal(out[(top + 101) * 224], black);
    assert.ok(Math.abs(black - -1.7922626) < 1e-6);
  });

  test('a buffer too small for the output is a RangeError, not a write past its end', () => {
    const img = { data: new Uint8Array(3 * 4), width: 2, height: 2 };
    assert.throws(() => hpsTransformInto(img, HPSV2_TRANSFORM, new Float32Array(3 * PLANE), 1), RangeError);
  });
});
