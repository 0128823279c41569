/**
 * Image decoding: the only module that imports sharp. It reproduces what the model card's Python does,
 * `Image.open(path).convert("RGB")`, so that the pixels fed to the resize are the ones Pillow would feed:
 * - grey is replicated to three channels, alpha is dropped (never composited, never premultiplied);
 * - 16-bit colour keeps the high byte, 16-bit grey is clamped to 0..255 (Pillow's "I" -> "RGB");
 * - CMYK is converted with Pillow's arithmetic, not with colour management;
 * - animated GIF and WebP give their first frame, as `Image.open` does;
 * - SVG is rejected: Pillow cannot open it, so there is no reference to reproduce.
 * Every failure is an InputError whose message says what is wrong with the file.
 */
import sharp from 'sharp';
import { InputError, errorMessage } from '../errors.js';
import { shortSideSize } from './preprocess.js';
import type { ExifMode, PillowModeGroup, RgbImage } from './image.js';

export type { PillowModeGroup, RgbImage } from './image.js';
export interface DecodeOptions { exif: ExifMode; maxPixels: number }


const SUPPORTED_FORMATS = new Set(['jpeg', 'png', 'webp', 'gif', 'avif', 'tiff']);

/** sharp's prebuilt libvips has no BMP loader (only an ImageMagick build would). */
export const BMP_NOT_SUPPORTED = 'BMP is not supported (sharp, the image decoder, cannot read it); convert it to PNG';

/** Header facts needed before any pixel is decoded; `oriented` is the size once EXIF orientation is applied. */
interface Header { format: string; width: number; height: number; oriented: { width: number; height: number }; channels: number; space: string; sixteenBit: boolean }

/** Decoded samples as sharp hands them over, before conversion to RGB. */
interface RawSamples { samples: Uint8Array | Uint16Array; channels: number; width: number; height: number }

/** libvips decodes in its own thread pool; worker threads that each decode one image want one thread. */
export function limitDecoderThreads(threads: number): void {
  sharp.concurrency(threads);
  sharp.cache(false);
}

function looksLikeSvg(bytes: Uint8Array): boolean {
  const head = Buffer.from(bytes.subarray(0, 1024)).toString('utf8').replace(/^\uFEFF/, '').trimStart();
  return head.startsWith('<') && /<svg[\s>]/i.test(head);
}

function firstLine(err: unknown): string {
  return errorMessage(err).split('\n')[0].trim();
}

/** The format a file's first bytes announce, whatever follows them: how a damaged file is told from a foreign one. */
function formatFromSignature(bytes: Uint8Array): string | undefined {
  const ascii = (start: number, end: number): string => Buffer.from(bytes.subarray(start, end)).toString('latin1');
  if (bytes[0] === 0xff && bytes[1] === 0xd8 && bytes[2] === 0xff) return 'jpeg';
  if (ascii(0, 8) === '\x89PNG\r\n\x1a\n') return 'png';
  if (ascii(0, 6) === 'GIF87a' || ascii(0, 6) === 'GIF89a') return 'gif';
  if (ascii(0, 4) === 'RIFF' && ascii(8, 12) === 'WEBP') return 'webp';
  if (ascii(0, 4) === 'II*\0' || ascii(0, 4) === 'MM\0*') return 'tiff';
  if (ascii(4, 8) === 'ftyp' && ['avif', 'avis'].includes(ascii(8, 12))) return 'avif';
  if (ascii(0, 2) === 'BM' && bytes.length >= 26 && ascii(6, 10) === '\0\0\0\0') return 'bmp';
  return undefined;
}

async function readHeader(bytes: Uint8Array, maxPixels: number): Promise<Header> {
  if (bytes.length === 0) throw new InputError('empty file (0 bytes)');
  if (looksLikeSvg(bytes)) throw new InputError('SVG is a vector format and is not supported; rasterise it to PNG first');
  let meta: Awaited<ReturnType<ReturnType<typeof sharp>['metadata']>>;
  try {
    meta = await sharp(bytes, { limitInputPixels: false }).metadata();
  } catch (err) {
    // A file cut short inside its header fails here, before any pixel: its signature says what it was.
    const announced = formatFromSignature(bytes);
    if (announced === 'bmp') throw new InputError(BMP_NOT_SUPPORTED, { cause: err });
    if (announced) throw new InputError(`truncated or corrupt ${announced} data (${firstLine(err)})`, { cause: err });
    throw new InputError(`unsupported or unrecognised image format (${firstLine(err)})`, { cause: err });
  }
  const format = meta.format === 'heif' && meta.compression === 'av1' ? 'avif' : String(meta.format);
  if (!SUPPORTED_FORMATS.has(format)) {
    throw new InputError(`unsupported image format "${format}" (supported: ${[...SUPPORTED_FORMATS].join(', ')})`);
  }
  const { width, height } = meta;
  if (!width || !height) throw new InputError(`${format} header has no image size`);
  if (width * height > maxPixels) {
    throw new InputError(`image too large: ${width}x${height} is ${width * height} pixels, over the limit of ${maxPixels} (raise it with --max-pixels)`);
  }
  const oriented = meta.autoOrient ?? { width, height };
  return { format, width, height, oriented, channels: meta.channels ?? 3, space: String(meta.space), sixteenBit: meta.depth === 'ushort' };
}

async function decodeSamples(bytes: Uint8Array, header: Header, exif: DecodeOptions['exif']): Promise<RawSamples> {
  // failOn 'error' rejects truncated data, as Pillow does without LOAD_TRUNCATED_IMAGES.
  let pipeline = sharp(bytes, { limitInputPixels: false, failOn: 'error', pages: 1 });
  if (exif === 'apply') pipeline = pipeline.autoOrient();
  const grey = header.space === 'b-w' || header.space === 'grey16';
  // 16-bit grey reaches toRgb unscaled (libvips' own reduction rounds differently from Pillow's);
  // 16-bit colour is reduced by libvips to the high byte, as Pillow does.
  const wide = grey && header.sixteenBit;
  if (header.space === 'cmyk') pipeline = pipeline.pipelineColourspace('cmyk').toColourspace('cmyk');
  else if (grey) pipeline = pipeline.toColourspace(wide ? 'grey16' : 'b-w');
  try {
    const { data, info } = await pipeline.raw({ depth: wide ? 'ushort' : 'uchar' }).toBuffer({ resolveWithObject: true });
    const samples = wide ? new Uint16Array(data.buffer, data.byteOffset, data.length / 2) : new Uint8Array(data.buffer, data.byteOffset, data.length);
    return { samples, channels: info.channels, width: info.width, height: info.height };
  } catch (err) {
    throw new InputError(`truncated or corrupt ${header.format} data (${firstLine(err)})`, { cause: err });
  }
}

/** Pillow's cmyk2rgb: r = 255 - k - c * (255 - k) / 255, with its integer rounding. */
function cmykToRgb(cmyk: Uint8Array, pixels: number): Uint8Array {
  const rgb = new Uint8Array(pixels * 3);
  for (let i = 0, j = 0; i < pixels; i++, j += 4) {
    const notK = 255 - cmyk[j + 3];
    for (let c = 0; c < 3; c++) {
      const t = cmyk[j + c] * notK + 128;
      rgb[i * 3 + c] = notK - ((t + (t >> 8)) >> 8);
    }
  }
  return rgb;
}

/**
 * Pillow's `convert("RGB")` from grey (+alpha) or colour (+alpha): replicate grey, drop alpha. Pillow
 * opens 16-bit grey as 32-bit "I", whose conversion clamps to 0..255, but 16-bit grey+alpha as RGBA,
 * which keeps the high byte.
 */
function toRgb(raw: RawSamples, cmyk: boolean): Uint8Array {
  const pixels = raw.width * raw.height;
  const { samples, channels } = raw;
  if (cmyk) return cmykToRgb(samples as Uint8Array, pixels);
  if (channels === 3 && samples instanceof Uint8Array) return samples;
  const rgb = new Uint8Array(pixels * 3);
  const grey = channels <= 2;
  const clampWide = samples instanceof Uint16Array && channels === 1;
  const highByteWide = samples instanceof Uint16Array && channels === 2;
  for (let i = 0, j = 0; i < pixels; i++, j += channels) {
    if (grey) {
      const v = samples[j];
      const level = clampWide ? Math.min(v, 255) : highByteWide ? v >> 8 : v;
      rgb[i * 3] = level;
      rgb[i * 3 + 1] = level;
      rgb[i * 3 + 2] = level;
    } else {
      rgb[i * 3] = samples[j];
      rgb[i * 3 + 1] = samples[j + 1];
      rgb[i * 3 + 2] = samples[j + 2];
    }
  }
  return rgb;
}

/** Decodes any supported image to interleaved RGB, as Pillow's `Image.open(...).convert("RGB")` would. */
export async function decodeImage(bytes: Uint8Array, opts: DecodeOptions): Promise<RgbImage & { format: string }> {
  const header = await readHeader(bytes, opts.maxPixels);
  return { ...(await decodeRgb(bytes, header, opts.exif)), format: header.format };
}

/** The decode of an image whose header was read and checked: samples, then Pillow's RGB conversion. */
async function decodeRgb(bytes: Uint8Array, header: Header, exif: DecodeOptions['exif']): Promise<RgbImage> {
  const raw = await decodeSamples(bytes, header, exif);
  return { data: toRgb(raw, header.space === 'cmyk'), width: raw.width, height: raw.height };
}

/**
 * The opt-in fast path (`--resize fast`): sharp's own cubic resize to the processor's size, then the
 * processor's centre crop to size x size. Not Pillow-exact; its deviation is measured in the benchmark.
 * Images with alpha, CMYK or 16-bit samples are decoded to RGB first (decodeRgb), so alpha is dropped before sharp resizes (sharp would
 * premultiply it) and CMYK and 16-bit follow Pillow; plain 8-bit images go straight through sharp, which
 * lets JPEG shrink on load. `sourceWidth`/`sourceHeight` give the decoded (oriented) size.
 */
export async function decodeResizeFast(bytes: Uint8Array, opts: DecodeOptions, size: number): Promise<RgbImage & { sourceWidth: number; sourceHeight: number }> {
  const header = await readHeader(bytes, opts.maxPixels);
  const plain = !header.sixteenBit && (header.space === 'srgb' || header.space === 'b-w') && (header.channels === 1 || header.channels === 3);
  let pipeline: ReturnType<typeof sharp>;
  let oriented: { width: number; height: number };
  if (plain) {
    pipeline = sharp(bytes, { limitInputPixels: false, failOn: 'error', pages: 1 });
    if (opts.exif === 'apply') pipeline = pipeline.autoOrient();
    oriented = opts.exif === 'apply' ? header.oriented : header;
  } else {
    const rgb = await decodeRgb(bytes, header, opts.exif);
    pipeline = rawPipeline(rgb);
    oriented = rgb;
  }
  try {
    return { ...(await cubicResizeAndCrop(pipeline, oriented, size)), sourceWidth: oriented.width, sourceHeight: oriented.height };
  } catch (err) {
    throw new InputError(`truncated or corrupt ${header.format} data (${firstLine(err)})`, { cause: err });
  }
}

/** The fast path for pixels already decoded (a library caller's RGB): sharp's cubic resize and the centre crop. */
export async function resizeRgbFast(rgb: RgbImage, size: number): Promise<RgbImage> {
  return cubicResizeAndCrop(rawPipeline(rgb), rgb, size);
}

function rawPipeline(rgb: RgbImage): ReturnType<typeof sharp> {
  return sharp(rgb.data, { raw: { width: rgb.width, height: rgb.height, channels: 3 } });
}

/** sharp's cubic resize of the short side to `size`, then the processor's centre crop to size x size. */
async function cubicResizeAndCrop(pipeline: ReturnType<typeof sharp>, source: { width: number; height: number }, size: number): Promise<RgbImage> {
  const target = shortSideSize(source.width, source.height, size);
  const left = Math.floor((target.width - size) / 2);
  const top = Math.floor((target.height - size) / 2);
  const { data, info } = await pipeline
    .resize({ width: target.width, height: target.height, fit: 'fill', kernel: 'cubic' })
    .extract({ left, top, width: size, height: size })
    .toColourspace('srgb')
    .removeAlpha()
    .raw()
    .toBuffer({ resolveWithObject: true });
  return { data: new Uint8Array(data.buffer, data.byteOffset, data.length), width: info.width, height: info.height };
}

/**
 * A small WebP thumbnail (longest side at most maxSide) as a data URI, for self-contained HTML reports,
 * read as the run read the image: EXIF orientation applied or not, and the same pixel limit. Encoder
 * effort 0: a gallery makes one per image, and on photographs this halves the time of the default
 * effort for thumbnails about a quarter larger.
 */
export async function thumbnailDataUri(bytes: Uint8Array, maxSide: number, opts: DecodeOptions): Promise<string> {
  const header = await readHeader(bytes, opts.maxPixels);
  let pipeline = sharp(bytes, { limitInputPixels: false, pages: 1 });
  if (opts.exif === 'apply') pipeline = pipeline.autoOrient();
  try {
    const webp = await pipeline.resize({ width: maxSide, height: maxSide, fit: 'inside', withoutEnlargement: true }).webp({ quality: 75, effort: 0 }).toBuffer();
    return `data:image/webp;base64,${webp.toString('base64')}`;
  } catch (err) {
    throw new InputError(`truncated or corrupt ${header.format} data (${firstLine(err)})`, { cause: err });
  }
}

/** decodeImage's RGB, with the alpha channel (for `alpha`) and the group of the mode Pillow opens the file in. */
export interface ModalImage extends RgbImage { format: string; modeGroup: PillowModeGroup; alpha?: Uint8Array }

export async function decodeImageWithMode(bytes: Uint8Array, opts: DecodeOptions): Promise<ModalImage> {
  const header = await readHeader(bytes, opts.maxPixels);
  const meta = await sharp(bytes, { limitInputPixels: false }).metadata();
  const rgb = await decodeRgb(bytes, header, opts.exif);
  // 16-bit grey is Pillow's "I", resized in 32-bit integers; 16-bit alpha's reduction to 8 bits is not checked against Pillow.
  const sixteenBitOther = header.sixteenBit && (header.channels === 1 || meta.hasAlpha === true);
  const palette = meta.isPalette === true || (header.space === 'b-w' && meta.bitsPerSample === 1);
  if (header.space === 'cmyk' || sixteenBitOther) return { ...rgb, format: header.format, modeGroup: 'other' };
  if (palette) return { ...rgb, format: header.format, modeGroup: 'palette' };
  if (meta.hasAlpha !== true) return { ...rgb, format: header.format, modeGroup: 'rgb' };
  // The grey decode drops alpha, so the alpha is decoded on its own.
  let pipeline = sharp(bytes, { limitInputPixels: false, failOn: 'error', pages: 1 });
  if (opts.exif === 'apply') pipeline = pipeline.autoOrient();
  try {
    const { data, info } = await pipeline.extractChannel('alpha').raw({ depth: 'uchar' }).toBuffer({ resolveWithObject: true });
    if (info.width !== rgb.width || info.height !== rgb.height || info.channels !== 1) throw new Error(`alpha decoded as ${info.width}x${info.height}x${info.channels}`);
    return { ...rgb, format: header.format, modeGroup: 'alpha', alpha: new Uint8Array(data.buffer, data.byteOffset, data.length) };
  } catch (err) {
    throw new InputError(`truncated or corrupt ${header.format} data (${firstLine(err)})`, { cause: err });
  }
}
