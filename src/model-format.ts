/**
 * `pickscore-model.json`: what a converted model folder holds and where it came from. The converter
 * writes it last, so a folder with a valid manifest is a complete one; readers validate every field.
 */
import { access } from 'node:fs/promises';
import path from 'node:path';
import { ModelError, expectedMessage } from './errors.js';
import type { PreprocessConfig } from './image/preprocess.js';
import type { AttentionImpl, Precision } from './convert/clip-graph.js';
import { READ_LIMITS, readFailureText, readRegularTextFile } from './io/regular-file.js';

export const MANIFEST_FILE = 'pickscore-model.json';

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
}

export const PRECISIONS: readonly Precision[] = ['fp32', 'fp16', 'int8'];
export const ATTENTION_IMPLS: readonly AttentionImpl[] = ['plain', 'fused'];

export async function readModelManifest(dir: string): Promise<ModelManifest> {
  const file = path.join(path.resolve(dir), MANIFEST_FILE);
  let text: string;
  try {
    text = await readRegularTextFile(file, READ_LIMITS.config, 'a model manifest');
  } catch (err) {
    throw new ModelError(`${path.resolve(dir)} is not a converted pickscore model: cannot read ${MANIFEST_FILE} (${readFailureText(err)})`, { cause: err });
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new ModelError(`${file} is not valid JSON: ${(err as Error).message}`, { cause: err });
  }
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
  if (!PRECISIONS.includes(m.precision as Precision)) check.fail(PRECISIONS.join(' | '), 'precision', m.precision);
  if (!ATTENTION_IMPLS.includes(m.attention as AttentionImpl)) check.fail(ATTENTION_IMPLS.join(' | '), 'attention', m.attention);
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
