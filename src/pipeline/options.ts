import os from 'node:os';
import { UsageError, expectedMessage } from '../errors.js';
import { parseDeviceRequest, type DeviceRequest } from '../encoder/device.js';
import type { PrecisionChoice } from '../model-format.js';
import type { HubProgress } from '../model/hub.js';
import type { ExifMode, ResizeMode } from '../image/image.js';

import { DEFAULT_MAX_PIXELS } from '../image/image.js';

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

export interface ResolvedScorerOptions {
  model: string | undefined;
  device: DeviceRequest;
  precision: PrecisionChoice;
  /** Undefined when not given: the default depends on the device the encoders end up on. */
  batchSize: number | undefined;
  exif: ExifMode;
  resize: ResizeMode;
  maxPixels: number;
  threads: number;
  cacheDir: string | false | undefined;
  log: (line: string) => void;
  onModelProgress: ((e: HubProgress) => void) | undefined;
  signal: AbortSignal | undefined;
}

function oneOf<T extends string>(value: unknown, allowed: readonly T[], subject: string, fallback: T): T {
  if (value === undefined) return fallback;
  if (typeof value === 'string' && (allowed as readonly string[]).includes(value)) return value as T;
  throw new UsageError(expectedMessage(`one of ${allowed.join(', ')}`, subject, value));
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

export function positiveInteger(value: unknown, subject: string, fallback: number): number {
  if (value === undefined) return fallback;
  if (typeof value === 'number' && Number.isInteger(value) && value > 0) return value;
  throw new UsageError(expectedMessage('a positive integer', subject, value));
}

/** Checked now, with the message the encoders would give, so a bad device fails before the model is touched. */
function parseDevice(value: unknown): DeviceRequest {
  if (value === undefined) return 'auto';
  parseDeviceRequest(value);
  return value as DeviceRequest;
}

/** Checks every option before any file or model is touched, so a typo fails fast with the option named. */
export function resolveScorerOptions(opts: ScorerOptions): ResolvedScorerOptions {
  if (opts.model !== undefined && (typeof opts.model !== 'string' || opts.model === '')) {
    throw new UsageError(expectedMessage('a model name or folder', 'model', opts.model));
  }
  if (opts.cacheDir !== undefined && opts.cacheDir !== false && (typeof opts.cacheDir !== 'string' || opts.cacheDir === '')) {
    throw new UsageError(expectedMessage('a folder path or false', 'cacheDir', opts.cacheDir));
  }
  return {
    model: opts.model,
    device: parseDevice(opts.device),
    precision: oneOf(opts.precision, ['auto', 'fp32', 'fp16', 'int8'] as const, 'precision', 'auto'),
    batchSize: opts.batchSize === undefined ? undefined : positiveInteger(opts.batchSize, 'batchSize', DEFAULT_BATCH_SIZE),
    exif: oneOf(opts.exif, ['apply', 'ignore'] as const, 'exif', 'apply'),
    resize: oneOf(opts.resize, ['exact', 'fast'] as const, 'resize', 'exact'),
    maxPixels: positiveInteger(opts.maxPixels, 'maxPixels', DEFAULT_MAX_PIXELS),
    threads: checkThreads(positiveInteger(opts.threads, 'threads', os.availableParallelism()), 'threads'),
    cacheDir: opts.cacheDir,
    log: opts.log ?? (() => undefined),
    onModelProgress: opts.onModelProgress,
    signal: opts.signal,
  };
}

/** The batch size given, else one that suits the device the encoders run on. */
export function batchSizeFor(given: number | undefined, onCuda: boolean): number {
  return given ?? (onCuda ? DEFAULT_CUDA_BATCH_SIZE : DEFAULT_BATCH_SIZE);
}
