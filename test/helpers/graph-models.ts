/**
 * Builds encoder folders from the reference checkpoints for the graph, parity and session tests, and
 * reads the reference embeddings and pixel tensors.
 */
import { mkdir, mkdtemp, readFile, rm, symlink } from 'node:fs/promises';
import { createHash } from 'node:crypto';
import os from 'node:os';
import path from 'node:path';
import { CLIP_PREPROCESS } from '../../src/image/preprocess.js';
import { openCheckpoint } from '../../src/convert/checkpoint.js';
import { readClipConfig, type ClipConfig } from '../../src/convert/clip-config.js';
import { writeClipTowerOnnx } from '../../src/convert/clip-graph.js';
import type { AttentionImpl, Precision } from '../../src/model-format.js';
import type { ModelManifest } from '../../src/model-format.js';
import { referenceDir } from './paths.js';

export interface ReferencePrompt { prompt: string; input_ids: number[]; text_embeds: number[] }
export interface ReferenceImage { image: string; orientation: string; file: string; image_embeds: number[] }
export interface Reference { logit_scale: number; prompts: ReferencePrompt[]; images: ReferenceImage[]; scores: { values: number[][] } }

export async function loadReference(): Promise<Reference> {
  return JSON.parse(await readFile(path.join(referenceDir, 'reference.json'), 'utf8')) as Reference;
}

export const PIXELS_PER_IMAGE = 3 * 224 * 224;

/** All reference pixel tensors, [images, 3, 224, 224], in reference.json's order. */
export async function loadReferencePixels(ref: Reference): Promise<Float32Array> {
  const out = new Float32Array(ref.images.length * PIXELS_PER_IMAGE);
  for (const [i, image] of ref.images.entries()) {
    const bytes = await readFile(path.join(referenceDir, image.file));
    out.set(new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4), i * PIXELS_PER_IMAGE);
  }
  return out;
}

/** Indices of images whose pixels differ: raw and exif tensors are identical for images without orientation. */
export async function distinctImageIndices(ref: Reference): Promise<number[]> {
  const seen = new Set<string>();
  const keep: number[] = [];
  for (const [i, image] of ref.images.entries()) {
    const hash = createHash('sha256').update(await readFile(path.join(referenceDir, image.file))).digest('hex');
    if (!seen.has(hash)) keep.push(i);
    seen.add(hash);
  }
  return keep;
}

/** The distinct reference images (at most `limit`) and their pixel tensors, packed one after another. */
export async function distinctReferencePixels(ref: Reference, limit?: number): Promise<{ indices: number[]; pixels: Float32Array }> {
  const all = await loadReferencePixels(ref);
  const indices = (await distinctImageIndices(ref)).slice(0, limit);
  const pixels = new Float32Array(indices.length * PIXELS_PER_IMAGE);
  indices.forEach((image, i) => pixels.set(all.subarray(image * PIXELS_PER_IMAGE, (image + 1) * PIXELS_PER_IMAGE), i * PIXELS_PER_IMAGE));
  return { indices, pixels };
}

export function referenceInputIds(ref: Reference): BigInt64Array {
  return BigInt64Array.from(ref.prompts.flatMap((p) => p.input_ids.map((id) => BigInt(id))));
}

/** The three reference checkpoints; the .bin of tiny-clip is reached through a folder without the safetensors. */
export type ReferenceCheckpoint = 'tiny-clip safetensors' | 'tiny-clip bin' | 'tiny-clip-legacy';
export const REFERENCE_CHECKPOINTS: ReferenceCheckpoint[] = ['tiny-clip safetensors', 'tiny-clip bin', 'tiny-clip-legacy'];

export async function tempDir(prefix: string): Promise<{ dir: string; remove(): Promise<void> }> {
  const dir = await mkdtemp(path.join(os.tmpdir(), `pickscore-${prefix}-`));
  return { dir, remove: () => rm(dir, { recursive: true, force: true }) };
}

async function checkpointDir(which: ReferenceCheckpoint, scratch: string): Promise<string> {
  if (which === 'tiny-clip safetensors') return path.join(referenceDir, 'tiny-clip');
  if (which === 'tiny-clip-legacy') return path.join(referenceDir, 'tiny-clip-legacy');
  const dir = path.join(scratch, 'tiny-clip-bin');
  await mkdir(dir, { recursive: true });
  for (const file of ['config.json', 'pytorch_model.bin']) await symlink(path.join(referenceDir, 'tiny-clip', file), path.join(dir, file));
  return dir;
}

export interface BuiltEncoders { dir: string; manifest: ModelManifest; config: ClipConfig }

/** Writes text.onnx and image.onnx for one checkpoint into `outDir`, with the manifest fields the sessions read. */
export async function buildReferenceEncoders(which: ReferenceCheckpoint, precision: Precision, attention: AttentionImpl, outDir: string,
  adjustConfig: (config: ClipConfig) => ClipConfig = (c) => c): Promise<BuiltEncoders> {
  await mkdir(outDir, { recursive: true });
  const source = await checkpointDir(which, outDir);
  const config = adjustConfig(await readClipConfig(source));
  const checkpoint = await openCheckpoint(source);
  try {
    for (const tower of ['text', 'image'] as const) {
      await writeClipTowerOnnx({ tower, config, checkpoint, precision, attention, outPath: path.join(outDir, `${tower}.onnx`) });
    }
  } finally {
    await checkpoint.close();
  }
  const manifest: ModelManifest = {
    schema: 1, name: `${which} ${precision} ${attention}`, fingerprint: 'test', source: { files: [] },
    logitScale: 100, precision, attention,
    text: { file: 'text.onnx', contextLength: config.text.maxPositionEmbeddings, embedDim: config.projectionDim },
    image: { file: 'image.onnx', imageSize: config.vision.imageSize, embedDim: config.projectionDim },
    preprocess: CLIP_PREPROCESS, tokenizerFiles: [], pickscoreVersion: '0.0.0', onnxOpset: 17,
  };
  return { dir: outDir, manifest, config };
}

/** max |a - b| / max |b|: the parity measure, relative to the reference's scale. */
export { relativeError } from '../../src/score/agreement.js';

/** logitScale * cos(text_p, image_i) for every pair, rows by prompt. */
export function cosineScores(text: Float32Array, images: Float32Array, dim: number, logitScale: number): number[][] {
  const norm = (v: Float32Array, row: number) => Math.hypot(...v.subarray(row * dim, (row + 1) * dim));
  const rows: number[][] = [];
  for (let p = 0; p < text.length / dim; p++) {
    const row: number[] = [];
    for (let i = 0; i < images.length / dim; i++) {
      let dot = 0;
      for (let k = 0; k < dim; k++) dot += text[p * dim + k] * images[i * dim + k];
      row.push((logitScale * dot) / (norm(text, p) * norm(images, i)));
    }
    rows.push(row);
  }
  return rows;
}
