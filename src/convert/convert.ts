/**
 * Converts a Hugging Face CLIPModel checkpoint folder into a pickscore model folder: text.onnx,
 * image.onnx, the tokenizer (and preprocessor) files, and `pickscore-model.json`.
 *
 * Everything is written into a temporary sibling folder, the manifest last, and the folder is renamed
 * into place only when complete; on any failure it is removed. A folder that holds a manifest is
 * therefore always whole, and a later run can trust it.
 */
import { createHash, randomBytes } from 'node:crypto';
import { chmod, copyFile, mkdir, open, readdir, rename, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { Worker } from 'node:worker_threads';
import { ModelError, PickScoreError, UsageError, expectedMessage } from '../errors.js';
import { CLIP_PREPROCESS, preprocessConfigFromJson, type PreprocessConfig } from '../image/preprocess.js';
import { PICKSCORE_VERSION } from '../version.js';
import { isFile, openCheckpoint, type Checkpoint, type TensorEntry } from './checkpoint.js';
import { expectedClipTensors, readClipConfig, validateClipCheckpoint, type ClipConfig } from './clip-config.js';
import { graphRevision, writeClipTowerOnnx } from './clip-graph.js';
import {
  CHECKSUM_FILE, IMAGE_SCORE_OUTPUT, MANIFEST_FILE, PREPROCESSOR_FILE, TOKENIZER_FILES, type AttentionImpl, type ModelManifest, type Precision,
} from '../model-format.js';
import { ONNX_OPSET } from './onnx-builder.js';
import { openOpenClipSource, type OpenClipSource } from './open-clip-checkpoint.js';
import { OPEN_CLIP_ARCHITECTURES, isOpenClipArchitecture } from './open-clip-config.js';
import { readImageHead, type ImageHead } from './image-head.js';
import { decodeFloatTensor } from './onnx-tensors.js';
import { sha256File } from '../io/file-hash.js';
import { readJsonFile } from '../io/json-file.js';
import { READ_LIMITS, readFailureText } from '../io/regular-file.js';
import { makeDirs } from '../io/make-dirs.js';

export interface ConvertOptions {
  outDir: string;
  precision: Precision;
  attention?: AttentionImpl;
  /** Where the tokenizer and preprocessor files are, when the checkpoint folder lacks them (PickScore's do). */
  tokenizerDir?: string;
  name?: string;
  source?: { repo?: string; revision?: string };
  /** Bytes hashed and tensor bytes converted so far, of a total known up front. */
  onProgress?: (done: number, total: number) => void;
  /** Also write CHECKSUM_FILE, inside the folder before it is renamed into place, so no finished folder lacks it. */
  checksums?: boolean;
  /** An open_clip architecture (ViT-H-14, ...) for open_clip weights without open_clip_config.json, such as HPSv2's `.pt`. */
  openClipArchitecture?: string;
  /**
   * A head's `torch.save` file (the LAION aesthetic predictor's `.pth`), appended to the image graph: the
   * folder's image.onnx then also gives image_score, and the manifest says so.
   */
  head?: string;
}

export async function convertCheckpoint(srcDir: string, opts: ConvertOptions): Promise<ModelManifest> {
  checkOptions(opts);
  const source = path.resolve(srcDir);
  const outDir = path.resolve(opts.outDir);
  await checkReplaceable(outDir);
  // open_clip weights are read through an adapter that gives them transformers' names and shapes.
  const openClip = await openOpenClipSource(source, opts.openClipArchitecture);
  const config = openClip?.config ?? await readClipConfig(source);
  const checkpoint = openClip?.checkpoint ?? await openCheckpoint(source);
  let head: ImageHead | undefined;
  try {
    head = opts.head === undefined ? undefined : await readImageHead(path.resolve(opts.head));
    if (head && head.inFeatures !== config.projectionDim) {
      throw new ModelError(`The head ${head.file} takes ${head.inFeatures} features, but the checkpoint's image embedding has ${config.projectionDim}; it is a head for another model`);
    }
    validateClipCheckpoint(config, checkpoint, openClip?.configFile ?? path.join(source, 'config.json'));
    const found = await findSupportFiles([opts.tokenizerDir, source]);
    // An open_clip model's normalisation is its own config's, not a preprocessor_config.json found beside the tokenizer.
    const support = openClip ? { ...found, preprocessor: undefined } : found;
    const preprocess = openClip ? openClipPreprocess(openClip, config) : await readPreprocess(support.preprocessor, config);
    const logitScale = await readLogitScale(checkpoint);
    const sourceFiles = [...(openClip ? openClip.configFiles : [path.join(source, 'config.json')]), ...checkpoint.files, ...(head ? [head.file] : [])];
    const progress = progressCounter(opts.onProgress, (await totalBytes(sourceFiles)) + towerBytes(config, checkpoint));
    const attention = opts.attention ?? 'plain';
    const manifest = await writeModelFolder(outDir, async (tmpDir) => {
      // Hashing reads every source byte and the towers mostly write: run side by side, they share the time.
      const [hashed] = await settleAll([
        hashFiles(sourceFiles, source, progress.add),
        writeTowers(tmpDir, { config, checkpoint: withReadProgress(checkpoint, progress.add), precision: opts.precision, attention, head }),
      ]);
      const built = buildManifest({ opts, source, config, hashed, attention, logitScale, preprocess, tokenizerFiles: support.tokenizer.map((f) => path.basename(f)),
        ...(openClip ? { tokenizerMode: 'open_clip' as const } : {}),
        ...(head ? { imageScore: { output: IMAGE_SCORE_OUTPUT, outFeatures: head.outFeatures, head: path.basename(head.file) } } : {}) });
      await copySupportFiles(tmpDir, support);
      const manifestPath = path.join(tmpDir, MANIFEST_FILE);
      await writingFile(manifestPath, () => writeFile(manifestPath, `${JSON.stringify(built, null, 2)}\n`));
      if (opts.checksums) await writeChecksums(tmpDir);
      return built;
    });
    progress.finish();
    return manifest;
  } finally {
    await Promise.allSettled([checkpoint.close(), head?.close()]);
  }
}

/** Both towers at once: one's weight transforms overlap the other's writes. */
async function writeTowers(tmpDir: string, { head, ...towers }: { config: ClipConfig; checkpoint: Checkpoint; precision: Precision; attention: AttentionImpl; head: ImageHead | undefined }): Promise<void> {
  await settleAll((['text', 'image'] as const).map((tower) => {
    const outPath = path.join(tmpDir, `${tower}.onnx`);
    return writingFile(outPath, () => writeClipTowerOnnx({ tower, outPath, ...towers, ...(tower === 'image' && head ? { head } : {}) }));
  }));
}

async function copySupportFiles(tmpDir: string, support: SupportFiles): Promise<void> {
  for (const file of [...support.tokenizer, ...(support.preprocessor ? [support.preprocessor] : [])]) {
    const target = path.join(tmpDir, path.basename(file));
    // Copies keep the source's mode; the Hub cache's files are read-only, the model folder's need not be.
    await writingFile(target, async () => {
      await copyFile(file, target);
      await chmod(target, 0o644);
    });
  }
}

/** Like Promise.all, but waits for every task to finish before failing, so none writes into a removed folder. */
async function settleAll<T extends readonly unknown[]>(tasks: { [K in keyof T]: Promise<T[K]> }): Promise<T> {
  const settled = await Promise.allSettled(tasks);
  const failed = settled.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed) throw failed.reason;
  return settled.map((r) => (r as PromiseFulfilledResult<unknown>).value) as unknown as T;
}

/** The precision and attention are typed values, checked where the options entered (src/commands/model.ts). */
function checkOptions(opts: ConvertOptions): void {
  if (typeof opts.outDir !== 'string' || opts.outDir.length === 0) throw new UsageError(expectedMessage('a folder path', 'the output folder', opts.outDir));
  if (opts.openClipArchitecture !== undefined && !isOpenClipArchitecture(opts.openClipArchitecture)) {
    throw new UsageError(expectedMessage(Object.keys(OPEN_CLIP_ARCHITECTURES).join(' | '), 'the open_clip architecture', opts.openClipArchitecture));
  }
}

/** An existing output folder is replaced only when it is empty or a pickscore model folder itself. */
async function checkReplaceable(outDir: string): Promise<void> {
  let names: string[];
  try {
    names = await readdir(outDir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw new UsageError(`Cannot use ${outDir} as the output folder: ${(err as Error).message}`, { cause: err });
  }
  if (names.length > 0 && !names.includes(MANIFEST_FILE)) {
    throw new UsageError(`Refusing to replace ${outDir}: it is not empty and holds no ${MANIFEST_FILE}, so it is not a pickscore model folder`);
  }
}

interface SupportFiles {
  tokenizer: string[];
  preprocessor: string | undefined;
}

/** Each file is taken from the first folder that has it; a tokenizer needs tokenizer.json or vocab.json + merges.txt. */
async function findSupportFiles(dirs: (string | undefined)[]): Promise<SupportFiles> {
  const searched = dirs.filter((d): d is string => d !== undefined).map((d) => path.resolve(d));
  const find = async (name: string): Promise<string | undefined> => {
    for (const dir of searched) if (await isFile(path.join(dir, name))) return path.join(dir, name);
    return undefined;
  };
  const tokenizer: string[] = [];
  for (const name of TOKENIZER_FILES) {
    const found = await find(name);
    if (found) tokenizer.push(found);
  }
  const names = new Set(tokenizer.map((f) => path.basename(f)));
  if (!names.has('tokenizer.json') && !(names.has('vocab.json') && names.has('merges.txt'))) {
    throw new ModelError(
      `No tokenizer found in ${searched.join(' or ')}: expected tokenizer.json, or vocab.json and merges.txt. Name a folder that has them with `
        + '`--tokenizer <dir>` (`tokenizerDir` in the API); for PickScore, the processor folder of laion/CLIP-ViT-H-14-laion2B-s32B-b79K',
    );
  }
  return { tokenizer, preprocessor: await find(PREPROCESSOR_FILE) };
}

/** Without a preprocessor_config.json, CLIP's processor settings at the config's image size. */
async function readPreprocess(file: string | undefined, config: ClipConfig): Promise<PreprocessConfig> {
  const size = config.vision.imageSize;
  if (!file) return { ...CLIP_PREPROCESS, mean: [...CLIP_PREPROCESS.mean], std: [...CLIP_PREPROCESS.std], shortestEdge: size, cropHeight: size, cropWidth: size };
  const json = await readJsonFile(file, { what: 'a config file', maxBytes: READ_LIMITS.config, error: ModelError, unreadable: (reason) => `${file}: ${reason}`, notJson: (detail) => `${file}: ${detail}` });
  let preprocess: PreprocessConfig;
  try {
    preprocess = preprocessConfigFromJson(json);
  } catch (err) {
    throw new ModelError(`${file}: ${readFailureText(err)}`, { cause: err });
  }
  if (preprocess.cropHeight !== size || preprocess.cropWidth !== size) {
    throw new ModelError(
      `${file}: crop_size ${preprocess.cropWidth}x${preprocess.cropHeight} disagrees with vision_config.image_size ${size} of the model`,
    );
  }
  return preprocess;
}

/** open_clip's eval transform with a shortest-side resize, as CLIP's processor: its mean and std at the model's image size. */
function openClipPreprocess(source: OpenClipSource, config: ClipConfig): PreprocessConfig {
  const size = config.vision.imageSize;
  return { ...CLIP_PREPROCESS, mean: [...source.mean], std: [...source.std], shortestEdge: size, cropHeight: size, cropWidth: size };
}

async function totalBytes(files: string[]): Promise<number> {
  let sum = 0;
  for (const file of files) sum += (await stat(file)).size;
  return sum;
}

/** The tensor bytes the two towers read, for progress. */
function towerBytes(config: ClipConfig, checkpoint: Checkpoint): number {
  return expectedClipTensors(config).reduce((sum, t) => sum + (checkpoint.tensors.get(t.name)?.byteLength ?? 0), 0);
}

function progressCounter(onProgress: ConvertOptions['onProgress'], total: number) {
  let done = 0;
  return {
    add: (bytes: number): void => {
      done = Math.min(total, done + bytes);
      onProgress?.(done, total);
    },
    finish: (): void => onProgress?.(total, total),
  };
}

/** A view of the checkpoint whose reads report their size. */
function withReadProgress(checkpoint: Checkpoint, onRead: (bytes: number) => void): Checkpoint {
  const tensors = new Map<string, TensorEntry>();
  for (const [name, entry] of checkpoint.tensors) {
    tensors.set(name, {
      ...entry,
      read: async () => {
        const bytes = await entry.read();
        onRead(bytes.length);
        return bytes;
      },
    });
  }
  return { ...checkpoint, tensors };
}

/**
 * SHA-256 of each source file, hashed on a worker thread: the main thread's time goes to the weight
 * transforms, and hashing a 3.9 GB checkpoint is seconds of CPU of its own.
 */
async function hashFiles(files: string[], root: string, onBytes: (n: number) => void): Promise<ModelManifest['source']['files']> {
  const digests = await new Promise<{ size: number; sha256: string }[]>((resolve, reject) => {
    const worker = new Worker(HASH_WORKER_SOURCE, { eval: true, workerData: files });
    let result: { size: number; sha256: string }[] | undefined;
    worker.on('message', (message: HashWorkerMessage) => {
      if (!('bytes' in message)) {
        result = message.digests;
        return;
      }
      try {
        onBytes(message.bytes);
      } catch (err) {
        // A progress callback that throws stops the conversion, as it would on the main thread.
        reject(err);
        void worker.terminate();
      }
    });
    worker.on('error', (err) => reject(new ModelError(`Cannot hash the source files: ${err.message}`, { cause: err })));
    worker.on('exit', (code) => (result ? resolve(result) : reject(new ModelError(`Hashing the source files stopped (exit code ${code})`))));
  });
  // A file from outside the checkpoint folder (a head's .pth) is named by itself, not by where it lies.
  const nameOf = (file: string) => {
    const relative = path.relative(root, file);
    return relative.startsWith('..') || path.isAbsolute(relative) ? path.basename(file) : relative;
  };
  return files.map((file, i) => ({ name: nameOf(file), ...digests[i] }));
}

type HashWorkerMessage = { bytes: number } | { digests: { size: number; sha256: string }[] };

/**
 * Streams each file through sha256, reporting the bytes as it goes. Only dynamic imports: an eval
 * worker is CommonJS or an ES module depending on the parent's --input-type.
 */
const HASH_WORKER_SOURCE = `
(async () => {
  const { createHash } = await import('node:crypto');
  const { createReadStream } = await import('node:fs');
  const { parentPort, workerData } = await import('node:worker_threads');
  const digests = [];
  for (const file of workerData) {
    const hash = createHash('sha256');
    let size = 0;
    for await (const chunk of createReadStream(file, { highWaterMark: 4 << 20 })) {
      hash.update(chunk);
      size += chunk.length;
      parentPort.postMessage({ bytes: chunk.length });
    }
    digests.push({ size, sha256: hash.digest('hex') });
  }
  parentPort.postMessage({ digests });
})();   // a rejection ends the worker with an 'error' event, which rejects hashFiles
`;

/** The trained temperature is the `logit_scale` tensor; config.json's logit_scale_init_value is only its start. */
async function readLogitScale(checkpoint: Checkpoint): Promise<number> {
  const entry = checkpoint.tensors.get('logit_scale');
  if (!entry) throw new ModelError(`Tensor logit_scale is missing from ${checkpoint.files.join(', ')}`);
  const [value] = decodeFloatTensor(await entry.read(), entry.dtype, entry.name);
  const scale = Math.exp(value);
  if (!Number.isFinite(scale) || !(scale > 0)) throw new ModelError(`Tensor logit_scale in ${entry.file} holds ${value}, whose exp() is not a usable scale`);
  return scale;
}

function buildManifest(parts: {
  opts: ConvertOptions; source: string; config: ClipConfig; hashed: ModelManifest['source']['files']; attention: AttentionImpl;
  logitScale: number; preprocess: PreprocessConfig; tokenizerFiles: string[];
  tokenizerMode?: ModelManifest['tokenizerMode']; imageScore?: ModelManifest['imageScore'];
}): ModelManifest {
  const { opts, source, config, hashed, attention } = parts;
  return {
    schema: 1,
    name: opts.name ?? opts.source?.repo ?? path.basename(source),
    fingerprint: fingerprint(hashed, opts.precision, attention),
    source: { ...opts.source, dir: source, files: hashed },
    logitScale: parts.logitScale,
    precision: opts.precision,
    attention,
    text: { file: 'text.onnx', contextLength: config.text.maxPositionEmbeddings, embedDim: config.projectionDim },
    image: { file: 'image.onnx', imageSize: config.vision.imageSize, embedDim: config.projectionDim },
    preprocess: parts.preprocess,
    tokenizerFiles: parts.tokenizerFiles,
    pickscoreVersion: PICKSCORE_VERSION,
    onnxOpset: ONNX_OPSET,
    ...(parts.tokenizerMode ? { tokenizerMode: parts.tokenizerMode } : {}),
    ...(parts.imageScore ? { imageScore: parts.imageScore } : {}),
  };
}

/** Records every file of a converted folder in CHECKSUM_FILE, so `model verify` can find a damaged one later. */
async function writeChecksums(dir: string): Promise<void> {
  const names = (await readdir(dir)).filter((n) => n !== CHECKSUM_FILE).sort();
  const lines: string[] = [];
  for (const name of names) if ((await stat(path.join(dir, name))).isFile()) lines.push(`${await sha256File(path.join(dir, name))}  ${name}`);
  await writeFile(path.join(dir, CHECKSUM_FILE), `${lines.join('\n')}\n`);
}

/**
 * Identifies the converted weights: the same sources at the same precision, attention and graph revision
 * give the same value. Revision 1 is left out, so the first graphs keep the fingerprints they had.
 */
export function fingerprint(files: ModelManifest['source']['files'], precision: Precision, attention: AttentionImpl): string {
  const sources = [...files].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0)).map((f) => `${f.name}:${f.sha256}`);
  const graph = graphRevision(precision, attention);
  return createHash('sha256').update(JSON.stringify({ sources, precision, attention, ...(graph > 1 ? { graph } : {}) })).digest('hex');
}

/**
 * Runs `fill` on a fresh temporary sibling of `outDir`, then renames it into place, replacing an
 * earlier model folder. On failure the temporary folder is removed and `outDir` is left as it was.
 */
async function writeModelFolder<T>(outDir: string, fill: (tmpDir: string) => Promise<T>): Promise<T> {
  const tmpDir = `${outDir}.partial-${process.pid}-${randomBytes(4).toString('hex')}`;
  await writingFile(tmpDir, () => makeDirs(path.dirname(outDir)));
  await writingFile(tmpDir, () => mkdir(tmpDir));
  try {
    const result = await fill(tmpDir);
    await syncFolder(tmpDir);
    await replaceFolder(tmpDir, outDir);
    await syncFolder(path.dirname(outDir), { contents: false });
    return result;
  } catch (err) {
    await rm(tmpDir, { recursive: true, force: true });
    throw err;
  }
}

/**
 * Flushes the folder's files and the folder itself to disk: without it, after a power loss the renamed
 * folder could hold a manifest but empty encoders, which a later run would trust.
 */
async function syncFolder(dir: string, opts: { contents: boolean } = { contents: true }): Promise<void> {
  const paths = opts.contents ? (await readdir(dir)).map((name) => path.join(dir, name)) : [];
  for (const target of [...paths, dir]) {
    await writingFile(target, async () => {
      const handle = await open(target, 'r');
      try {
        await handle.sync();
      } finally {
        await handle.close();
      }
    });
  }
}

async function replaceFolder(from: string, to: string): Promise<void> {
  const previous = `${to}.previous-${process.pid}-${randomBytes(4).toString('hex')}`;
  let moved = false;
  try {
    await rename(to, previous);
    moved = true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw new ModelError(`Cannot replace ${to}: ${(err as Error).message}`, { cause: err });
  }
  try {
    await writingFile(to, () => rename(from, to));
  } catch (err) {
    if (moved) await rename(previous, to);
    throw err;
  }
  if (moved) await rm(previous, { recursive: true, force: true });
}

/** System errors while writing `file` (a full disk above all) become a ModelError that names it. */
export async function writingFile<T>(file: string, write: () => Promise<T>): Promise<T> {
  try {
    return await write();
  } catch (err) {
    if (err instanceof PickScoreError || typeof (err as NodeJS.ErrnoException).code !== 'string') throw err;
    const code = (err as NodeJS.ErrnoException).code;
    const reason = code === 'ENOSPC' || code === 'EDQUOT' ? 'the disk is full' : (err as Error).message;
    throw new ModelError(`Cannot write ${file}: ${reason} (${code}); nothing was left half-written`, { cause: err });
  }
}

