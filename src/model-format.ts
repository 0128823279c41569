/**
 * The model format that the converter writes and the runtime encoder reads: a converted model folder
 * (`pickscore-model.json`, text.onnx, image.onnx, tokenizer files), its precisions and attention kinds,
 * the variant each device runs, and the names of the graphs' inputs and outputs. Both sides import this
 * module; neither imports the other.
 *
 * The converter writes the manifest last, so a folder with a valid manifest is a complete one; readers
 * validate every field.
 */
import { access } from 'node:fs/promises';
import path from 'node:path';
import { check, is, oneOf } from './checks.js';
import { ModelError, expectedMessage } from './errors.js';
import type { PreprocessConfig } from './image/preprocess.js';
import { readJsonFile } from './io/json-file.js';
import { READ_LIMITS } from './io/regular-file.js';

/** Encoder precisions a model folder can hold. */
export const PRECISIONS = ['fp32', 'fp16', 'int8'] as const;
export type Precision = (typeof PRECISIONS)[number];

/** What scoring accepts for `--precision`: a precision, or `auto` (fp16 on CUDA, fp32 on the CPU). */
export const PRECISION_CHOICES = ['auto', ...PRECISIONS] as const;
export type PrecisionChoice = (typeof PRECISION_CHOICES)[number];

/** plain ONNX attention, or onnxruntime's fused contrib kernels. */
export const ATTENTION_IMPLS = ['plain', 'fused'] as const;
export type AttentionImpl = (typeof ATTENTION_IMPLS)[number];

/**
 * The one check of a precision (`--precision`, `precision:`): with `auto` where the device decides
 * (scoring), without it where a precision is built (model pull and convert).
 */
export function parsePrecision(value: unknown, opts: { auto: true }): PrecisionChoice;
export function parsePrecision(value: unknown, opts?: { auto: false }): Precision;
export function parsePrecision(value: unknown, opts: { auto?: boolean } = {}): PrecisionChoice {
  if (opts.auto) return oneOf(PRECISION_CHOICES, 'precision', value);
  return check((v): v is Precision => is.oneOf(PRECISIONS, v), PRECISIONS.join(' | '), 'precision', value);
}

export function parseAttention(value: unknown): AttentionImpl {
  return check((v): v is AttentionImpl => is.oneOf(ATTENTION_IMPLS, v), ATTENTION_IMPLS.join(' | '), 'attention', value);
}

/** One converted model: a precision and an attention kind. */
export interface EncoderVariant { precision: Precision; attention: AttentionImpl }

/**
 * Which encoders a device runs: precision 'auto' is fp16 on CUDA and fp32 on CPU. CUDA's fp16 graph and the
 * CPU's fp32 and int8 graphs use onnxruntime's fused contrib kernels (faster on each: docs/performance.md);
 * fp16 on the CPU and fp32 on CUDA stay plain ONNX.
 */
export function encoderVariant(precision: PrecisionChoice, onCuda: boolean): EncoderVariant {
  const chosen: Precision = precision !== 'auto' ? precision : onCuda ? 'fp16' : 'fp32';
  return { precision: chosen, attention: (onCuda ? chosen === 'fp16' : chosen !== 'fp16') ? 'fused' : 'plain' };
}

/** The graphs' inputs and outputs: input_ids int64 [batch, context] -> text_embeds, pixel_values float32 [batch, 3, H, W] -> image_embeds. */
export const TEXT_INPUT = 'input_ids';
export const TEXT_OUTPUT = 'text_embeds';
export const IMAGE_INPUT = 'pixel_values';
export const IMAGE_OUTPUT = 'image_embeds';
/** The output an image head adds beside IMAGE_OUTPUT (the LAION aesthetic predictor's score): [batch, 1]. */
export const IMAGE_SCORE_OUTPUT = 'image_score';
/** How prompts become ids: transformers' CLIPTokenizer (the default), or open_clip's SimpleTokenizer for open_clip weights. */
export const TOKENIZER_MODES = ['transformers', 'open_clip'] as const;
export type TokenizerMode = (typeof TOKENIZER_MODES)[number];

export const MANIFEST_FILE = 'pickscore-model.json';
/** `sha256sum` format, so users can check a model folder with `sha256sum -c` too. */
export const CHECKSUM_FILE = 'checksums.sha256';
export const TOKENIZER_FILES = ['tokenizer.json', 'vocab.json', 'merges.txt', 'tokenizer_config.json', 'special_tokens_map.json'];
export const PREPROCESSOR_FILE = 'preprocessor_config.json';

export interface ModelManifest {
  schema: 1;
  name: string;
  /** Hash of the source files' hashes, the precision and the attention kind. */
  fingerprint: string;
  source: { repo?: string; revision?: string; dir?: string; files: { name: string; size: number; sha256: string }[] };
  /** exp() already applied. */
  logitScale: number;
  precision: Precision;
  attention: AttentionImpl;
  text: { file: 'text.onnx'; contextLength: number; embedDim: number };
  image: { file: 'image.onnx'; imageSize: number; embedDim: number };
  preprocess: PreprocessConfig;
  tokenizerFiles: string[];
  pickscoreVersion: string;
  onnxOpset: number;
  /** Written for open_clip weights only: absent means transformers, so older folders read as before. */
  tokenizerMode?: TokenizerMode;
  /** Written only when a head was appended: the image graph then also has IMAGE_SCORE_OUTPUT, [batch, outFeatures]. */
  imageScore?: { output: typeof IMAGE_SCORE_OUTPUT; outFeatures: number; head: string };
}

/** A folder's tokenizer mode: transformers unless its manifest says otherwise. */
export function tokenizerModeOf(manifest: ModelManifest): TokenizerMode {
  return manifest.tokenizerMode ?? 'transformers';
}

export async function readModelManifest(dir: string): Promise<ModelManifest> {
  const file = path.join(path.resolve(dir), MANIFEST_FILE);
  const json = await readJsonFile(file, {
    what: 'a model manifest', maxBytes: READ_LIMITS.config, error: ModelError,
    unreadable: (reason) => `${path.resolve(dir)} is not a converted pickscore model: cannot read ${MANIFEST_FILE} (${reason})`,
  });
  const manifest = validateManifest(json, file);
  for (const name of [manifest.text.file, manifest.image.file, ...manifest.tokenizerFiles]) {
    try {
      await access(path.join(path.dirname(file), name));
    } catch {
      throw new ModelError(`${file} lists ${name}, but the model folder has no such file; convert the model again`);
    }
  }
  return manifest;
}

/** Checks the shape of a parsed manifest; `file` names it in errors. */
export function validateManifest(json: unknown, file: string): ModelManifest {
  const check = fieldChecker(file);
  const m = check.object(json, 'the manifest');
  if (m.schema !== 1) check.fail('schema version 1', 'schema', m.schema);
  check.string(m.name, 'name');
  check.string(m.fingerprint, 'fingerprint');
  const source = check.object(m.source, 'source');
  for (const key of ['repo', 'revision', 'dir'] as const) if (source[key] !== undefined) check.string(source[key], `source.${key}`);
  check.array(source.files, 'source.files').forEach((entry, i) => {
    const f = check.object(entry, `source.files[${i}]`);
    check.string(f.name, `source.files[${i}].name`);
    check.count(f.size, `source.files[${i}].size`, 0);
    if (typeof f.sha256 !== 'string' || !/^[0-9a-f]{64}$/.test(f.sha256)) check.fail('a SHA-256 hex digest', `source.files[${i}].sha256`, f.sha256);
  });
  if (typeof m.logitScale !== 'number' || !(m.logitScale > 0) || !Number.isFinite(m.logitScale)) check.fail('a positive number', 'logitScale', m.logitScale);
  if (!(PRECISIONS as readonly unknown[]).includes(m.precision)) check.fail(PRECISIONS.join(' | '), 'precision', m.precision);
  if (!(ATTENTION_IMPLS as readonly unknown[]).includes(m.attention)) check.fail(ATTENTION_IMPLS.join(' | '), 'attention', m.attention);
  const textPart = check.object(m.text, 'text');
  if (textPart.file !== 'text.onnx') check.fail('"text.onnx"', 'text.file', textPart.file);
  check.count(textPart.contextLength, 'text.contextLength', 1);
  check.count(textPart.embedDim, 'text.embedDim', 1);
  const imagePart = check.object(m.image, 'image');
  if (imagePart.file !== 'image.onnx') check.fail('"image.onnx"', 'image.file', imagePart.file);
  check.count(imagePart.imageSize, 'image.imageSize', 1);
  check.count(imagePart.embedDim, 'image.embedDim', 1);
  if (imagePart.embedDim !== textPart.embedDim) check.fail(`image.embedDim equal to text.embedDim (${String(textPart.embedDim)})`, 'image.embedDim', imagePart.embedDim);
  validatePreprocess(m.preprocess, check);
  check.array(m.tokenizerFiles, 'tokenizerFiles').forEach((name, i) => {
    if (typeof name !== 'string' || name !== path.basename(name)) check.fail('a file name in the model folder', `tokenizerFiles[${i}]`, name);
  });
  check.string(m.pickscoreVersion, 'pickscoreVersion');
  check.count(m.onnxOpset, 'onnxOpset', 1);
  if (m.tokenizerMode !== undefined && !(TOKENIZER_MODES as readonly unknown[]).includes(m.tokenizerMode)) check.fail(TOKENIZER_MODES.join(' | '), 'tokenizerMode', m.tokenizerMode);
  if (m.imageScore !== undefined) {
    const score = check.object(m.imageScore, 'imageScore');
    if (score.output !== IMAGE_SCORE_OUTPUT) check.fail(`"${IMAGE_SCORE_OUTPUT}"`, 'imageScore.output', score.output);
    check.count(score.outFeatures, 'imageScore.outFeatures', 1);
    check.string(score.head, 'imageScore.head');
  }
  return json as ModelManifest;
}

function validatePreprocess(value: unknown, check: ReturnType<typeof fieldChecker>): void {
  const p = check.object(value, 'preprocess');
  for (const key of ['shortestEdge', 'cropHeight', 'cropWidth'] as const) check.count(p[key], `preprocess.${key}`, 1);
  for (const key of ['mean', 'std'] as const) {
    const triple = p[key];
    if (!Array.isArray(triple) || triple.length !== 3 || !triple.every((x) => typeof x === 'number' && Number.isFinite(x))) {
      check.fail('an array of 3 numbers', `preprocess.${key}`, triple);
    }
  }
  if (typeof p.rescaleFactor !== 'number' || !(p.rescaleFactor > 0)) check.fail('a positive number', 'preprocess.rescaleFactor', p.rescaleFactor);
}

function fieldChecker(file: string) {
  const fail = (expected: string, field: string, value: unknown): never => {
    throw new ModelError(`${file}: ${expectedMessage(expected, `field "${field}"`, value)}`);
  };
  return {
    fail,
    object(value: unknown, field: string): Record<string, unknown> {
      return typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as Record<string, unknown>) : fail('an object', field, value);
    },
    array(value: unknown, field: string): unknown[] {
      return Array.isArray(value) ? value : fail('an array', field, value);
    },
    string(value: unknown, field: string): void {
      if (typeof value !== 'string' || value.length === 0) fail('a non-empty string', field, value);
    },
    count(value: unknown, field: string, min: number): void {
      if (!Number.isSafeInteger(value) || (value as number) < min) fail(`an integer >= ${min}`, field, value);
    },
  };
}
