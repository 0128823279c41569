/**
 * Where the CPU encoder's time goes: onnxruntime's profiler over the CLIP-H/14 image tower (PickScore v1's
 * geometry, random weights), fp32 and int8, plain and fused, batch 8, on the encoder thread as `rank`
 * runs it. For each variant: kernel time per batch by operator type, and grouped into the linear layers'
 * GEMMs, attention, LayerNorm, GELU, activation quantisation and the rest. The text tower is cut to one
 * small layer here (it is converted and loaded with the image tower, and not profiled), so only the
 * image tower's weights are in memory. The first batch (memory planning, weight packing) is not counted.
 *
 *   npm run bench -- op-profile               about 4 minutes on 2 idle cores
 *
 * Kernel times are wall time per operator, so on a busy machine they grow with the load, but their
 * proportions hold.
 */
import { readdir, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { ClipConfig } from '../src/convert/clip-config.js';
import type { AttentionImpl, Precision } from '../src/model-format.js';
import { openEncodersInThread } from '../src/encoder/threaded-encoders.js';
import { CLIP_H_14, convertRandomClip } from './random-clip.js';
import type { BenchContext } from './run.js';

export const name = 'op-profile';

const BATCH = 8;
const TIMED_RUNS = 2;
const VARIANTS: [Precision, AttentionImpl][] = [['fp32', 'plain'], ['fp32', 'fused'], ['int8', 'plain'], ['int8', 'fused']];

/** CLIP-H's image tower with a one-layer, 64-wide text tower: the text tower is loaded, never profiled. */
const IMAGE_ONLY: ClipConfig = {
  ...CLIP_H_14,
  text: { ...CLIP_H_14.text, hiddenSize: 64, intermediateSize: 256, numLayers: 1, numHeads: 1 },
};

interface ProfileEvent { cat: string; name: string; ts: number; dur: number; args?: { op_name?: string; input_type_shape?: Record<string, number[]>[] } }

/**
 * The part of the model each operator belongs to. A MatMul with a 4-D first input multiplies activations
 * (attention's q k^T and probabilities x v); one with a 3-D input is a linear layer's GEMM. com.microsoft
 * Attention (fp32 fused) holds the packed q/k/v projection GEMM as well as the attention core.
 */
function category(event: ProfileEvent): string {
  const op = event.args?.op_name ?? '?';
  const rank = Object.values(event.args?.input_type_shape?.[0] ?? {})[0]?.length;
  switch (op) {
    case 'MatMul': return rank === 4 ? 'attention' : 'gemm';
    case 'DynamicQuantizeMatMul': case 'MatMulIntegerToFloat': case 'Gemm': return 'gemm';
    case 'Attention': return 'attention_with_qkv_gemm';
    case 'MultiHeadAttention': case 'Softmax': case 'Transpose': case 'Split': case 'Reshape': return 'attention';
    case 'LayerNormalization': case 'SkipLayerNormalization': return 'layernorm';
    case 'Gelu': case 'BiasGelu': case 'FastGelu': case 'QuickGelu': case 'Erf': return 'gelu';
    case 'DynamicQuantizeLinear': return 'quantize_activations';
    case 'Add': case 'Mul': case 'Div': return 'elementwise';
    case 'Conv': return 'patch_embedding';
    default: return 'other';
  }
}

/** Milliseconds per batch, summed over the timed runs (every run after the first) and averaged. */
export function summarizeProfile(events: ProfileEvent[]): { runs: number; total_ms: number; by_op: Record<string, number>; by_part: Record<string, number> } {
  const runs = events.filter((e) => e.cat === 'Session' && e.name === 'model_run').sort((a, b) => a.ts - b.ts);
  if (runs.length < 2) throw new Error(`the profile holds ${runs.length} model runs; expected a warm-up and at least one more`);
  const timedFrom = runs[1].ts;
  const timed = runs.length - 1;
  const byOp = new Map<string, number>();
  const byPart = new Map<string, number>();
  let total = 0;
  for (const e of events) {
    if (e.cat !== 'Node' || !e.name.endsWith('_kernel_time') || e.ts < timedFrom) continue;
    const ms = e.dur / 1000 / timed;
    const op = e.args?.op_name ?? '?';
    byOp.set(op, (byOp.get(op) ?? 0) + ms);
    byPart.set(category(e), (byPart.get(category(e)) ?? 0) + ms);
    total += ms;
  }
  const sorted = (m: Map<string, number>) => Object.fromEntries([...m].sort((a, b) => b[1] - a[1]).map(([k, v]) => [k, Math.round(v)]));
  return { runs: timed, total_ms: Math.round(total), by_op: sorted(byOp), by_part: sorted(byPart) };
}

function shares(part: Record<string, number>, total: number): Record<string, string> {
  return Object.fromEntries(Object.entries(part).map(([k, v]) => [k, `${((100 * v) / total).toFixed(1)}%`]));
}

async function profileVariant(ctx: BenchContext, precision: Precision, attention: AttentionImpl, root: string): Promise<Record<string, unknown>> {
  const dir = path.join(root, `${precision}-${attention}`);
  const prefix = path.join(root, `profile-${precision}-${attention}`);
  try {
    ctx.log(`op-profile: converting ${precision} ${attention}`);
    const { manifest } = await convertRandomClip(IMAGE_ONLY, precision, attention, dir);
    const sessions = await openEncodersInThread(dir, manifest, { device: { kind: 'cpu' }, threads: os.availableParallelism(), profileFilePrefix: prefix });
    const pixels = new Float32Array(BATCH * 3 * 224 * 224);
    for (let i = 0; i < pixels.length; i++) pixels[i] = Math.sin(i * 0.37) * 1.5;
    const seconds: number[] = [];
    try {
      ctx.log(`op-profile: ${precision} ${attention}: a warm-up batch and ${TIMED_RUNS} profiled`);
      for (let run = 0; run <= TIMED_RUNS; run++) {
        const started = performance.now();
        await sessions.encodeImages(pixels, BATCH);
        seconds.push((performance.now() - started) / 1000);
      }
    } finally {
      await sessions.close();
    }
    const file = (await readdir(root)).find((f) => f.startsWith(`${path.basename(prefix)}-image`) && f.endsWith('.json'));
    if (!file) throw new Error(`onnxruntime wrote no profile named ${prefix}-image*.json`);
    const summary = summarizeProfile(JSON.parse(await readFile(path.join(root, file), 'utf8')) as ProfileEvent[]);
    return {
      batch_seconds: seconds.slice(1).map((s) => Number(s.toFixed(2))),
      kernel_ms_per_batch: summary.total_ms,
      by_part_ms: summary.by_part,
      by_part_share: shares(summary.by_part, summary.total_ms),
      by_op_ms: summary.by_op,
    };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

export async function run(ctx: BenchContext): Promise<Record<string, unknown>> {
  const root = path.join(ctx.workDir, 'op-profile');
  await rm(root, { recursive: true, force: true });
  const out: Record<string, unknown> = { model: 'CLIP-H/14 image tower, random weights', batch: BATCH, threads: os.availableParallelism(), load_average_at_start: os.loadavg()[0] };
  try {
    for (const [precision, attention] of VARIANTS) out[`${precision}_${attention}`] = await profileVariant(ctx, precision, attention, root);
  } finally {
    await rm(root, { recursive: true, force: true });
  }
  return out;
}
