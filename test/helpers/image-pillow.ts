/**
 * Runs Debian's Pillow (python3-pil, installed for /usr/bin/python3) as the reference for image tests.
 * Tests that need it skip with a printed notice when it is absent.
 */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

export const pillowPython = process.env.PICKSCORE_PILLOW_PYTHON ?? '/usr/bin/python3';

export function pillowAvailable(): boolean {
  const probe = spawnSync(pillowPython, ['-c', 'import PIL'], { encoding: 'utf8' });
  const ok = probe.status === 0;
  if (!ok) process.stderr.write(`notice: ${pillowPython} with Pillow not found; Pillow parity tests are skipped\n`);
  return ok;
}

/**
 * The processor's Pillow path for each file, in one Python process: open, convert("RGB"), optional
 * exif_transpose, resize the short side to `size` with BICUBIC, centre crop size x size. Returns the
 * crops as interleaved RGB uint8, one per path.
 */
export function pillowResizeAndCrop(paths: string[], size: number, exif: 'apply' | 'ignore'): Uint8Array[] {
  const outFile = path.join(tmpdir(), `pickscore-pillow-${process.pid}-${Date.now()}.bin`);
  const script = `
import json, sys
from PIL import Image, ImageOps
paths, size, exif, out = json.load(sys.stdin), ${size}, ${JSON.stringify(exif)}, ${JSON.stringify(outFile)}
with open(out, "wb") as f:
    for p in paths:
        im = Image.open(p)
        if exif == "apply":
            im = ImageOps.exif_transpose(im)
        im = im.convert("RGB")
        w, h = im.size
        short, long = min(w, h), max(w, h)
        new_long = int(size * long / short)
        nw, nh = (size, new_long) if w <= h else (new_long, size)
        im = im.resize((nw, nh), resample=Image.BICUBIC)
        top, left = (nh - size) // 2, (nw - size) // 2
        f.write(im.crop((left, top, left + size, top + size)).tobytes())
`;
  const run = spawnSync(pillowPython, ['-c', script], { input: JSON.stringify(paths), encoding: 'utf8', maxBuffer: 1 << 20 });
  if (run.status !== 0) throw new Error(`Pillow failed: ${run.stderr}`);
  const all = readFileSync(outFile);
  const crop = size * size * 3;
  return paths.map((_, i) => new Uint8Array(all.buffer, all.byteOffset + i * crop, crop));
}

/** Pillow's `Image.open(p).convert("RGB")` bytes and size, for decode parity. */
export function pillowDecodeRgb(file: string): { data: Uint8Array; width: number; height: number } {
  const script = `
import sys
from PIL import Image
im = Image.open(sys.argv[1]).convert("RGB")
sys.stdout.write("%d %d\\n" % im.size)
sys.stdout.flush()
sys.stdout.buffer.write(im.tobytes())
`;
  const run = spawnSync(pillowPython, ['-c', script, file], { maxBuffer: 1 << 28 });
  if (run.status !== 0) throw new Error(`Pillow failed on ${file}: ${run.stderr.toString()}`);
  const newline = run.stdout.indexOf(10);
  const [width, height] = run.stdout.subarray(0, newline).toString().split(' ').map(Number);
  return { data: new Uint8Array(run.stdout.subarray(newline + 1)), width, height };
}

/** Seeded PRNG for reproducible generated images: the project's own mulberry32. */
export { mulberry32 as seededRandom } from '../../src/score/stats.js';

/** Per-value comparison of two uint8 buffers. */
export function compareBytes(ours: Uint8Array, theirs: Uint8Array): { maxDiff: number; identical: number; total: number } {
  let maxDiff = 0;
  let identical = 0;
  for (let i = 0; i < theirs.length; i++) {
    const d = Math.abs(ours[i] - theirs[i]);
    if (d === 0) identical++;
    else if (d > maxDiff) maxDiff = d;
  }
  return { maxDiff, identical, total: theirs.length };
}
