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
import type { RgbImage } from './codec.js';

const PRECISION_BITS = 32 - 8 - 2;
const ROUNDING_HALF = 1 << (PRECISION_BITS - 1);
const CLAMP_LIMIT = 1 << (PRECISION_BITS + 8);
const BICUBIC_SUPPORT = 2;
const BICUBIC_A = -0.5;

/** A rectangle of the resized image: the pixels to compute, in output coordinates. */
export interface Region { left: number; top: number; width: number; height: number }

/** Integer filter taps for one axis: output i reads `counts[i]` inputs from `starts[i]`. */
interface AxisCoefficients { starts: Int32Array; counts: Int32Array; taps: Int32Array; tapsPerOutput: number }

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

function clip8(sum: number): number {
  if (sum >= CLAMP_LIMIT) return 255;
  if (sum <= 0) return 0;
  return sum >> PRECISION_BITS;
}

/** Horizontal pass over input rows [firstRow, firstRow + rows): one output row per input row. */
function resampleRows(src: RgbImage, firstRow: number, rows: number, c: AxisCoefficients): Uint8Array {
  const outWidth = c.starts.length;
  const out = new Uint8Array(outWidth * rows * 3);
  const { data } = src;
  const { starts, counts, taps, tapsPerOutput } = c;
  let o = 0;
  for (let y = 0; y < rows; y++) {
    const rowBase = (firstRow + y) * src.width * 3;
    for (let xx = 0; xx < outWidth; xx++) {
      const n = counts[xx];
      const k0 = xx * tapsPerOutput;
      let p = rowBase + starts[xx] * 3;
      let s0 = ROUNDING_HALF;
      let s1 = ROUNDING_HALF;
      let s2 = ROUNDING_HALF;
      for (let t = 0; t < n; t++, p += 3) {
        const k = taps[k0 + t];
        s0 += data[p] * k;
        s1 += data[p + 1] * k;
        s2 += data[p + 2] * k;
      }
      out[o++] = clip8(s0);
      out[o++] = clip8(s1);
      out[o++] = clip8(s2);
    }
  }
  return out;
}

/**
 * Vertical pass. `rowOffset` maps the coefficients' input rows to rows of `data`. Sums are accumulated a
 * whole row at a time (cache friendly); integer sums are exact in float64 and do not depend on order.
 */
function resampleColumns(data: Uint8Array, width: number, rowOffset: number, c: AxisCoefficients): Uint8Array {
  const rowLength = width * 3;
  const outRows = c.starts.length;
  const out = new Uint8Array(rowLength * outRows);
  const sums = new Float64Array(rowLength);
  const { starts, counts, taps, tapsPerOutput } = c;
  for (let yy = 0; yy < outRows; yy++) {
    sums.fill(ROUNDING_HALF);
    const k0 = yy * tapsPerOutput;
    for (let t = 0; t < counts[yy]; t++) {
      const k = taps[k0 + t];
      const rowBase = (starts[yy] - rowOffset + t) * rowLength;
      for (let x = 0; x < rowLength; x++) sums[x] += data[rowBase + x] * k;
    }
    const outBase = yy * rowLength;
    for (let x = 0; x < rowLength; x++) out[outBase + x] = clip8(sums[x]);
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

/**
 * The pixels of `region` of Pillow's `src.resize((width, height), BICUBIC)`, computing only what the
 * region needs: the same bytes as resizing fully and cropping, for a fraction of the work.
 */
export function resizeBicubicRegion(src: RgbImage, width: number, height: number, region: Region): RgbImage {
  checkSize('width', width);
  checkSize('height', height);
  const { left, top } = region;
  if (left < 0 || top < 0 || region.width < 1 || region.height < 1 || left + region.width > width || top + region.height > height) {
    throw new RangeError(`Expected a region inside ${width}x${height} but received ${region.width}x${region.height} at (${left}, ${top})`);
  }
  const needHorizontal = width !== src.width;
  const needVertical = height !== src.height;
  if (!needHorizontal && !needVertical) return { data: copyRegion(src, region), width: region.width, height: region.height };
  if (!needVertical) {
    const rows = axisCoefficients(src.width, width, left, region.width);
    return { data: resampleRows(src, top, region.height, rows), width: region.width, height: region.height };
  }
  const columns = axisCoefficients(src.height, height, top, region.height);
  const firstRow = columns.starts[0];
  const lastRow = columns.starts[region.height - 1] + columns.counts[region.height - 1];
  const intermediate = needHorizontal
    ? resampleRows(src, firstRow, lastRow - firstRow, axisCoefficients(src.width, width, left, region.width))
    : copyRegion(src, { left, top: firstRow, width: region.width, height: lastRow - firstRow });
  return { data: resampleColumns(intermediate, region.width, firstRow, columns), width: region.width, height: region.height };
}

/** Pillow's `Image.resize((width, height), Image.BICUBIC)` on an RGB image. */
export function resizeBicubic(src: RgbImage, width: number, height: number): RgbImage {
  return resizeBicubicRegion(src, width, height, { left: 0, top: 0, width, height });
}
