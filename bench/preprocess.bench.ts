/**
 * Preprocessing throughput per core: pickscore's exact path (one pool worker: read, decode, Pillow-exact
 * resize and crop, normalise) against Pillow's path from Debian's python3-pil in one Python process
 * (open, convert("RGB"), resize BICUBIC, crop, normalise), on the same generated 512 px JPEGs and 1024 px
 * PNGs, measured in the same run. Also the opt-in fast mode, and its deviation from the exact pixels.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import sharp from 'sharp';
import type { BenchContext } from './run.js';
import { ImagePool } from '../src/image/pool.js';
import { decodeImage, decodeResizeFast } from '../src/image/codec.js';
import { DEFAULT_MAX_PIXELS } from '../src/image/image.js';
import { CLIP_PREPROCESS, resizeAndCrop } from '../src/image/preprocess.js';
import { pillowPython } from '../test/helpers/image-pillow.js';

export const name = 'preprocess';

const MIN_SECONDS = 3;

const round = (x: number) => Number(x.toFixed(2));

interface ImageSet { label: string; files: string[] }

/** Photo-like content (smooth shapes, texture, noise) so that codecs do realistic work. */
function syntheticPhoto(size: number, seed: number): Buffer {
  const pixels = Buffer.alloc(size * size * 3);
  let state = seed >>> 0;
  for (let y = 0; y < size; y++) {
    for (let x = 0; x < size; x++) {
      state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
      const grain = (state >>> 24) / 16;
      const u = x / size;
      const v = y / size;
      const i = (y * size + x) * 3;
      pixels[i] = 128 + 100 * Math.sin(6 * u + seed) * Math.cos(4 * v) + grain;
      pixels[i + 1] = 128 + 90 * Math.sin(9 * v + 2 * u) + grain;
      pixels[i + 2] = 100 + 80 * Math.cos(12 * u * v + seed) + grain;
    }
  }
  return pixels;
}

async function generate(dir: string): Promise<ImageSet[]> {
  await mkdir(dir, { recursive: true });
  const sets: ImageSet[] = [{ label: 'jpeg512', files: [] }, { label: 'png1024', files: [] }];
  for (let i = 0; i < 24; i++) {
    const file = path.join(dir, `photo${i}-512.jpg`);
    await writeFile(file, await sharp(syntheticPhoto(512, i), { raw: { width: 512, height: 512, channels: 3 } }).jpeg({ quality: 90 }).toBuffer());
    sets[0].files.push(file);
  }
  for (let i = 0; i < 8; i++) {
    const file = path.join(dir, `photo${i}-1024.png`);
    await writeFile(file, await sharp(syntheticPhoto(1024, 100 + i), { raw: { width: 1024, height: 1024, channels: 3 } }).png().toBuffer());
    sets[1].files.push(file);
  }
  return sets;
}

/**
 * Throughput as images per wall-clock second and per CPU second. The machines are shared, so the CPU
 * figure (process CPU time, all threads: the worker, libvips and the main thread) is the steadier measure
 * of work per core; both are reported.
 */
interface Rate { per_s: number; per_cpu_s: number }

/** One pool worker over the files, repeated until MIN_SECONDS have passed. */
async function measurePool(files: string[], resize: 'exact' | 'fast'): Promise<Rate> {
  const pool = new ImagePool({ threads: 1, preprocess: CLIP_PREPROCESS, image: { exif: 'apply', resize, maxPixels: DEFAULT_MAX_PIXELS } });
  try {
    await pool.prepare({ path: files[0] }); // start the worker outside the timing
    let done = 0;
    const started = process.hrtime.bigint();
    const cpuStart = process.cpuUsage();
    let elapsed = 0;
    while (elapsed < MIN_SECONDS) {
      const results = await Promise.all(files.map((file) => pool.prepare({ path: file })));
      const failed = results.find((r) => !r.ok);
      if (failed && !failed.ok) throw new Error(failed.error);
      done += files.length;
      elapsed = Number(process.hrtime.bigint() - started) / 1e9;
    }
    const cpu = process.cpuUsage(cpuStart);
    return { per_s: round(done / elapsed), per_cpu_s: round(done / ((cpu.user + cpu.system) / 1e6)) };
  } finally {
    await pool.close();
  }
}

const PILLOW_SCRIPT = `
import json, sys, time
from PIL import Image
try:
    import numpy
except ImportError:
    numpy = None
files, min_seconds, crops_out = json.load(sys.stdin), float(sys.argv[1]), sys.argv[2]
MEAN, STD, SIZE = [0.48145466, 0.4578275, 0.40821073], [0.26862954, 0.26130258, 0.27577711], 224
# Pure Python: one table per channel of (x / 255 - mean) / std, the processor's arithmetic.
TABLES = [[(v / 255 - MEAN[c]) / STD[c] for v in range(256)] for c in range(3)]

def crop(path):
    im = Image.open(path).convert("RGB")
    w, h = im.size
    short, long = min(w, h), max(w, h)
    nw, nh = (SIZE, int(SIZE * long / short)) if w <= h else (int(SIZE * long / short), SIZE)
    im = im.resize((nw, nh), resample=Image.BICUBIC)
    top, left = (nh - SIZE) // 2, (nw - SIZE) // 2
    return im.crop((left, top, left + SIZE, top + SIZE))

def normalise(im):
    if numpy is not None:
        x = numpy.asarray(im, dtype=numpy.float32) / 255.0
        return ((x - numpy.array(MEAN, dtype=numpy.float32)) / numpy.array(STD, dtype=numpy.float32)).transpose(2, 0, 1)
    data = im.tobytes()
    return [[TABLES[c][v] for v in data[c::3]] for c in range(3)]

def rate(step):
    done, start, cpu_start = 0, time.perf_counter(), time.process_time()
    while True:
        for f in files:
            step(f)
        done += len(files)
        elapsed = time.perf_counter() - start
        if elapsed >= min_seconds:
            return {"per_s": round(done / elapsed, 2), "per_cpu_s": round(done / (time.process_time() - cpu_start), 2)}

with open(crops_out, "wb") as out:
    for f in files:
        out.write(crop(f).tobytes())
print(json.dumps({
    "normalise": "numpy" if numpy is not None else "pure-python",
    "crop_only": rate(lambda f: crop(f).tobytes()),
    "with_normalise": rate(lambda f: normalise(crop(f))),
}))
`;

interface PillowResult { normalise: string; crop_only: Rate; with_normalise: Rate; crops: Buffer }

function measurePillow(files: string[], workDir: string): PillowResult | { unavailable: string } {
  const cropsFile = path.join(workDir, 'pillow-crops.bin');
  const run = spawnSync(pillowPython, ['-c', PILLOW_SCRIPT, String(MIN_SECONDS), cropsFile], { input: JSON.stringify(files), encoding: 'utf8' });
  if (run.status !== 0) return { unavailable: `${pillowPython} with Pillow failed: ${run.stderr.trim().split('\n').pop()}` };
  return { ...(JSON.parse(run.stdout) as Omit<PillowResult, 'crops'>), crops: readFileSync(cropsFile) };
}

/** Per-value comparison of pickscore's exact and fast crops, and of the exact crops against Pillow's. */
async function deviations(files: string[], pillowCrops: Buffer | undefined) {
  const cropBytes = 224 * 224 * 3;
  let fastMax = 0;
  let fastSum = 0;
  let pillowIdentical = 0;
  let pillowMax = 0;
  let values = 0;
  for (const [i, file] of files.entries()) {
    const bytes = await readFile(file);
    const opts = { exif: 'apply' as const, maxPixels: DEFAULT_MAX_PIXELS };
    const exact = resizeAndCrop(await decodeImage(bytes, opts), CLIP_PREPROCESS).data;
    const fast = (await decodeResizeFast(bytes, opts, 224)).data;
    const pillow = pillowCrops?.subarray(i * cropBytes, (i + 1) * cropBytes);
    for (let v = 0; v < cropBytes; v++) {
      const d = Math.abs(fast[v] - exact[v]);
      fastSum += d;
      if (d > fastMax) fastMax = d;
      if (pillow) {
        const p = Math.abs(pillow[v] - exact[v]);
        if (p === 0) pillowIdentical++;
        else if (p > pillowMax) pillowMax = p;
      }
    }
    values += cropBytes;
  }
  return {
    fast_vs_exact_max_levels: fastMax,
    fast_vs_exact_mean_levels: Number((fastSum / values).toFixed(4)),
    ...(pillowCrops ? { exact_vs_pillow_max_levels: pillowMax, exact_vs_pillow_identical_pct: Number(((100 * pillowIdentical) / values).toFixed(4)) } : {}),
  };
}

function ratios(ours: Rate, theirs: Rate) {
  return { per_cpu_s: round(ours.per_cpu_s / theirs.per_cpu_s), per_s: round(ours.per_s / theirs.per_s) };
}

export async function run(ctx: BenchContext): Promise<Record<string, unknown>> {
  const sets = await generate(path.join(ctx.workDir, 'preprocess'));
  const results: Record<string, unknown> = {
    method: 'one core: pickscore = one ImagePool worker (read, sha256, sharp decode, Pillow-exact resize + crop, normalise to float32); Pillow = one Python process (open, convert RGB, resize BICUBIC, crop, and with_normalise also normalise)',
  };
  for (const set of sets) {
    ctx.log(`preprocess: ${set.label}, pickscore exact`);
    const exact = await measurePool(set.files, 'exact');
    ctx.log(`preprocess: ${set.label}, pickscore fast`);
    const fast = await measurePool(set.files, 'fast');
    ctx.log(`preprocess: ${set.label}, Pillow`);
    const pillow = measurePillow(set.files, ctx.workDir);
    const pillowOk = 'crops' in pillow;
    results[set.label] = {
      images: set.files.length,
      pickscore_exact: exact,
      pickscore_fast: fast,
      ...(pillowOk
        ? {
            pillow_normalise: pillow.normalise,
            pillow_crop_only: pillow.crop_only,
            pillow_with_normalise: pillow.with_normalise,
            exact_vs_pillow_crop_only: ratios(exact, pillow.crop_only),
            exact_vs_pillow_with_normalise: ratios(exact, pillow.with_normalise),
            fast_vs_pillow_crop_only: ratios(fast, pillow.crop_only),
          }
        : pillow),
      ...(await deviations(set.files, pillowOk ? pillow.crops : undefined)),
    };
  }
  const referenceImages = path.resolve('..', 'shared', 'reference', 'images');
  if (existsSync(referenceImages)) {
    const files = readdirSync(referenceImages).sort().map((f) => path.join(referenceImages, f));
    results.reference_images_fast_deviation = { images: files.length, ...(await deviations(files, undefined)) };
  }
  return results;
}
