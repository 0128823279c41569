/**
 * The scoring pipeline, end to end, against the encoder alone, all in one run so the ratios share the
 * machine's state:
 * - rank throughput (discover, read, decode, Pillow-exact resize, normalise, encode, rank) against
 *   encoder-only throughput on the same model, batch size and threads, with a ViT-B/16-sized CLIP
 *   (vision 768 wide, 12 layers, patch 16; a 2-layer text tower, which rank runs once per prompt)
 *   whose random weights are written here as model.safetensors and converted by convertCheckpoint;
 * - the pipeline layout, before and after the encoders moved to their own thread (in-process encoders
 *   with one image per pool worker, against the encoder thread with two queued per worker), run
 *   interleaved A/B/B/A: images/s, encoder busy share, waiting for images, the encoder's idle gaps
 *   between batches and the main thread's event-loop utilisation; once with the ViT-B/16-sized model
 *   (inference-bound) and once decode-heavy with the tiny reference model over 1024 px PNGs;
 * - cache reuse: the same rank again over a warm embedding cache (time and encoder calls);
 * - peak RSS of rank over 1,000, 10,000 and 20,000 images (tiny model), each in its own child process.
 *
 *   npm run bench -- pipeline
 */
import { execFile } from 'node:child_process';
import { open, mkdir, readdir, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { convertCheckpoint } from '../src/convert/convert.js';
import { readModelManifest } from '../src/model-format.js';
import { parseClipConfig } from '../src/convert/clip-config.js';
import { openEncoders } from '../src/encoder/session.js';
import { Scorer, type PipelineLayout } from '../src/pipeline/scorer.js';
import { runRank } from '../src/commands/rank.js';
import { mean, mulberry32 } from '../src/score/stats.js';
import { encodePng } from '../test/helpers/pipe-images.js';
import { clipTokenizerDir, tinyModel } from '../test/helpers/tiny-model.js';
import { safetensorsHeader } from '../test/helpers/checkpoint-writers.js';
import { randomCheckpoint } from './random-clip.js';
import type { BenchContext } from './run.js';

export const name = 'pipeline';

const BATCH = 8;
const THROUGHPUT_IMAGES = 32;
const IMAGE_SIDE = 512;
/**
 * Peak RSS at three sizes. Sampled through a run, most of the growth from 1,000 to 10,000 comes in the
 * first seconds and lies outside the main thread's JS heap (a 1,000-image run ends before it levels off);
 * 10,000 to 20,000 shows what still grows with the number of images.
 */
const RSS_COUNTS = [1_000, 10_000, 20_000] as const;
const DECODE_HEAVY_IMAGES = 48;
const DECODE_HEAVY_SIDE = 1024;
const LAYOUT_ROUNDS = 2;
const LAYOUTS: Record<'before' | 'after', PipelineLayout> = {
  before: { encoderThread: false, queueDepth: 1 },
  after: { encoderThread: true, queueDepth: 2 },
};

function towerConfig(hidden: number, layers: number, heads: number) {
  return { hidden_size: hidden, intermediate_size: 4 * hidden, num_hidden_layers: layers, num_attention_heads: heads, hidden_act: 'quick_gelu', layer_norm_eps: 1e-5 };
}

const VIT_B_16_CONFIG = {
  architectures: ['CLIPModel'], model_type: 'clip', projection_dim: 512, logit_scale_init_value: Math.log(100),
  text_config: { ...towerConfig(512, 2, 8), vocab_size: 49408, max_position_embeddings: 77, bos_token_id: 49406, eos_token_id: 2, pad_token_id: 1 },
  vision_config: { ...towerConfig(768, 12, 12), image_size: 224, patch_size: 16, num_channels: 3 },
};

/** The random weights of bench/random-clip.ts written as safetensors, one tensor at a time. */
async function writeRandomCheckpoint(dir: string): Promise<void> {
  await mkdir(dir, { recursive: true });
  await writeFile(path.join(dir, 'config.json'), JSON.stringify(VIT_B_16_CONFIG, null, 2));
  const tensors = [...randomCheckpoint(parseClipConfig(VIT_B_16_CONFIG, 'bench config.json')).tensors.values()];
  const file = await open(path.join(dir, 'model.safetensors'), 'w');
  try {
    await file.write(safetensorsHeader(tensors));
    for (const t of tensors) await file.write(await t.read());
  } finally {
    await file.close();
  }
}

async function midSizeModel(ctx: BenchContext): Promise<string> {
  const root = path.join(ctx.workDir, 'pipeline-vit-b16');
  const converted = path.join(root, 'converted');
  if (await exists(path.join(converted, 'pickscore-model.json'))) return converted;
  ctx.log('pipeline: writing a random ViT-B/16-sized checkpoint and converting it');
  await writeRandomCheckpoint(path.join(root, 'checkpoint'));
  await convertCheckpoint(path.join(root, 'checkpoint'), { outDir: converted, precision: 'fp32', tokenizerDir: clipTokenizerDir, name: 'random ViT-B/16' });
  await rm(path.join(root, 'checkpoint'), { recursive: true, force: true });
  return converted;
}

/** Distinct PNGs with texture (gradient plus seeded noise), so decoding does real work. */
async function writeImages(dir: string, count: number, side: number): Promise<string> {
  if ((await readdir(dir).catch(() => [])).length === count) return dir;
  await rm(dir, { recursive: true, force: true });
  await mkdir(dir, { recursive: true });
  for (let n = 0; n < count; n++) {
    const random = mulberry32(n + 1);
    const rgb = new Uint8Array(side * side * 3);
    for (let i = 0; i < rgb.length; i++) rgb[i] = ((i % (side * 3)) * 0.3 + random() * 64 + n * 7) & 0xff;
    await writeFile(path.join(dir, `img-${String(n).padStart(5, '0')}.png`), encodePng(rgb, side, side));
  }
  return dir;
}

async function encoderOnly(modelDir: string, threads: number): Promise<number> {
  const manifest = await readModelManifest(modelDir);
  const sessions = await openEncoders(modelDir, manifest, { device: { kind: 'cpu' }, threads });
  try {
    const pixels = new Float32Array(BATCH * 3 * 224 * 224).map((_, i) => Math.sin(i) * 0.5);
    await sessions.encodeImages(pixels, BATCH); // warm-up: the first run plans memory
    const started = performance.now();
    for (let done = 0; done < THROUGHPUT_IMAGES; done += BATCH) await sessions.encodeImages(pixels, BATCH);
    return THROUGHPUT_IMAGES / ((performance.now() - started) / 1000);
  } finally {
    await sessions.close();
  }
}

async function timedRank(modelDir: string, images: string, threads: number, cacheDir: string | false, layout: PipelineLayout = LAYOUTS.after) {
  const scorer = await Scorer.open({ model: modelDir, device: 'cpu', batchSize: BATCH, threads, cacheDir }, layout);
  try {
    await scorer.embedTexts(['a photo']);
    const eluBefore = performance.eventLoopUtilization();
    const started = performance.now();
    const result = await runRank({ inputs: [images], prompts: ['a photo'], scorer });
    const seconds = (performance.now() - started) / 1000;
    const eventLoopUtilization = performance.eventLoopUtilization(eluBefore).utilization;
    return { seconds, imagesPerSecond: result.records.length / seconds, stats: scorer.stats(), eventLoopUtilization };
  } finally {
    await scorer.close();
  }
}

type RankRun = Awaited<ReturnType<typeof timedRank>>;

function summarise(runs: RankRun[]) {
  return {
    imagesPerSecond: runs.map((r) => r.imagesPerSecond),
    meanImagesPerSecond: mean(runs.map((r) => r.imagesPerSecond)),
    encoderBusyShare: mean(runs.map((r) => r.stats.encoderBusyMs / (r.seconds * 1000))),
    waitingForImagesMs: mean(runs.map((r) => r.stats.waitingForImagesMs)),
    encoderIdleGapMeanMs: mean(runs.map((r) => r.stats.encoderIdleGapMs / Math.max(1, r.stats.encoderIdleGaps))),
    encoderIdleGapMaxMs: Math.max(...runs.map((r) => r.stats.encoderIdleGapMaxMs)),
    mainThreadEventLoopUtilization: mean(runs.map((r) => r.eventLoopUtilization)),
  };
}

/**
 * Before and after layouts over the same images, interleaved A/B/B/A... so load drift and the order
 * within a round hit both alike, after one untimed run that warms the page cache.
 */
async function compareLayouts(modelDir: string, images: string, threads: number) {
  await timedRank(modelDir, images, threads, false, LAYOUTS.after);
  const runs: Record<'before' | 'after', RankRun[]> = { before: [], after: [] };
  for (let round = 0; round < LAYOUT_ROUNDS; round++) {
    const order = round % 2 === 0 ? (['before', 'after'] as const) : (['after', 'before'] as const);
    for (const name of order) runs[name].push(await timedRank(modelDir, images, threads, false, LAYOUTS[name]));
  }
  const before = summarise(runs.before);
  const after = summarise(runs.after);
  return { before, after, afterOverBefore: after.meanImagesPerSecond / before.meanImagesPerSecond };
}

/** Peak RSS of one rank run in a fresh process, so the runs do not share a heap. */
async function peakRss(ctx: BenchContext, model: string, count: number): Promise<{ images: number; maxRssMiB: number; rows: number; seconds: number }> {
  const images = await writeImages(path.join(ctx.workDir, `pipeline-rss-${count}`), count, 64);
  const rankUrl = new URL('../src/commands/rank.js', import.meta.url).href;
  const script = path.join(ctx.workDir, 'pipeline-rss.mjs');
  await writeFile(script, [
    `const { runRank } = await import(${JSON.stringify(rankUrl)});`,
    'const [images, model] = process.argv.slice(2);',
    'const started = performance.now();',
    `const result = await runRank({ inputs: [images], prompts: ['a photo'], model, device: 'cpu', cacheDir: false, batchSize: 32 });`,
    // VmHWM, not resourceUsage().maxRSS: getrusage keeps the peak across fork and exec, so the child
    // would report this benchmark process's own peak (1.8 GiB with the ViT-B/16 sessions) instead of its own.
    `const { readFileSync } = await import('node:fs');`,
    `const maxRssKiB = Number(/VmHWM:\\s+(\\d+) kB/.exec(readFileSync('/proc/self/status', 'utf8'))[1]);`,
    'process.stdout.write(JSON.stringify({ rows: result.records.length, seconds: (performance.now() - started) / 1000, maxRssKiB }));',
  ].join('\n'));
  const { stdout } = await promisify(execFile)(process.execPath, [script, images, model], { maxBuffer: 1 << 20 });
  const out = JSON.parse(stdout) as { rows: number; seconds: number; maxRssKiB: number };
  return { images: count, rows: out.rows, seconds: out.seconds, maxRssMiB: out.maxRssKiB / 1024 };
}

export async function run(ctx: BenchContext): Promise<Record<string, unknown>> {
  const threads = os.availableParallelism();
  const model = await midSizeModel(ctx);
  const images = await writeImages(path.join(ctx.workDir, `pipeline-${IMAGE_SIDE}px`), THROUGHPUT_IMAGES, IMAGE_SIDE);

  // Encoder-only runs before and after rank, and the two are averaged, so a load change on a shared
  // machine during the run shifts both sides of the ratio alike.
  ctx.log('pipeline: encoder only, rank end to end, encoder only');
  const encoderBefore = await encoderOnly(model, threads);
  const endToEnd = await timedRank(model, images, threads, false);
  const encoderAfter = await encoderOnly(model, threads);
  const encoderImagesPerSecond = (encoderBefore + encoderAfter) / 2;

  ctx.log(`pipeline: layouts before/after, ${LAYOUT_ROUNDS} interleaved rounds, ViT-B/16-sized`);
  // Bracketed like the ratio above: one encoder-only figure is at the mercy of a load spike.
  const encoderBeforeLayouts = await encoderOnly(model, threads);
  const inferenceBound = await compareLayouts(model, images, threads);
  const encoderAround = (encoderBeforeLayouts + (await encoderOnly(model, threads))) / 2;
  const tiny = await tinyModel();
  const decodeImages = await writeImages(path.join(ctx.workDir, `pipeline-${DECODE_HEAVY_SIDE}px`), DECODE_HEAVY_IMAGES, DECODE_HEAVY_SIDE);
  ctx.log(`pipeline: layouts before/after, ${LAYOUT_ROUNDS} interleaved rounds, decode-heavy (tiny model, ${DECODE_HEAVY_SIDE} px PNGs)`);
  const decodeHeavy = await compareLayouts(tiny, decodeImages, threads);

  const cacheDir = path.join(ctx.workDir, 'pipeline-cache');
  await rm(cacheDir, { recursive: true, force: true });
  ctx.log('pipeline: rank with a cold, then a warm cache');
  const cold = await timedRank(model, images, threads, cacheDir);
  const warm = await timedRank(model, images, threads, cacheDir);

  ctx.log('pipeline: peak RSS');
  const rss = [];
  for (const count of RSS_COUNTS) rss.push(await peakRss(ctx, tiny, count));

  return {
    model: 'random ViT-B/16-sized CLIP, fp32, CPU', threads, batchSize: BATCH, images: THROUGHPUT_IMAGES, imageSide: IMAGE_SIDE,
    encoderOnlyImagesPerSecond: { before: encoderBefore, after: encoderAfter, mean: encoderImagesPerSecond },
    endToEndImagesPerSecond: endToEnd.imagesPerSecond,
    endToEndOverEncoderOnly: endToEnd.imagesPerSecond / encoderImagesPerSecond,
    // Within the rank run itself: the share of its wall time in which the image encoder was running.
    encoderBusyShareOfRank: endToEnd.stats.encoderBusyMs / (endToEnd.seconds * 1000),
    endToEndStats: endToEnd.stats,
    layouts: {
      before: LAYOUTS.before, after: LAYOUTS.after, rounds: LAYOUT_ROUNDS,
      inferenceBound: {
        ...inferenceBound,
        encoderOnlyImagesPerSecond: encoderAround,
        beforeOverEncoderOnly: inferenceBound.before.meanImagesPerSecond / encoderAround,
        afterOverEncoderOnly: inferenceBound.after.meanImagesPerSecond / encoderAround,
      },
      decodeHeavy: { model: 'tiny reference CLIP', images: DECODE_HEAVY_IMAGES, imageSide: DECODE_HEAVY_SIDE, ...decodeHeavy },
    },
    cache: {
      coldSeconds: cold.seconds, coldImagesEncoded: cold.stats.imagesEncoded, coldEncoderCalls: cold.stats.imageEncoderCalls,
      warmSeconds: warm.seconds, warmImagesEncoded: warm.stats.imagesEncoded, warmEncoderCalls: warm.stats.imageEncoderCalls, warmCacheHits: warm.stats.imageCacheHits,
      warmOverColdTime: warm.seconds / cold.seconds,
    },
    peakRss: rss,
    rssGrowth1kTo10k: rss[1].maxRssMiB / rss[0].maxRssMiB - 1,
    rssGrowth10kTo20k: rss[2].maxRssMiB / rss[1].maxRssMiB - 1,
  };
}

async function exists(file: string): Promise<boolean> {
  return stat(file).then(() => true, () => false);
}
