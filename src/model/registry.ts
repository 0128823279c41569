/**
 * Where models live and how a name becomes a converted model folder.
 *
 *   $PICKSCORE_HOME/models/<key>/     converted models (text.onnx, image.onnx, pickscore-model.json, tokenizer files)
 *   <package>/models/*.json           the known models: which Hub repositories hold their weights and processor
 *
 * resolveModel accepts a converted folder, a Hugging Face checkpoint folder, a known model name, or
 * `org/repo[@revision]`. Hub files stay in the Hub cache (see hub.ts). Conversion goes into a temporary folder that is renamed into place, and a lock
 * file makes a second process wait for the first instead of downloading and converting the same model again.
 */
import { createHash } from 'node:crypto';
import { readdir, rename, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { InputError, ModelError, UsageError, expectedMessage } from '../errors.js';
import type { AttentionImpl, Precision } from '../model-format.js';
import { convertCheckpoint } from '../convert/convert.js';
import {
  HubNotFoundError, HubOfflineError, HubUnreachableError, REPO_ID_SOURCE, exists, hubDownload, withLockFile, type HubDownloadOptions, type HubProgress, type HubRetry,
} from './hub.js';
import { MANIFEST_FILE, PREPROCESSOR_FILE, TOKENIZER_FILES, readModelManifest, type ModelManifest } from '../model-format.js';
import { readJsonFile } from '../io/json-file.js';
import { READ_LIMITS } from '../io/regular-file.js';
import { makeDirs } from '../io/make-dirs.js';
import { headsHome, modelsHome } from './home.js';
import { sha256File } from '../io/file-hash.js';

export { embeddingsHome, modelsHome, pickscoreHome } from './home.js';

export interface KnownModel {
  name: string;
  description: string;
  default?: boolean;
  weights: { repo: string; revision: string; files: string[] };
  processor: { repo: string; revision: string; files: string[] };
  /** open_clip weights without open_clip_config.json (HPSv2's .pt): the architecture whose dimensions the converter knows. */
  openClip?: { architecture: string };
  /**
   * A head appended to the image graph (the LAION aesthetic predictor), which is not on the Hub: its file
   * is looked for in $PICKSCORE_HOME/heads/ and checked against its SHA-256 before conversion.
   */
  head?: { file: string; url: string; sha256: string };
}

export interface ResolveOptions {
  precision: Precision;
  attention?: AttentionImpl;
  /** false: use only what is already converted; never download or convert. */
  pull?: boolean;
  onProgress?: (e: HubProgress) => void;
  onRetry?: (e: HubRetry) => void;
  /** Aborting stops a download at once, keeping its bytes for the next run (InterruptedError). */
  signal?: AbortSignal;
}

/** What a download reports as it goes: bytes, and the pauses before another try. */
type DownloadCallbacks = Pick<HubDownloadOptions, 'onProgress' | 'onRetry' | 'signal'>;

/** A repository that lacks model.safetensors is fetched as pytorch_model.bin, as transformers does. */
const WEIGHT_FALLBACKS: Readonly<Record<string, string>> = { 'model.safetensors': 'pytorch_model.bin' };
/** Processor files a Hub repository given as `org/repo` may hold; whichever exist are fetched. */
const PROCESSOR_FILES = [PREPROCESSOR_FILE, ...TOKENIZER_FILES];
const HUB_REPO_PATTERN = new RegExp(String.raw`^(${REPO_ID_SOURCE})(?:@([\w./-]+))?$`);

/**
 * The package's models/ folder. From dist/model/registry.js it is ../../models; walking up also finds it
 * from the test build (build/src/model/registry.js).
 */
async function knownModelsDir(): Promise<string> {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const candidate = path.join(dir, 'models');
    try {
      if ((await readdir(candidate)).some((f) => f.endsWith('.json'))) return candidate;
    } catch {
      // not here: keep walking up
    }
    const parent = path.dirname(dir);
    if (parent === dir) throw new ModelError(`The known-model manifests (models/*.json) were not found above ${fileURLToPath(import.meta.url)}; the package is incomplete`);
    dir = parent;
  }
}

function parseKnownModel(json: unknown, file: string): KnownModel {
  const fail = (expected: string, field: string, value: unknown): never => {
    throw new ModelError(`${file}: ${expectedMessage(expected, field, value)}`);
  };
  const obj = (v: unknown, field: string) => (typeof v === 'object' && v !== null && !Array.isArray(v) ? v as Record<string, unknown> : fail('an object', field, v));
  const str = (v: unknown, field: string) => (typeof v === 'string' && v !== '' ? v : fail('a non-empty string', field, v));
  const source = (v: unknown, field: string) => {
    const s = obj(v, field);
    const files = Array.isArray(s.files) && s.files.length > 0 ? s.files.map((f, i) => str(f, `${field}.files[${i}]`)) : fail('a non-empty array of file names', `${field}.files`, s.files);
    return { repo: str(s.repo, `${field}.repo`), revision: str(s.revision, `${field}.revision`), files };
  };
  const m = obj(json, 'the model manifest');
  if (m.default !== undefined && typeof m.default !== 'boolean') fail('a boolean', 'default', m.default);
  const openClip = m.openClip === undefined ? undefined : { architecture: str(obj(m.openClip, 'openClip').architecture, 'openClip.architecture') };
  const head = m.head === undefined ? undefined : (() => {
    const h = obj(m.head, 'head');
    const file = str(h.file, 'head.file');
    if (file !== path.basename(file) || file.startsWith('.')) fail('a file name', 'head.file', file);
    const sha256 = str(h.sha256, 'head.sha256');
    if (!/^[0-9a-f]{64}$/.test(sha256)) fail('a SHA-256 hex digest', 'head.sha256', sha256);
    return { file, url: str(h.url, 'head.url'), sha256 };
  })();
  return {
    name: str(m.name, 'name'),
    description: str(m.description, 'description'),
    ...(m.default === true ? { default: true } : {}),
    weights: source(m.weights, 'weights'),
    processor: source(m.processor, 'processor'),
    ...(openClip ? { openClip } : {}),
    ...(head ? { head } : {}),
  };
}

export async function knownModels(): Promise<KnownModel[]> {
  const dir = await knownModelsDir();
  const files = (await readdir(dir)).filter((f) => f.endsWith('.json')).sort();
  const models: KnownModel[] = [];
  for (const name of files) {
    const file = path.join(dir, name);
    const json = await readJsonFile(file, { what: 'a model description', maxBytes: READ_LIMITS.config, error: ModelError, unreadable: (reason) => `${file} is not valid JSON: ${reason}` });
    models.push(parseKnownModel(json, file));
  }
  return models;
}

export async function defaultModel(): Promise<KnownModel> {
  const model = (await knownModels()).find((m) => m.default);
  if (!model) throw new ModelError('No known model is marked as the default in models/*.json');
  return model;
}

/** What a model name or folder refers to, before anything is downloaded or converted. */
export type ModelSource =
  | { kind: 'converted'; dir: string }
  | { kind: 'checkpoint'; dir: string }
  | { kind: 'known'; model: KnownModel }
  | { kind: 'hub'; repo: string; revision: string };

async function isDirectory(p: string): Promise<boolean> {
  try {
    return (await stat(p)).isDirectory();
  } catch {
    return false;
  }
}

/** `./x`, `/x`, `~/x`, `C:\x`, or anything with a separator that cannot be `org/name[@rev]`. */
function looksLikePath(s: string): boolean {
  if (/^[.~/]/.test(s) || /^[A-Za-z]:[\\/]/.test(s)) return true;
  return s.includes(path.sep) && !HUB_REPO_PATTERN.test(s);
}

export async function identifyModel(nameOrDir: string | undefined): Promise<ModelSource> {
  if (nameOrDir === undefined || nameOrDir === '') return { kind: 'known', model: await defaultModel() };
  if (await isDirectory(nameOrDir)) {
    const dir = path.resolve(nameOrDir);
    if (await exists(path.join(dir, MANIFEST_FILE))) return { kind: 'converted', dir };
    if (await exists(path.join(dir, 'config.json'))) return { kind: 'checkpoint', dir };
    throw new ModelError(`${dir} is neither a converted pickscore model (no ${MANIFEST_FILE}) nor a Hugging Face checkpoint (no config.json)`);
  }
  const models = await knownModels();
  const known = models.find((m) => m.name === nameOrDir);
  if (known) return { kind: 'known', model: known };
  if (looksLikePath(nameOrDir)) {
    const what = (await exists(nameOrDir)) ? 'is not a folder (a model is a converted folder or a checkpoint folder)' : 'does not exist';
    throw new InputError(`The model folder ${path.resolve(nameOrDir)} ${what}`);
  }
  const hub = HUB_REPO_PATTERN.exec(nameOrDir);
  if (hub) return { kind: 'hub', repo: hub[1], revision: hub[2] ?? 'main' };
  const names = models.map((m) => m.name).join(', ');
  throw new UsageError(expectedMessage(`a known model (${names}), a model folder, or a Hub repository "org/name[@revision]"`, 'the model', nameOrDir));
}

function slug(s: string): string {
  return s.replace(/[^\w.-]+/g, '--');
}

/** The folder under $PICKSCORE_HOME/models that a source converts into, one per precision and attention. */
export async function cacheKey(source: Exclude<ModelSource, { kind: 'converted' }>, precision: Precision, attention: AttentionImpl): Promise<string> {
  const variant = `${precision}${attention === 'plain' ? '' : `-${attention}`}`;
  if (source.kind === 'known') return `${source.model.name}--${variant}`;
  if (source.kind === 'hub') return `${slug(source.repo)}--${slug(source.revision)}--${variant}`;
  // A local checkpoint: keyed by its path and its files' sizes and times, so an edited checkpoint converts anew.
  const hash = createHash('sha256').update(source.dir);
  for (const name of (await readdir(source.dir)).sort()) {
    const s = await stat(path.join(source.dir, name));
    hash.update(`\0${name}\0${s.size}\0${s.mtimeMs}`);
  }
  return `local--${slug(path.basename(source.dir))}--${hash.digest('hex').slice(0, 12)}--${variant}`;
}

async function downloadWithFallback(repo: string, revision: string, files: string[], optionalFiles: string[], callbacks: DownloadCallbacks): Promise<string> {
  try {
    return await hubDownload({ repo, revision, files, optionalFiles, ...callbacks });
  } catch (err) {
    if (!(err instanceof HubNotFoundError) || !WEIGHT_FALLBACKS[err.file] || !files.includes(err.file)) throw err;
    const missing = err.file;
    const replaced = files.map((f) => (f === missing ? WEIGHT_FALLBACKS[missing] : f));
    return hubDownload({ repo, revision, files: replaced, optionalFiles, ...callbacks });
  }
}

/** The way forward when the Hub cannot be had: a model folder made from a checkpoint already on disk. */
const WITHOUT_NETWORK = 'Without network access, score with a local model: `--model <dir>` takes a model folder, and '
  + '`pickscore model convert <local checkpoint> --out <dir>` makes one from any local CLIPModel checkpoint (see "Without network access" in the README)';

/** A download that failed for want of the network says what to do instead. */
function withoutNetworkAdvice(err: unknown): unknown {
  const unreachable = err instanceof HubUnreachableError || (err instanceof ModelError && err.cause instanceof HubUnreachableError);
  if (unreachable) return new ModelError(`${err.message}. ${WITHOUT_NETWORK}`, { cause: err });
  if (err instanceof HubOfflineError) return new HubOfflineError(`${err.message}. ${WITHOUT_NETWORK}`, { cause: err });
  return err;
}

/**
 * Fetches the weights snapshot and the processor snapshot (another repository for PickScore; the same
 * snapshot for a plain `org/repo`). Both stay in the Hub cache, where the manifest's source.dir points.
 */
async function downloadSources(source: Extract<ModelSource, { kind: 'known' | 'hub' }>, callbacks: DownloadCallbacks): Promise<{ weightsDir: string; processorDir: string; repo: string; commit: string }> {
  if (source.kind === 'hub') {
    const dir = await downloadWithFallback(source.repo, source.revision, ['config.json', 'model.safetensors'], PROCESSOR_FILES, callbacks);
    return { weightsDir: dir, processorDir: dir, repo: source.repo, commit: path.basename(dir) };
  }
  const { weights, processor } = source.model;
  const weightsDir = await downloadWithFallback(weights.repo, weights.revision, weights.files, [], callbacks);
  const processorDir = await hubDownload({ repo: processor.repo, revision: processor.revision, files: processor.files, ...callbacks });
  return { weightsDir, processorDir, repo: weights.repo, commit: path.basename(weightsDir) };
}

/**
 * Converts into `<outDir>.tmp-<pid>-<random>` and renames it to outDir, so a crash never leaves a
 * half-written folder where a model should be. When another process renamed first, its folder is kept.
 */
export async function convertInto(srcDir: string, outDir: string, opts: { precision: Precision; attention: AttentionImpl; tokenizerDir?: string; name?: string;
  source?: { repo?: string; revision?: string }; onProgress?: (done: number, total: number) => void; openClipArchitecture?: string; head?: string }): Promise<ModelManifest> {
  const temp = `${outDir}.tmp-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
  await makeDirs(path.dirname(outDir));
  try {
    await convertCheckpoint(srcDir, { outDir: temp, ...opts, checksums: true });
    try {
      await rename(temp, outDir);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code !== 'ENOTEMPTY' && code !== 'EEXIST') throw err;
      if (!(await exists(path.join(outDir, MANIFEST_FILE)))) {
        throw new ModelError(`${outDir} exists but holds no ${MANIFEST_FILE}; remove it so that the model can be converted again`, { cause: err });
      }
    }
  } finally {
    await rm(temp, { recursive: true, force: true });
  }
  return readModelManifest(outDir);
}

async function readIfConverted(dir: string): Promise<{ dir: string; manifest: ModelManifest } | undefined> {
  if (!(await exists(path.join(dir, MANIFEST_FILE)))) return undefined;
  return { dir, manifest: await readModelManifest(dir) };
}

function displayName(source: Exclude<ModelSource, { kind: 'converted' }>): string {
  return source.kind === 'known' ? source.model.name : source.kind === 'hub' ? `${source.repo}@${source.revision}` : source.dir;
}

/**
 * Where a model is or would be converted, without downloading or converting anything: a converted
 * folder is its own place; anything else has a folder under $PICKSCORE_HOME/models.
 */
export async function locateModel(nameOrDir: string | undefined, opts: { precision: Precision; attention?: AttentionImpl }): Promise<{ source: ModelSource; dir: string }> {
  const source = await identifyModel(nameOrDir);
  if (source.kind === 'converted') return { source, dir: source.dir };
  return { source, dir: path.join(modelsHome(), await cacheKey(source, opts.precision, opts.attention ?? 'plain')) };
}

/** Every converted model under $PICKSCORE_HOME/models, in folder order; unreadable folders are left out. */
export async function convertedModels(): Promise<{ dir: string; manifest: ModelManifest }[]> {
  let names: string[];
  try {
    names = (await readdir(modelsHome())).sort();
  } catch {
    return [];
  }
  const found: { dir: string; manifest: ModelManifest }[] = [];
  for (const name of names) {
    const dir = path.join(modelsHome(), name);
    const converted = await readIfConverted(dir).catch(() => undefined);
    if (converted) found.push(converted);
  }
  return found;
}

/**
 * A converted folder as it is, whatever precision was asked (the caller decides whether that will do);
 * anything else in the variant asked for, converted into the cache on first use.
 */
export async function resolveModel(nameOrDir: string | undefined, opts: ResolveOptions): Promise<{ dir: string; manifest: ModelManifest; source: ModelSource }> {
  const { source, dir: target } = await locateModel(nameOrDir, opts);
  if (source.kind === 'converted') return { dir: target, manifest: await readModelManifest(target), source };
  const attention = opts.attention ?? 'plain';
  const variant = await convertedVariant(source, target, attention, nameOrDir, opts);
  const built = { precision: variant.manifest.precision, attention: variant.manifest.attention };
  // The cache folder's name says which variant it holds; a manifest that says otherwise would run another precision silently.
  if (built.precision !== opts.precision || built.attention !== attention) {
    throw new ModelError(`The cached model ${variant.dir} should hold ${opts.precision}/${attention} encoders, but its ${MANIFEST_FILE} says ${built.precision}/${built.attention}; remove the folder so that it is converted again`);
  }
  return { ...variant, source };
}

/**
 * A known model's head file, there and with the SHA-256 its description gives: a wrong or partial
 * download would convert into a model that scores without a word of warning.
 */
async function localHead(model: KnownModel): Promise<string> {
  const head = model.head!;
  const file = path.join(headsHome(), head.file);
  const fetchIt = `download ${head.url} to ${file} (SHA-256 ${head.sha256})`;
  const found = await stat(file).then((s) => s, () => undefined);
  if (!found?.isFile()) throw new ModelError(`${model.name} needs its head file, which is not on the Hugging Face Hub: ${fetchIt}, then run the command again`);
  const digest = await sha256File(file);
  if (digest !== head.sha256) throw new ModelError(`${file} has SHA-256 ${digest}, not the ${head.sha256} of ${model.name}'s head: ${fetchIt}`);
  return file;
}

/** The cache folder's converted model, converting (and downloading) it first when it is not there. */
async function convertedVariant(source: Exclude<ModelSource, { kind: 'converted' }>, target: string, attention: AttentionImpl,
  nameOrDir: string | undefined, opts: ResolveOptions): Promise<{ dir: string; manifest: ModelManifest }> {
  const cached = await readIfConverted(target);
  if (cached) return cached;
  if (opts.pull === false) {
    const pull = ['pickscore model pull', nameOrDir, `--precision ${opts.precision}`].filter(Boolean).join(' ');
    throw new ModelError(`Model ${displayName(source)} (${opts.precision}) is not converted yet (${target}); run \`${pull}\``);
  }
  return withLockFile(`${target}.lock`, () => readIfConverted(target), async () => {
    const name = source.kind === 'known' ? source.model.name : source.kind === 'hub' ? source.repo : path.basename(source.dir);
    const onConvert = (done: number, total: number) => opts.onProgress?.({ file: `convert ${name} (${opts.precision})`, done, total });
    if (source.kind === 'checkpoint') {
      const manifest = await convertInto(source.dir, target, { precision: opts.precision, attention, name, onProgress: onConvert });
      return { dir: target, manifest };
    }
    // The head is checked before anything is downloaded: without it the download would be for nothing.
    const head = source.kind === 'known' && source.model.head ? await localHead(source.model) : undefined;
    const fetched = await downloadSources(source, { onProgress: opts.onProgress, onRetry: opts.onRetry, signal: opts.signal }).catch((err: unknown) => {
      throw withoutNetworkAdvice(err);
    });
    const openClip = source.kind === 'known' && source.model.openClip ? { openClipArchitecture: source.model.openClip.architecture } : {};
    const manifest = await convertInto(fetched.weightsDir, target, { precision: opts.precision, attention, tokenizerDir: fetched.processorDir, name,
      source: { repo: fetched.repo, revision: fetched.commit }, onProgress: onConvert, ...openClip, ...(head ? { head } : {}) });
    return { dir: target, manifest };
  }, opts.signal);
}
