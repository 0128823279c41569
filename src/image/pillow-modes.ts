/**
 * Pillow's `Image.resize` on images it keeps in a mode other than RGB, as OpenAI `clip`'s `_transform`
 * meets them: it resizes the image in the mode it was opened in and converts to RGB only after the crop.
 * - "P" and "1": Pillow forces NEAREST (ImagingScaleAffine: source x = trunc(0.5·s + x·s), the position
 *   accumulated in double one step at a time, s = in / out). Picking palette entries and looking them up
 *   afterwards picks the same colours as picking from the looked-up image, so this works on RGB.
 * - "RGBA" and "LA": Pillow converts to premultiplied "RGBa"/"La" (c·a/255 rounded as MULDIV255),
 *   resizes every channel with its bicubic, converts back (c·255/a, integer division, clipped; a of 0
 *   or 255 left as is), and `convert("RGB")` then drops the alpha. When the size does not change,
 *   `Image.resize` returns a copy and none of this happens.
 * Pure: no I/O.
 */
import type { RgbImage } from './image.js';
import { resizeBicubicRegion, type Region } from './resample.js';

/** Pillow's NEAREST resize of `src` to width x height, computing only `region` of the result. */
export function resizeNearestRegion(src: RgbImage, width: number, height: number, region: Region): RgbImage {
  const columns = nearestPositions(src.width, width, region.left, region.width);
  const rows = nearestPositions(src.height, height, region.top, region.height);
  const out = new Uint8Array(region.width * region.height * 3);
  for (let y = 0; y < region.height; y++) {
    const rowBase = rows[y] * src.width;
    for (let x = 0; x < region.width; x++) {
      const from = (rowBase + columns[x]) * 3;
      const to = (y * region.width + x) * 3;
      out[to] = src.data[from];
      out[to + 1] = src.data[from + 1];
      out[to + 2] = src.data[from + 2];
    }
  }
  return { data: out, width: region.width, height: region.height };
}

/** Source index of outputs first .. first + count - 1, as ImagingScaleAffine tabulates them (clamped into the image). */
function nearestPositions(inSize: number, outSize: number, first: number, count: number): Int32Array {
  const step = inSize / outSize;
  const positions = new Int32Array(count);
  let at = step * 0.5;
  for (let i = 0; i < first + count; i++) {
    if (i >= first) positions[i - first] = Math.min(Math.max(at < 0 ? -1 : Math.trunc(at), 0), inSize - 1);
    at += step;
  }
  return positions;
}

/** MULDIV255(a, b): a·b/255 rounded the way Pillow's conversions do. */
function mulDiv255(a: number, b: number): number {
  const t = a * b + 128;
  return ((t >> 8) + t) >> 8;
}

/**
 * Pillow's resize of an image with alpha (RGBA, or LA with its grey in all three channels): premultiply,
 * bicubic on every channel, unpremultiply; the alpha itself is then dropped, as `convert("RGB")` drops it.
 */
export function resizePremultipliedRegion(src: RgbImage, alpha: Uint8Array, width: number, height: number, region: Region): RgbImage {
  const pixels = src.width * src.height;
  if (alpha.length !== pixels) throw new RangeError(`alpha has ${alpha.length} values for ${pixels} pixels`);
  // Image.resize returns a copy when the size does not change: no premultiplied round trip then.
  if (width === src.width && height === src.height) return resizeBicubicRegion(src, width, height, region);
  const premultiplied = new Uint8Array(pixels * 3);
  const alphaImage = new Uint8Array(pixels * 3);
  for (let i = 0, p = 0; i < pixels; i++, p += 3) {
    const a = alpha[i];
    premultiplied[p] = mulDiv255(src.data[p], a);
    premultiplied[p + 1] = mulDiv255(src.data[p + 1], a);
    premultiplied[p + 2] = mulDiv255(src.data[p + 2], a);
    alphaImage[p] = alphaImage[p + 1] = alphaImage[p + 2] = a;
  }
  // Pillow resizes the four channels of RGBa together, each on its own: the alpha as a grey image gives the same values.
  const colour = resizeBicubicRegion({ data: premultiplied, width: src.width, height: src.height }, width, height, region);
  const resizedAlpha = resizeBicubicRegion({ data: alphaImage, width: src.width, height: src.height }, width, height, region);
  const out = colour.data;
  for (let p = 0; p < out.length; p += 3) {
    const a = resizedAlpha.data[p];
    if (a === 0 || a === 255) continue;
    for (let c = 0; c < 3; c++) out[p + c] = Math.min(255, Math.trunc((255 * out[p + c]) / a));
  }
  return colour;
}
