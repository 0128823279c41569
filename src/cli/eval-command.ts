/**
 * `pickscore eval`: flags in, runEval, report out. Parsing and printing only; the work is in
 * src/commands/eval.ts and the report in src/eval/.
 */
import { appendFile } from 'node:fs/promises';
import path from 'node:path';
import { Command, InvalidArgumentError, Option } from 'commander';
import { runEval, runEvalPart, type EvalOptions, type EvalResult } from '../commands/eval.js';
import type { EvalReport } from '../eval/report.js';
import type { ItemRecord } from '../eval/scores-file.js';
import { formatShard, shardFromEnv, type Shard } from '../shard.js';
import { runOnAllDevices } from './merge-command.js';
import { renderMarkdown } from '../eval/render-markdown.js';
import { renderHtml } from '../eval/render-html.js';
import { fileThumbnails } from '../eval/thumbnails.js';
import { renderScoresCsv, renderScoresJsonl, scoresFormatFor } from '../eval/scores-file.js';
import { describeWriteError, writeFileAtomic } from '../io/atomic.js';
import { UsageError } from '../errors.js';
import { ExitCode, exitCodeForRun, type ExitCodeValue } from './exit-codes.js';
import { checkOutputTargets, createConsole, pickFormat, withInterruptSignal, writeDocument, type Console } from './output.js';
import { addScorerFlags, mergedOutputs, progressReporter, scorerOptionsFromFlags, type ScorerFlags } from './scorer-flags.js';
import { DEFAULT_MAX_PIXELS } from '../image/image.js';

export const EVAL_FORMATS = ['json', 'md', 'html'] as const;
export type EvalFormat = (typeof EVAL_FORMATS)[number];

interface EvalFlags extends ScorerFlags {
  format?: EvalFormat;
  out?: string;
  scores?: string;
  baseline?: string;
  candidate?: string;
  maxDrop?: number;
  tieThreshold?: number;
  validation?: string;
  skipInvalid: boolean;
  seed: number;
}

const EXAMPLES = `
Examples:
  $ pickscore eval prompts.jsonl --format md                                  per-model means with 95% CIs
  $ pickscore eval run.jsonl --baseline ckpt-100k --candidate ckpt-120k --max-drop 0.05
  $ pickscore eval pickapic-test.jsonl --validation pickapic-val.jsonl --format json --out report.json

"Worse" for the gate: the upper end of the paired 95% bootstrap CI of the mean per-prompt difference
(candidate - baseline) is below -max-drop. Exit 1 then, 0 otherwise; one line on stderr says why.`;

export function registerEvalCommand(program: Command): void {
  const evalCommand = program
    .command('eval')
    .description('score manifest rows: per-model statistics, paired comparisons, preference accuracy, and a CI gate')
    .argument('<manifests...>', 'JSON Lines manifests: pointwise {"prompt","image","model"} or pairwise {"prompt","image_0","image_1","label_0"}')
    .addOption(new Option('-f, --format <format>', 'report format (default: from --out, else md on a terminal, json in a pipe)').choices([...EVAL_FORMATS]))
    .option('-o, --out <file>', 'write the report to this file (atomically) instead of stdout')
    .option('--scores <file>', 'also write per-item scores: .csv, else JSON Lines')
    .option('--baseline <model>', 'the model the others are compared with; with --candidate, the gate')
    .option('--candidate <model>', 'the model the gate judges against --baseline')
    .option('--max-drop <x>', 'gate margin in score units (default 0)', parseNonNegativeNumber)
    .option('--tie-threshold <t>', 'pairwise: a predicted tie when |prob_1 - prob_0| <= t (default 0)', parseNumber)
    .option('--validation <manifest>', 'pairwise manifest on which to choose the tie threshold (0, 0.1, ..., 1)')
    .option('--skip-invalid', 'skip bad manifest lines (reported and counted) instead of stopping', false)
    .option('--seed <n>', 'bootstrap seed, so reruns give the same intervals', parseSeed, 0);
  addScorerFlags(evalCommand, '; writes a part for merge')
    .addHelpText('after', EXAMPLES)
    .action(async (manifests: string[], flags: EvalFlags, command: Command) => {
      if (flags.device === 'cuda:all') {
        process.exitCode = await runOnAllDevices(command);
        return;
      }
      const console = createConsole({ quiet: flags.quiet, verbose: flags.verbose });
      const shard = shardFromEnv(process.env, { shard: flags.shard, shardCount: flags.shardCount });
      if (shard) {
        process.exitCode = await writePart(manifests, flags, shard, console);
        return;
      }
      const format = chooseEvalFormat(flags.format, flags.out, process.stdout.isTTY === true);
      const outputs = await checkOutputTargets([{ flag: '--out', path: flags.out }, { flag: '--scores', path: flags.scores }]);
      process.exitCode = await withInterruptSignal(console, async (interrupt) => {
        const result = await runEval({ ...evalOptions(manifests, flags, console, interrupt.signal), outputs });
        interrupt.writing();
        await writeEvalOutputs(result, format, { out: flags.out, scores: flags.scores }, console);
        if (result.counts.skippedLines > 0) console.log(`warning: skipped ${result.counts.skippedLines} invalid manifest lines`);
        if (result.gate) process.stderr.write(`gate: ${result.gate.reason}\n`);
        if (result.incomplete) console.log(`warning: interrupted; the report covers what was scored (${result.counts.notReached} rows not reached)`);
        else if (interrupt.signal.aborted) console.log('warning: interrupted while the report was written; it is complete');
        return evalExitCode({ ...result, incomplete: result.incomplete || interrupt.signal.aborted });
      });
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
  const outputs = [...await checkOutputTargets([{ flag: '--out', path: flags.out }]), ...mergedOutputs(flags)];
  return withInterruptSignal(console, async (interrupt) => {
    const result = await runEvalPart({ ...evalOptions(manifests, flags, console, interrupt.signal), shard, outputs });
    interrupt.writing();
    await writeDocument(`${JSON.stringify(result.part)}\n`, { out: flags.out });
    if (result.incomplete) console.log(`warning: interrupted; the part covers what was scored (${result.counts.notReached} rows not reached)`);
    else if (interrupt.signal.aborted) console.log('warning: interrupted while the part was written; it is complete');
    return exitCodeForRun({ incomplete: result.incomplete || interrupt.signal.aborted, errorRows: result.counts.errors });
  });
}

/** Interrupted beats row errors, which beat the gate: a run that could not score everything says so first. */
export function evalExitCode(result: Pick<EvalResult, 'incomplete' | 'gate'> & { counts: { errors: number } }): ExitCodeValue {
  const code = exitCodeForRun({ incomplete: result.incomplete, errorRows: result.counts.errors });
  return code === ExitCode.ok && result.gate?.worse ? ExitCode.gateFailed : code;
}

const EVAL_FORMAT_CHOICE = {
  formats: EVAL_FORMATS,
  byExtension: { '.json': 'json', '.md': 'md', '.markdown': 'md', '.html': 'html', '.htm': 'html' },
  onTerminal: 'md',
  inPipe: 'json',
  unknownOut: (out: string) => `Cannot tell the report format from --out ${out}: use .json, .md or .html, or pass --format`,
} as const;

/** --format wins; else the --out extension; else Markdown for a person at a terminal, JSON for a pipe. */
export function chooseEvalFormat(format: string | undefined, out: string | undefined, stdoutIsTTY: boolean): EvalFormat {
  return pickFormat<EvalFormat>(EVAL_FORMAT_CHOICE, format, out, stdoutIsTTY);
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
    signal,
    onProgress: progressReporter(console, 'eval'),
  };
}

/** The report in the chosen format (stdout or --out), per-item scores (--scores), and the job summary when $GITHUB_STEP_SUMMARY is set. */
export async function writeEvalOutputs(
  result: { report: EvalReport; items: ItemRecord[] },
  format: EvalFormat,
  target: { out?: string; scores?: string },
  console: Console,
): Promise<void> {
  const report = result.report;
  const text = format === 'json' ? `${JSON.stringify(report, null, 2)}\n`
    : format === 'md' ? renderMarkdown(report)
      : await renderHtml(report, fileThumbnails({ exif: report.provenance?.exif ?? 'apply', maxPixels: report.provenance?.maxPixels ?? DEFAULT_MAX_PIXELS }));
  await writeDocument(text, { out: target.out });
  if (target.scores !== undefined) {
    const scores = scoresFormatFor(target.scores) === 'csv' ? renderScoresCsv(result.items) : renderScoresJsonl(result.items);
    await writeFileAtomic(target.scores, scores);
  }
  const summary = process.env.GITHUB_STEP_SUMMARY;
  if (summary) await appendJobSummary(summary, `${format === 'md' ? text : renderMarkdown(report)}\n`, console);
}

/**
 * The job summary is a convenience beside the report, which is already written: a path that cannot be
 * written is a warning, so the exit code stays the gate's. It is appended to, never replaced, since
 * earlier steps write to the same file (and a runner may hand over a FIFO).
 */
async function appendJobSummary(summary: string, markdown: string, console: Console): Promise<void> {
  try {
    await appendFile(summary, markdown);
  } catch (err) {
    console.log(`warning: cannot append the job summary to $GITHUB_STEP_SUMMARY (${summary}): ${describeWriteError(err)}; the report itself was written`);
  }
}

function parseNumber(value: string): number {
  const n = Number(value);
  if (value.trim() === '' || !Number.isFinite(n)) throw new InvalidArgumentError(`Expected a number but received ${JSON.stringify(value)}`);
  return n;
}

function parseNonNegativeNumber(value: string): number {
  const n = parseNumber(value);
  if (n < 0) throw new InvalidArgumentError(`Expected a number >= 0 but received ${JSON.stringify(value)}`);
  return n;
}

function parseSeed(value: string): number {
  const n = Number(value);
  if (!/^\d+$/.test(value.trim()) || n > 0xffffffff) throw new InvalidArgumentError(`Expected an integer from 0 to 4294967295 but received ${JSON.stringify(value)}`);
  return n;
}
