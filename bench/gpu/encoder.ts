/**
 * The encoder half of the GPU check (bench/gpu/device-check.sh): times pickscore's image encoder alone
 * on one converted model, and compares its embeddings for a dumped input batch against the dump's
 * reference embeddings (PyTorch fp32 and fp16 from bench/gpu/torch_baseline.py, or the tiny reference
 * model's in a dry run). Prints one JSON object.
 *
 *   node build/bench/gpu/encoder.js --model DIR --dump DIR [--device cuda] [--batch 128] [--iterations 20] [--warmup 3]
 *
 * A dump folder holds meta.json ({ images, prompts, contextLength, embedDim, logitScale, pixels, inputIds,
 * references: { name: { image, text } } }), the pixels ([images, 3, size, size] float32), the input ids
 * ([prompts, contextLength] int64) and each reference's embeddings ([n, embedDim] float32, not normalised).
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { expectedMessage, InputError } from '../../src/errors.js';
import { readModelManifest } from '../../src/model-format.js';
import { openEncoders, type EncoderSessions } from '../../src/encoder/session.js';
import { deviceName, parseDevice, type PlacedDevice } from '../../src/encoder/device.js';
import { embeddingDrift, rankingAgreement } from '../../src/score/agreement.js';
import { cosineScores } from '../../test/helpers/graph-models.js';

export interface DumpReference { image: Float32Array; text: Float32Array }
export interface Dump {
  images: number; prompts: number; contextLength: number; embedDim: number; logitScale: number;
  pixels: Float32Array; inputIds: BigInt64Array; references: Record<string, DumpReference>;
}

interface DumpMeta {
  images: number; prompts: number; contextLength: number; embedDim: number; logitScale: number;
  pixels: string; inputIds: string; references: Record<string, { image: string; text: string }>;
}

function metaField<T extends 'number' | 'string' | 'object'>(meta: Record<string, unknown>, field: string, type: T, file: string): unknown {
  const value = meta[field];
  if (typeof value !== type || value === null) throw new InputError(expectedMessage(`a ${type}`, `${field} in ${file}`, value));
  return value;
}

async function readTyped<T>(file: string, count: number, bytesPerValue: number, make: (b: ArrayBuffer) => T): Promise<T> {
  const bytes = await readFile(file);
  if (bytes.byteLength !== count * bytesPerValue) {
    throw new InputError(expectedMessage(`${count * bytesPerValue} bytes`, file, `${bytes.byteLength} bytes`));
  }
  return make(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength));
}

export async function readDump(dir: string, imageSize: number): Promise<Dump> {
  const metaFile = path.join(dir, 'meta.json');
  const raw = JSON.parse(await readFile(metaFile, 'utf8')) as Record<string, unknown>;
  for (const field of ['images', 'prompts', 'contextLength', 'embedDim', 'logitScale']) metaField(raw, field, 'number', metaFile);
  for (const field of ['pixels', 'inputIds']) metaField(raw, field, 'string', metaFile);
  metaField(raw, 'references', 'object', metaFile);
  const meta = raw as unknown as DumpMeta;
  const f32 = (file: string, count: number) => readTyped(path.join(dir, file), count, 4, (b) => new Float32Array(b));
  const references: Record<string, DumpReference> = {};
  for (const [name, files] of Object.entries(meta.references)) {
    references[name] = { image: await f32(files.image, meta.images * meta.embedDim), text: await f32(files.text, meta.prompts * meta.embedDim) };
  }
  return {
    images: meta.images, prompts: meta.prompts, contextLength: meta.contextLength, embedDim: meta.embedDim, logitScale: meta.logitScale,
    pixels: await f32(meta.pixels, meta.images * 3 * imageSize * imageSize),
    inputIds: await readTyped(path.join(dir, meta.inputIds), meta.prompts * meta.contextLength, 8, (b) => new BigInt64Array(b)),
    references,
  };
}

/** Embedding drift in the JSON's snake_case, as the rest of gpu-check.json. */
function driftFields(actual: Float32Array, expected: Float32Array, dim: number) {
  const d = embeddingDrift(actual, expected, dim);
  return { max_abs_error: d.maxAbsError, rel_error: d.relError, min_cosine: d.minCosine };
}

/** How far `candidate` is from `baseline`: embeddings, scores (logitScale * cosine) and each prompt's ranking of the images. */
export function compareEmbeddings(candidate: DumpReference, baseline: DumpReference, dim: number, logitScale: number) {
  const a = rankingAgreement(cosineScores(candidate.text, candidate.image, dim, logitScale), cosineScores(baseline.text, baseline.image, dim, logitScale));
  return {
    image: driftFields(candidate.image, baseline.image, dim),
    text: driftFields(candidate.text, baseline.text, dim),
    max_score_drift: a.maxScoreDrift,
    score_spread: a.scoreSpread,
    kendall_tau_mean: a.kendallTauMean,
    kendall_tau_min: a.kendallTauMin,
    top1_agreement: a.top1Agreement,
  };
}

/** The dump's images repeated up to `batch`, so the timed batch has the shape asked for whatever the dump holds. */
function timingBatch(dump: Dump, batch: number): Float32Array {
  const perImage = dump.pixels.length / dump.images;
  const out = new Float32Array(batch * perImage);
  for (let i = 0; i < batch; i++) out.set(dump.pixels.subarray((i % dump.images) * perImage, (i % dump.images + 1) * perImage), i * perImage);
  return out;
}

async function timeImages(sessions: EncoderSessions, pixels: Float32Array, batch: number, warmup: number, iterations: number) {
  for (let i = 0; i < warmup; i++) await sessions.encodeImages(pixels, batch);
  const seconds: number[] = [];
  for (let i = 0; i < iterations; i++) {
    const started = performance.now();
    await sessions.encodeImages(pixels, batch);
    seconds.push((performance.now() - started) / 1000);
  }
  const total = seconds.reduce((a, b) => a + b, 0);
  return { batch, warmup, iterations, seconds_per_batch: total / iterations, fastest_batch_s: Math.min(...seconds), images_per_s: (batch * iterations) / total };
}

/** Embeds the dump's inputs in batches no larger than the timed one. */
async function embedDump(sessions: EncoderSessions, dump: Dump, batch: number): Promise<DumpReference> {
  const image = new Float32Array(dump.images * dump.embedDim);
  const perImage = dump.pixels.length / dump.images;
  for (let start = 0; start < dump.images; start += batch) {
    const n = Math.min(batch, dump.images - start);
    image.set(await sessions.encodeImages(dump.pixels.subarray(start * perImage, (start + n) * perImage), n), start * dump.embedDim);
  }
  return { image, text: await sessions.encodeText(dump.inputIds, dump.prompts) };
}

export interface EncoderCheckOptions { model: string; dump: string; device: PlacedDevice; batch: number; iterations: number; warmup: number }

export async function runEncoderCheck(opts: EncoderCheckOptions): Promise<Record<string, unknown>> {
  const manifest = await readModelManifest(opts.model);
  const dump = await readDump(opts.dump, manifest.image.imageSize);
  if (dump.embedDim !== manifest.image.embedDim) throw new InputError(expectedMessage(`embedDim ${manifest.image.embedDim} (the model's)`, `${opts.dump}/meta.json`, dump.embedDim));
  let started = performance.now();
  const sessions = await openEncoders(opts.model, manifest, { device: opts.device });
  const openSeconds = (performance.now() - started) / 1000;
  try {
    started = performance.now();
    const ours = await embedDump(sessions, dump, opts.batch);
    const firstRunSeconds = (performance.now() - started) / 1000;
    const timing = await timeImages(sessions, timingBatch(dump, opts.batch), opts.batch, opts.warmup, opts.iterations);
    const parity: Record<string, unknown> = {};
    for (const [name, reference] of Object.entries(dump.references)) parity[`ours_vs_${name}`] = compareEmbeddings(ours, reference, dump.embedDim, dump.logitScale);
    const { torch_fp16: torchFp16, torch_fp32: torchFp32 } = dump.references;
    if (torchFp16 && torchFp32) parity.torch_fp16_vs_torch_fp32 = compareEmbeddings(torchFp16, torchFp32, dump.embedDim, dump.logitScale);
    return {
      model: { name: manifest.name, precision: manifest.precision, attention: manifest.attention, embedDim: manifest.image.embedDim },
      device: deviceName(opts.device), executionProvider: sessions.executionProvider, onnxruntimeVersion: sessions.onnxruntimeVersion,
      open_s: openSeconds, first_dump_embed_s: firstRunSeconds, image_encoder: timing,
      dump: { images: dump.images, prompts: dump.prompts, logitScale: dump.logitScale },
      parity,
    };
  } finally {
    await sessions.close();
  }
}

function integerFlag(value: string | undefined, fallback: number, flag: string, min: number): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isInteger(n) || n < min) throw new InputError(expectedMessage(`an integer >= ${min}`, flag, value));
  return n;
}

/** The device the check runs on: cpu or a CUDA device, never auto (a check must say what it measured). */
function placedDevice(value: string | undefined): PlacedDevice {
  const device = parseDevice(value);
  if (device.kind === 'auto') throw new InputError('--device auto does not say what is measured: pass cpu, cuda or cuda:N');
  return device;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: { model: { type: 'string' }, dump: { type: 'string' }, device: { type: 'string', default: 'cuda' },
      batch: { type: 'string' }, iterations: { type: 'string' }, warmup: { type: 'string' } },
  });
  if (!values.model || !values.dump) throw new InputError('Usage: encoder.js --model DIR --dump DIR [--device cuda] [--batch 128] [--iterations 20] [--warmup 3]');
  const result = await runEncoderCheck({
    model: values.model, dump: values.dump, device: placedDevice(values.device),
    batch: integerFlag(values.batch, 128, '--batch', 1), iterations: integerFlag(values.iterations, 20, '--iterations', 1),
    warmup: integerFlag(values.warmup, 3, '--warmup', 0),
  });
  process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
}

if (process.argv[1] && path.resolve(process.argv[1]) === new URL(import.meta.url).pathname) {
  main().catch((err: unknown) => {
    process.stderr.write(`encoder check: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = 1;
  });
}
