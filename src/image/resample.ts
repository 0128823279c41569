/**
 * Pillow's BICUBIC resize, bit for bit (libImaging/Resample.c, 8 bits per channel).
 *
 * Pillow resizes in two separable passes, horizontal first, through a uint8 intermediate. Each output
 * sample is a weighted sum of input samples with the Keys cubic (a = -0.5); when downscaling, the filter
 * is stretched by the scale factor (antialiasing). Weights are normalised to sum to 1, then turned into
 * 22-bit fixed point, rounded half away from zero; sums start at one half and are clamped to 0..255.
 * `Image.resize` without `reducing_gap` (as the CLIP processor calls it) never uses the box "reduce" step.
 *
 * Pure: no I/O. Buffers are allocated once per call, never per pixel.
 */
import type { RgbImage } from './image.js';
import { simdColumns, simdKernels, simdRows, type Taps } from './resample-simd.js';

const PRECISION_BITS = 32 - 8 - 2;
const ROUNDING_HALF = 1 << (PRECISION_BITS - 1);
const CLAMP_LIMIT = 1 << (PRECISION_BITS + 8);
const BICUBIC_SUPPORT = 2;
const BICUBIC_A = -0.5;

/** A rectangle of the resized image: the pixels to compute, in output coordinates. */
export interface Region { left: number; top: number; width: number; height: number }

/** Integer filter taps for one axis: output i reads `counts[i]` inputs from `starts[i]`. */
/** Per output position: first source index, tap count, and the fixed-point taps (the SIMD kernels read the same). */
type AxisCoefficients = Taps;

function bicubic(distance: number): number {
  const x = distance < 0 ? -distance : distance;
  if (x < 1) return ((BICUBIC_A + 2) * x - (BICUBIC_A + 3)) * x * x + 1;
  if (x < 2) return (((x - 5) * x + 8) * x - 4) * BICUBIC_A;
  return 0;
}

/** Pillow's precompute_coeffs and normalize_coeffs_8bpc, restricted to outputs [first, first + count). */
function axisCoefficients(inSize: number, outSize: number, first: number, count: number): AxisCoefficients {
  const scale = inSize / outSize;
  const filterScale = scale < 1 ? 1 : scale;
  const support = BICUBIC_SUPPORT * filterScale;
  const tapsPerOutput = Math.ceil(support) * 2 + 1;
  const starts = new Int32Array(count);
  const counts = new Int32Array(count);
  const taps = new Int32Array(count * tapsPerOutput);
  const weights = new Float64Array(tapsPerOutput);
  const inverseScale = 1 / filterScale;
  for (let i = 0; i < count; i++) {
    const center = (first + i + 0.5) * scale;
    // C casts to int, which truncates toward zero; the clamps below make that the same as Math.trunc.
    const xmin = Math.max(0, Math.trunc(center - support + 0.5));
    const xmax = Math.min(inSize, Math.trunc(center + support + 0.5)) - xmin;
    let total = 0;
    for (let x = 0; x < xmax; x++) {
      const w = bicubic((x + xmin - center + 0.5) * inverseScale);
      weights[x] = w;
      total += w;
    }
    const base = i * tapsPerOutput;
    for (let x = 0; x < xmax; x++) {
      const normalised = total !== 0 ? weights[x] / total : weights[x];
      const fixed = normalised * (1 << PRECISION_BITS);
      taps[base + x] = normalised < 0 ? Math.trunc(fixed - 0.5) : Math.trunc(fixed + 0.5);
    }
    starts[i] = xmin;
    counts[i] = xmax;
  }
  return { starts, counts, taps, tapsPerOutput };
}

/** Pillow's clip8 on a 22-bit fixed-point sum. */
function clip8(sum: number): number {
  if (sum >= CLAMP_LIMIT) return 255;
  if (sum <= 0) return 0;
  return sum >> PRECISION_BITS;
}

/*
 * The passes use int32 arithmetic (Math.imul, | 0), as Pillow's C does. It cannot overflow: the positive
 * taps of a normalised cubic sum to under 1.2, so |sum| < 255 * 1.2 * 2^22 + 2^21 < 2^31.
 */

/**
 * Horizontal pass over input rows [firstRow, firstRow + rows): one output row per input row. Two rows
 * are filtered together so that each tap is loaded once for both.
 */
function resampleRows(src: RgbImage, firstRow: number, rows: number, c: AxisCoefficients): Uint8Array {
  const outWidth = c.starts.length;
  const outRowLength = outWidth * 3;
  const out = new Uint8Array(outRowLength * rows);
  const { data } = src;
  const { starts, counts, taps, tapsPerOutput } = c;
  const rowLength = src.width * 3;
  let y = 0;
  for (; y + 1 < rows; y += 2) {
    const rowBase = (firstRow + y) * rowLength;
    let o = y * outRowLength;
    for (let xx = 0; xx < outWidth; xx++, o += 3) {
      let k = xx * tapsPerOutput;
      const kEnd = k + counts[xx];
      let p = rowBase + starts[xx] * 3;
      let a0 = ROUNDING_HALF, a1 = ROUNDING_HALF, a2 = ROUNDING_HALF;
      let b0 = ROUNDING_HALF, b1 = ROUNDING_HALF, b2 = ROUNDING_HALF;
      for (; k < kEnd; k++, p += 3) {
        const w = taps[k];
        const q = p + rowLength;
        a0 = (a0 + Math.imul(data[p], w)) | 0;
        a1 = (a1 + Math.imul(data[p + 1], w)) | 0;
        a2 = (a2 + Math.imul(data[p + 2], w)) | 0;
        b0 = (b0 + Math.imul(data[q], w)) | 0;
        b1 = (b1 + Math.imul(data[q + 1], w)) | 0;
        b2 = (b2 + Math.imul(data[q + 2], w)) | 0;
      }
      out[o] = clip8(a0);
      out[o + 1] = clip8(a1);
      out[o + 2] = clip8(a2);
      out[o + outRowLength] = clip8(b0);
      out[o + outRowLength + 1] = clip8(b1);
      out[o + outRowLength + 2] = clip8(b2);
    }
  }
  for (; y < rows; y++) {
    const rowBase = (firstRow + y) * rowLength;
    let o = y * outRowLength;
    for (let xx = 0; xx < outWidth; xx++, o += 3) {
      let k = xx * tapsPerOutput;
      const kEnd = k + counts[xx];
      let p = rowBase + starts[xx] * 3;
      let a0 = ROUNDING_HALF, a1 = ROUNDING_HALF, a2 = ROUNDING_HALF;
      for (; k < kEnd; k++, p += 3) {
        const w = taps[k];
        a0 = (a0 + Math.imul(data[p], w)) | 0;
        a1 = (a1 + Math.imul(data[p + 1], w)) | 0;
        a2 = (a2 + Math.imul(data[p + 2], w)) | 0;
      }
      out[o] = clip8(a0);
      out[o + 1] = clip8(a1);
      out[o + 2] = clip8(a2);
    }
  }
  return out;
}

/** Vertical pass. `rowOffset` maps the coefficients' input rows to rows of `data`. */
function resampleColumns(data: Uint8Array, width: number, rowOffset: number, c: AxisCoefficients): Uint8Array {
  const rowLength = width * 3;
  const outRows = c.starts.length;
  const out = new Uint8Array(rowLength * outRows);
  const { starts, counts, taps, tapsPerOutput } = c;
  for (let yy = 0; yy < outRows; yy++) {
    const k0 = yy * tapsPerOutput;
    const kEnd = k0 + counts[yy];
    const firstBase = (starts[yy] - rowOffset) * rowLength;
    const outBase = yy * rowLength;
    for (let x = 0; x < rowLength; x += 3) {
      let s0 = ROUNDING_HALF, s1 = ROUNDING_HALF, s2 = ROUNDING_HALF;
      for (let k = k0, p = firstBase + x; k < kEnd; k++, p += rowLength) {
        const w = taps[k];
        s0 = (s0 + Math.imul(data[p], w)) | 0;
        s1 = (s1 + Math.imul(data[p + 1], w)) | 0;
        s2 = (s2 + Math.imul(data[p + 2], w)) | 0;
      }
      out[outBase + x] = clip8(s0);
      out[outBase + x + 1] = clip8(s1);
      out[outBase + x + 2] = clip8(s2);
    }
  }
  return out;
}

function copyRegion(src: RgbImage, region: Region): Uint8Array {
  const out = new Uint8Array(region.width * region.height * 3);
  const rowLength = region.width * 3;
  for (let y = 0; y < region.height; y++) {
    const from = ((region.top + y) * src.width + region.left) * 3;
    out.set(src.data.subarray(from, from + rowLength), y * rowLength);
  }
  return out;
}

function checkSize(name: string, value: number): void {
  if (!Number.isInteger(value) || value < 1) throw new RangeError(`Expected a positive integer for ${name} but received ${value}`);
}

/** The two passes, in WebAssembly SIMD where available (resample-simd.ts) or in script; both give the same bytes. */
export type ResampleKernels = 'auto' | 'script';

function passes(kernels: ResampleKernels) {
  const simd = kernels === 'auto' ? simdKernels() : null;
  if (!simd) return { rows: resampleRows, columns: resampleColumns };
  return {
    rows: (src: RgbImage, firstRow: number, rows: number, c: AxisCoefficients) => simdRows(simd, src.data, firstRow * src.width * 3, src.width, rows, c),
    columns: (data: Uint8Array, width: number, rowOffset: number, c: AxisCoefficients) => simdColumns(simd, data, width, rowOffset, c),
  };
}

/**
 * The pixels of `region` of Pillow's `src.resize((width, height), BICUBIC)`, computing only what the
 * region needs: the same bytes as resizing fully and cropping, for a fraction of the work.
 */
export function resizeBicubicRegion(src: RgbImage, width: number, height: number, region: Region, kernels: ResampleKernels = 'auto'): RgbImage {
  checkSize('width', width);
  checkSize('height', height);
  const { left, top } = region;
  if (left < 0 || top < 0 || region.width < 1 || region.height < 1 || left + region.width > width || top + region.height > height) {
    throw new RangeError(`Expected a region inside ${width}x${height} but received ${region.width}x${region.height} at (${left}, ${top})`);
  }
  const { rows: resampleRowsWith, columns: resampleColumnsWith } = passes(kernels);
  const needHorizontal = width !== src.width;
  const needVertical = height !== src.height;
  if (!needHorizontal && !needVertical) return { data: copyRegion(src, region), width: region.width, height: region.height };
  if (!needVertical) {
    const rows = axisCoefficients(src.width, width, left, region.width);
    return { data: resampleRowsWith(src, top, region.height, rows), width: region.width, height: region.height };
  }
  const columns = axisCoefficients(src.height, height, top, region.height);
  const firstRow = columns.starts[0];
  const lastRow = columns.starts[region.height - 1] + columns.counts[region.height - 1];
  const intermediate = needHorizontal
    ? resampleRowsWith(src, firstRow, lastRow - firstRow, axisCoefficients(src.width, width, left, region.width))
    : copyRegion(src, { left, top: firstRow, width: region.width, height: lastRow - firstRow });
  return { data: resampleColumnsWith(intermediate, region.width, firstRow, columns), width: region.width, height: region.height };
}

/** Pillow's `Image.resize((width, height), Image.BICUBIC)` on an RGB image. */
export function resizeBicubic(src: RgbImage, width: number, height: number, kernels: ResampleKernels = 'auto'): RgbImage {
  return resizeBicubicRegion(src, width, height, { left: 0, top: 0, width, height }, kernels);
}
