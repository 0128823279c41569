/**
 * One image from source to model input, the one preparation path every kind of ImageSource takes: read
 * the file (or take the caller's bytes or pixels), hash it, decode, resize and crop, normalise. Runs
 * inside the pool's worker threads; never throws for a bad image, it returns the reason instead.
 * Reading and hashing is a step of its own, so that an image whose embedding is cached is never decoded.
 */
import { createHash } from 'node:crypto';
import { lstat } from 'node:fs/promises';
import { PickScoreError, errorMessage, expectedMessage } from '../errors.js';
import { FileReadError, READ_LIMITS, fsPath, readRegularFileSync, type FilePath } from '../io/regular-file.js';
import type * as Codec from './codec.js';
import { hpsTransformInto } from './hps-transform.js';
import { normalizeInto, resizeAndCrop, type PreprocessConfig } from './preprocess.js';
import type { ImageSource, RgbImage } from './image.js';
import type { PreparedImage, PrepareOptions } from './pool-protocol.js';

export type { PreparedImage, PrepareOptions } from './pool-protocol.js';

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

/**
 * OpenAI `clip`'s `_transform`: CLIP's resize and crop, with torchvision's half-even crop offset and
 * the resize in the image's Pillow mode before the conversion to RGB (src/image/pillow-modes.ts).
 */
function openAiClipConfig(cfg: PreprocessConfig): PreprocessConfig {
  return { ...cfg, cropRounding: 'half-even', convertToRgb: 'after-crop' };
}

/** The whole decoded image (HPSv2's transform resizes it itself) and the size it came in. */
async function decodeWhole(read: HashedImage, opts: PrepareOptions): Promise<RgbImage> {
  if ('rgb' in read) return read.rgb;
  const { exif, maxPixels } = opts.image;
  return (await loadCodec()).decodeImage(read.bytes, { exif, maxPixels });
}

/** The model's input crop and the size of the image it came from (after EXIF orientation, when applied). */
async function decodeAndCrop(read: HashedImage, opts: PrepareOptions): Promise<{ crop: RgbImage; width: number; height: number }> {
  const { resize, exif, maxPixels } = opts.image;
  if (opts.transform?.kind === 'openai-clip') {
    // The scorer options refuse --resize fast with this transform: sharp's resize is neither Pillow's nor clip's.
    const cfg = openAiClipConfig(opts.preprocess);
    if ('rgb' in read) return { crop: resizeAndCrop(read.rgb, cfg), width: read.rgb.width, height: read.rgb.height };
    const decoded = await (await loadCodec()).decodeImageWithMode(read.bytes, { exif, maxPixels });
    return { crop: resizeAndCrop(decoded, cfg), width: decoded.width, height: decoded.height };
  }
  if ('rgb' in read) {
    const { rgb } = read;
    const crop = resize === 'fast' ? await (await loadCodec()).resizeRgbFast(rgb, opts.preprocess.shortestEdge) : resizeAndCrop(rgb, opts.preprocess);
    return { crop, width: rgb.width, height: rgb.height };
  }
  const { decodeImage, decodeResizeFast } = await loadCodec();
  if (resize === 'fast') {
    const crop = await decodeResizeFast(read.bytes, { exif, maxPixels }, opts.preprocess.shortestEdge);
    return { crop, width: crop.sourceWidth, height: crop.sourceHeight };
  }
  const decoded = await decodeImage(read.bytes, { exif, maxPixels });
  return { crop: resizeAndCrop(decoded, opts.preprocess), width: decoded.width, height: decoded.height };
}

/** An image read and hashed: a file's bytes, or pixels handed over decoded, with the SHA-256 the cache keys it by. */
export type HashedImage = ({ bytes: Uint8Array } | { rgb: RgbImage }) & { contentHash: string };
/** An image read and hashed, or why it could not be. */
export type ReadImage = ({ ok: true } & HashedImage) | { ok: false; error: string };

/**
 * Pixels handed over decoded: checked, and hashed with their size (two images of one byte string and
 * different sizes are different images).
 */
function readPixels({ rgb, label }: { rgb: RgbImage; label: string }): ReadImage {
  const { width, height, data } = rgb;
  if (!Number.isInteger(width) || !Number.isInteger(height) || width <= 0 || height <= 0 || !(data instanceof Uint8Array) || data.length !== width * height * 3) {
    return { ok: false, error: expectedMessage(`RGB data of ${width}x${height}x3 bytes`, label, data) };
  }
  return { ok: true, rgb, contentHash: createHash('sha256').update(`rgb:${width}x${height}:`).update(data).digest('hex') };
}

/** Reads a file (or takes the caller's bytes or pixels) and hashes it: all a cache lookup needs, without decoding. */
export async function readImage(source: ImageSource): Promise<ReadImage> {
  if ('rgb' in source) return readPixels(source);
  let bytes: Uint8Array;
  if ('path' in source) {
    try {
      // Non-blocking open, type checked on the descriptor, bounded read: see src/io/regular-file.ts. This runs
      // on a pool worker, which has nothing else to do meanwhile, so the read is synchronous.
      bytes = readRegularFileSync(source.path, READ_LIMITS.image, 'an image');
    } catch (err) {
      return { ok: false, error: await readFailure(err, source.path) };
    }
  } else {
    bytes = source.bytes;
  }
  return { ok: true, bytes, contentHash: createHash('sha256').update(bytes).digest('hex') };
}

/** Decodes, resizes, crops and normalises bytes already read. `into`, when it has the right length, receives the pixels. */
export async function decodeRead(read: HashedImage, opts: PrepareOptions, into?: Float32Array): Promise<PreparedImage> {
  const { contentHash } = read;
  try {
    const cfg = opts.preprocess;
    const length = 3 * cfg.cropHeight * cfg.cropWidth;
    const pixels = into?.length === length ? into : new Float32Array(length);
    if (opts.transform?.kind === 'hps') {
      const whole = await decodeWhole(read, opts);
      hpsTransformInto(whole, { size: cfg.cropHeight, antialias: opts.transform.antialias, mean: cfg.mean, std: cfg.std }, pixels, 0);
      return { ok: true, pixels, width: whole.width, height: whole.height, contentHash };
    }
    const { crop, width, height } = await decodeAndCrop(read, opts);
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
