/**
 * A folder of every kind of bad image input, generated into a temporary folder, beside good images
 * and odd names. Each case says what the run must make of it: a score, or an error row whose message
 * matches. Everything is generated here and stays small on disk (the 30,000 x 30,000 bomb is ~110 KB).
 */
import { execFileSync } from 'node:child_process';
import { chmod, mkdir, mkdtemp, rm, stat, symlink, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { constants, deflateRawSync } from 'node:zlib';
import sharp from 'sharp';
import { pngChunk, pngFromSamples } from './image-files.js';
import { encodePng, gradientRgb } from './pipe-images.js';

export interface BadInputCase {
  /** The file's name in the folder as pickscore prints it: non-UTF-8 bytes as \xNN. */
  name: string;
  /** What kind of bad input this is, in words. */
  kind: string;
  /** Undefined: the image must be scored. Otherwise the error row's message must match. */
  error?: RegExp;
}

export interface BadInputFolder {
  dir: string;
  /** Every image-extension entry the folder holds; each must come back as exactly one row per prompt. */
  cases: BadInputCase[];
  /** Files in the folder that are not images by extension, so discovery must not list them. */
  notListed: string[];
  /**
   * The unreadable case is a chmod 000 file. Root reads it anyway, so a root test runs pickscore as
   * this uid/gid (nobody), for which the folder is made traversable and readable.
   */
  runAs?: { uid: number; gid: number };
  /** Set when the unreadable case could not be made honestly (root, and nobody cannot reach pickscore). */
  unreadableNotTried?: string;
  cleanup(): Promise<void>;
}

const NOBODY = 65534;
const SVG = '<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><rect width="10" height="10"/></svg>\n';
/** Each name is a good image under a name that breaks naive CSV, JSON or terminal output. */
export const ODD_NAMES = ['comma, in name.png', 'quote "in" name.png', 'new\nline.png', 'tab\tand café 猫.png'];
/** "bad\xFFname.png": not valid UTF-8, so it is printed with an escape and opened through its bytes. */
const NON_UTF8_NAME = Buffer.concat([Buffer.from('bad'), Buffer.from([0xff]), Buffer.from('name.png')]);

/** A seeded byte generator (mulberry32), so random cases are the same on every run. */
export function seededBytes(length: number, seed: number): Buffer {
  let state = seed >>> 0;
  const out = Buffer.alloc(length);
  for (let i = 0; i < length; i++) {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    out[i] = ((t ^ (t >>> 14)) >>> 0) & 0xff;
  }
  return out;
}

/**
 * A zlib stream of `total` zero bytes, made without compressing them all: a sync-flushed raw deflate
 * of one megabyte of zeros is self-contained and byte-aligned, so it can be repeated; the Adler-32 of
 * n zeros is (n mod 65521) << 16 | 1.
 */
function zlibOfZeros(total: number): Buffer {
  const unit = 1 << 20;
  const block = deflateRawSync(Buffer.alloc(unit), { level: 9, finishFlush: constants.Z_SYNC_FLUSH });
  const repeats = Math.floor(total / unit);
  const tail = deflateRawSync(Buffer.alloc(total - repeats * unit), { level: 9 });
  const adler = Buffer.alloc(4);
  adler.writeUInt32BE((((total % 65521) << 16) | 1) >>> 0, 0);
  return Buffer.concat([Buffer.from([0x78, 0xda]), ...Array<Buffer>(repeats).fill(block), tail, adler]);
}

/**
 * A real decompression bomb: a complete, valid 1-bit greyscale PNG of width x height black pixels
 * (every row filter byte and sample zero), not just a header that claims the size.
 */
export function pngBomb(width: number, height: number): Buffer {
  const header = Buffer.alloc(13);
  header.writeUInt32BE(width, 0);
  header.writeUInt32BE(height, 4);
  header.set([1, 0, 0, 0, 0], 8);
  const rowBytes = 1 + Math.ceil(width / 8);
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    pngChunk('IHDR', header), pngChunk('IDAT', zlibOfZeros(rowBytes * height)), pngChunk('IEND', new Uint8Array(0)),
  ]);
}

async function animated(format: 'gif' | 'webp'): Promise<Buffer> {
  const frames = Buffer.alloc(16 * 32 * 3);
  for (let p = 0; p < 16 * 32; p++) frames.set(p < 256 ? [240, 20, 20] : [20, 20, 240], p * 3);
  const image = sharp(frames, { raw: { width: 16, height: 32, channels: 3, pageHeight: 16 } });
  return format === 'gif' ? image.gif().toBuffer() : image.webp({ lossless: true }).toBuffer();
}

/** The image files of the folder: name, bytes, and what the run must make of them. */
async function imageFiles(): Promise<{ name: string; bytes: Buffer; kind: string; error?: RegExp }[]> {
  const rgb = gradientRgb(40, 30, 1);
  const raw = () => sharp(Buffer.from(rgb), { raw: { width: 40, height: 30, channels: 3 } });
  const jpeg = await raw().jpeg().toBuffer();
  const png = await raw().png().toBuffer();
  return [
    { name: 'good-1.png', bytes: encodePng(gradientRgb(32, 32, 2), 32, 32), kind: 'good image' },
    { name: 'good-2.jpg', bytes: jpeg, kind: 'good image' },
    { name: 'png-named.jpg', bytes: png, kind: 'good image behind the wrong extension' },
    { name: 'zero-bytes.png', bytes: Buffer.alloc(0), kind: 'zero bytes', error: /empty file \(0 bytes\)/ },
    { name: 'truncated.jpg', bytes: jpeg.subarray(0, jpeg.length >> 1), kind: 'truncated JPEG', error: /truncated or corrupt jpeg/ },
    { name: 'truncated.png', bytes: png.subarray(0, png.length >> 1), kind: 'truncated PNG', error: /truncated or corrupt png/ },
    { name: 'random.jpg', bytes: seededBytes(4096, 1), kind: 'random bytes behind .jpg', error: /unsupported or unrecognised image format/ },
    { name: 'random.png', bytes: seededBytes(4096, 2), kind: 'random bytes behind .png', error: /unsupported or unrecognised image format/ },
    { name: 'bomb.png', bytes: pngBomb(30000, 30000), kind: '30,000 x 30,000 PNG decompression bomb', error: /image too large: 30000x30000 is 900000000 pixels/ },
    { name: 'animated.gif', bytes: await animated('gif'), kind: 'animated GIF (first frame scored)' },
    { name: 'animated.webp', bytes: await animated('webp'), kind: 'animated WebP (first frame scored)' },
    { name: 'deep-16bit.png', bytes: pngFromSamples(24, 16, 16, 2, seededBytes(24 * 16 * 6, 3)), kind: '16-bit PNG' },
    { name: 'cmyk.jpg', bytes: await raw().toColourspace('cmyk').jpeg().toBuffer(), kind: 'CMYK JPEG' },
    { name: 'vector.png', bytes: Buffer.from(SVG), kind: 'SVG behind .png', error: /SVG is a vector format/ },
    { name: 'locked.png', bytes: encodePng(gradientRgb(8, 8, 4), 8, 8), kind: 'unreadable file (chmod 000)', error: /permission denied/ },
    ...ODD_NAMES.map((name, i) => ({ name, bytes: encodePng(gradientRgb(16, 16, 10 + i), 16, 16), kind: 'odd name' })),
  ];
}

/** Whether a user with no rights but "others" can read `target`: every folder above it searchable. */
async function othersCanRead(target: string): Promise<boolean> {
  const resolved = path.resolve(target);
  const own = await stat(resolved).catch(() => null);
  if (!own || (own.mode & 0o004) === 0) return false;
  for (let dir = path.dirname(resolved); ; dir = path.dirname(dir)) {
    if (((await stat(dir)).mode & 0o001) === 0) return false;
    if (dir === path.dirname(dir)) return true;
  }
}

/**
 * Writes the folder. `needed` are the files pickscore must read when it runs (its entry script, the
 * model's files): as root, the run switches to nobody only if nobody can read them all.
 */
export async function writeBadInputFolder(needed: string[]): Promise<BadInputFolder> {
  const root = await mkdtemp(path.join(os.tmpdir(), 'pickscore-bad-inputs-'));
  const dir = path.join(root, 'images');
  await mkdir(dir);
  const cases: BadInputCase[] = [];
  for (const file of await imageFiles()) {
    await writeFile(path.join(dir, file.name), file.bytes);
    cases.push({ name: file.name, kind: file.kind, error: file.error });
  }
  await chmod(path.join(dir, 'locked.png'), 0o000);
  await writeFile(Buffer.concat([Buffer.from(`${dir}/`), NON_UTF8_NAME]), encodePng(gradientRgb(16, 16, 20), 16, 16));
  cases.push({ name: 'bad\\xFFname.png', kind: 'non-UTF-8 name' });

  execFileSync('mkfifo', [path.join(dir, 'fifo.png')]);
  cases.push({ name: 'fifo.png', kind: 'a FIFO named like an image (reading it would block)', error: /not a regular file/ });
  await symlink('does-not-exist.png', path.join(dir, 'broken-link.png'));
  cases.push({ name: 'broken-link.png', kind: 'broken symlink', error: /broken symbolic link/ });
  await symlink('self-link.png', path.join(dir, 'self-link.png'));
  cases.push({ name: 'self-link.png', kind: 'symlink loop (a link to itself)', error: /symbolic link loop/ });
  await symlink('.', path.join(dir, 'loop-folder'));   // a folder loop: discovery must end it and list nothing twice

  await writeFile(path.join(dir, 'drawing.svg'), SVG);
  await writeFile(path.join(dir, 'notes.txt'), 'not an image');

  const asRoot = process.getuid?.() === 0;
  if (asRoot) await chmod(root, 0o755);
  const switchUser = asRoot && (await Promise.all(needed.map(othersCanRead))).every(Boolean);
  let unreadableNotTried: string | undefined;
  if (asRoot && !switchUser) {
    unreadableNotTried = `running as root, and nobody cannot read all of ${needed.join(', ')}: root reads a chmod 000 file, so that case is scored`;
    cases.find((c) => c.name === 'locked.png')!.error = undefined;
  }
  return {
    dir,
    cases,
    notListed: ['drawing.svg', 'notes.txt'],
    runAs: switchUser ? { uid: NOBODY, gid: NOBODY } : undefined,
    unreadableNotTried,
    cleanup: () => rm(root, { recursive: true, force: true }),
  };
}

/**
 * Writes `count` small PNGs whose contents all differ (gradients repeat after 256 seeds, so the index
 * is also written into the first pixel): a run over them encodes every one, and cache counts are exact.
 */
export async function writeDistinctPngs(dir: string, count: number, size = 32): Promise<string[]> {
  const names: string[] = [];
  const digits = String(count - 1).length;
  for (let i = 0; i < count; i++) {
    const rgb = gradientRgb(size, size, i);
    rgb.set([i & 0xff, (i >> 8) & 0xff, (i >> 16) & 0xff], 0);
    const name = `img-${String(i).padStart(digits, '0')}.png`;
    await writeFile(path.join(dir, name), encodePng(rgb, size, size));
    names.push(name);
  }
  return names;
}
