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
import type { HubProgress } from '../model/hub.js';
import { embeddingsHome } from '../model/home.js';
import { DEFAULT_MAX_PIXELS, parseExifMode, parseResizeMode, type ExifMode, type ImageReadOptions, type ResizeMode } from '../image/image.js';

export type { Precision } from '../model-format.js';

export const DEFAULT_BATCH_SIZE = 16;
/** A GPU needs big batches to fill its tensor cores; 128 is where PyTorch and onnxruntime peak for CLIP-H on an H100. */
export const DEFAULT_CUDA_BATCH_SIZE = 128;

export interface ScorerOptions {
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
export type RunScorerOptions = Omit<ScorerOptions, 'device'> & { device?: RunDevice };

export function resolveRunOptions(opts: RunScorerOptions | ResolvedScorerOptions): { scoring: ResolvedScorerOptions; allDevices: boolean } {
  if (isResolved(opts)) return { scoring: opts, allDevices: false };
  const device = parseDevice(opts.device ?? 'auto', { all: true });
  if (device.kind !== 'all') return { scoring: resolveWith(opts, device), allDevices: false };
  return { scoring: resolveWith(opts, { kind: 'auto', request: 'auto' }), allDevices: true };
}

function resolveWith(opts: Omit<ScorerOptions, 'device'>, device: Device): ResolvedScorerOptions {
  if (opts.model !== undefined) check(is.nonEmptyString, 'a model name or folder', 'model', opts.model);
  if (opts.cacheDir !== undefined && opts.cacheDir !== false) check(is.nonEmptyString, 'a folder path or false', 'cacheDir', opts.cacheDir);
  return {
    resolved: true,
    model: opts.model,
    device,
    precision: parsePrecision(opts.precision ?? 'auto', { auto: true }),
    batchSize: opts.batchSize === undefined ? undefined : checkBatchSize(positiveInteger('batchSize', opts.batchSize), 'batchSize'),
    image: {
      exif: parseExifMode(opts.exif ?? 'apply'),
      resize: parseResizeMode(opts.resize ?? 'exact'),
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
