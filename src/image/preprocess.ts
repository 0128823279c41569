/**
 * The CLIP image processor (transformers' CLIPImageProcessor on the Pillow path): resize the short side to
 * `shortestEdge` with Pillow's bicubic, centre-crop, then `(x * rescaleFactor - mean) / std` into CHW
 * float32. Pure: no I/O.
 */
import { InputError, InternalError, expectedMessage } from '../errors.js';
import type { PillowModeGroup, RgbImage } from './image.js';
import { resizeNearestRegion, resizePremultipliedRegion } from './pillow-modes.js';
import { resizeBicubicRegion, type Region } from './resample.js';

export interface PreprocessConfig {
  shortestEdge: number;
  cropHeight: number;
  cropWidth: number;
  mean: [number, number, number];
  std: [number, number, number];
  rescaleFactor: number;
  /**
   * The centre crop's offset, (size - crop) / 2: 'floor' (transformers, and the default) or 'half-even'
   * (torchvision's CenterCrop, which OpenAI `clip` uses: Python's round). They differ by one pixel when
   * (size - crop) % 4 == 3.
   */
  cropRounding?: 'floor' | 'half-even';
  /**
   * When the image becomes RGB: 'before-resize' (transformers, and the default) or 'after-crop' (OpenAI
   * `clip`, which resizes palette images with NEAREST and images with alpha premultiplied; see
   * src/image/pillow-modes.ts). Only images decoded with their mode (decodeImageWithMode) differ.
   */
  convertToRgb?: 'before-resize' | 'after-crop';
}

/** OpenAI CLIP's processor, used by PickScore v1 (laion/CLIP-ViT-H-14-laion2B-s32B-b79K). */
export const CLIP_PREPROCESS: PreprocessConfig = Object.freeze({
  shortestEdge: 224,
  cropHeight: 224,
  cropWidth: 224,
  mean: [0.48145466, 0.4578275, 0.40821073],
  std: [0.26862954, 0.26130258, 0.27577711],
  rescaleFactor: 1 / 255,
}) as PreprocessConfig;

/** The processor's resized size: short side `size`, long side int(size * long / short), truncated. */
export function shortSideSize(width: number, height: number, size: number): { width: number; height: number } {
  if (width <= height) return { width: size, height: Math.trunc((size * height) / width) };
  return { width: Math.trunc((size * width) / height), height: size };
}

/** Where the crop starts in a resized side of `size` (negative: the crop is larger, and padded). */
function cropOffset(size: number, crop: number, rounding: PreprocessConfig['cropRounding']): number {
  if (rounding !== 'half-even') return Math.floor((size - crop) / 2);
  // torchvision pads (crop - size) // 2 before, then crops at round((size' - crop) / 2) = 0.
  if (size < crop) return -Math.floor((crop - size) / 2);
  const half = (size - crop) / 2;
  const floor = Math.floor(half);
  return half - floor === 0.5 && floor % 2 === 0 ? floor : Math.round(half);
}

/**
 * Resize and centre-crop as the processor does: top = (h - cropH) // 2, left = (w - cropW) // 2 (or
 * rounded half to even, `cropRounding`). Only the cropped pixels are resampled. A crop larger than the
 * resized image is zero-padded around it, as transformers' center_crop pads (its offsets reduce to the
 * same floor division). With `convertToRgb: 'after-crop'`, an image decoded with its Pillow mode is
 * resized in that mode (NEAREST for palettes, premultiplied for alpha); modes whose resize Pillow does
 * differently again (CMYK, 16-bit grey, 16-bit with alpha) are refused rather than given pixels `clip` would not give.
 */
export function resizeAndCrop(img: RgbImage & { modeGroup?: PillowModeGroup; alpha?: Uint8Array }, cfg: PreprocessConfig): RgbImage {
  const resized = shortSideSize(img.width, img.height, cfg.shortestEdge);
  const top = cropOffset(resized.height, cfg.cropHeight, cfg.cropRounding);
  const left = cropOffset(resized.width, cfg.cropWidth, cfg.cropRounding);
  const inside: Region = {
    left: Math.max(0, left),
    top: Math.max(0, top),
    width: Math.min(resized.width, left + cfg.cropWidth) - Math.max(0, left),
    height: Math.min(resized.height, top + cfg.cropHeight) - Math.max(0, top),
  };
  const pixels = resizeRegion(img, resized, inside, cfg);
  if (inside.width === cfg.cropWidth && inside.height === cfg.cropHeight) return pixels;
  const padded = new Uint8Array(cfg.cropWidth * cfg.cropHeight * 3);
  for (let y = 0; y < inside.height; y++) {
    const to = ((inside.top - top + y) * cfg.cropWidth + (inside.left - left)) * 3;
    padded.set(pixels.data.subarray(y * inside.width * 3, (y + 1) * inside.width * 3), to);
  }
  return { data: padded, width: cfg.cropWidth, height: cfg.cropHeight };
}

function resizeRegion(img: RgbImage & { modeGroup?: PillowModeGroup; alpha?: Uint8Array }, size: { width: number; height: number }, inside: Region, cfg: PreprocessConfig): RgbImage {
  const plain = { data: img.data, width: img.width, height: img.height };
  if (cfg.convertToRgb !== 'after-crop' || img.modeGroup === undefined || img.modeGroup === 'rgb') return resizeBicubicRegion(plain, size.width, size.height, inside);
  if (img.modeGroup === 'palette') return resizeNearestRegion(plain, size.width, size.height, inside);
  if (img.modeGroup === 'alpha') {
    if (!img.alpha) throw new InternalError('an image decoded with alpha came without its alpha channel');
    return resizePremultipliedRegion(plain, img.alpha, size.width, size.height, inside);
  }
  throw new InputError('this image is CMYK, 16-bit grey or 16-bit with alpha, which OpenAI clip\'s preprocessing resizes before converting to RGB in a way pickscore does not reproduce; convert it to 8-bit RGB first');
}

/** Writes `img` normalised, channel-major (CHW), into `out` from `offset`; img must be cropHeight x cropWidth. */
export function normalizeInto(img: RgbImage, cfg: PreprocessConfig, out: Float32Array, offset: number): void {
  const plane = cfg.cropWidth * cfg.cropHeight;
  if (img.width !== cfg.cropWidth || img.height !== cfg.cropHeight) {
    throw new RangeError(expectedMessage(`a ${cfg.cropWidth}x${cfg.cropHeight} image`, 'normalizeInto', `${img.width}x${img.height}`));
  }
  if (!Number.isInteger(offset) || offset < 0 || offset + 3 * plane > out.length) {
    throw new RangeError(expectedMessage(`an offset with room for ${3 * plane} values in ${out.length}`, 'normalizeInto', offset));
  }
  // A uint8 sample has 256 possible values: normalise each once per channel, then look them up.
  const tables = [0, 1, 2].map((c) => {
    const table = new Float32Array(256);
    for (let v = 0; v < 256; v++) table[v] = (v * cfg.rescaleFactor - cfg.mean[c]) / cfg.std[c];
    return table;
  });
  const [red, green, blue] = tables;
  const { data } = img;
  for (let i = 0, p = 0; i < plane; i++, p += 3) {
    out[offset + i] = red[data[p]];
    out[offset + plane + i] = green[data[p + 1]];
    out[offset + 2 * plane + i] = blue[data[p + 2]];
  }
}

type Json = Record<string, unknown>;

/** PIL.Image.Resampling.BICUBIC, as preprocessor configs spell it. */
const PILLOW_BICUBIC = 3;

function positiveInteger(value: unknown, field: string): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 1) {
    throw new InputError(expectedMessage('a positive integer', `preprocessor_config.json field "${field}"`, value));
  }
  return value;
}

function triple(value: unknown, field: string, positive: boolean): [number, number, number] {
  const ok = Array.isArray(value) && value.length === 3 && value.every((v) => typeof v === 'number' && Number.isFinite(v) && (!positive || v > 0));
  if (!ok) throw new InputError(expectedMessage(`an array of 3 ${positive ? 'positive ' : ''}numbers`, `preprocessor_config.json field "${field}"`, value));
  return [value[0], value[1], value[2]];
}

/** `size`: a number (older configs) or {shortest_edge}. {height, width} means a fixed resize, which CLIP never uses. */
function readShortestEdge(size: unknown): number {
  if (size === undefined) return CLIP_PREPROCESS.shortestEdge;
  if (typeof size === 'number') return positiveInteger(size, 'size');
  if (size !== null && typeof size === 'object' && 'shortest_edge' in size) return positiveInteger((size as Json).shortest_edge, 'size.shortest_edge');
  throw new InputError(expectedMessage('a number or {"shortest_edge": n}', 'preprocessor_config.json field "size"', size));
}

/** `crop_size`: a number (older configs) or {height, width}. */
function readCrop(crop: unknown): { cropHeight: number; cropWidth: number } {
  if (crop === undefined) return { cropHeight: CLIP_PREPROCESS.cropHeight, cropWidth: CLIP_PREPROCESS.cropWidth };
  if (typeof crop === 'number') return { cropHeight: positiveInteger(crop, 'crop_size'), cropWidth: crop };
  if (crop !== null && typeof crop === 'object' && 'height' in crop && 'width' in crop) {
    return { cropHeight: positiveInteger((crop as Json).height, 'crop_size.height'), cropWidth: positiveInteger((crop as Json).width, 'crop_size.width') };
  }
  throw new InputError(expectedMessage('a number or {"height": h, "width": w}', 'preprocessor_config.json field "crop_size"', crop));
}

/** Reads a Hugging Face preprocessor_config.json; absent fields take CLIPImageProcessor's defaults. */
export function preprocessConfigFromJson(json: unknown): PreprocessConfig {
  if (json === null || typeof json !== 'object' || Array.isArray(json)) {
    throw new InputError(expectedMessage('a JSON object', 'preprocessor_config.json', json));
  }
  const cfg = json as Json;
  // pickscore implements the CLIP pipeline only: bicubic resize, centre crop, rescale and normalise, all on.
  if (cfg.resample !== undefined && cfg.resample !== PILLOW_BICUBIC) {
    throw new InputError(expectedMessage('3 (bicubic, the only resampling pickscore implements)', 'preprocessor_config.json field "resample"', cfg.resample));
  }
  for (const step of ['do_resize', 'do_center_crop', 'do_rescale', 'do_normalize']) {
    if (cfg[step] !== undefined && cfg[step] !== true) throw new InputError(expectedMessage('true', `preprocessor_config.json field "${step}"`, cfg[step]));
  }
  const rescale = cfg.rescale_factor ?? CLIP_PREPROCESS.rescaleFactor;
  if (typeof rescale !== 'number' || !(rescale > 0)) {
    throw new InputError(expectedMessage('a positive number', 'preprocessor_config.json field "rescale_factor"', rescale));
  }
  return {
    shortestEdge: readShortestEdge(cfg.size),
    ...readCrop(cfg.crop_size),
    mean: cfg.image_mean === undefined ? [...CLIP_PREPROCESS.mean] : triple(cfg.image_mean, 'image_mean', false),
    std: cfg.image_std === undefined ? [...CLIP_PREPROCESS.std] : triple(cfg.image_std, 'image_std', true),
    rescaleFactor: rescale,
  };
}
