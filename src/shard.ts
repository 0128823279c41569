/**
 * Deterministic sharding for scale-out on job engines users already run (Kubernetes Indexed Jobs,
 * Slurm job arrays, CI matrices). Pure: no I/O; the environment is passed in.
 *
 * Convention: shards are numbered from 0. `--shard K/N` means shard K of N with 0 <= K < N, so
 * `--shard 0/4` ... `--shard 3/4` cover everything. This matches Kubernetes' JOB_COMPLETION_INDEX and
 * a Slurm array written `--array=0-(N-1)`; Slurm arrays that start elsewhere are normalised with
 * SLURM_ARRAY_TASK_MIN (and SLURM_ARRAY_TASK_STEP).
 *
 * An item's shard depends only on its key (for rank, the image path as given on the command line;
 * for eval, the manifest row's identity), never on its position, so every item lands in exactly one
 * shard whatever order the inputs are listed in: shard = first 6 bytes of SHA-256(UTF-8 key), read
 * as a big-endian integer, modulo N.
 */
import { createHash } from 'node:crypto';
import { UsageError, expectedMessage } from './errors.js';

export interface Shard {
  /** 0-based: 0 <= index < count. */
  index: number;
  count: number;
}

/** Where sharding is requested on the command line: `--shard K/N`, `--shard auto`, `--shard-count N`. */
export interface ShardFlags {
  shard?: string;
  shardCount?: string | number;
}

const SHARD_PATTERN = /^\s*(\d+)\s*\/\s*(\d+)\s*$/;

/** Parses "K/N" (0-based K). `subject` names the flag or variable in errors. */
export function parseShard(text: string, subject = '--shard'): Shard {
  const match = SHARD_PATTERN.exec(text);
  if (!match) throw new UsageError(expectedMessage('"K/N" with 0 <= K < N (shards are numbered from 0, e.g. 0/4)', subject, text));
  const count = Number(match[2]);
  const index = Number(match[1]);
  validateShard({ index, count }, subject, text);
  return { index, count };
}

function validateShard(shard: Shard, subject: string, received: unknown): void {
  if (!Number.isSafeInteger(shard.count) || shard.count < 1) {
    throw new UsageError(expectedMessage('a shard count of at least 1', subject, received));
  }
  if (!Number.isSafeInteger(shard.index) || shard.index < 0 || shard.index >= shard.count) {
    throw new UsageError(expectedMessage(`a shard index from 0 to ${shard.count - 1} (shards are numbered from 0)`, subject, received));
  }
}

function parseCount(value: string | number, subject: string): number {
  const count = typeof value === 'number' ? value : /^\s*\d+\s*$/.test(value) ? Number(value) : NaN;
  if (!Number.isSafeInteger(count) || count < 1) throw new UsageError(expectedMessage('a whole number of at least 1', subject, value));
  return count;
}

function parseEnvInteger(env: NodeJS.ProcessEnv, name: string): number | undefined {
  const raw = env[name];
  if (raw === undefined || raw === '') return undefined;
  if (!/^\s*\d+\s*$/.test(raw)) throw new UsageError(expectedMessage('a non-negative integer', `environment variable ${name}`, raw));
  return Number(raw);
}

/** The shard a Slurm job array task runs, normalised to 0-based, or undefined outside an array. */
function slurmShard(env: NodeJS.ProcessEnv): Shard | undefined {
  const id = parseEnvInteger(env, 'SLURM_ARRAY_TASK_ID');
  if (id === undefined) return undefined;
  const count = parseEnvInteger(env, 'SLURM_ARRAY_TASK_COUNT');
  if (count === undefined || count < 1) {
    throw new UsageError(expectedMessage('a task count of at least 1 beside SLURM_ARRAY_TASK_ID', 'environment variable SLURM_ARRAY_TASK_COUNT', env.SLURM_ARRAY_TASK_COUNT));
  }
  const min = parseEnvInteger(env, 'SLURM_ARRAY_TASK_MIN') ?? 0;
  const step = parseEnvInteger(env, 'SLURM_ARRAY_TASK_STEP') ?? 1;
  const max = parseEnvInteger(env, 'SLURM_ARRAY_TASK_MAX');
  // Arrays such as --array=1,5,7 have no arithmetic mapping from task id to shard: refuse them.
  const contiguous = step >= 1 && (max === undefined || (max - min) / step + 1 === count);
  const offset = id - min;
  if (!contiguous || offset < 0 || offset % step !== 0) {
    throw new UsageError(
      `Slurm array task ${id} (SLURM_ARRAY_TASK_MIN=${min}, SLURM_ARRAY_TASK_STEP=${step}, SLURM_ARRAY_TASK_COUNT=${count}) ` +
        'is not part of an evenly spaced array: submit with --array=0-(N-1), or pass --shard K/N explicitly',
    );
  }
  const shard = { index: offset / step, count };
  validateShard(shard, 'environment variable SLURM_ARRAY_TASK_ID', id);
  return shard;
}

/** The shard a Kubernetes Indexed Job pod runs; the job's completions are not in the environment, so N is given. */
function kubernetesShard(env: NodeJS.ProcessEnv, count: number | undefined): Shard | undefined {
  const index = parseEnvInteger(env, 'JOB_COMPLETION_INDEX');
  if (index === undefined) return undefined;
  if (count === undefined) {
    throw new UsageError('JOB_COMPLETION_INDEX is set but the number of shards is not: pass --shard-count N (the Job\'s completions)');
  }
  const shard = { index, count };
  validateShard(shard, 'environment variable JOB_COMPLETION_INDEX', index);
  return shard;
}

/**
 * The shard this process runs, or undefined when sharding was not requested.
 * - `--shard K/N`: exactly that; the environment is not read.
 * - `--shard auto`, or `--shard-count N` alone: from JOB_COMPLETION_INDEX (with N from --shard-count)
 *   or from SLURM_ARRAY_TASK_ID/COUNT/MIN/STEP (where --shard-count, if given, must agree).
 * Sharding is opt-in: a job array that runs pickscore without these flags is not silently split.
 */
export function shardFromEnv(env: NodeJS.ProcessEnv, flags: ShardFlags = {}): Shard | undefined {
  const requested = flags.shard?.trim();
  const count = flags.shardCount === undefined ? undefined : parseCount(flags.shardCount, '--shard-count');
  if (requested !== undefined && requested !== 'auto') {
    const shard = parseShard(requested, '--shard');
    if (count !== undefined && count !== shard.count) {
      throw new UsageError(`--shard ${requested} names ${shard.count} shards but --shard-count is ${count}`);
    }
    return shard;
  }
  if (requested === undefined && count === undefined) return undefined;
  const shard = kubernetesShard(env, count) ?? slurmShard(env);
  if (!shard) {
    throw new UsageError(
      `${requested === 'auto' ? '--shard auto' : '--shard-count'} reads the shard from the environment, but neither ` +
        'JOB_COMPLETION_INDEX (Kubernetes Indexed Job) nor SLURM_ARRAY_TASK_ID (Slurm job array) is set: pass --shard K/N',
    );
  }
  if (count !== undefined && count !== shard.count) {
    throw new UsageError(`--shard-count is ${count} but SLURM_ARRAY_TASK_COUNT is ${shard.count}`);
  }
  return shard;
}

/** The shard (0-based) that a key belongs to among `count` shards. */
export function shardOfKey(key: string, count: number): number {
  const digest = createHash('sha256').update(key, 'utf8').digest();
  return digest.readUIntBE(0, 6) % count;
}

export function inShard(key: string, shard: Shard): boolean {
  return shardOfKey(key, shard.count) === shard.index;
}

/** The items of this shard, in their original order; all items when `shard` is undefined. */
export function selectShard<T>(items: Iterable<T>, shard: Shard | undefined, keyOf: (item: T) => string): T[] {
  const all = [...items];
  return shard ? all.filter((item) => inShard(keyOf(item), shard)) : all;
}

/** "K/N", the form `--shard` takes and outputs record. */
export function formatShard(shard: Shard): string {
  return `${shard.index}/${shard.count}`;
}

/* ------------------------------------------------------------------------------------------------
 * Run identity. Every shard part records what its run was given before it was split, so that merge
 * can refuse parts of different runs (other prompts, another folder, another manifest) instead of
 * ranking each prompt over part of the images. Options that change scores (model, precision, EXIF,
 * resize, max pixels) are in the provenance, which merge compares as well.
 * ---------------------------------------------------------------------------------------------- */

/** A set of keys (image paths, manifest rows) as a count and a hash: parts stay small however large the run. */
export interface KeySetDigest {
  count: number;
  /** SHA-256 of the distinct keys, sorted by UTF-16 code unit (any fixed order would do), each followed by a NUL byte. */
  sha256: string;
}

/** Where a rank run's prompts came from: the list scored against every image, or each image's own. */
export type RankPromptIdentity = { from: 'list'; prompts: string[] } | { from: 'sidecar' | 'png' };

export interface RankRunIdentity {
  command: 'rank';
  /** Every image the run was given, before sharding, by the path that keys the shard. */
  images: KeySetDigest;
  prompts: RankPromptIdentity;
  /** The scorers, in order, when the run was not PickScore alone. */
  scorers?: string[];
}

export interface EvalRunIdentity {
  command: 'eval';
  /** Every valid row of the manifests, before sharding: where it is and everything that is scored or reported. */
  rows: KeySetDigest;
  /** The same for the --validation manifest's pairs, or null without one. */
  validationRows: KeySetDigest | null;
  /** The scorers, in order, when the run was not PickScore alone. */
  scorers?: string[];
}

export type RunIdentity = RankRunIdentity | EvalRunIdentity;

/** Order-independent and duplicate-free: the shards of one run list the same inputs in any order. */
export function digestKeys(keys: Iterable<string>): KeySetDigest {
  const distinct = [...new Set(keys)].sort();
  const hash = createHash('sha256');
  for (const key of distinct) hash.update(key, 'utf8').update('\0');
  return { count: distinct.length, sha256: hash.digest('hex') };
}
