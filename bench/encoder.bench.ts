/**
 * CPU encoder throughput of the converted graphs, fp32 (plain and fused attention) against int8, on a
 * ViT-B/16-sized CLIP with random weights generated here (vision 768 wide, 12 layers, 12 heads, MLP
 * 3072; text 512 wide, 12 layers, 8 heads, MLP 2048; projection 512), with int8's drift and ranking
 * agreement against fp32. Inputs are the reference prompts and pixel tensors (../shared/reference).
 * Every variant runs in the same process, one after another, so their ratios share the machine's state.
 *
 *   npm run bench -- encoder                          ViT-B/16-sized model
 *   PICKSCORE_BENCH_CLIP_H=1 npm run bench -- encoder  also CLIP-H/14-sized (3.9 GB of weights; many minutes)
 *   PICKSCORE_BENCH_CLIP_H=only npm run bench -- encoder  only CLIP-H/14-sized
 */
import { rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { ClipConfig } from '../src/convert/clip-config.js';
import type { AttentionImpl, Precision } from '../src/model-format.js';
import type { ModelManifest } from '../src/model-format.js';
import { openEncoders } from '../src/encoder/session.js';
import { rankingAgreement, relativeError } from '../src/score/agreement.js';
import {
  PIXELS_PER_IMAGE, cosineScores, loadReference, distinctReferencePixels, referenceInputIds,
} from '../test/helpers/graph-models.js';
import { CLIP_H_14, VIT_B_16, convertRandomClip } from './random-clip.js';
import type { BenchContext } from './run.js';

export const name = 'encoder';

/** How much each model is run: CLIP-H costs about 20x ViT-B/16 per image, so it gets less. */
interface RunSize { imageBatch: number; repeats: number; prompts: number; images: number }
const VIT_B_RUN: RunSize = { imageBatch: 8, repeats: 3, prompts: 27, images: 11 };
const CLIP_H_RUN: RunSize = { imageBatch: 2, repeats: 2, prompts: 8, images: 4 };

interface VariantResult { imagesPerSecond: number; promptsPerSecond: number; convertSeconds: number; text: Float32Array; images: Float32Array }
interface BenchInputs { ids: BigInt64Array; prompts: number; pixels: Float32Array }

/**
 * All variants' sessions stay open and are timed in turns (A B C D, A B C D, ...), so that the load of
 * a shared machine falls on every variant alike rather than on whichever ran during a busy minute.
 */
async function measureInTurns(variants: { key: string; dir: string; manifest: ModelManifest; convertSeconds: number }[], inputs: BenchInputs, size: RunSize): Promise<Record<string, VariantResult>> {
  const { imageBatch, repeats } = size;
  const sessions = [];
  try {
    for (const v of variants) sessions.push(await openEncoders(v.dir, v.manifest, { device: { kind: 'cpu' }, threads: os.cpus().length }));
    const batchPixels = inputs.pixels.subarray(0, imageBatch * PIXELS_PER_IMAGE);
    const imageSeconds = variants.map(() => 0);
    const textSeconds = variants.map(() => 0);
    for (const s of sessions) await s.encodeImages(batchPixels, imageBatch);   // warm-up: the first run plans memory
    for (let round = 0; round < repeats; round++) {
      for (const [i, s] of sessions.entries()) {
        let started = performance.now();
        await s.encodeImages(batchPixels, imageBatch);
        imageSeconds[i] += (performance.now() - started) / 1000;
        started = performance.now();
        await s.encodeText(inputs.ids, inputs.prompts);
        textSeconds[i] += (performance.now() - started) / 1000;
      }
    }
    const results: Record<string, VariantResult> = {};
    for (const [i, v] of variants.entries()) {
      results[v.key] = {
        imagesPerSecond: (repeats * imageBatch) / imageSeconds[i],
        promptsPerSecond: (repeats * inputs.prompts) / textSeconds[i],
        convertSeconds: v.convertSeconds,
        text: await sessions[i].encodeText(inputs.ids, inputs.prompts),
        images: await sessions[i].encodeImages(inputs.pixels, inputs.pixels.length / PIXELS_PER_IMAGE),
      };
    }
    return results;
  } finally {
    for (const s of sessions) await s.close();
  }
}

function drift(candidate: VariantResult, baseline: VariantResult, dim: number) {
  const ranking = rankingAgreement(cosineScores(candidate.text, candidate.images, dim, 100), cosineScores(baseline.text, baseline.images, dim, 100));
  return {
    text_embed_rel_error: relativeError(candidate.text, baseline.text),
    image_embed_rel_error: relativeError(candidate.images, baseline.images),
    max_score_drift: ranking.maxScoreDrift,
    score_spread_fp32: ranking.scoreSpread,
    kendall_tau_mean: ranking.kendallTauMean,
    kendall_tau_min: ranking.kendallTauMin,
    top1_agreement: ranking.top1Agreement,
  };
}

async function benchModel(ctx: BenchContext, label: string, config: ClipConfig, variants: [Precision, AttentionImpl][], size: RunSize): Promise<Record<string, unknown>> {
  const ref = await loadReference();
  const { pixels } = await distinctReferencePixels(ref, size.images);
  const inputs = { ids: referenceInputIds(ref).subarray(0, size.prompts * 77), prompts: size.prompts, pixels };
  const root = path.join(ctx.workDir, 'encoder', label);
  let results: Record<string, VariantResult>;
  try {
    const converted = [];
    for (const [precision, attention] of variants) {
      const key = `${precision}_${attention}`;
      ctx.log(`encoder ${label}: converting ${key}`);
      const dir = path.join(root, key);
      converted.push({ key, dir, ...(await convertRandomClip(config, precision, attention, dir)) });
    }
    ctx.log(`encoder ${label}: measuring ${converted.map((c) => c.key).join(', ')} in turns`);
    results = await measureInTurns(converted.map((c) => ({ key: c.key, dir: c.dir, manifest: c.manifest, convertSeconds: c.seconds })), inputs, size);
  } finally {
    await rm(root, { recursive: true, force: true });
  }
  const baseline = results.fp32_plain;
  const summary: Record<string, unknown> = {
    threads: os.cpus().length, image_batch: size.imageBatch, prompts_batch: size.prompts, repeats: size.repeats, drift_images: size.images,
  };
  for (const [key, r] of Object.entries(results)) {
    summary[key] = {
      images_per_s: r.imagesPerSecond, prompts_per_s: r.promptsPerSecond, convert_s: r.convertSeconds,
      image_speedup_vs_fp32_plain: r.imagesPerSecond / baseline.imagesPerSecond,
      text_speedup_vs_fp32_plain: r.promptsPerSecond / baseline.promptsPerSecond,
      ...(key === 'fp32_plain' ? {} : { drift_vs_fp32_plain: drift(r, baseline, config.projectionDim) }),
    };
  }
  return summary;
}

export async function run(ctx: BenchContext): Promise<Record<string, unknown>> {
  const clipH = process.env.PICKSCORE_BENCH_CLIP_H;
  const out: Record<string, unknown> = {};
  if (clipH !== 'only') {
    out.vit_b_16 = await benchModel(ctx, 'vit-b-16', VIT_B_16, [['fp32', 'plain'], ['fp32', 'fused'], ['int8', 'plain'], ['int8', 'fused']], VIT_B_RUN);
  }
  if (clipH === '1' || clipH === 'only') {
    out.clip_h_14 = await benchModel(ctx, 'clip-h-14', CLIP_H_14, [['fp32', 'plain'], ['int8', 'plain']], CLIP_H_RUN);
  }
  return out;
}
