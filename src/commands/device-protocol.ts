/**
 * The messages between the `cuda:all` orchestration (all-devices.ts) and each worker process it forks
 * (device-worker.ts, the entry). Both sides import this module; neither imports the other.
 *
 * The parent sends one job; the worker scores its shard on its device, writes its part to the file the
 * job names, and answers `done`, or `failed` (then it wrote no part). Meanwhile it forwards its warning
 * and error lines as `log`. The parent sends `abort` to stop a worker early: the scoring stops after the
 * batch being encoded (a part marked incomplete), a download at once (no part).
 */
import type { ErrorKind } from '../errors.js';
import type { NamedOutput, OutputClash } from '../io/same-file.js';
import type { PerImagePromptSource } from '../io/prompts.js';
import type { ResolvedScorerOptions } from '../pipeline/options.js';
import type { ScorerStats } from '../pipeline/scorer.js';
import type { Shard } from '../shard.js';

/** The scoring options a worker runs with: resolved in the parent; callbacks and signals stay there. */
export type PortableScoring = Omit<ResolvedScorerOptions, 'log' | 'onModelProgress' | 'signal'>;

export interface RankJobOptions { inputs: string[]; prompts?: string[]; promptsFile?: string; promptFrom?: PerImagePromptSource }
export interface EvalJobOptions {
  manifests: string[]; validation?: string; skipInvalid?: boolean; seed?: number; resamples?: number; tieThreshold?: number;
  baseline?: string; candidate?: string; maxDrop?: number; optionalOutputs?: NamedOutput[];
}

interface JobBase {
  scoring: PortableScoring;
  shard: Shard;
  /** The files the merged run will write: each worker refuses, before any work, inputs they would overwrite. */
  outputs: NamedOutput[];
  /** Where the worker writes its part. */
  part: string;
}

export type DeviceJob = JobBase & ({ command: 'rank'; options: RankJobOptions } | { command: 'eval'; options: EvalJobOptions });

export type ParentMessage = { type: 'job'; job: DeviceJob } | { type: 'abort' };

/** A worker's counts: the rows of its part, and for eval the images and requests it scored. */
export interface WorkerCounts { rows: number; errors: number; notReached: number; [count: string]: number }

export type WorkerMessage =
  | { type: 'log'; line: string }
  | { type: 'done'; incomplete: boolean; counts: WorkerCounts; stats?: ScorerStats; skippedOutputs?: OutputClash[] }
  | { type: 'failed'; error: { kind: ErrorKind | 'unknown'; message: string } };
