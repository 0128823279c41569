/** `pickscore eval` runs: flags in, runEval, report out. Translating and printing only; the work is in src/commands/eval.ts and the report in src/eval/. */
import path from 'node:path';
import { runEval, runEvalPart, type EvalOptions } from '../commands/eval.js';
import { UsageError } from '../errors.js';
import { formatShard, shardFromEnv, type Shard } from '../shard.js';
import type { EvalFlags } from './flags.js';
import { exitCodeForRun, type ExitCodeValue } from './exit-codes.js';
import { EVAL_FORMAT_CHOICE, chooseEvalFormat, type EvalFormat } from './formats.js';
import { checkOutputTargets, createConsole, withInterruptSignal, writeDocument, type Console } from './output.js';
import { progressReporter, reportWorkers, scorerOptionsFromFlags } from './scoring.js';
import { evalExitCode, jobSummaryOutput, writeEvalOutputs } from './write-results.js';

export async function evalAction(manifests: string[], flags: EvalFlags): Promise<ExitCodeValue> {
  const console = createConsole({ quiet: flags.quiet, verbose: flags.verbose });
  const shard = shardFromEnv(process.env, { shard: flags.shard, shardCount: flags.shardCount });
  if (shard) return writePart(manifests, flags, shard, console);
  const format = chooseEvalFormat(flags.format, flags.out, process.stdout.isTTY === true);
  const outputs = await checkOutputTargets([{ flag: '--out', path: flags.out }, { flag: '--scores', path: flags.scores }]);
  return withInterruptSignal(console, async (interrupt) => {
    const result = await runEval({ ...evalOptions(manifests, flags, console, interrupt.signal), outputs, optionalOutputs: jobSummaryOutput() });
    interrupt.writing();
    await writeEvalOutputs(result, format, { out: flags.out, scores: flags.scores }, console);
    if (result.workers) {
      reportWorkers(console, result.workers, { interrupted: (counts) => `warning: interrupted; the part covers what was scored (${counts.notReached} rows not reached)` });
      console.log(`merged ${result.workers.length} shards: ${result.counts.rows} rows, ${result.counts.errors} with errors`);
    }
    if (result.counts.skippedLines > 0) console.log(`warning: skipped ${result.counts.skippedLines} invalid manifest lines`);
    if (result.gate) process.stderr.write(`gate: ${result.gate.reason}\n`);
    // With workers, an interruption was reported by each worker it stopped.
    if (result.incomplete && !result.workers) console.log(`warning: interrupted; the report covers what was scored (${result.counts.notReached} rows not reached)`);
    else if (!result.incomplete && interrupt.signal.aborted) console.log('warning: interrupted while the report was written; it is complete');
    return evalExitCode({ ...result, incomplete: result.incomplete || interrupt.signal.aborted });
  });
}

/**
 * A shard's output is always a JSON part (the rows and settings merge needs), never a report: the
 * report, its intervals and the gate need every shard. Its exit code counts its own rows only.
 */
async function writePart(manifests: string[], flags: EvalFlags, shard: Shard, console: Console): Promise<ExitCodeValue> {
  if (flags.format !== undefined && flags.format !== 'json') {
    throw new UsageError(`--shard ${formatShard(shard)} writes a JSON part for merge; pass --format to merge instead of --format ${flags.format}`);
  }
  const byExtension: Record<string, EvalFormat | undefined> = EVAL_FORMAT_CHOICE.byExtension;
  const named = flags.out === undefined ? undefined : byExtension[path.extname(flags.out).toLowerCase()];
  if (named !== undefined && named !== 'json') {
    throw new UsageError(`--shard ${formatShard(shard)} writes a JSON part for merge, but --out ${flags.out} names a ${named} report: write the part as .json and pass --format ${named} to merge`);
  }
  if (flags.scores !== undefined) throw new UsageError('--scores applies to the merged run: pass it to merge, not to a shard');
  const outputs = await checkOutputTargets([{ flag: '--out', path: flags.out }]);
  return withInterruptSignal(console, async (interrupt) => {
    const result = await runEvalPart({ ...evalOptions(manifests, flags, console, interrupt.signal), shard, outputs });
    interrupt.writing();
    await writeDocument(`${JSON.stringify(result.part)}\n`, { out: flags.out });
    if (result.incomplete) console.log(`warning: interrupted; the part covers what was scored (${result.counts.notReached} rows not reached)`);
    else if (interrupt.signal.aborted) console.log('warning: interrupted while the part was written; it is complete');
    return exitCodeForRun({ incomplete: result.incomplete || interrupt.signal.aborted, errorRows: result.counts.errors });
  });
}

function evalOptions(manifests: string[], flags: EvalFlags, console: Console, signal: AbortSignal): EvalOptions {
  return {
    ...scorerOptionsFromFlags(flags, console),
    manifests,
    validation: flags.validation,
    skipInvalid: flags.skipInvalid,
    seed: flags.seed,
    tieThreshold: flags.tieThreshold,
    baseline: flags.baseline,
    candidate: flags.candidate,
    maxDrop: flags.maxDrop,
    gateScorer: flags.gateScorer,
    signal,
    onProgress: progressReporter(console, 'eval'),
  };
}
