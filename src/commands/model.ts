/**
 * `pickscore model pull | list | info | verify | convert`: options in, data out. Nothing here prints;
 * src/cli/model-command.ts renders the results.
 */
import { readdir, stat } from 'node:fs/promises';
import path from 'node:path';
import { InputError, ModelError, UsageError } from '../errors.js';
import type { AttentionImpl, Precision } from '../model-format.js';
import { convertCheckpoint } from '../convert/convert.js';
import type { HubProgress, HubRetry } from '../model/hub.js';
import { CHECKSUM_FILE, MANIFEST_FILE, parseAttention, parsePrecision, readModelManifest, type ModelManifest } from '../model-format.js';
import {
  convertedModels, identifyModel, knownModels, locateModel, resolveModel, type KnownModel,
} from '../model/registry.js';
import { sha256File } from '../io/file-hash.js';
import { FileReadError, READ_LIMITS, readFailureText, readRegularTextFile } from '../io/regular-file.js';

export interface ConvertedModel { dir: string; manifest: ModelManifest; bytes: number }

async function folderBytes(dir: string): Promise<number> {
  let total = 0;
  for (const name of await readdir(dir)) {
    const s = await stat(path.join(dir, name));
    if (s.isFile()) total += s.size;
  }
  return total;
}

async function withSize(found: { dir: string; manifest: ModelManifest }): Promise<ConvertedModel> {
  return { ...found, bytes: await folderBytes(found.dir) };
}

// ---- pull ----

export interface ModelPullOptions {
  model?: string;
  precision: Precision;
  attention?: AttentionImpl;
  onProgress?: (e: HubProgress) => void;
  onRetry?: (e: HubRetry) => void;
  /** Aborting stops a download at once, keeping its bytes for the next pull (InterruptedError). */
  signal?: AbortSignal;
}
export interface ModelPullResult extends ConvertedModel { alreadyPresent: boolean }

export async function modelPull(opts: ModelPullOptions): Promise<ModelPullResult> {
  const precision = parsePrecision(opts.precision);
  const attention = parseAttention(opts.attention ?? 'plain');
  const { dir } = await locateModel(opts.model, { precision, attention });
  const alreadyPresent = await stat(path.join(dir, MANIFEST_FILE)).then(() => true, () => false);
  const resolved = await resolveModel(opts.model, { precision, attention, onProgress: opts.onProgress, onRetry: opts.onRetry, signal: opts.signal });
  // A converted folder is what it is: reporting it as pulled at another precision would mislead.
  if (resolved.source.kind === 'converted' && (resolved.manifest.precision !== precision || resolved.manifest.attention !== attention)) {
    throw new UsageError(`${resolved.dir} is a converted model folder holding ${resolved.manifest.precision}/${resolved.manifest.attention} encoders, not ${precision}/${attention}; `
      + `\`pickscore model convert <checkpoint folder> --out <dir> --precision ${precision}\` builds another precision`);
  }
  return { ...(await withSize({ dir: resolved.dir, manifest: resolved.manifest })), alreadyPresent };
}

// ---- list ----

export interface ModelListEntry {
  name: string;
  description: string;
  default: boolean;
  /** `repo@revision` of the weights, for known models. */
  weights?: string;
  processor?: string;
  converted: ConvertedModel[];
}

/** Known models first (each with its converted variants), then any other converted model in the cache. */
export async function modelList(): Promise<ModelListEntry[]> {
  const converted = await Promise.all((await convertedModels()).map(withSize));
  const known = await knownModels();
  const entries: ModelListEntry[] = known.map((m) => ({
    name: m.name,
    description: m.description,
    default: m.default === true,
    weights: `${m.weights.repo}@${m.weights.revision}`,
    processor: `${m.processor.repo}@${m.processor.revision}`,
    converted: converted.filter((c) => c.manifest.name === m.name),
  }));
  const knownNames = new Set(known.map((m) => m.name));
  for (const c of converted.filter((x) => !knownNames.has(x.manifest.name))) {
    const existing = entries.find((e) => e.name === c.manifest.name);
    if (existing) existing.converted.push(c);
    else entries.push({ name: c.manifest.name, description: describeSource(c.manifest), default: false, converted: [c] });
  }
  return entries;
}

function describeSource(manifest: ModelManifest): string {
  const { repo, revision, dir } = manifest.source;
  return repo ? `converted from ${repo}${revision ? `@${revision}` : ''}` : `converted from ${dir ?? 'a local checkpoint'}`;
}

// ---- info ----

export interface ModelInfoResult {
  name: string;
  known?: KnownModel;
  /** The converted variants (precisions) found; empty when the model has not been pulled yet. */
  converted: ConvertedModel[];
}

export async function modelInfo(opts: { model: string }): Promise<ModelInfoResult> {
  const source = await identifyModel(opts.model);
  if (source.kind === 'converted') {
    const converted = await withSize({ dir: source.dir, manifest: await readModelManifest(source.dir) });
    return { name: converted.manifest.name, converted: [converted] };
  }
  if (source.kind === 'checkpoint') {
    throw new ModelError(`${source.dir} is a Hugging Face checkpoint, not a converted model; run \`pickscore model convert ${source.dir} --out <dir>\` first`);
  }
  const name = source.kind === 'known' ? source.model.name : source.repo;
  const converted = (await modelList()).find((e) => e.name === name)?.converted ?? [];
  return { name, known: source.kind === 'known' ? source.model : undefined, converted };
}

// ---- verify ----

export interface VerifyCheck { name: string; ok: boolean; skipped?: boolean; detail: string }
export interface ModelVerifyResult { dir: string; name: string; precision: Precision; ok: boolean; checks: VerifyCheck[] }

/** The files of the folder against the checksums written at conversion time. */
async function checkOutputFiles(dir: string): Promise<VerifyCheck> {
  let listing: string;
  try {
    listing = await readRegularTextFile(path.join(dir, CHECKSUM_FILE), READ_LIMITS.config, 'a checksum list');
  } catch (err) {
    // Without the list nothing proves the encoders are the files that were converted: a failure, not a skip.
    const missing = err instanceof FileReadError && err.code === 'ENOENT';
    return { name: 'files', ok: false, detail: missing
      ? `${CHECKSUM_FILE} is missing, so the files cannot be checked; convert the model again (pickscore model convert, or model pull) to write it`
      : `cannot read ${CHECKSUM_FILE}: ${readFailureText(err)}` };
  }
  const problems: string[] = [];
  const lines = listing.split('\n').filter((l) => l.trim() !== '');
  for (const [i, line] of lines.entries()) {
    const match = /^([0-9a-f]{64}) {2}(.+)$/.exec(line);
    if (!match) {
      problems.push(`${CHECKSUM_FILE}:${i + 1}: not a "<sha256>  <file>" line`);
      continue;
    }
    const actual = await sha256File(path.join(dir, match[2])).catch((err: unknown) => `unreadable (${readFailureText(err)})`);
    if (actual !== match[1]) problems.push(`${match[2]}: ${actual.length === 64 ? `sha256 ${actual}, expected ${match[1]}` : actual}`);
  }
  return problems.length === 0
    ? { name: 'files', ok: true, detail: `${lines.length} files match ${CHECKSUM_FILE}` }
    : { name: 'files', ok: false, detail: problems.join('; ') };
}

/** The checkpoint the model was converted from, when it is still on disk (the Hub cache keeps it). */
async function checkSourceFiles(manifest: ModelManifest): Promise<VerifyCheck> {
  const dir = manifest.source.dir;
  if (!dir || !(await stat(dir).then((s) => s.isDirectory(), () => false))) {
    return { name: 'source', ok: true, skipped: true, detail: `the source checkpoint ${dir ?? ''} is no longer on disk`.trim() };
  }
  const problems: string[] = [];
  for (const file of manifest.source.files) {
    const full = path.join(dir, file.name);
    const size = await stat(full).then((s) => s.size, () => -1);
    if (size !== file.size) problems.push(`${file.name}: ${size < 0 ? 'missing' : `${size} bytes, expected ${file.size}`}`);
    else if ((await sha256File(full)) !== file.sha256) problems.push(`${file.name}: sha256 differs from the one recorded at conversion`);
  }
  return problems.length === 0
    ? { name: 'source', ok: true, detail: `${manifest.source.files.length} source files in ${dir} match the manifest` }
    : { name: 'source', ok: false, detail: problems.join('; ') };
}

/** One prompt and one image through the encoders on CPU: the outputs must have the manifest's width and be finite. */
async function smokeInference(dir: string, manifest: ModelManifest): Promise<VerifyCheck> {
  const { openEncoders } = await import('../encoder/session.js');
  const { ClipTokenizer } = await import('../tokenizer/clip-tokenizer.js');
  const tokenizer = await ClipTokenizer.fromDir(dir);
  const sessions = await openEncoders(dir, manifest, { device: { kind: 'cpu' } });
  try {
    const text = await sessions.encodeText(tokenizer.encodeBatch(['a photo of a cat']).inputIds, 1);
    const size = manifest.image.imageSize;
    const image = await sessions.encodeImages(new Float32Array(3 * size * size), 1); // the mean colour, once normalised
    const problems = [
      ...embeddingProblems('text', text, manifest.text.embedDim),
      ...embeddingProblems('image', image, manifest.image.embedDim),
    ];
    if (problems.length > 0) return { name: 'inference', ok: false, detail: problems.join('; ') };
    const score = manifest.logitScale * cosine(text, image);
    return { name: 'inference', ok: true, detail: `text and image encoders run on CPU (${sessions.executionProvider}); smoke score ${score.toFixed(3)}` };
  } finally {
    await sessions.close();
  }
}

function embeddingProblems(tower: string, v: Float32Array, dim: number): string[] {
  if (v.length !== dim) return [`${tower} embedding has ${v.length} values, the manifest says ${dim}`];
  if (!v.every(Number.isFinite)) return [`${tower} embedding holds NaN or infinite values`];
  if (v.every((x) => x === 0)) return [`${tower} embedding is all zeros`];
  return [];
}

function cosine(a: Float32Array, b: Float32Array): number {
  let dot = 0, na = 0, nb = 0;
  for (let i = 0; i < a.length; i++) {
    dot += a[i] * b[i];
    na += a[i] * a[i];
    nb += b[i] * b[i];
  }
  return dot / Math.sqrt(na * nb);
}

async function verifyFolder(dir: string, opts: { inference: boolean }): Promise<ModelVerifyResult> {
  let manifest: ModelManifest;
  try {
    manifest = await readModelManifest(dir);
  } catch (err) {
    return { dir, name: path.basename(dir), precision: 'fp32', ok: false, checks: [{ name: 'manifest', ok: false, detail: (err as Error).message }] };
  }
  const checks: VerifyCheck[] = [{ name: 'manifest', ok: true, detail: `${MANIFEST_FILE} is valid and every file it lists is present` }];
  checks.push(await checkOutputFiles(dir));
  checks.push(await checkSourceFiles(manifest));
  if (opts.inference) {
    checks.push(await smokeInference(dir, manifest).catch((err: unknown) => ({ name: 'inference', ok: false, detail: (err as Error).message })));
  }
  return { dir, name: manifest.name, precision: manifest.precision, ok: checks.every((c) => c.ok), checks };
}

/**
 * Verifies a converted folder, or every converted variant of a named model: the manifest, the files
 * against their checksums, the source checkpoint against its recorded hashes, and (unless disabled) a
 * smoke inference.
 */
export async function modelVerify(opts: { model: string; inference?: boolean }): Promise<ModelVerifyResult[]> {
  const inference = opts.inference !== false;
  const source = await identifyModel(opts.model);
  if (source.kind === 'converted') return [await verifyFolder(source.dir, { inference })];
  const { converted } = await modelInfo({ model: opts.model });
  if (converted.length === 0) throw new ModelError(`Model ${opts.model} has not been converted yet; run \`pickscore model pull ${opts.model}\``);
  const results: ModelVerifyResult[] = [];
  for (const c of converted) results.push(await verifyFolder(c.dir, { inference }));
  return results;
}

// ---- convert ----

export interface ModelConvertOptions {
  src: string;
  out: string;
  precision: Precision;
  attention?: AttentionImpl;
  tokenizerDir?: string;
  name?: string;
  onProgress?: (done: number, total: number) => void;
  /** open_clip architecture of open_clip weights without open_clip_config.json (`--open-clip-model`). */
  openClipArchitecture?: string;
  /** An image head's `.pth` (the LAION aesthetic predictor) appended to the image graph (`--head`). */
  head?: string;
}

/** A folder the user named must exist and be a folder: a missing path is an input error, not a broken model. */
async function requireFolder(dir: string, role: string): Promise<void> {
  const found = await stat(dir).then((s) => s, (err: NodeJS.ErrnoException) => err);
  if (found instanceof Error) {
    throw new InputError(found.code === 'ENOENT' ? `${role} ${path.resolve(dir)} does not exist` : `${role} ${path.resolve(dir)} cannot be read (${found.code ?? found.message})`, { cause: found });
  }
  if (!found.isDirectory()) throw new InputError(`${role} ${path.resolve(dir)} is not a folder`);
}

/** A file the user named must exist and be a regular file (not a FIFO, a device or a folder). */
async function requireRegularFile(file: string, role: string): Promise<void> {
  const found = await stat(file).then((s) => s, (err: NodeJS.ErrnoException) => err);
  if (found instanceof Error) {
    throw new InputError(found.code === 'ENOENT' ? `${role} ${path.resolve(file)} does not exist` : `${role} ${path.resolve(file)} cannot be read (${found.code ?? found.message})`, { cause: found });
  }
  if (!found.isFile()) throw new InputError(`${role} ${path.resolve(file)} is not a regular file`);
}

/** Converts a checkpoint folder into `out`, checksums included (the converter writes a temporary folder and renames it). */
export async function modelConvert(opts: ModelConvertOptions): Promise<ConvertedModel> {
  const precision = parsePrecision(opts.precision);
  const attention = parseAttention(opts.attention ?? 'plain');
  await requireFolder(opts.src, 'The checkpoint folder');
  if (opts.tokenizerDir !== undefined) await requireFolder(opts.tokenizerDir, 'The tokenizer folder (--tokenizer)');
  if (opts.head !== undefined) await requireRegularFile(opts.head, 'The head file (--head)');
  const manifest = await convertCheckpoint(opts.src, { outDir: opts.out, precision, attention,
    tokenizerDir: opts.tokenizerDir, name: opts.name, onProgress: opts.onProgress, checksums: true, openClipArchitecture: opts.openClipArchitecture, head: opts.head });
  return withSize({ dir: path.resolve(opts.out), manifest });
}
