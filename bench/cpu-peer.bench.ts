/**
 * pickscore's CPU encoder against PyTorch on the same CPU, side by side: CLIP-H/14 (PickScore v1's
 * geometry) with random weights, fp32 and int8, image tower and text tower. pickscore runs the variant
 * that `rank` picks on a CPU for each precision (encoderVariant), on its encoder thread as `rank` does;
 * the peer is bench/torch/clip_peer.py (nn.TransformerEncoderLayer's fast path in fp32, quantize_dynamic
 * on every nn.Linear in int8), started once and fed one command at a time.
 *
 * For each precision and tower both sides load their model and run one warm-up batch, then take turns,
 * pickscore, PyTorch, PyTorch, pickscore (A B B A) for `rounds` rounds, so that the load of a shared
 * machine falls on both alike. Reported per side: items/s from the median batch time, the timed batch
 * times, and the spread (slowest / fastest timed batch); then pickscore's ratio to PyTorch, gathered
 * with the spreads under `ratios`, and the load average before and after, so a noisy run shows. Only one
 * precision's models are in memory at a time (fp32: pickscore's two towers, 3.9 GB, and PyTorch's
 * current tower, up to 2.5 GB).
 *
 *   npm run -s bench -- cpu-peer                 3 rounds: 7 to 8 minutes on 2 idle cores, many more on busy ones
 *   PICKSCORE_BENCH_ROUNDS=5 npm run -s bench -- cpu-peer
 *   PICKSCORE_TORCH_PYTHON=/path/to/python npm run -s bench -- cpu-peer   another Python with torch
 *
 * Where torch is missing the peer is skipped with a notice on stderr and in the JSON, and pickscore's
 * figures are still measured.
 */
import { mkdir, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { writeClipTowerOnnx } from '../src/convert/clip-graph.js';
import { encoderVariant, type ModelManifest } from '../src/model-format.js';
import { openEncodersInThread } from '../src/encoder/threaded-encoders.js';
import { CLIP_PREPROCESS } from '../src/image/preprocess.js';
import { median, mulberry32 } from '../src/score/stats.js';
import { CLIP_H_14, randomCheckpoint } from './random-clip.js';
import type { BenchContext } from './run.js';
import { startTorchPeer, type TorchPeer } from './torch-peer.js';

export const name = 'cpu-peer';

const IMAGE_BATCH = 8;
const TEXT_BATCH = 16;
const CONTEXT = 77;
const IMAGE_SIZE = 224;
const DEFAULT_ROUNDS = 3;
/** The targets: pickscore / PyTorch images/s, and the slowest over the fastest timed batch. */
const GOALS = { int8_image_ratio: 1.5, fp32_image_ratio: 1.2, spread_below: 1.2 };

type Precision = 'fp32' | 'int8';
type Tower = 'image' | 'text';

/** Seeded inputs in the ranges real ones have: pixels as normalised images, prompts of 3 to 60 random tokens. */
function benchInputs(): { pixels: Float32Array; ids: BigInt64Array } {
  const random = mulberry32(7);
  const pixels = new Float32Array(IMAGE_BATCH * 3 * IMAGE_SIZE * IMAGE_SIZE);
  for (let i = 0; i < pixels.length; i++) pixels[i] = -1.8 + 3.9 * random();
  const ids = new BigInt64Array(TEXT_BATCH * CONTEXT);
  for (let p = 0; p < TEXT_BATCH; p++) {
    const tokens = 3 + Math.floor(57 * random());
    ids[p * CONTEXT] = 49406n;
    for (let t = 1; t <= tokens; t++) ids[p * CONTEXT + t] = BigInt(256 + Math.floor(49150 * random()));
    ids[p * CONTEXT + tokens + 1] = 49407n;
  }
  return { pixels, ids };
}

async function convert(precision: Precision, dir: string): Promise<{ manifest: ModelManifest; attention: string; seconds: number }> {
  const { attention } = encoderVariant(precision, false);
  await mkdir(dir, { recursive: true });
  const started = performance.now();
  const checkpoint = randomCheckpoint(CLIP_H_14);
  for (const tower of ['text', 'image'] as const) {
    await writeClipTowerOnnx({ tower, config: CLIP_H_14, checkpoint, precision, attention, outPath: path.join(dir, `${tower}.onnx`) });
  }
  const manifest: ModelManifest = {
    schema: 1, name: `bench ${precision} ${attention}`, fingerprint: 'bench', source: { files: [] }, logitScale: 100, precision, attention,
    text: { file: 'text.onnx', contextLength: CONTEXT, embedDim: CLIP_H_14.projectionDim },
    image: { file: 'image.onnx', imageSize: IMAGE_SIZE, embedDim: CLIP_H_14.projectionDim },
    preprocess: CLIP_PREPROCESS, tokenizerFiles: [], pickscoreVersion: '0.1.0', onnxOpset: 17,
  };
  return { manifest, attention, seconds: (performance.now() - started) / 1000 };
}

function summary(seconds: number[], batch: number) {
  return {
    per_s: batch / median(seconds),
    batch_seconds: seconds.map((s) => Number(s.toFixed(3))),
    spread: Math.max(...seconds) / Math.min(...seconds),
  };
}

/** Both sides of one tower at one precision, in turns. */
async function measureTower(
  ctx: BenchContext, tower: Tower, precision: Precision, rounds: number,
  pickscoreBatch: () => Promise<unknown>, peer: TorchPeer | undefined,
): Promise<Record<string, unknown>> {
  const batch = tower === 'image' ? IMAGE_BATCH : TEXT_BATCH;
  const unit = tower === 'image' ? 'images_per_s' : 'prompts_per_s';
  let peerLoad;
  if (peer) {
    ctx.log(`cpu-peer: PyTorch ${precision} ${tower} tower: building and warming up`);
    peerLoad = await peer.load(tower, precision, batch);
  }
  await pickscoreBatch();   // warm-up: the first run plans memory and packs weights
  const ours: number[] = [];
  const theirs: number[] = [];
  const timeOurs = async () => {
    const started = performance.now();
    await pickscoreBatch();
    ours.push((performance.now() - started) / 1000);
  };
  ctx.log(`cpu-peer: ${precision} ${tower}: ${rounds} rounds of pickscore, PyTorch, PyTorch, pickscore`);
  for (let round = 0; round < rounds; round++) {
    await timeOurs();
    if (peer) theirs.push(await peer.run(), await peer.run());
    await timeOurs();
  }
  if (peer) await peer.unload();
  const pickscore = summary(ours, batch);
  const result: Record<string, unknown> = { batch, pickscore: { [unit]: pickscore.per_s, batch_seconds: pickscore.batch_seconds, spread: pickscore.spread } };
  if (peer && peerLoad) {
    const pytorch = summary(theirs, batch);
    result.pytorch = { [unit]: pytorch.per_s, batch_seconds: pytorch.batch_seconds, spread: pytorch.spread, ...peerLoad };
    result.ratio = pickscore.per_s / pytorch.per_s;
  }
  // A line per tower as it finishes, so that a run stopped part way still says what it measured.
  const perSecond = (side: unknown) => ((side as Record<string, number> | undefined)?.[unit])?.toFixed(3) ?? '-';
  ctx.log(`cpu-peer: ${precision} ${tower}: pickscore ${perSecond(result.pickscore)} ${unit} (spread ${pickscore.spread.toFixed(2)}), `
    + `PyTorch ${perSecond(result.pytorch)}, ratio ${typeof result.ratio === 'number' ? result.ratio.toFixed(3) : '-'}; batch seconds ${JSON.stringify(pickscore.batch_seconds)} against ${JSON.stringify(theirs.map((t) => Number(t.toFixed(3))))}`);
  return result;
}

export async function run(ctx: BenchContext): Promise<Record<string, unknown>> {
  const threads = os.availableParallelism();
  const rounds = Number(process.env.PICKSCORE_BENCH_ROUNDS ?? DEFAULT_ROUNDS);
  if (!Number.isInteger(rounds) || rounds < 1) throw new Error(`PICKSCORE_BENCH_ROUNDS must be a positive integer, not ${process.env.PICKSCORE_BENCH_ROUNDS}`);
  const started = await startTorchPeer(threads, ctx.log);
  const peer = 'skipped' in started ? undefined : started;
  if (!peer) ctx.log(`cpu-peer: notice: the PyTorch peer is skipped: ${(started as { skipped: string }).skipped}`);
  const out: Record<string, unknown> = {
    load_average_at_start: os.loadavg().map((l) => Number(l.toFixed(2))),
    model: 'CLIP-H/14 (PickScore v1 geometry), random weights', threads, rounds, image_batch: IMAGE_BATCH, text_batch: TEXT_BATCH,
    pytorch: peer ? { python: peer.python, torch: peer.torchVersion, glibc_tunables: peer.glibcTunables } : { skipped: (started as { skipped: string }).skipped },
  };
  const { pixels, ids } = benchInputs();
  const root = path.join(ctx.workDir, 'cpu-peer');
  try {
    for (const precision of ['int8', 'fp32'] as const) {
      const dir = path.join(root, precision);
      ctx.log(`cpu-peer: converting pickscore's ${precision} encoders`);
      const converted = await convert(precision, dir);
      const sessions = await openEncodersInThread(dir, converted.manifest, { device: { kind: 'cpu' }, threads });
      const towers: Record<string, unknown> = { variant: `${precision} ${converted.attention}`, convert_s: converted.seconds };
      try {
        towers.image = await measureTower(ctx, 'image', precision, rounds, () => sessions.encodeImages(pixels, IMAGE_BATCH), peer);
        towers.text = await measureTower(ctx, 'text', precision, rounds, () => sessions.encodeText(ids, TEXT_BATCH), peer);
      } finally {
        await sessions.close();
        await rm(dir, { recursive: true, force: true });
      }
      out[precision] = towers;
    }
  } finally {
    await peer?.close();
    await rm(root, { recursive: true, force: true });
  }
  out.load_average_at_end = os.loadavg().map((l) => Number(l.toFixed(2)));
  out.ratios = ratios(out);
  out.goals = goals(out);
  const busy = busyWarning(out.load_average_at_start as number[], out.load_average_at_end as number[], threads);
  if (busy) {
    out.busy_machine = busy;
    ctx.log(`cpu-peer: warning: ${busy}`);
  }
  return out;
}

/**
 * A warning when other work shared the cores: the turns spread the load over both sides, but the two
 * degrade differently (PyTorch's OpenMP threads wait at barriers for a thread the scheduler took away,
 * onnxruntime's sleep), so a busy machine's ratios are not the quiet machine's and must not be read as them.
 */
export function busyWarning(loadAtStart: number[], loadAtEnd: number[], threads: number): string | undefined {
  // The benchmark's own threads (and the build before it) account for up to `threads` of the load.
  const worst = Math.max(loadAtStart[0], loadAtEnd[0], loadAtEnd[2]);
  if (worst <= threads + 1.5) return undefined;
  return `the machine was busy (load average up to ${worst.toFixed(1)} on ${threads} cores): these ratios are not a quiet machine's; run the benchmark again where nothing else runs`;
}

/** pickscore / PyTorch for each precision and tower, with both sides' spreads: the figures a reader came for. */
function ratios(out: Record<string, unknown>): Record<string, unknown> {
  const rows: Record<string, unknown> = {};
  for (const precision of ['int8', 'fp32'] as const) {
    for (const tower of ['image', 'text'] as const) {
      const t = (out[precision] as Record<string, Record<string, unknown>>)[tower];
      const spread = (side: unknown) => (side === undefined ? null : Number((side as { spread: number }).spread.toFixed(3)));
      rows[`${precision}_${tower}`] = {
        ratio: t.ratio === undefined ? null : Number((t.ratio as number).toFixed(3)),
        pickscore_spread: spread(t.pickscore),
        pytorch_spread: spread(t.pytorch),
      };
    }
  }
  return rows;
}

function goals(out: Record<string, unknown>): Record<string, unknown> {
  const tower = (precision: Precision, which: Tower) => (out[precision] as Record<string, Record<string, unknown>>)[which];
  const ratio = (precision: Precision) => tower(precision, 'image').ratio as number | undefined;
  const spreads = (['fp32', 'int8'] as const).flatMap((p) => (['image', 'text'] as const).map((t) => (tower(p, t).pickscore as { spread: number }).spread));
  const worstSpread = Math.max(...spreads);
  const int8 = ratio('int8');
  const fp32 = ratio('fp32');
  return {
    int8_image_ratio: int8 === undefined ? null : { measured: int8, goal: GOALS.int8_image_ratio, met: int8 >= GOALS.int8_image_ratio },
    fp32_image_ratio: fp32 === undefined ? null : { measured: fp32, goal: GOALS.fp32_image_ratio, met: fp32 >= GOALS.fp32_image_ratio },
    pickscore_spread: { worst: worstSpread, goal_below: GOALS.spread_below, met: worstSpread < GOALS.spread_below },
  };
}
