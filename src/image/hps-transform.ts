/**
 * HPSv2's image transform (`preprocess_val` of tgxs002/HPSv2, `hpsv2/src/open_clip/transform.py`),
 * reproduced in float as torch computes it. It is not PickScore's resize-and-crop:
 *   1. `ToTensor`: x = float32(v / 255), before any resize;
 *   2. `ResizeMaxSize(224)`: scale = 224 / max(H, W) in float64, new sizes `round(dim * scale)` with
 *      Python's round (half to even), then torch's bicubic interpolation of the float tensor
 *      (`F.resize`, no clamping, no rounding to uint8);
 *   3. `F.pad` with 0.0 to 224 x 224, the image centred (the odd pixel to the right and bottom);
 *   4. `Normalize(mean, std)` in float32.
 * No centre crop: the whole image is kept, letterboxed.
 *
 * `ResizeMaxSize` calls `F.resize` without `antialias`, so the interpolation depends on torchvision:
 * up to 0.16 (Debian's 0.14 among them) it is plain Keys bicubic (a = -0.75) sampled at the output
 * positions; from 0.17 on, `antialias` defaults to true, a Pillow-like filter (a = -0.5) widened by the
 * scale when downscaling. Both are implemented; `antialias: false` is the default (HPSV2_TRANSFORM).
 *
 * Where HPSv2 itself fails, pickscore decides (docs/scorers.md):
 * - RGBA: HPSv2 keeps four channels and its 3-channel patch embedding then fails. Every step is per
 *   channel, so the first three channels of what HPSv2 computes are the transform of the RGB channels:
 *   that is what this gives, the alpha dropped as the decoder drops it for every other mode.
 * - An image whose longer side is already 224 but is not square is neither resized nor padded by HPSv2,
 *   which then fails on the token count. It is padded here, as any other image (the resize to its own
 *   size is the identity, so this is what HPSv2 would give had it padded).
 * - An image so thin that a side would resize to 0 pixels (torch refuses an empty output) is an
 *   InputError naming the sizes.
 *
 * Pure: no I/O. Output: CHW float32, 3 x size x size.
 */
import { InputError, expectedMessage } from '../errors.js';
import type { RgbImage } from './image.js';

export interface HpsTransformConfig {
  /** The longer side after resize, and the padded square's side. */
  size: number;
  /** torchvision >= 0.17's default (true) or <= 0.16's (false). */
  antialias: boolean;
  mean: [number, number, number];
  std: [number, number, number];
}

/** HPSv2 / HPSv2.1 as `hpsv2/img_score.py` runs it with torchvision <= 0.16 (Debian's 0.14 included). */
export const HPSV2_TRANSFORM: Readonly<HpsTransformConfig> = Object.freeze({
  size: 224,
  antialias: false,
  mean: [0.48145466, 0.4578275, 0.40821073],
  std: [0.26862954, 0.26130258, 0.27577711],
}) as Readonly<HpsTransformConfig>;

/** Python's round(): to the nearest integer, ties to even. */
export function roundHalfEven(x: number): number {
  const floor = Math.floor(x);
  const diff = x - floor;
  if (diff < 0.5) return floor;
  if (diff > 0.5) return floor + 1;
  return floor % 2 === 0 ? floor : floor + 1;
}

/** ResizeMaxSize's output size, or the input's when its longer side is already `size`. */
export function hpsResizedSize(width: number, height: number, size: number): { width: number; height: number } {
  const scale = size / Math.max(width, height);
  if (scale === 1) return { width, height };
  return { width: roundHalfEven(width * scale), height: roundHalfEven(height * scale) };
}

/** Filter taps for one axis: output i reads `counts[i]` inputs from `starts[i]`, with `weights[i * taps ...]`. */
interface AxisTaps { starts: Int32Array; counts: Int32Array; taps: number; weights: Float64Array }

const f32 = Math.fround;

/** torch's cubic_convolution1 / cubic_convolution2 with A = -0.75, in float32 as torch computes them for float input. */
function keysCoefficients(t: number, out: Float64Array, at: number): void {
  const A = -0.75;
  const conv1 = (x: number) => f32(f32(f32(f32(f32(A + 2) * x) - f32(A + 3)) * x) * x + 1);
  const conv2 = (x: number) => f32(f32(f32(f32(f32(A * x) - f32(5 * A)) * x) + f32(8 * A)) * x - f32(4 * A));
  out[at] = conv2(f32(t + 1));
  out[at + 1] = conv1(t);
  out[at + 2] = conv1(f32(1 - t));
  out[at + 3] = conv2(f32(2 - t));
}

/**
 * torch 1.13's bicubic (align_corners=False, antialias=False): src = scale * (i + 0.5) - 0.5 with the
 * float32 scale and the arithmetic in float64, index floor(src) clamped to the last input, lambda in
 * float32, four taps at index - 1 .. index + 2 clamped to the edges (taps on the same pixel add up).
 */
function plainBicubicTaps(inSize: number, outSize: number): AxisTaps {
  const scale = f32(inSize / outSize);
  const starts = new Int32Array(outSize);
  const counts = new Int32Array(outSize).fill(4);
  const weights = new Float64Array(outSize * 4);
  const coefficients = new Float64Array(4);
  for (let i = 0; i < outSize; i++) {
    const real = scale * (i + 0.5) - 0.5;
    const index = Math.min(Math.floor(real), inSize - 1);
    const lambda = f32(Math.min(Math.max(real - index, 0), 1));
    keysCoefficients(lambda, coefficients, 0);
    // Clamped taps are folded onto their pixel: starts[i] is the first tap, which may repeat.
    starts[i] = index - 1;
    for (let j = 0; j < 4; j++) weights[i * 4 + j] = coefficients[j];
  }
  return { starts, counts, taps: 4, weights };
}

/** Keys cubic with a = -0.5, as torch's antialiased kernel (and Pillow) uses it. */
function cubicHalf(x: number): number {
  const a = -0.5;
  const ax = Math.abs(x);
  if (ax < 1) return ((a + 2) * ax - (a + 3)) * ax * ax + 1;
  if (ax < 2) return (((ax - 5) * ax + 8) * ax - 4) * a;
  return 0;
}

/**
 * torch's antialiased bicubic (`_upsample_bicubic2d_aa`): Pillow's filter geometry, the support widened
 * by the scale when downscaling, weights normalised to sum to 1. For float input torch keeps the centre,
 * the filter values and their sum in float32 (the filter's own arithmetic in double); so does this.
 */
function antialiasedTaps(inSize: number, outSize: number): AxisTaps {
  const scale = f32(inSize / outSize);
  const support = f32(scale >= 1 ? 2 * scale : 2);
  const invScale = f32(scale >= 1 ? 1 / scale : 1);
  const taps = Math.ceil(support) * 2 + 1;
  const starts = new Int32Array(outSize);
  const counts = new Int32Array(outSize);
  const weights = new Float64Array(outSize * taps);
  for (let i = 0; i < outSize; i++) {
    const center = f32(scale * (i + 0.5));
    const xmin = Math.max(Math.trunc(f32(center - support) + 0.5), 0);
    const xsize = Math.min(Math.trunc(f32(center + support) + 0.5), inSize) - xmin;
    let total = 0;
    for (let j = 0; j < xsize; j++) {
      const w = f32(cubicHalf(f32((f32(j + xmin - center) + 0.5) * invScale)));
      weights[i * taps + j] = w;
      total = f32(total + w);
    }
    for (let j = 0; j < xsize; j++) weights[i * taps + j] = total !== 0 ? f32(weights[i * taps + j] / total) : 0;
    starts[i] = xmin;
    counts[i] = xsize;
  }
  return { starts, counts, taps, weights };
}

function axisTaps(inSize: number, outSize: number, antialias: boolean): AxisTaps {
  return antialias ? antialiasedTaps(inSize, outSize) : plainBicubicTaps(inSize, outSize);
}

/**
 * Sum of taps over `src` (stride `step` between neighbours, `scale` applied to each sample, exactly as a
 * float32 table lookup would), clamping indices to [0, last]: float32 at each step, as torch sums.
 */
function applyTaps(src: ArrayLike<number>, base: number, step: number, last: number, axis: AxisTaps, i: number, lookup?: Float32Array): number {
  const start = axis.starts[i];
  const count = axis.counts[i];
  let sum = 0;
  for (let j = 0; j < count; j++) {
    const index = Math.min(Math.max(start + j, 0), last);
    const sample = lookup ? lookup[src[base + index * step]] : src[base + index * step];
    sum = f32(sum + f32(axis.weights[i * axis.taps + j] * sample));
  }
  return sum;
}

function checkConfig(cfg: HpsTransformConfig): void {
  if (!Number.isInteger(cfg.size) || cfg.size < 1) throw new RangeError(expectedMessage('a positive integer', 'size', cfg.size));
  if (typeof cfg.antialias !== 'boolean') throw new TypeError(expectedMessage('true or false', 'antialias', cfg.antialias));
}

/**
 * Writes HPSv2's transform of `img` (interleaved RGB uint8) into `out` from `offset`, channel-major
 * (3 x size x size).
 */
export function hpsTransformInto(img: RgbImage, cfg: HpsTransformConfig, out: Float32Array, offset: number): void {
  checkConfig(cfg);
  const { size } = cfg;
  const plane = size * size;
  if (!Number.isInteger(offset) || offset < 0 || offset + 3 * plane > out.length) {
    throw new RangeError(expectedMessage(`an offset with room for ${3 * plane} values in ${out.length}`, 'hpsTransformInto', offset));
  }
  const { width: inW, height: inH, data } = img;
  const { width: outW, height: outH } = hpsResizedSize(inW, inH, size);
  if (outW < 1 || outH < 1) {
    throw new InputError(`image too thin for HPSv2's transform: ${inW}x${inH} would resize to ${outW}x${outH} pixels (its longer side to ${size})`);
  }
  if (outW > size || outH > size) throw new RangeError(`resized ${outW}x${outH} exceeds ${size}`);
  const resize = outW !== inW || outH !== inH;
  const horizontal = resize ? axisTaps(inW, outW, cfg.antialias) : undefined;
  const vertical = resize ? axisTaps(inH, outH, cfg.antialias) : undefined;
  const toUnit = new Float32Array(256);
  for (let v = 0; v < 256; v++) toUnit[v] = v / 255;
  const left = Math.floor((size - outW) / 2);
  const top = Math.floor((size - outH) / 2);
  // One float32 row set of the resized width: the input is read in place, never copied to float.
  const rows = resize ? new Float32Array(inH * outW) : new Float32Array(0);
  for (let c = 0; c < 3; c++) {
    const mean = f32(cfg.mean[c]);
    const std = f32(cfg.std[c]);
    const normalise = (x: number) => f32(f32(x - mean) / std);
    const target = offset + c * plane;
    out.fill(normalise(0), target, target + plane);
    if (!horizontal || !vertical) {
      for (let y = 0; y < inH; y++) {
        for (let x = 0; x < inW; x++) out[target + (top + y) * size + left + x] = normalise(toUnit[data[(y * inW + x) * 3 + c]]);
      }
      continue;
    }
    // Horizontal pass into a float32 intermediate, then the vertical pass: torch's order.
    for (let y = 0; y < inH; y++) {
      for (let x = 0; x < outW; x++) rows[y * outW + x] = applyTaps(data, y * inW * 3 + c, 3, inW - 1, horizontal, x, toUnit);
    }
    for (let y = 0; y < outH; y++) {
      for (let x = 0; x < outW; x++) out[target + (top + y) * size + left + x] = normalise(applyTaps(rows, x, outW, inH - 1, vertical, y));
    }
  }
}
