/**
 * The one resolve step of the scoring options: what a caller gives (the CLI's flags, the library's
 * options) is checked and turned here, once, into typed values (the device, the precision, how images
 * are read, batch size, threads, the cache folder). Everything below takes those values and checks
 * nothing again. Each option is checked by one function: parseDevice (encoder/device.ts),
 * parsePrecision (model-format.ts), parseExifMode and parseResizeMode (image/image.ts), and the counts
 * here; the CLI's flag choices are the same const arrays.
 */
import os from 'node:os';
import { check, is, positiveInteger } from '../checks.js';
import { UsageError, expectedMessage } from '../errors.js';
import { parseDevice, type ALL_DEVICES, type Device, type DeviceRequest } from '../encoder/device.js';
import { parsePrecision, type PrecisionChoice } from '../model-format.js';
import { DEFAULT_SCORER, parseScorers, type ScorerDescription, type ScorerName } from '../scorers/scorers.js';
import type { HubProgress } from '../model/hub.js';
import { embeddingsHome } from '../model/home.js';
import { DEFAULT_MAX_PIXELS, parseExifMode, parseResizeMode, type ExifMode, type ImageReadOptions, type ResizeMode } from '../image/image.js';

export type { Precision } from '../model-format.js';

export const DEFAULT_BATCH_SIZE = 16;
/** A GPU needs big batches to fill its tensor cores; 128 is where PyTorch and onnxruntime peak for CLIP-H on an H100. */
export const DEFAULT_CUDA_BATCH_SIZE = 128;

export interface ScorerOptions {
  /** Which score (src/scorers/): pickscore (the default), hpsv2.1, clipscore, clipscore-l14 or aesthetic. */
  scorer?: ScorerName;
  /** A known model name or a model folder; default: the scorer's own model. */
  model?: string;
  device?: DeviceRequest;
  precision?: PrecisionChoice;
  batchSize?: number;
  exif?: ExifMode;
  resize?: ResizeMode;
  maxPixels?: number;
  threads?: number;
  cacheDir?: string | false;
  log?: (line: string) => void;
  /** Told how a model that has to be pulled first is coming along: each file's download, then the conversion (bytes). */
  onModelProgress?: (e: HubProgress) => void;
  /** Aborting stops a model download at once (InterruptedError); scoring streams take their own signal. */
  signal?: AbortSignal;
}

/** The scoring options, checked and typed: what the engine and everything below it take. */
export interface ResolvedScorerOptions {
  /** Marks options that went through resolveScorerOptions, which then hands them back as they are. */
  readonly resolved: true;
  /** The scorer (its name, model, tokenizer, transform, formula). */
  scorerDescription: ScorerDescription;
  model: string | undefined;
  device: Device;
  precision: PrecisionChoice;
  /** Undefined when not given: the default depends on the device the encoders end up on. */
  batchSize: number | undefined;
  image: ImageReadOptions;
  threads: number;
  /** The embedding cache folder, or false for none. */
  cacheDir: string | false;
  log: (line: string) => void;
  onModelProgress: ((e: HubProgress) => void) | undefined;
  signal: AbortSignal | undefined;
}

/**
 * The most threads per CPU core. Each decoding thread is a worker busy on one core, so more threads than
 * cores decode no faster; each one costs memory: about 1 GB while it decodes a 13000x13000 image
 * (measured: peak RSS 1.25 GB with --threads 1, 2.29 GB with 2). Four per core leaves room for slow
 * storage; --threads 100000 used to start 17,010 threads and take 16.5 GB.
 */
export const THREADS_PER_CORE = 4;

/** The largest --threads this machine accepts. */
export function threadLimit(): number {
  return THREADS_PER_CORE * os.availableParallelism();
}

/** A thread count within threadLimit(), else a UsageError that names the limit and why. */
export function checkThreads(threads: number, subject: string): number {
  const limit = threadLimit();
  if (threads <= limit) return threads;
  throw new UsageError(`${expectedMessage(`at most ${limit} (${THREADS_PER_CORE} per CPU core, ${os.availableParallelism()} cores here)`, subject, threads)}: `
    + 'more threads than cores decode no faster, and each decoding thread holds its image in memory (about 1 GB for a 13000x13000 image)');
}

/**
 * The largest batch. Each image of a batch holds its preprocessed pixels in two buffers (a batch is filled
 * while the one before it is encoded: 1.2 MB an image at 224x224), and twice as many images are read
 * ahead, so memory grows with the batch before a single image is read: --batch-size 100000000 asked
 * for a 60 TB buffer and ended in an internal error (RangeError), exit 70. A GPU is full well below it
 * (128 is the CUDA default).
 */
export const MAX_BATCH_SIZE = 1024;

/** A batch size within MAX_BATCH_SIZE, else a UsageError that names the limit and why. */
export function checkBatchSize(batchSize: number, subject: string): number {
  if (batchSize <= MAX_BATCH_SIZE) return batchSize;
  throw new UsageError(`${expectedMessage(`at most ${MAX_BATCH_SIZE}`, subject, batchSize)}: `
    + 'each image of a batch holds its pixels twice, and twice as many images are read ahead (about 2.4 MB an image at 224x224 pixels, 2.4 GB at the limit)');
}

/**
 * Checks every option before any file or model is touched, so a typo fails fast with the option named.
 * Options already resolved are returned as they are: a value is checked once, where it entered.
 */
export function resolveScorerOptions(opts: ScorerOptions | ResolvedScorerOptions): ResolvedScorerOptions {
  if (isResolved(opts)) return opts;
  return resolveWith(opts, parseDevice(opts.device ?? 'auto'));
}

/** A run's device: one device, or `cuda:all`, a worker per GPU (src/commands/all-devices.ts). */
export type RunDevice = DeviceRequest | typeof ALL_DEVICES;

/**
 * The options of a rank or eval run, which may also ask for `cuda:all`: then `allDevices` is set, and the
 * options are those every worker shares (each is given its own device).
 */
export type RunScorerOptions = Omit<ScorerOptions, 'device' | 'scorer'> & {
  device?: RunDevice;
  /**
   * The scorers, in order (a comma list or an array; default pickscore): each row gets a score of each,
   * and the first is the one rank ranks by (and eval gates on unless told otherwise).
   */
  scorers?: string | readonly ScorerName[];
  /** A model per scorer when several run (`--model hpsv2.1=<dir>`); `model` names the model of a single scorer. */
  models?: Partial<Record<ScorerName, string>>;
};

/** A run's options: one resolved set per scorer (the first is the run's own), and whether it spans every GPU. */
export interface ResolvedRun { scoring: ResolvedScorerOptions; scorings: ResolvedScorerOptions[]; allDevices: boolean }

export function resolveRunOptions(opts: RunScorerOptions | ResolvedScorerOptions): ResolvedRun {
  if (isResolved(opts)) return { scoring: opts, scorings: [opts], allDevices: false };
  const device = parseDevice(opts.device ?? 'auto', { all: true });
  const placed: Device = device.kind === 'all' ? { kind: 'auto', request: 'auto' } : device;
  const scorers = parseScorers(opts.scorers ?? DEFAULT_SCORER);
  const models = scorerModels(scorers, opts.model, opts.models);
  const scorings = scorers.map((scorer) => resolveWith({ ...opts, scorer: scorer.name, model: models.get(scorer.name) }, placed));
  if (device.kind === 'all' && scorings.length > 1) {
    throw new UsageError('--device cuda:all runs one scorer; run each scorer on its own, or several scorers on one device');
  }
  return { scoring: scorings[0], scorings, allDevices: device.kind === 'all' };
}

/**
 * The model each scorer runs: `model` for a single scorer; with several, `models` names them by scorer
 * (a bare `model` would be ambiguous), and a scorer not named runs its own default model.
 */
function scorerModels(scorers: ScorerDescription[], model: string | undefined, models: Partial<Record<ScorerName, string>> | undefined): Map<ScorerName, string | undefined> {
  const names = scorers.map((s) => s.name);
  const byScorer = new Map<ScorerName, string | undefined>(names.map((name) => [name, undefined]));
  for (const [name, dir] of Object.entries(models ?? {})) {
    if (!byScorer.has(name as ScorerName)) throw new UsageError(`A model is given for the scorer ${name}, which this run does not use (scorers: ${names.join(', ')})`);
    check(is.nonEmptyString, 'a model name or folder', `the model of ${name}`, dir);
    byScorer.set(name as ScorerName, dir);
  }
  if (model !== undefined) {
    if (scorers.length > 1) throw new UsageError(`With several scorers, name each one's model: --model ${names[0]}=<dir> (a bare --model ${model} would be ambiguous)`);
    if (byScorer.get(names[0]) !== undefined) throw new UsageError(`The model of ${names[0]} is given twice: ${model} and ${byScorer.get(names[0])}`);
    byScorer.set(names[0], model);
  }
  return byScorer;
}

function resolveWith(opts: Omit<ScorerOptions, 'device'>, device: Device): ResolvedScorerOptions {
  if (opts.model !== undefined) check(is.nonEmptyString, 'a model name or folder', 'model', opts.model);
  if (opts.cacheDir !== undefined && opts.cacheDir !== false) check(is.nonEmptyString, 'a folder path or false', 'cacheDir', opts.cacheDir);
  const [scorer, ...more] = parseScorers(opts.scorer ?? DEFAULT_SCORER);
  if (more.length > 0) throw new UsageError(expectedMessage('one scorer name (rank and eval take several)', 'scorer', opts.scorer));
  const resize = parseResizeMode(opts.resize ?? 'exact');
  if (resize === 'fast' && scorer.transform.kind !== 'clip-processor') {
    throw new UsageError(`--resize fast is sharp's resize in place of CLIP's processor; ${scorer.name}'s ${scorer.transform.kind} transform is only reproduced exactly: use --resize exact`);
  }
  return {
    resolved: true,
    scorerDescription: scorer,
    model: opts.model ?? scorer.model,
    device,
    precision: parsePrecision(opts.precision ?? 'auto', { auto: true }),
    batchSize: opts.batchSize === undefined ? undefined : checkBatchSize(positiveInteger('batchSize', opts.batchSize), 'batchSize'),
    image: {
      exif: parseExifMode(opts.exif ?? 'apply'),
      resize,
      maxPixels: opts.maxPixels === undefined ? DEFAULT_MAX_PIXELS : positiveInteger('maxPixels', opts.maxPixels),
    },
    threads: checkThreads(opts.threads === undefined ? os.availableParallelism() : positiveInteger('threads', opts.threads), 'threads'),
    cacheDir: opts.cacheDir === false ? false : opts.cacheDir ?? embeddingsHome(),
    log: opts.log ?? (() => undefined),
    onModelProgress: opts.onModelProgress,
    signal: opts.signal,
  };
}

function isResolved<T extends object>(opts: T | ResolvedScorerOptions): opts is ResolvedScorerOptions {
  return (opts as Partial<ResolvedScorerOptions>).resolved === true;
}

/** The batch size given, else one that suits the device the encoders run on. */
export function batchSizeFor(given: number | undefined, onCuda: boolean): number {
  return given ?? (onCuda ? DEFAULT_CUDA_BATCH_SIZE : DEFAULT_BATCH_SIZE);
}
