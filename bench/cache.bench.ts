/**
 * The embedding cache:
 * - on its own: how fast PickScore-sized (1024-float) embeddings go in and come out, batched as the
 *   pipeline does, against the file in the bench work folder;
 * - a cached rerun against the uncached run, as a user meets them: `pickscore rank` over the same folder
 *   of 400 512 px PNGs (photographs from the reference set, cropped and tinted so that each differs; 1.5
 *   to 2 bytes per pixel, as generated PNGs have), first with an empty cache (every image read, decoded, resized, encoded and
 *   written to the cache), then again with the cache full, each in its own process, in rounds, with the
 *   rows of both compared byte for byte. The tiny reference CLIP keeps the encoder out of the way, so
 *   the uncached run is mostly decoding and the ratio is the least a real model would show. The cached
 *   rerun is then taken apart in-process: model and tokenizer load, the prompt, the image stream (hash,
 *   look up), so what is left of a rerun's time is named.
 *
 *   npm run bench -- cache
 */
import { execFile } from 'node:child_process';
import { mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { EmbeddingCache } from '../src/io/embedding-cache.js';
import { Scorer } from '../src/pipeline/scorer.js';
import { runRank } from '../src/commands/rank.js';
import sharp from 'sharp';
import { mean, median } from '../src/score/stats.js';
import { referenceDir } from '../test/helpers/paths.js';
import { tinyModel } from '../test/helpers/tiny-model.js';
import type { BenchContext } from './run.js';

export const name = 'cache';

const DIM = 1024;
const ROWS = 20_000;
const BATCH = 64;

const RERUN_IMAGES = 400;
const RERUN_SIDE = 512;
const RERUN_ROUNDS = 3;
const PROMPT = 'a photo of a cat';

function seconds(start: bigint): number {
  return Number(process.hrtime.bigint() - start) / 1e9;
}

async function putAndGet(ctx: BenchContext): Promise<Record<string, unknown>> {
  const dir = path.join(ctx.workDir, 'embedding-cache');
  await rm(dir, { recursive: true, force: true });
  const cache = EmbeddingCache.open(dir);
  const embedding = Float32Array.from({ length: DIM }, (_, i) => Math.sin(i));
  const hashes = Array.from({ length: ROWS }, (_, i) => i.toString(16).padStart(64, '0'));
  try {
    let start = process.hrtime.bigint();
    for (let i = 0; i < ROWS; i += BATCH) {
      cache.putImages('bench-fingerprint', 'exif=apply,resize=exact', hashes.slice(i, i + BATCH).map((contentHash) => ({ contentHash, embedding })));
    }
    const putSeconds = seconds(start);
    start = process.hrtime.bigint();
    let hits = 0;
    for (let i = 0; i < ROWS; i += BATCH) hits += cache.getImages('bench-fingerprint', 'exif=apply,resize=exact', hashes.slice(i, i + BATCH)).filter(Boolean).length;
    const getSeconds = seconds(start);
    const info = cache.info();
    ctx.log(`cache: ${ROWS} puts in ${putSeconds.toFixed(2)} s, ${hits} hits in ${getSeconds.toFixed(2)} s`);
    return {
      rows: ROWS, dim: DIM, batch: BATCH,
      put_rows_per_s: Math.round(ROWS / putSeconds),
      get_rows_per_s: Math.round(ROWS / getSeconds),
      hits,
      file_bytes: info.bytes,
      bytes_per_row: Math.round(info.bytes / ROWS),
    };
  } finally {
    cache.close();
  }
}

const PHOTOS = ['coffee.png', 'astronaut-rgba.png', 'wide-1600x400.jpg', 'chelsea.webp'];

/**
 * Distinct photographic PNGs, kept between bench runs: a reference photograph enlarged to 1.5 x `side`,
 * a window of it at an offset, a brightness and hue of its own. Noise images would be nearly
 * incompressible (3 bytes per pixel), which weighs hashing against decoding unlike real images do.
 */
async function writeImages(dir: string, count: number, side: number): Promise<string> {
  if ((await readdir(dir).catch(() => [])).length === count) return dir;
  await rm(dir, { recursive: true, force: true });
  await mkdir(dir, { recursive: true });
  const enlarged = Math.round(side * 1.5);
  for (let n = 0; n < count; n++) {
    const png = await sharp(path.join(referenceDir, 'images', PHOTOS[n % PHOTOS.length])).removeAlpha()
      .resize(enlarged, enlarged, { fit: 'cover' })
      .extract({ left: (n * 37) % (enlarged - side + 1), top: (n * 53) % (enlarged - side + 1), width: side, height: side })
      .modulate({ brightness: 0.9 + (n % 21) / 100, hue: (n * 13) % 360 })
      .png().toBuffer();
    await writeFile(path.join(dir, `img-${String(n).padStart(5, '0')}.png`), png);
  }
  return dir;
}

interface CliRun { seconds: number; stdout: string; stats: { imagesEncoded: number; imageCacheHits: number; imagesPrepared: number } }

/** One `pickscore rank` in its own process: what a user waits for, process start and model load included. */
async function rankCli(images: string, model: string, cacheDir: string): Promise<CliRun> {
  const bin = new URL('../../bin/pickscore.js', import.meta.url);
  const started = performance.now();
  const { stdout, stderr } = await promisify(execFile)(process.execPath, [
    bin.pathname, 'rank', images, '--prompt', PROMPT, '--model', model, '--device', 'cpu', '--cache-dir', cacheDir, '--format', 'jsonl', '--stats',
  ], { maxBuffer: 64 << 20 });
  const seconds = (performance.now() - started) / 1000;
  const lines = stderr.trim().split('\n');
  return { seconds, stdout, stats: (JSON.parse(lines[lines.length - 1]) as { stats: CliRun['stats'] }).stats };
}

/** The cached rerun in-process, timed by stage: open (model, tokenizer, pool, cache), the prompt, the image stream. */
async function cachedRerunStages(images: string, model: string, cacheDir: string) {
  let start = process.hrtime.bigint();
  const scorer = await Scorer.open({ model, device: 'cpu', cacheDir });
  const openSeconds = seconds(start);
  try {
    start = process.hrtime.bigint();
    await scorer.embedTexts([PROMPT]);
    const promptSeconds = seconds(start);
    start = process.hrtime.bigint();
    const result = await runRank({ inputs: [images], prompts: [PROMPT], scorer });
    const streamSeconds = seconds(start);
    return { openSeconds, promptSeconds, streamSeconds, rows: result.records.length, stats: scorer.stats() };
  } finally {
    await scorer.close();
  }
}

async function cachedRerun(ctx: BenchContext): Promise<Record<string, unknown>> {
  const model = await tinyModel();
  ctx.log(`cache: writing ${RERUN_IMAGES} ${RERUN_SIDE} px PNGs (once)`);
  const images = await writeImages(path.join(ctx.workDir, `cache-rerun-photos-${RERUN_SIDE}px`), RERUN_IMAGES, RERUN_SIDE);
  const files = await readdir(images);
  let folderBytes = 0;
  for (const file of files) folderBytes += (await readFile(path.join(images, file))).length; // also warms the page cache
  const cacheDir = path.join(ctx.workDir, 'cache-rerun-cache');
  const uncached: CliRun[] = [];
  const cached: CliRun[] = [];
  for (let round = 0; round < RERUN_ROUNDS; round++) {
    await rm(cacheDir, { recursive: true, force: true });
    ctx.log(`cache: round ${round + 1}/${RERUN_ROUNDS}: rank with an empty cache, then again with it full`);
    uncached.push(await rankCli(images, model, cacheDir));
    cached.push(await rankCli(images, model, cacheDir));
  }
  const identical = [...uncached, ...cached].every((run) => run.stdout === uncached[0].stdout);
  if (!identical) throw new Error('the cached rerun gave other rows than the uncached run');
  ctx.log('cache: the cached rerun by stage, in-process');
  const stages = await cachedRerunStages(images, model, cacheDir);
  const uncachedSeconds = mean(uncached.map((r) => r.seconds));
  const cachedSeconds = mean(cached.map((r) => r.seconds));
  ctx.log(`cache: uncached ${uncachedSeconds.toFixed(2)} s, cached rerun ${cachedSeconds.toFixed(2)} s: ${(uncachedSeconds / cachedSeconds).toFixed(1)}x`);
  return {
    model: 'tiny reference CLIP, fp32, CPU', images: RERUN_IMAGES, imageSide: RERUN_SIDE, rounds: RERUN_ROUNDS,
    folderMiB: folderBytes / 2 ** 20, bytesPerPixel: folderBytes / (RERUN_IMAGES * RERUN_SIDE * RERUN_SIDE),
    uncachedSeconds: uncached.map((r) => r.seconds),
    cachedSeconds: cached.map((r) => r.seconds),
    uncachedOverCached: uncachedSeconds / cachedSeconds,
    // Each round's two runs ran back to back, so their ratio shares the machine's load of the moment.
    uncachedOverCachedByRound: uncached.map((run, i) => run.seconds / cached[i].seconds),
    uncachedOverCachedMedianRound: median(uncached.map((run, i) => run.seconds / cached[i].seconds)),
    rowsIdentical: identical,
    uncachedStats: uncached[0].stats,
    cachedStats: cached[0].stats,
    cachedStages: stages,
  };
}

export async function run(ctx: BenchContext): Promise<Record<string, unknown>> {
  return { ...(await putAndGet(ctx)), rerun: await cachedRerun(ctx) };
}
