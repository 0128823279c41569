/** `pickscore merge` runs: flags in, runMerge, the unsharded command's output out. The merging itself is src/commands/merge.ts. */
import { runMerge, type MergeResult } from '../commands/merge.js';
import { UsageError } from '../errors.js';
import { ExitCode, exitCodeForRun } from './exit-codes.js';
import { chooseEvalFormat, chooseFormat } from './formats.js';
import type { MergeFlags } from './flags.js';
import { checkOutputTargets, createConsole, withInterruptSignal, type Console } from './output.js';
import { evalExitCode, jobSummaryOutput, writeEvalOutputs, writeRankResult } from './write-results.js';

export async function mergeAction(parts: string[], flags: MergeFlags): Promise<number> {
  const console = createConsole({ quiet: flags.quiet, verbose: flags.verbose });
  const outputs = await checkOutputTargets([{ flag: '--out', path: flags.out }, { flag: '--scores', path: flags.scores }]);
  // Merging is all writing: a first signal lets it finish (exit 130), a second leaves the previous output.
  return withInterruptSignal(console, async (interrupt) => {
    interrupt.writing();
    const code = await writeMerged(await runMerge({ parts, top: flags.top, outputs, optionalOutputs: jobSummaryOutput() }), flags, console);
    if (!interrupt.signal.aborted) return code;
    console.log('warning: interrupted while the merged output was written; it is complete');
    return ExitCode.interrupted;
  });
}

/** Writes a merged result as the unsharded command would have, and returns that command's exit code. */
async function writeMerged(merged: MergeResult, flags: MergeFlags, console: Console): Promise<number> {
  if (merged.incomplete) console.log('warning: at least one shard was interrupted; the merged output is marked incomplete');
  const tty = process.stdout.isTTY === true;
  if (merged.kind === 'rank') {
    if (flags.scores !== undefined) throw new UsageError('--scores applies to eval parts, but these parts come from rank');
    const errors = merged.records.filter((record) => record.error !== null).length;
    await writeRankResult(merged, chooseFormat(flags.format, flags.out, tty), { out: flags.out });
    console.log(`merged ${merged.shardCount} shards: ${merged.records.length} rows, ${errors} with errors`);
    return exitCodeForRun({ incomplete: merged.incomplete, errorRows: errors });
  }
  await writeEvalOutputs(merged, chooseEvalFormat(flags.format, flags.out, tty), { out: flags.out, scores: flags.scores }, console);
  console.log(`merged ${merged.shardCount} shards: ${merged.counts.rows} rows, ${merged.counts.errors} with errors`);
  if (merged.report.gate) process.stderr.write(`gate: ${merged.report.gate.reason}\n`);
  return evalExitCode({ ...merged, gate: merged.report.gate });
}
