/**
 * `--device cuda:all` (`device: 'cuda:all'` in the library): the run split over every GPU, one worker
 * process per device on disjoint shards (device-worker.ts), whose parts are merged as `merge` merges
 * them. The result is the unsharded run's, with what each worker did beside it.
 *
 * The workers are processes, not threads: each opens its own onnxruntime environment on its own GPU. A
 * worker that fails stops the others (they are asked to abort and are waited for) before the work
 * folder is removed, so no worker writes into a folder that is gone; a worker interrupted before it
 * wrote its part (during a model download, say) makes the run an interrupted one, never a merge of
 * parts that are not there.
 */
import { execFile, fork, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { InputError, InternalError, InterruptedError, ModelError, UsageError, expectedMessage, type ErrorKind, type PickScoreError } from '../errors.js';
import { parseDevice } from '../encoder/device.js';
import type { NamedOutput, OutputClash } from '../io/same-file.js';
import type { ResolvedScorerOptions } from '../pipeline/options.js';
import type { ScorerStats } from '../pipeline/scorer.js';
import { formatShard, type Shard } from '../shard.js';
import type { DeviceJob, EvalJobOptions, ParentMessage, PortableScoring, RankJobOptions, WorkerCounts, WorkerMessage } from './device-protocol.js';
import { runMerge, type MergedEval, type MergedRank } from './merge.js';

/** `cuda:all` shards the run itself: a shard of it is refused, by rank and eval alike, with these words. */
export function allDevicesWithShardError(): UsageError {
  return new UsageError('--device cuda:all splits the run over the GPUs itself; it cannot be combined with --shard or --shard-count');
}

/**
 * The devices `cuda:all` spreads over: PICKSCORE_DEVICES (comma-separated cpu or cuda:N) when set, else
 * the GPUs CUDA_VISIBLE_DEVICES makes visible, else those `nvidia-smi -L` lists.
 */
export async function listDevices(env: NodeJS.ProcessEnv = process.env): Promise<string[]> {
  const override = env.PICKSCORE_DEVICES?.trim();
  if (override) {
    const devices = override.split(',').map((d) => d.trim());
    for (const device of devices) {
      if (!isNamedDevice(device)) throw new UsageError(expectedMessage('a comma-separated list of cpu or cuda:N', 'environment variable PICKSCORE_DEVICES', override));
    }
    return devices;
  }
  // CUDA numbers the visible devices from 0, whichever physical GPUs they are; an empty list or -1 hides all.
  const visible = env.CUDA_VISIBLE_DEVICES?.trim();
  if (visible !== undefined) {
    const entries = visible.split(',').map((entry) => entry.trim()).filter((entry) => entry !== '');
    if (entries.length === 0 || entries[0] === '-1') throw new UsageError(`--device cuda:all found no GPU: CUDA_VISIBLE_DEVICES=${JSON.stringify(visible)} hides them all`);
    return entries.map((_, i) => `cuda:${i}`);
  }
  const count = await countNvidiaGpus();
  if (count === 0) throw new UsageError('--device cuda:all found no GPU: nvidia-smi -L lists none');
  return Array.from({ length: count }, (_, i) => `cuda:${i}`);
}

/** One device named as a worker runs on it: the CPU, or a CUDA device by its number (not auto, not bare cuda). */
function isNamedDevice(name: string): boolean {
  try {
    const device = parseDevice(name);
    return device.kind === 'cpu' || (device.kind === 'cuda' && device.request !== 'cuda');
  } catch {
    return false;
  }
}

async function countNvidiaGpus(): Promise<number> {
  try {
    const { stdout } = await promisify(execFile)('nvidia-smi', ['-L'], { timeout: 30_000 });
    return stdout.split('\n').filter((line) => /^GPU \d+:/.test(line)).length;
  } catch (err) {
    const reason = (err as NodeJS.ErrnoException).code === 'ENOENT' ? 'nvidia-smi is not installed or not on PATH' : `nvidia-smi -L failed (${(err as Error).message.trim()})`;
    throw new UsageError(`--device cuda:all counts GPUs with nvidia-smi, but ${reason}; pass --device cuda:N, or list the devices in PICKSCORE_DEVICES`);
  }
}

/** What one worker did: its device and shard, whether it was interrupted, its rows. */
export interface WorkerOutcome { label: string; device: string; shard: Shard; incomplete: boolean; counts: WorkerCounts; stats?: ScorerStats; skippedOutputs?: OutputClash[] }

export type Workload = { command: 'rank'; options: RankJobOptions } | { command: 'eval'; options: EvalJobOptions };

export interface AllDevicesContext {
  /** The files the merged run will write, which every worker refuses to read. */
  outputs?: NamedOutput[];
  /** Aborting asks every worker to stop: scoring after its current batch, a download at once. */
  signal?: AbortSignal;
  /** Rank: keep the best K images per prompt of the merged run. */
  top?: number;
  env?: NodeJS.ProcessEnv;
}

/** Runs the workload once per device, each worker on its shard, and merges their parts. */
export async function runOnAllDevices(work: { command: 'rank'; options: RankJobOptions }, scoring: ResolvedScorerOptions, ctx?: AllDevicesContext): Promise<{ merged: MergedRank; workers: WorkerOutcome[] }>;
export async function runOnAllDevices(work: { command: 'eval'; options: EvalJobOptions }, scoring: ResolvedScorerOptions, ctx?: AllDevicesContext): Promise<{ merged: MergedEval; workers: WorkerOutcome[] }>;
export async function runOnAllDevices(work: Workload, scoring: ResolvedScorerOptions, ctx: AllDevicesContext = {}): Promise<{ merged: MergedRank | MergedEval; workers: WorkerOutcome[] }> {
  const devices = await listDevices(ctx.env);
  scoring.log(`${work.command}: ${devices.length} workers on ${devices.join(', ')}`);
  const workDir = await mkdtemp(path.join(os.tmpdir(), 'pickscore-cuda-all-'));
  try {
    const { log, onModelProgress: _progress, signal: _signal, ...portable } = scoring;
    const runs = devices.map((name, i) => {
      const shard = { index: i, count: devices.length };
      const part = path.join(workDir, `part-${i}.json`);
      const job = { ...work, scoring: { ...portable, device: parseDevice(name) } satisfies PortableScoring, shard, outputs: ctx.outputs ?? [], part } as DeviceJob;
      return { name, shard, part, label: `${name} (shard ${formatShard(shard)})`, job };
    });
    const workers = runs.map((run) => startWorker(run.job, run.label, log));
    const stopAll = (why: 'asked' | 'another failed'): void => workers.forEach((worker) => worker.abort(why));
    const onAbort = (): void => stopAll('asked');
    // The first failure stops the others; all are waited for before the work folder goes.
    workers.forEach((worker) => void worker.settled.then((settled) => { if (settled.status !== 'done') stopAll('another failed'); }));
    if (ctx.signal?.aborted) onAbort();
    ctx.signal?.addEventListener('abort', onAbort, { once: true });
    let settled: Settled[];
    try {
      settled = await Promise.all(workers.map((worker) => worker.settled));
    } finally {
      ctx.signal?.removeEventListener('abort', onAbort);
    }
    throwFirstFailure(settled, runs.map((run) => run.label));
    const outcomes = settled.map((s, i): WorkerOutcome => {
      const done = s as Extract<Settled, { status: 'done' }>;
      return { label: runs[i].label, device: runs[i].name, shard: runs[i].shard, incomplete: done.incomplete, counts: done.counts,
        ...(done.stats ? { stats: done.stats } : {}), ...(done.skippedOutputs ? { skippedOutputs: done.skippedOutputs } : {}) };
    });
    const merged = await runMerge({ parts: runs.map((run) => run.part), top: ctx.top });
    return { merged, workers: outcomes };
  } finally {
    await rm(workDir, { recursive: true, force: true });
  }
}

const ERROR_CLASSES: Record<ErrorKind, new (message: string) => PickScoreError> = {
  usage: UsageError, input: InputError, model: ModelError, internal: InternalError, interrupted: InterruptedError,
};

type Settled =
  | { status: 'done'; incomplete: boolean; counts: WorkerCounts; stats?: ScorerStats; skippedOutputs?: OutputClash[] }
  | { status: 'failed'; kind: ErrorKind | 'unknown'; message: string }
  | { status: 'crashed'; how: string };

/**
 * A failure of a worker's own (the first, in device order) is the run's, of its kind; a worker that was
 * only interrupted before it wrote its part makes the run an interrupted one.
 */
function throwFirstFailure(settled: Settled[], labels: string[]): void {
  const failed = settled.findIndex((s) => (s.status === 'failed' && s.kind !== 'interrupted') || s.status === 'crashed');
  if (failed >= 0) {
    const s = settled[failed] as Exclude<Settled, { status: 'done' }>;
    if (s.status === 'crashed') throw new InternalError(`The worker for ${labels[failed]} failed (${s.how}); its messages are above`);
    const ErrorClass = s.kind === 'unknown' ? InternalError : ERROR_CLASSES[s.kind];
    throw new ErrorClass(`The worker for ${labels[failed]} failed; its messages are above`);
  }
  const interrupted = settled.findIndex((s) => s.status === 'failed');
  if (interrupted >= 0) {
    throw new InterruptedError(`The worker for ${labels[interrupted]} was interrupted before it wrote its part, so there is nothing to merge; its messages are above`);
  }
}

interface RunningWorker { settled: Promise<Settled>; abort(why: 'asked' | 'another failed'): void }

/** One worker process on its job. Its warnings and errors, and anything on its stderr, are logged with its label. */
function startWorker(job: DeviceJob, label: string, log: (line: string) => void): RunningWorker {
  const entry = fileURLToPath(new URL('./device-worker.js', import.meta.url));
  const child: ChildProcess = fork(entry, [], { execArgv: [], stdio: ['ignore', 'ignore', 'pipe', 'ipc'], serialization: 'advanced' });
  let stoppedForAnother = false;
  let aborted = false;
  let result: Settled | undefined;
  let pending = '';
  child.stderr?.setEncoding('utf8').on('data', (chunk: string) => {
    const lines = (pending + chunk).split('\n');
    pending = lines.pop() ?? '';
    for (const line of lines) log(`[${label}] ${line}`);
  });
  const settled = new Promise<Settled>((resolve) => {
    child.on('message', (message: WorkerMessage) => {
      if (message.type === 'log') log(`[${label}] ${message.line}`);
      else if (message.type === 'done') result = { status: 'done', incomplete: message.incomplete, counts: message.counts, stats: message.stats, skippedOutputs: message.skippedOutputs };
      else {
        // A worker stopped because another failed says nothing of its own.
        if (!(stoppedForAnother && message.error.kind === 'interrupted')) log(`[${label}] error: ${message.error.message}`);
        result = { status: 'failed', kind: message.error.kind, message: message.error.message };
      }
    });
    child.on('error', (err) => {
      result ??= { status: 'crashed', how: `it could not start: ${err.message}` };
    });
    child.on('close', (code, signal) => {
      if (pending) log(`[${label}] ${pending}`);
      resolve(result ?? { status: 'crashed', how: signal ?? `exit code ${code}` });
    });
  });
  send(child, { type: 'job', job });
  return {
    settled,
    abort(why) {
      if (aborted || result !== undefined) return;
      aborted = true;
      stoppedForAnother = why === 'another failed';
      send(child, { type: 'abort' });
    },
  };
}

function send(child: ChildProcess, message: ParentMessage): void {
  if (child.connected) child.send(message, (err) => err && undefined);
}
