/**
 * Accuracy of the reduced precisions against fp32 on random-weight CLIP models: fp16 (plain and fused
 * attention, the CUDA variants) and int8 (the CPU option). For each: embedding drift, score drift, and
 * how each prompt ranks the images (Kendall tau, top-1), which is what a user of `rank` sees.
 *
 * Every graph runs on onnxruntime's CPU provider here. An fp16 graph there keeps fp16 values between
 * operators but computes each operator in fp32 (onnxruntime inserts the casts), much as the GPU's fp16
 * kernels accumulate in fp32; the GPU's own figure comes from the device check in bench/gpu.
 *
 * Inputs: the reference prompts, and the reference images' distinct pixel tensors, each also mirrored
 * left-right and upside down, so there are three times as many images to rank. One model variant is
 * converted, loaded and run at a time, so that CLIP-H's variants never share the memory.
 *
 *   npm run bench -- precision                            ViT-B/16-sized model
 *   PICKSCORE_BENCH_CLIP_H=1 npm run bench -- precision    also CLIP-H/14-sized (minutes per variant)
 *   PICKSCORE_BENCH_CLIP_H=only npm run bench -- precision only CLIP-H/14-sized
 */
import { rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { ClipConfig } from '../src/convert/clip-config.js';
import type { AttentionImpl, Precision } from '../src/model-format.js';
import { openEncoders } from '../src/encoder/session.js';
import { embeddingDrift, rankingAgreement } from '../src/score/agreement.js';
import { median } from '../src/score/stats.js';
import {
  PIXELS_PER_IMAGE, cosineScores, loadReference, distinctReferencePixels, referenceInputIds,
} from '../test/helpers/graph-models.js';
import { CLIP_H_14, VIT_B_16, convertRandomClip } from './random-clip.js';
import type { BenchContext } from './run.js';

export const name = 'precision';

const IMAGE_SIZE = 224;
const CONTEXT = 77;
type Variant = [Precision, AttentionImpl];

interface Inputs { ids: BigInt64Array; prompts: number; pixels: Float32Array; images: number }
interface Embeddings { text: Float32Array; images: Float32Array; seconds: number }

/** One CHW image mirrored: `horizontal` swaps left and right, otherwise top and bottom. */
function mirrored(image: Float32Array, horizontal: boolean): Float32Array {
  const out = new Float32Array(image.length);
  for (let c = 0; c < 3; c++) {
    for (let y = 0; y < IMAGE_SIZE; y++) {
      for (let x = 0; x < IMAGE_SIZE; x++) {
        const from = horizontal ? [y, IMAGE_SIZE - 1 - x] : [IMAGE_SIZE - 1 - y, x];
        out[(c * IMAGE_SIZE + y) * IMAGE_SIZE + x] = image[(c * IMAGE_SIZE + from[0]) * IMAGE_SIZE + from[1]];
      }
    }
  }
  return out;
}

async function loadInputs(prompts: number): Promise<Inputs> {
  const ref = await loadReference();
  const distinct = await distinctReferencePixels(ref);
  const originals = distinct.indices.map((_, i) => distinct.pixels.slice(i * PIXELS_PER_IMAGE, (i + 1) * PIXELS_PER_IMAGE));
  const images = [...originals, ...originals.map((im) => mirrored(im, true)), ...originals.map((im) => mirrored(im, false))];
  const pixels = new Float32Array(images.length * PIXELS_PER_IMAGE);
  images.forEach((im, i) => pixels.set(im, i * PIXELS_PER_IMAGE));
  const count = Math.min(prompts, ref.prompts.length);
  return { ids: referenceInputIds(ref).subarray(0, count * CONTEXT), prompts: count, pixels, images: images.length };
}

/** Converts, loads and runs one variant, then deletes it, so only one variant is ever in memory or on disk. */
async function embedWith(ctx: BenchContext, config: ClipConfig, [precision, attention]: Variant, inputs: Inputs, dir: string, batch: number): Promise<Embeddings> {
  ctx.log(`precision: converting and running ${precision} ${attention}`);
  try {
    const { manifest } = await convertRandomClip(config, precision, attention, dir);
    const sessions = await openEncoders(dir, manifest, { device: { kind: 'cpu' }, threads: os.cpus().length });
    try {
      const started = performance.now();
      const text = await sessions.encodeText(inputs.ids, inputs.prompts);
      const images = new Float32Array(inputs.images * config.projectionDim);
      for (let first = 0; first < inputs.images; first += batch) {
        const count = Math.min(batch, inputs.images - first);
        const embedded = await sessions.encodeImages(inputs.pixels.subarray(first * PIXELS_PER_IMAGE, (first + count) * PIXELS_PER_IMAGE), count);
        images.set(embedded, first * config.projectionDim);
      }
      return { text, images, seconds: (performance.now() - started) / 1000 };
    } finally {
      await sessions.close();
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** How close the fp32 scores within one prompt are, against which a drift or a swapped top-1 is read. Medians over prompts. */
function closeness(baseline: Embeddings, dim: number) {
  const rows = cosineScores(baseline.text, baseline.images, dim, 100).map((row) => [...row].sort((a, b) => b - a));
  return {
    fp32_prompt_spread_median: median(rows.map((row) => row[0] - row[row.length - 1])),
    fp32_top2_gap_median: median(rows.map((row) => row[0] - row[1])),
  };
}

function compare(candidate: Embeddings, baseline: Embeddings, dim: number) {
  const text = embeddingDrift(candidate.text, baseline.text, dim);
  const image = embeddingDrift(candidate.images, baseline.images, dim);
  const ranking = rankingAgreement(cosineScores(candidate.text, candidate.images, dim, 100), cosineScores(baseline.text, baseline.images, dim, 100));
  return {
    text_embed_rel_error: text.relError, text_embed_min_cosine: text.minCosine,
    image_embed_rel_error: image.relError, image_embed_min_cosine: image.minCosine,
    max_score_drift: ranking.maxScoreDrift, score_spread_fp32: ranking.scoreSpread,
    kendall_tau_mean: ranking.kendallTauMean, kendall_tau_min: ranking.kendallTauMin, top1_agreement: ranking.top1Agreement,
    top1_regret_mean: ranking.top1RegretMean, top1_regret_max: ranking.top1RegretMax,
    seconds: candidate.seconds,
  };
}

async function measure(ctx: BenchContext, label: string, config: ClipConfig, variants: Variant[], prompts: number, batch: number) {
  const inputs = await loadInputs(prompts);
  const root = path.join(ctx.workDir, 'precision', label);
  const baseline = await embedWith(ctx, config, ['fp32', 'plain'], inputs, path.join(root, 'fp32_plain'), batch);
  const out: Record<string, unknown> = {
    prompts: inputs.prompts, images: inputs.images, fp32_plain_seconds: baseline.seconds, ...closeness(baseline, config.projectionDim),
  };
  for (const variant of variants) {
    const result = await embedWith(ctx, config, variant, inputs, path.join(root, variant.join('_')), batch);
    out[`${variant.join('_')}_vs_fp32_plain`] = compare(result, baseline, config.projectionDim);
  }
  await rm(root, { recursive: true, force: true });
  return out;
}

export async function run(ctx: BenchContext): Promise<Record<string, unknown>> {
  const clipH = process.env.PICKSCORE_BENCH_CLIP_H;
  const variants: Variant[] = [['fp16', 'plain'], ['fp16', 'fused'], ['int8', 'plain']];
  const out: Record<string, unknown> = { runtime: 'onnxruntime-node CPU provider', threads: os.cpus().length };
  if (clipH !== 'only') out.vit_b_16 = await measure(ctx, 'vit-b-16', VIT_B_16, [...variants, ['int8', 'fused']], 27, 11);
  if (clipH === '1' || clipH === 'only') out.clip_h_14 = await measure(ctx, 'clip-h-14', CLIP_H_14, variants, 16, 4);
  return out;
}
