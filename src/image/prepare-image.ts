/**
 * One image from source to model input: read the file, hash it, decode, resize and crop, normalise.
 * Runs inside the pool's worker threads; never throws for a bad image, it returns the reason instead.
 */
import { createHash } from 'node:crypto';
import { lstat } from 'node:fs/promises';
import { PickScoreError, errorMessage } from '../errors.js';
import { FileReadError, READ_LIMITS, fsPath, readRegularFile, type FilePath } from '../io/regular-file.js';
import { decodeImage, decodeResizeFast } from './codec.js';
import { normalizeInto, resizeAndCrop, type PreprocessConfig } from './preprocess.js';

/** `path` is text, or the exact bytes of a name that is not valid UTF-8 (its text would open another file). */
export type ImageSource = { path: FilePath } | { bytes: Uint8Array; label: string };
export type PreparedImage =
  | { ok: true; pixels: Float32Array; width: number; height: number; contentHash: string }
  | { ok: false; error: string; contentHash?: string };

export interface PrepareOptions { preprocess: PreprocessConfig; exif: 'apply' | 'ignore'; resize: 'exact' | 'fast'; maxPixels: number }

async function readFailure(err: unknown, file: FilePath): Promise<string> {
  if (err instanceof FileReadError && err.code === 'ENOENT') {
    const isLink = await lstat(fsPath(file)).then((s) => s.isSymbolicLink(), () => false);
    return isLink ? 'broken symbolic link: its target does not exist' : 'file not found';
  }
  return `cannot read file: ${err instanceof FileReadError ? err.reason : errorMessage(err)}`;
}

async function decodeAndCrop(bytes: Uint8Array, opts: PrepareOptions) {
  const decodeOptions = { exif: opts.exif, maxPixels: opts.maxPixels };
  if (opts.resize === 'fast') {
    const crop = await decodeResizeFast(bytes, decodeOptions, opts.preprocess.shortestEdge);
    return { crop, width: crop.sourceWidth, height: crop.sourceHeight };
  }
  const decoded = await decodeImage(bytes, decodeOptions);
  return { crop: resizeAndCrop(decoded, opts.preprocess), width: decoded.width, height: decoded.height };
}

/** `into`, when it has the right length, receives the pixels instead of a new array (the pool reuses buffers). */
export async function prepareImage(source: ImageSource, opts: PrepareOptions, into?: Float32Array): Promise<PreparedImage> {
  let bytes: Uint8Array;
  if ('path' in source) {
    try {
      // Non-blocking open, type checked on the handle, bounded read: see src/io/regular-file.ts.
      bytes = await readRegularFile(source.path, READ_LIMITS.image, 'an image');
    } catch (err) {
      return { ok: false, error: await readFailure(err, source.path) };
    }
  } else {
    bytes = source.bytes;
  }
  const contentHash = createHash('sha256').update(bytes).digest('hex');
  try {
    const { crop, width, height } = await decodeAndCrop(bytes, opts);
    const cfg = opts.preprocess;
    const length = 3 * cfg.cropHeight * cfg.cropWidth;
    const pixels = into?.length === length ? into : new Float32Array(length);
    normalizeInto(crop, cfg, pixels, 0);
    return { ok: true, pixels, width, height, contentHash };
  } catch (err) {
    if (err instanceof PickScoreError) return { ok: false, error: err.message, contentHash };
    return { ok: false, error: `internal error while preparing the image: ${errorMessage(err)}`, contentHash };
  }
}
