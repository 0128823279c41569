/**
 * CLIP models with random weights for the benchmarks, generated on read rather than stored, and written
 * as pickscore's ONNX encoders without a checkpoint on disk. The weights are seeded, so every run and
 * every precision sees the same model.
 */
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import type { Checkpoint, TensorEntry } from '../src/convert/checkpoint.js';
import { expectedClipTensors, type ClipConfig } from '../src/convert/clip-config.js';
import { writeClipTowerOnnx } from '../src/convert/clip-graph.js';
import type { AttentionImpl, Precision } from '../src/model-format.js';
import type { ModelManifest } from '../src/model-format.js';
import { CLIP_PREPROCESS } from '../src/image/preprocess.js';
import { mulberry32 } from '../src/score/stats.js';

function towerConfig(hiddenSize: number, numLayers: number, numHeads: number) {
  return { hiddenSize, intermediateSize: 4 * hiddenSize, numLayers, numHeads, layerNormEps: 1e-5, hiddenAct: 'gelu' as const };
}

/** ViT-B/16-sized: vision 768 wide, 12 layers, 12 heads; text 512 wide, 12 layers, 8 heads; projection 512. */
export const VIT_B_16: ClipConfig = {
  projectionDim: 512,
  logitScaleInit: Math.log(100),
  text: { ...towerConfig(512, 12, 8), vocabSize: 49408, maxPositionEmbeddings: 77, eosTokenId: 2, bosTokenId: 49406, padTokenId: 1 },
  vision: { ...towerConfig(768, 12, 12), imageSize: 224, patchSize: 16, numChannels: 3 },
};

/** PickScore v1's geometry (CLIP-ViT-H/14): vision 1280 wide, 32 layers; text 1024 wide, 24 layers; projection 1024. */
export const CLIP_H_14: ClipConfig = {
  projectionDim: 1024,
  logitScaleInit: Math.log(100),
  text: { ...towerConfig(1024, 24, 16), vocabSize: 49408, maxPositionEmbeddings: 77, eosTokenId: 2, bosTokenId: 49406, padTokenId: 1 },
  vision: { ...towerConfig(1280, 32, 16), imageSize: 224, patchSize: 14, numChannels: 3 },
};

/**
 * A checkpoint whose tensors are generated on read, seeded by name: LayerNorm scales near 1, biases and
 * embeddings small, Linear weights with std 1/sqrt(fan_in) so activations keep their scale through the layers.
 */
export function randomCheckpoint(config: ClipConfig): Checkpoint {
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

/** Writes text.onnx and image.onnx of the random model straight from the generated tensors. */
export async function convertRandomClip(config: ClipConfig, precision: Precision, attention: AttentionImpl, dir: string): Promise<{ manifest: ModelManifest; seconds: number }> {
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
