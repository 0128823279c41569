/** The CLIP processor's arithmetic: sizes, crop offsets, padding, normalisation and config parsing. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { InputError } from '../src/errors.js';
import type { RgbImage } from '../src/image/codec.js';
import { resizeBicubic, resizeBicubicRegion } from '../src/image/resample.js';
import { simdKernels } from '../src/image/resample-simd.js';
import { CLIP_PREPROCESS, normalizeInto, preprocessConfigFromJson, resizeAndCrop, shortSideSize } from '../src/image/preprocess.js';
import { seededRandom } from './helpers/image-pillow.js';

function noiseImage(width: number, height: number, seed: number): RgbImage {
  const random = seededRandom(seed);
  const data = new Uint8Array(width * height * 3);
  for (let i = 0; i < data.length; i++) data[i] = Math.floor(random() * 256);
  return { data, width, height };
}

test('short side to 224, long side truncated, as transformers computes it', () => {
  assert.deepEqual(shortSideSize(1600, 400, 224), { width: 896, height: 224 });
  assert.deepEqual(shortSideSize(300, 900, 224), { width: 224, height: 672 });
  assert.deepEqual(shortSideSize(5, 3, 224), { width: 373, height: 224 }); // 224 * 5 / 3 = 373.33
  assert.deepEqual(shortSideSize(451, 300, 224), { width: 336, height: 224 }); // 336.75
});

test('a region of the resize equals the same pixels of the full resize', () => {
  const src = noiseImage(61, 47, 1);
  for (const [w, h] of [[200, 154], [30, 23], [61, 100], [90, 47], [61, 47]]) {
    const full = resizeBicubic(src, w, h);
    const region = { left: Math.floor(w / 5), top: Math.floor(h / 3), width: Math.ceil(w / 2), height: Math.ceil(h / 2) };
    const part = resizeBicubicRegion(src, w, h, region);
    for (let y = 0; y < region.height; y++) {
      const from = ((region.top + y) * w + region.left) * 3;
      assert.deepEqual(part.data.subarray(y * region.width * 3, (y + 1) * region.width * 3), full.data.subarray(from, from + region.width * 3), `${w}x${h} row ${y}`);
    }
  }
  assert.throws(() => resizeBicubicRegion(src, 10, 10, { left: 5, top: 0, width: 6, height: 1 }), RangeError);
  assert.throws(() => resizeBicubic(src, 0, 10), /Expected a positive integer for width but received 0/);
});

test('the WebAssembly SIMD kernels give the same bytes as the script kernels', () => {
  assert.ok(simdKernels(), 'WebAssembly SIMD is available in Node 20, so the fast kernels must load');
  const random = seededRandom(3);
  for (let i = 0; i < 60; i++) {
    const src = noiseImage(1 + Math.floor(random() * 300), 1 + Math.floor(random() * 300), i);
    const width = 1 + Math.floor(random() * 400);
    const height = 1 + Math.floor(random() * 400);
    const region = { left: Math.floor(width / 4), top: Math.floor(height / 5), width: Math.ceil(width / 2), height: Math.ceil(height / 2) };
    const label = `${src.width}x${src.height} -> ${width}x${height}`;
    assert.deepEqual(resizeBicubicRegion(src, width, height, region, 'auto').data, resizeBicubicRegion(src, width, height, region, 'script').data, label);
  }
  // Wide enough that the horizontal pass copies the source into WebAssembly memory in several bands.
  const wide = noiseImage(4000, 700, 99);
  assert.deepEqual(resizeBicubic(wide, 250, 224, 'auto').data, resizeBicubic(wide, 250, 224, 'script').data);
});

test('flat images stay flat and same-size resizes are the identity', () => {
  const flat: RgbImage = { data: new Uint8Array(9 * 4 * 3).fill(200), width: 9, height: 4 };
  assert.ok(resizeBicubic(flat, 31, 2).data.every((v) => v === 200));
  const src = noiseImage(13, 8, 2);
  assert.deepEqual(resizeBicubic(src, 13, 8).data, src.data);
});

test('a crop larger than the resized image is zero-padded around it, centred as transformers pads', () => {
  const src: RgbImage = { data: new Uint8Array(4 * 4 * 3).fill(90), width: 4, height: 4 };
  const cfg = { ...CLIP_PREPROCESS, shortestEdge: 4, cropWidth: 7, cropHeight: 5 };
  const out = resizeAndCrop(src, cfg);
  assert.deepEqual([out.width, out.height], [7, 5]);
  const row = (y: number) => [...out.data.subarray(y * 21, (y + 1) * 21)].filter((_, i) => i % 3 === 0);
  // width: pad 3 -> ceil(3/2) = 2 columns left; height: pad 1 -> 1 row on top.
  assert.deepEqual(row(0), [0, 0, 0, 0, 0, 0, 0]);
  assert.deepEqual(row(1), [0, 0, 90, 90, 90, 90, 0]);
  assert.deepEqual(row(4), [0, 0, 90, 90, 90, 90, 0]);
});

test('normalizeInto writes CHW at the offset with (x / 255 - mean) / std', () => {
  const cfg = { ...CLIP_PREPROCESS, shortestEdge: 2, cropWidth: 2, cropHeight: 1 };
  const img: RgbImage = { data: new Uint8Array([0, 128, 255, 10, 20, 30]), width: 2, height: 1 };
  const out = new Float32Array(8).fill(-9);
  normalizeInto(img, cfg, out, 2);
  const expected = [0, 10, 128, 20, 255, 30].map((v, i) => Math.fround((v / 255 - cfg.mean[i >> 1]) / cfg.std[i >> 1]));
  assert.deepEqual([...out], [-9, -9, ...expected]);
  assert.throws(() => normalizeInto(img, cfg, out, 3), RangeError);
  assert.throws(() => normalizeInto({ ...img, width: 1 }, cfg, out, 0), /Expected a 2x1 image/);
});

test('preprocessor_config.json in its historical shapes', () => {
  const modern = { crop_size: { height: 224, width: 224 }, size: { shortest_edge: 224 }, image_mean: CLIP_PREPROCESS.mean, image_std: CLIP_PREPROCESS.std, rescale_factor: 0.00392156862745098 };
  assert.deepEqual(preprocessConfigFromJson(modern), { ...CLIP_PREPROCESS, rescaleFactor: 0.00392156862745098 });
  const legacy = { crop_size: 336, size: 336, do_center_crop: true, resample: 3, feature_extractor_type: 'CLIPFeatureExtractor', image_mean: [0.5, 0.5, 0.5], image_std: [0.5, 0.5, 0.5] };
  assert.deepEqual(preprocessConfigFromJson(legacy), { shortestEdge: 336, cropHeight: 336, cropWidth: 336, mean: [0.5, 0.5, 0.5], std: [0.5, 0.5, 0.5], rescaleFactor: 1 / 255 });
  assert.deepEqual(preprocessConfigFromJson({}), CLIP_PREPROCESS);
});

test('bad preprocessor configs name the field', () => {
  const cases: [unknown, RegExp][] = [
    [[], /Expected a JSON object for preprocessor_config.json but received array of length 0/],
    [{ size: { height: 224, width: 224 } }, /Expected a number or \{"shortest_edge": n\} for preprocessor_config.json field "size"/],
    [{ size: { shortest_edge: -1 } }, /field "size.shortest_edge" but received number -1/],
    [{ crop_size: '224' }, /field "crop_size" but received "224"/],
    [{ crop_size: { height: 224, width: 0 } }, /field "crop_size.width"/],
    [{ image_std: [1, 0, 1] }, /Expected an array of 3 positive numbers for preprocessor_config.json field "image_std"/],
    [{ image_mean: [1, 2] }, /field "image_mean" but received array of length 2/],
    [{ rescale_factor: 0 }, /field "rescale_factor"/],
    [{ resample: 2 }, /Expected 3 \(bicubic, the only resampling pickscore implements\) for preprocessor_config.json field "resample" but received number 2/],
    [{ do_center_crop: false }, /Expected true for preprocessor_config.json field "do_center_crop" but received boolean false/],
  ];
  for (const [json, message] of cases) assert.throws(() => preprocessConfigFromJson(json), (err: unknown) => err instanceof InputError && message.test(err.message));
});
