/**
 * `pickscore merge`, and `--device cuda:all` (one worker process per GPU on disjoint shards, then a
 * merge). Parsing, processes and printing only; the merging itself is src/commands/merge.ts.
 */
import { spawn, execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { Command, Option } from 'commander';
import { runMerge, type MergeResult } from '../commands/merge.js';
import { InputError, InternalError, ModelError, UsageError, expectedMessage } from '../errors.js';
import { writeRankResult } from './rank-command.js';
import { chooseEvalFormat, evalExitCode, writeEvalOutputs, EVAL_FORMATS } from './eval-command.js';
import { ExitCode, exitCodeForRun } from './exit-codes.js';
import { checkOutputTargets, chooseFormat, createConsole, parsePositiveInteger, withInterruptSignal, OUTPUT_FORMATS, type Console } from './output.js';

interface MergeFlags {
  format?: string;
  out?: string;
  top?: number;
  scores?: string;
  quiet: boolean;
  verbose: boolean;
}

const EXAMPLES = `
Examples:
  $ pickscore rank ./imgs --prompt "a fox" --shard 0/2 --format json --out part-0.json   # on machine A
  $ pickscore rank ./imgs --prompt "a fox" --shard 1/2 --format json --out part-1.json   # on machine B
  $ pickscore merge part-*.json --out ranked.csv    # the same bytes as one unsharded run

  $ pickscore eval run.jsonl --baseline a --candidate b --shard 0/2 --out part-0.json      # likewise
  $ pickscore merge part-*.json --format md     # the report, intervals and gate of one unsharded run

A shard writes a JSON part (full-precision scores, provenance, shard, and the identity of its run:
prompts, inputs before sharding); other formats and --top are refused at shard time: pass them to
merge, since the best K of a prompt need every shard's scores. Merge refuses (exit 4) parts of
different runs, naming what differs. Exit codes are those of the unsharded command.`;

export function registerMergeCommand(program: Command): void {
  program
    .command('merge')
    .description('combine the outputs of sharded runs (--shard K/N) into the output of one unsharded run')
    .argument('<parts...>', 'the JSON outputs of every shard of one run')
    .addOption(new Option('-f, --format <format>', 'output format, as rank or eval takes it (default: from --out, else as the command does)').choices([...new Set([...OUTPUT_FORMATS, ...EVAL_FORMATS])]))
    .option('-o, --out <file>', 'write to this file (atomically) instead of stdout')
    .option('--top <k>', 'rank: keep the best K images per prompt', parsePositiveInteger)
    .option('--scores <file>', 'eval: also write per-item scores: .csv, else JSON Lines')
    .option('-q, --quiet', 'no informational lines; warnings and errors still print', false)
    .option('-v, --verbose', 'informational lines on stderr even when it is not a terminal', false)
    .addHelpText('after', EXAMPLES)
    .action(async (parts: string[], flags: MergeFlags) => {
      const console = createConsole({ quiet: flags.quiet, verbose: flags.verbose });
      const outputs = await checkOutputTargets([{ flag: '--out', path: flags.out }, { flag: '--scores', path: flags.scores }]);
      // Merging is all writing: a first signal lets it finish (exit 130), a second leaves the previous output.
      process.exitCode = await withInterruptSignal(console, async (interrupt) => {
        interrupt.writing();
        const code = await writeMerged(await runMerge({ parts, top: flags.top, outputs }), flags, console);
        if (!interrupt.signal.aborted) return code;
        console.log('warning: interrupted while the merged output was written; it is complete');
        return ExitCode.interrupted;
      });
    });
}

/** Writes a merged result as the unsharded command would have, and returns that command's exit code. */
async function writeMerged(merged: MergeResult, flags: { format?: string; out?: string; scores?: string }, console: Console): Promise<number> {
  if (merged.incomplete) console.log('warning: at least one shard was interrupted; the merged output is marked incomplete');
  const tty = process.stdout.isTTY === true;
  if (merged.kind === 'rank') {
    if (flags.scores !== undefined) throw new UsageError('--scores applies to eval parts, but these parts come from rank');
    const errors = merged.records.filter((record) => record.error !== null).length;
    await writeRankResult(merged, chooseFormat(flags.format, flags.out, tty), { out: flags.out }, merged.thumbnail);
    console.log(`merged ${merged.shardCount} shards: ${merged.records.length} rows, ${errors} with errors`);
    return exitCodeForRun({ incomplete: merged.incomplete, errorRows: errors });
  }
  await writeEvalOutputs(merged, chooseEvalFormat(flags.format, flags.out, tty), { out: flags.out, scores: flags.scores }, console);
  console.log(`merged ${merged.shardCount} shards: ${merged.counts.rows} rows, ${merged.counts.errors} with errors`);
  if (merged.report.gate) process.stderr.write(`gate: ${merged.report.gate.reason}\n`);
  return evalExitCode({ ...merged, gate: merged.report.gate });
}

/** The devices `--device cuda:all` spreads over. PICKSCORE_DEVICES (comma-separated) overrides detection. */
export async function listAllDevices(env: NodeJS.ProcessEnv = process.env): Promise<string[]> {
  const override = env.PICKSCORE_DEVICES?.trim();
  if (override) {
    const devices = override.split(',').map((d) => d.trim());
    for (const device of devices) {
      if (!/^(cpu|cuda:\d+)$/.test(device)) throw new UsageError(expectedMessage('a comma-separated list of cpu or cuda:N', 'environment variable PICKSCORE_DEVICES', override));
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

async function countNvidiaGpus(): Promise<number> {
  try {
    const { stdout } = await promisify(execFile)('nvidia-smi', ['-L'], { timeout: 30_000 });
    return stdout.split('\n').filter((line) => /^GPU \d+:/.test(line)).length;
  } catch (err) {
    const reason = (err as NodeJS.ErrnoException).code === 'ENOENT' ? 'nvidia-smi is not installed or not on PATH' : `nvidia-smi -L failed (${(err as Error).message.trim()})`;
    throw new UsageError(`--device cuda:all counts GPUs with nvidia-smi, but ${reason}; pass --device cuda:N, or list the devices in PICKSCORE_DEVICES`);
  }
}

/** Flags that `cuda:all` sets itself for each worker, so the user's values are not passed on. */
const WORKER_OWNED_FLAGS = new Set(['--device', '--shard', '--shard-count', '--format', '--out', '--top', '--scores', '--quiet', '--verbose', '--stats', '--merged-output']);

/**
 * `--device cuda:all`: runs this command once per device as child processes of the same CLI, each on
 * shard i/N with `--device <device i>`, into temporary JSON parts, then merges them and writes what
 * the user asked for. Returns the exit code. The command's own action calls this and returns.
 */
export async function runOnAllDevices(command: Command, env: NodeJS.ProcessEnv = process.env): Promise<number> {
  const flags = command.opts<{ shard?: string; shardCount?: string; format?: string; out?: string; top?: number; scores?: string; quiet?: boolean; verbose?: boolean }>();
  if (flags.shard !== undefined || flags.shardCount !== undefined) {
    throw new UsageError('--device cuda:all splits the run over the GPUs itself; it cannot be combined with --shard or --shard-count');
  }
  const console = createConsole({ quiet: flags.quiet === true, verbose: flags.verbose === true });
  // Checked before any worker starts, so a bad --format or --out fails at once.
  (command.name() === 'eval' ? chooseEvalFormat : chooseFormat)(flags.format, flags.out, process.stdout.isTTY === true);
  await checkOutputTargets([{ flag: '--out', path: flags.out }, { flag: '--scores', path: flags.scores }]);
  const devices = await listAllDevices(env);
  const workDir = await mkdtemp(path.join(os.tmpdir(), 'pickscore-cuda-all-'));
  try {
    console.log(`${command.name()}: ${devices.length} workers on ${devices.join(', ')}`);
    const parts = devices.map((_, i) => path.join(workDir, `part-${i}.json`));
    // Each worker refuses, before any work, inputs that the merged --out or --scores would overwrite.
    const guarded = ([['out', flags.out], ['scores', flags.scores]] as const).flatMap(([flag, file]) => (file === undefined ? [] : ['--merged-output', `${flag}=${file}`]));
    const base = [command.name(), ...command.args, ...passedFlags(command), ...guarded];
    await Promise.all(devices.map((device, i) =>
      runWorker([...base, '--device', device, '--shard', `${i}/${devices.length}`, '--format', 'json', '--out', parts[i], '--quiet'], `${device} (shard ${i}/${devices.length})`),
    ));
    const merged = await runMerge({ parts, top: flags.top });
    return await writeMerged(merged, flags, console);
  } finally {
    await rm(workDir, { recursive: true, force: true });
  }
}

/** The flags the user typed (not defaults), as arguments a child process parses to the same values. */
function passedFlags(command: Command): string[] {
  const args: string[] = [];
  for (const option of command.options) {
    const name = option.attributeName();
    if (option.long === undefined || WORKER_OWNED_FLAGS.has(option.long) || command.getOptionValueSource(name) !== 'cli') continue;
    const value: unknown = command.getOptionValue(name);
    if (typeof value === 'boolean') {
      if (value !== option.negate) args.push(option.long);
    } else {
      for (const item of Array.isArray(value) ? value : [value]) args.push(option.long, String(item));
    }
  }
  return args;
}

const WORKER_ERRORS: Record<number, new (message: string) => Error> = {
  [ExitCode.usage]: UsageError,
  [ExitCode.input]: InputError,
  [ExitCode.model]: ModelError,
};

/** One worker: the same CLI entry point in a child process. Its stderr passes through, each line labelled. */
function runWorker(args: string[], label: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [process.argv[1], ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
    let pending = '';
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => {
      const lines = (pending + chunk).split('\n');
      pending = lines.pop() ?? '';
      for (const line of lines) process.stderr.write(`[${label}] ${line}\n`);
    });
    child.on('error', (err) => reject(new InternalError(`Cannot start the worker for ${label}: ${err.message}`, { cause: err })));
    child.on('close', (code, signal) => {
      if (pending) process.stderr.write(`[${label}] ${pending}\n`);
      // Row errors and interruptions still leave a complete or marked-incomplete part to merge.
      if (code === ExitCode.ok || code === ExitCode.rowErrors || code === ExitCode.interrupted) return resolve();
      const ErrorKind = (code !== null && WORKER_ERRORS[code]) || InternalError;
      reject(new ErrorKind(`The worker for ${label} failed (${signal ?? `exit code ${code}`}); its messages are above`));
    });
  });
}
