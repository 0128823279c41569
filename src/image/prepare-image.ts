/**
 * One image from source to model input: read the file, hash it, decode, resize and crop, normalise.
 * Runs inside the pool's worker threads; never throws for a bad image, it returns the reason instead.
 * Reading and hashing is a step of its own, so that an image whose embedding is cached is never decoded.
 */
import { createHash } from 'node:crypto';
import { lstat } from 'node:fs/promises';
import { PickScoreError, errorMessage } from '../errors.js';
import { FileReadError, READ_LIMITS, fsPath, readRegularFile, type FilePath } from '../io/regular-file.js';
import type * as Codec from './codec.js';
import { normalizeInto, resizeAndCrop, type PreprocessConfig } from './preprocess.js';
import type { ExifMode, ResizeMode } from './image.js';

/** `path` is text, or the exact bytes of a name that is not valid UTF-8 (its text would open another file). */
export type ImageSource = { path: FilePath } | { bytes: Uint8Array; label: string };
export type PreparedImage =
  | { ok: true; pixels: Float32Array; width: number; height: number; contentHash: string }
  | { ok: false; error: string; contentHash?: string };

export interface PrepareOptions { preprocess: PreprocessConfig; exif: ExifMode; resize: ResizeMode; maxPixels: number }

async function readFailure(err: unknown, file: FilePath): Promise<string> {
  if (err instanceof FileReadError && err.code === 'ENOENT') {
    const isLink = await lstat(fsPath(file)).then((s) => s.isSymbolicLink(), () => false);
    return isLink ? 'broken symbolic link: its target does not exist' : 'file not found';
  }
  return `cannot read file: ${err instanceof FileReadError ? err.reason : errorMessage(err)}`;
}

let codecLoading: Promise<typeof Codec> | undefined;

/**
 * The codec (sharp) is loaded on the first decode, so that a worker that only reads and hashes cached
 * images never pays for loading it. The pool runs one worker per core, so each decodes on one thread: a
 * second level of decoder threads would only oversubscribe the cores.
 */
function loadCodec(): Promise<typeof Codec> {
  codecLoading ??= import('./codec.js').then((codec) => {
    codec.limitDecoderThreads(1);
    return codec;
  });
  return codecLoading;
}

async function decodeAndCrop(bytes: Uint8Array, opts: PrepareOptions) {
  const { decodeImage, decodeResizeFast } = await loadCodec();
  const decodeOptions = { exif: opts.exif, maxPixels: opts.maxPixels };
  if (opts.resize === 'fast') {
    const crop = await decodeResizeFast(bytes, decodeOptions, opts.preprocess.shortestEdge);
    return { crop, width: crop.sourceWidth, height: crop.sourceHeight };
  }
  const decoded = await decodeImage(bytes, decodeOptions);
  return { crop: resizeAndCrop(decoded, opts.preprocess), width: decoded.width, height: decoded.height };
}

/** An image's bytes and their SHA-256 (the cache key), or why they could not be read. */
export type ReadImage = { ok: true; bytes: Uint8Array; contentHash: string } | { ok: false; error: string };

/** Reads a file (or takes the caller's bytes) and hashes it: all a cache lookup needs, without decoding. */
export async function readImage(source: ImageSource): Promise<ReadImage> {
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
  return { ok: true, bytes, contentHash: createHash('sha256').update(bytes).digest('hex') };
}

/** Decodes, resizes, crops and normalises bytes already read. `into`, when it has the right length, receives the pixels. */
export async function decodeRead(read: Extract<ReadImage, { ok: true }>, opts: PrepareOptions, into?: Float32Array): Promise<PreparedImage> {
  const { bytes, contentHash } = read;
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

/** `into`, when it has the right length, receives the pixels instead of a new array (the pool reuses buffers). */
export async function prepareImage(source: ImageSource, opts: PrepareOptions, into?: Float32Array): Promise<PreparedImage> {
  const read = await readImage(source);
  return read.ok ? decodeRead(read, opts, into) : read;
}
