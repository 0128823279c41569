/**
 * What an image is to pickscore, and how it may be read. No I/O and no decoder here, so that option
 * parsing, the CLI's flag choices and the pure image code can all name these without loading sharp.
 */
import { oneOf, type ErrorClass } from '../checks.js';
import { UsageError } from '../errors.js';
import type { FilePath } from '../io/regular-file.js';

/** Decoded pixels: interleaved RGB, three bytes per pixel, row after row. */
export interface RgbImage { data: Uint8Array; width: number; height: number }

/**
 * An image to score, the one shape the engine takes: a file, by its path (text, or the exact bytes of a
 * name that is not valid UTF-8, whose text would open another file); the encoded bytes of a file; or
 * pixels already decoded. Every kind goes the same way: read and hashed, looked up in the cache,
 * decoded and resized on a worker thread (src/image/prepare-image.ts).
 */
export type ImageSource = { path: FilePath } | { bytes: Uint8Array; label: string } | { rgb: RgbImage; label: string };

/** EXIF orientation: applied (the image as a viewer shows it), or ignored as the model card's `Image.open` does. */
export const EXIF_MODES = ['apply', 'ignore'] as const;
export type ExifMode = (typeof EXIF_MODES)[number];

/** The resize to the model's input: exact reproduces Pillow's bicubic; fast is sharp's own resize. */
export const RESIZE_MODES = ['exact', 'fast'] as const;
export type ResizeMode = (typeof RESIZE_MODES)[number];

/**
 * Pillow's `Image.MAX_IMAGE_PIXELS`, its decompression-bomb limit, and the default ceiling on decoded
 * pixels (`--max-pixels`).
 */
export const DEFAULT_MAX_PIXELS = 178_956_970;

/** How images are read, decoded and resized: one value, resolved once from the options, for every image of a run. */
export interface ImageReadOptions { exif: ExifMode; resize: ResizeMode; maxPixels: number }

/**
 * The one check of an EXIF mode: an option (`--exif`, `exif:`), or what a merge part's provenance says
 * its run used (then `subject` names the part's field and the error is an InputError).
 */
export function parseExifMode(value: unknown, subject = 'exif', Kind: ErrorClass = UsageError): ExifMode {
  return oneOf(EXIF_MODES, subject, value, Kind);
}

/** The one check of a resize mode (`--resize`, `resize:`, or a merge part's provenance). */
export function parseResizeMode(value: unknown, subject = 'resize', Kind: ErrorClass = UsageError): ResizeMode {
  return oneOf(RESIZE_MODES, subject, value, Kind);
}

/**
 * What Pillow would open a file as, where it matters to a pipeline that resizes before converting to
 * RGB (OpenAI `clip`'s `_transform`, src/image/pillow-modes.ts): `palette` for "P" and "1" (Pillow
 * resizes those with NEAREST), `alpha` for "RGBA" and "LA" (resized premultiplied), `rgb` for modes
 * whose resize commutes with the conversion ("RGB", "L"), `other` for those it does not or that are
 * not checked against Pillow (CMYK, resized as 4 channels; 16-bit grey, resized as 32-bit integers;
 * 16-bit with alpha).
 */
export type PillowModeGroup = 'rgb' | 'palette' | 'alpha' | 'other';

/**
 * How a scorer prepares an image (src/scorers/): transformers' CLIPImageProcessor (PickScore, the
 * default), OpenAI `clip`'s `_transform` (CLIPScore, the aesthetic predictor: torchvision's half-even crop
 * offset, and the resize in the image's own Pillow mode before RGB), or HPSv2's transform
 * (src/image/hps-transform.ts: resize the longer side, pad black).
 */
export type ImageTransform = { kind: 'clip-processor' } | { kind: 'openai-clip' } | { kind: 'hps'; antialias: boolean };
