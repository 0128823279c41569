import os from 'node:os';
import { UsageError, expectedMessage } from '../errors.js';
import type { DeviceRequest } from '../model/session.js';
import type { ModelManifest } from '../model/convert.js';

export type Precision = ModelManifest['precision'];

/** Pillow's decompression-bomb limit, the default ceiling on decoded pixels. */
export const DEFAULT_MAX_PIXELS = 178_956_970;
export const DEFAULT_BATCH_SIZE = 16;

export interface ScorerOptions {
  model?: string;
  device?: DeviceRequest;
  precision?: Precision | 'auto';
  batchSize?: number;
  exif?: 'apply' | 'ignore';
  resize?: 'exact' | 'fast';
  maxPixels?: number;
  threads?: number;
  cacheDir?: string | false;
  log?: (line: string) => void;
}

export interface ResolvedScorerOptions {
  model: string | undefined;
  device: DeviceRequest;
  precision: Precision | 'auto';
  batchSize: number;
  exif: 'apply' | 'ignore';
  resize: 'exact' | 'fast';
  maxPixels: number;
  threads: number;
  cacheDir: string | false | undefined;
  log: (line: string) => void;
}

function oneOf<T extends string>(value: unknown, allowed: readonly T[], subject: string, fallback: T): T {
  if (value === undefined) return fallback;
  if (typeof value === 'string' && (allowed as readonly string[]).includes(value)) return value as T;
  throw new UsageError(expectedMessage(`one of ${allowed.join(', ')}`, subject, value));
}

export function positiveInteger(value: unknown, subject: string, fallback: number): number {
  if (value === undefined) return fallback;
  if (typeof value === 'number' && Number.isInteger(value) && value > 0) return value;
  throw new UsageError(expectedMessage('a positive integer', subject, value));
}

export function parseDevice(value: unknown, subject = 'device'): DeviceRequest {
  if (value === undefined) return 'auto';
  if (value === 'auto' || value === 'cpu' || value === 'cuda') return value;
  if (typeof value === 'string' && /^cuda:\d+$/.test(value)) return value as DeviceRequest;
  throw new UsageError(expectedMessage('auto, cpu, cuda or cuda:N', subject, value));
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
    batchSize: positiveInteger(opts.batchSize, 'batchSize', DEFAULT_BATCH_SIZE),
    exif: oneOf(opts.exif, ['apply', 'ignore'] as const, 'exif', 'apply'),
    resize: oneOf(opts.resize, ['exact', 'fast'] as const, 'resize', 'exact'),
    maxPixels: positiveInteger(opts.maxPixels, 'maxPixels', DEFAULT_MAX_PIXELS),
    threads: positiveInteger(opts.threads, 'threads', os.availableParallelism()),
    cacheDir: opts.cacheDir,
    log: opts.log ?? (() => undefined),
  };
}
