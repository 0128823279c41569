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
import { mkdir, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { Checkpoint, TensorEntry } from '../src/model/checkpoint.js';
import { expectedClipTensors, type ClipConfig } from '../src/model/clip-config.js';
import { writeClipTowerOnnx, type AttentionImpl, type Precision } from '../src/model/clip-graph.js';
import type { ModelManifest } from '../src/model/convert.js';
import { openEncoders } from '../src/model/session.js';
import { CLIP_PREPROCESS } from '../src/image/preprocess.js';
import { kendallTau } from '../src/score/rank.js';
import { mulberry32 } from '../src/score/stats.js';
import {
  PIXELS_PER_IMAGE, cosineScores, distinctImageIndices, loadReference, loadReferencePixels, referenceInputIds, relativeError,
} from '../test/helpers/graph-models.js';
import type { BenchContext } from './run.js';

export const name = 'encoder';

/** How much each model is run: CLIP-H costs about 20x ViT-B/16 per image, so it gets less. */
interface RunSize { imageBatch: number; repeats: number; prompts: number; images: number }
const VIT_B_RUN: RunSize = { imageBatch: 8, repeats: 3, prompts: 27, images: 11 };
const CLIP_H_RUN: RunSize = { imageBatch: 2, repeats: 2, prompts: 8, images: 4 };

function towerConfig(hiddenSize: number, numLayers: number, numHeads: number) {
  return { hiddenSize, intermediateSize: 4 * hiddenSize, numLayers, numHeads, layerNormEps: 1e-5, hiddenAct: 'gelu' as const };
}

const VIT_B_16: ClipConfig = {
  projectionDim: 512,
  logitScaleInit: Math.log(100),
  text: { ...towerConfig(512, 12, 8), vocabSize: 49408, maxPositionEmbeddings: 77, eosTokenId: 2, bosTokenId: 49406, padTokenId: 1 },
  vision: { ...towerConfig(768, 12, 12), imageSize: 224, patchSize: 16, numChannels: 3 },
};

const CLIP_H_14: ClipConfig = {
  projectionDim: 1024,
  logitScaleInit: Math.log(100),
  text: { ...towerConfig(1024, 24, 16), vocabSize: 49408, maxPositionEmbeddings: 77, eosTokenId: 2, bosTokenId: 49406, padTokenId: 1 },
  vision: { ...towerConfig(1280, 32, 16), imageSize: 224, patchSize: 14, numChannels: 3 },
};

/**
 * A checkpoint whose tensors are generated on read, seeded by name: LayerNorm scales near 1, biases and
 * embeddings small, Linear weights with std 1/sqrt(fan_in) so activations keep their scale through the layers.
 */
function randomCheckpoint(config: ClipConfig): Checkpoint {
  const tensors = new Map<string, TensorEntry>();
  for (const [index, expected] of expectedClipTensors(config).entries()) {
    const shape = expected.dims.map((d) => d.size);
    const count = shape.reduce((a, b) => a * b, 1);
    const fanIn = shape.length > 1 ? count / shape[0] : 1;
    const isNormScale = /norm\d?\.weight$/.test(expected.name);
    const std = shape.length > 1 && !expected.name.includes('embedding') ? 1 / Math.sqrt(fanIn) : 0.02;
    tensors.set(expected.name, {
      name: expected.name, dtype: 'F32', shape, byteLength: count * 4, file: 'generated',
      read: async () => {
        const random = mulberry32(index + 1);
        const values = new Float32Array(count);
        // Uniform on [-a, a] has std a/sqrt(3).
        const a = std * Math.sqrt(3);
        for (let i = 0; i < count; i++) values[i] = (isNormScale ? 1 : 0) + (2 * random() - 1) * a;
        if (expected.name === 'logit_scale') values[0] = config.logitScaleInit;
        return Buffer.from(values.buffer);
      },
    });
  }
  return { format: 'safetensors', files: ['generated'], tensors, close: async () => undefined };
}

async function convert(config: ClipConfig, precision: Precision, attention: AttentionImpl, dir: string): Promise<{ manifest: ModelManifest; seconds: number }> {
  await mkdir(dir, { recursive: true });
  const started = performance.now();
  const checkpoint = randomCheckpoint(config);
  for (const tower of ['text', 'image'] as const) {
    await writeClipTowerOnnx({ tower, config, checkpoint, precision, attention, outPath: path.join(dir, `${tower}.onnx`) });
  }
  const manifest: ModelManifest = {
    schema: 1, name: `bench ${precision} ${attention}`, fingerprint: 'bench', source: { files: [] }, logitScale: 100, precision, attention,
    text: { file: 'text.onnx', contextLength: 77, embedDim: config.projectionDim },
    image: { file: 'image.onnx', imageSize: config.vision.imageSize, embedDim: config.projectionDim },
    preprocess: CLIP_PREPROCESS, tokenizerFiles: [], pickscoreVersion: '0.1.0', onnxOpset: 17,
  };
  return { manifest, seconds: (performance.now() - started) / 1000 };
}

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
    for (const v of variants) sessions.push(await openEncoders(v.dir, v.manifest, { device: 'cpu', threads: os.cpus().length }));
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
  const scores = cosineScores(candidate.text, candidate.images, dim, 100);
  const base = cosineScores(baseline.text, baseline.images, dim, 100);
  const argmax = (row: number[]) => row.indexOf(Math.max(...row));
  const taus = scores.map((row, p) => kendallTau(row, base[p]));
  return {
    text_embed_rel_error: relativeError(candidate.text, baseline.text),
    image_embed_rel_error: relativeError(candidate.images, baseline.images),
    max_score_drift: Math.max(...scores.flatMap((row, p) => row.map((s, i) => Math.abs(s - base[p][i])))),
    score_spread_fp32: Math.max(...base.flat()) - Math.min(...base.flat()),
    kendall_tau_mean: taus.reduce((a, b) => a + b, 0) / taus.length,
    kendall_tau_min: Math.min(...taus),
    top1_agreement: scores.filter((row, p) => argmax(row) === argmax(base[p])).length / scores.length,
  };
}

async function benchModel(ctx: BenchContext, label: string, config: ClipConfig, variants: [Precision, AttentionImpl][], size: RunSize): Promise<Record<string, unknown>> {
  const ref = await loadReference();
  const allPixels = await loadReferencePixels(ref);
  const distinct = (await distinctImageIndices(ref)).slice(0, size.images);
  const pixels = new Float32Array(distinct.length * PIXELS_PER_IMAGE);
  distinct.forEach((image, i) => pixels.set(allPixels.subarray(image * PIXELS_PER_IMAGE, (image + 1) * PIXELS_PER_IMAGE), i * PIXELS_PER_IMAGE));
  const inputs = { ids: referenceInputIds(ref).subarray(0, size.prompts * 77), prompts: size.prompts, pixels };
  const root = path.join(ctx.workDir, 'encoder', label);
  let results: Record<string, VariantResult>;
  try {
    const converted = [];
    for (const [precision, attention] of variants) {
      const key = `${precision}_${attention}`;
      ctx.log(`encoder ${label}: converting ${key}`);
      const dir = path.join(root, key);
      converted.push({ key, dir, ...(await convert(config, precision, attention, dir)) });
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
