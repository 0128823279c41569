/**
 * How fast the pipeline can feed an encoder: rank with the tiny reference model, whose encoder costs next
 * to nothing, over 512 px JPEGs (the GPU check's input). Images/s is then what decoding delivers on this
 * machine's cores; the main thread's busy milliseconds per image (event-loop utilisation x wall time /
 * images) bound the rate at which it could hand images to any encoder, however many cores decode. A GPU
 * that encodes 1,200 images/s needs the main thread under 0.83 ms per image. On a machine with fewer cores
 * than busy threads, busy time includes time the main thread waited for a core; its CPU time (Linux's
 * schedstat for the main thread) does not, and is reported beside it.
 *
 * Compares, interleaved A B B A so that both see the same machine: pixel buffers handed back to the pool's
 * workers once copied into a batch (the default), against a new buffer for every image.
 *
 *   npm run bench -- feed
 */
import { PerformanceObserver } from 'node:perf_hooks';
import { readFileSync } from 'node:fs';
import { readdir, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { runRank } from '../src/commands/rank.js';
import { mean } from '../src/score/stats.js';
import { Scorer, type PipelineLayout } from '../src/pipeline/scorer.js';
import { tinyModel } from '../test/helpers/tiny-model.js';
import { writeJpegs } from './gpu/make-jpegs.js';
import type { BenchContext } from './run.js';

export const name = 'feed';

const IMAGES = 400;
const SIDE = 512;
const BATCH = 16;
const ROUNDS = 2;
const LAYOUTS: Record<'recycled' | 'fresh', PipelineLayout> = {
  recycled: { encoderThread: true, queueDepth: 2, recyclePixels: true },
  fresh: { encoderThread: true, queueDepth: 2, recyclePixels: false },
};

/** Milliseconds the main thread spent in garbage collection while `work` ran. */
async function withGcTime<T>(work: () => Promise<T>): Promise<{ result: T; gcMs: number }> {
  let gcMs = 0;
  const observer = new PerformanceObserver((list) => {
    for (const entry of list.getEntries()) gcMs += entry.duration;
  });
  observer.observe({ entryTypes: ['gc'] });
  try {
    const result = await work();
    await new Promise((resolve) => setImmediate(resolve)); // let the observer deliver the last entries
    return { result, gcMs };
  } finally {
    observer.disconnect();
  }
}

/** The main thread's CPU time in ms (its thread id is the process id), or NaN where /proc has no schedstat. */
function mainThreadCpuMs(): number {
  try {
    return Number(readFileSync(`/proc/self/task/${process.pid}/schedstat`, 'utf8').split(' ')[0]) / 1e6;
  } catch {
    return Number.NaN;
  }
}

async function feedRun(model: string, images: string, threads: number, layout: PipelineLayout) {
  const scorer = await Scorer.open({ model, device: 'cpu', batchSize: BATCH, threads, cacheDir: false }, layout);
  try {
    await scorer.embedTexts(['a photo']);
    const eluBefore = performance.eventLoopUtilization();
    const cpuBefore = mainThreadCpuMs();
    const started = performance.now();
    const { result, gcMs } = await withGcTime(() => runRank({ inputs: [images], prompts: ['a photo'], scorer }));
    const ms = performance.now() - started;
    const cpuMs = mainThreadCpuMs() - cpuBefore;
    const utilization = performance.eventLoopUtilization(eluBefore).utilization;
    return {
      imagesPerSecond: (result.records.length / ms) * 1000, mainMsPerImage: (utilization * ms) / IMAGES,
      mainCpuMsPerImage: cpuMs / IMAGES, gcMsPerImage: gcMs / IMAGES,
    };
  } finally {
    await scorer.close();
  }
}

export async function run(ctx: BenchContext): Promise<Record<string, unknown>> {
  const threads = os.availableParallelism();
  const model = await tinyModel();
  const images = path.join(ctx.workDir, `feed-${SIDE}px-jpeg`);
  if ((await readdir(images).catch(() => [])).length !== IMAGES) {
    await rm(images, { recursive: true, force: true });
    await writeJpegs(images, IMAGES, SIDE);
  }
  await feedRun(model, images, threads, LAYOUTS.recycled); // warm-up: the OS file cache, the workers' first compile
  const runs: Record<keyof typeof LAYOUTS, Awaited<ReturnType<typeof feedRun>>[]> = { recycled: [], fresh: [] };
  for (let round = 0; round < ROUNDS; round++) {
    const order: (keyof typeof LAYOUTS)[] = round % 2 === 0 ? ['recycled', 'fresh'] : ['fresh', 'recycled'];
    for (const key of order) {
      ctx.log(`feed: round ${round + 1}, ${key} pixel buffers`);
      runs[key].push(await feedRun(model, images, threads, LAYOUTS[key]));
    }
  }
  const summary = (key: keyof typeof LAYOUTS) => {
    const mainMsPerImage = mean(runs[key].map((r) => r.mainMsPerImage));
    const mainCpuMsPerImage = mean(runs[key].map((r) => r.mainCpuMsPerImage));
    return {
      imagesPerSecond: mean(runs[key].map((r) => r.imagesPerSecond)),
      mainThreadMsPerImage: mainMsPerImage,
      mainThreadCpuMsPerImage: mainCpuMsPerImage,
      mainThreadGcMsPerImage: mean(runs[key].map((r) => r.gcMsPerImage)),
      mainThreadImagesPerSecondCeiling: 1000 / mainMsPerImage,
      mainThreadCpuImagesPerSecondCeiling: 1000 / mainCpuMsPerImage,
    };
  };
  const recycled = summary('recycled');
  const fresh = summary('fresh');
  return {
    model: 'tiny reference CLIP', images: IMAGES, imageSide: SIDE, format: 'jpeg q90', batchSize: BATCH, decodeWorkers: threads, rounds: ROUNDS,
    recycled, fresh,
    recycledOverFresh: {
      imagesPerSecond: recycled.imagesPerSecond / fresh.imagesPerSecond,
      mainThreadMsPerImage: recycled.mainThreadMsPerImage / fresh.mainThreadMsPerImage,
      mainThreadCpuMsPerImage: recycled.mainThreadCpuMsPerImage / fresh.mainThreadCpuMsPerImage,
    },
  };
}
