/**
 * The outputs rank, eval and merge write: a rank result in its format, an eval report with its per-item
 * scores, and the GitHub Actions job summary. To stdout or --out (atomically); the writers and renderers
 * are the library's.
 */
import { appendFile } from 'node:fs/promises';
import { writeRankOutput, type RankOutput } from '../commands/rank-output.js';
import type { EvalReport } from '../eval/report.js';
import { renderHtml } from '../eval/render-html.js';
import { renderMarkdown } from '../eval/render-markdown.js';
import { renderScoresCsv, renderScoresJsonl, scoresFormatFor, type ItemRecord } from '../eval/scores-file.js';
import { fileThumbnails } from '../eval/thumbnails.js';
import { DEFAULT_MAX_PIXELS } from '../image/image.js';
import { describeWriteError, writeFileAtomic } from '../io/atomic.js';
import type { NamedOutput, OutputClash } from '../io/same-file.js';
import type { OutputFormat } from '../io/writers/formats.js';
import { ExitCode, exitCodeForRun, type ExitCodeValue } from './exit-codes.js';
import type { EvalFormat } from './formats.js';
import { writeDocument, type Console } from './output.js';

/** A rank result (or a merge of shard results) in the chosen format, to --out or stdout. */
export function writeRankResult(result: RankOutput, format: OutputFormat, target: { out?: string }): Promise<void> {
  return writeRankOutput(result, format, target.out !== undefined ? { path: target.out } : { stream: process.stdout });
}

/** The job summary of a GitHub Actions step, as an output a run writes if it can. */
export function jobSummaryOutput(env: NodeJS.ProcessEnv = process.env): NamedOutput[] {
  const summary = env.GITHUB_STEP_SUMMARY;
  return summary ? [{ flag: '$GITHUB_STEP_SUMMARY', path: summary }] : [];
}

/** The report in the chosen format (stdout or --out), per-item scores (--scores), and the job summary when $GITHUB_STEP_SUMMARY is set. */
export async function writeEvalOutputs(
  result: { report: EvalReport; items: ItemRecord[]; skippedOutputs: OutputClash[] },
  format: EvalFormat,
  target: { out?: string; scores?: string },
  console: Console,
): Promise<void> {
  const { report } = result;
  const image = { exif: report.provenance?.exif ?? 'apply', maxPixels: report.provenance?.maxPixels ?? DEFAULT_MAX_PIXELS };
  const text = format === 'json' ? `${JSON.stringify(report, null, 2)}\n`
    : format === 'md' ? renderMarkdown(report)
      : await renderHtml(report, fileThumbnails(image));
  await writeDocument(text, { out: target.out });
  if (target.scores !== undefined) {
    const scores = scoresFormatFor(target.scores) === 'csv' ? renderScoresCsv(result.items) : renderScoresJsonl(result.items);
    await writeFileAtomic(target.scores, scores);
  }
  const [summary] = jobSummaryOutput();
  if (!summary) return;
  const clash = result.skippedOutputs.find((skipped) => skipped.output.flag === summary.flag);
  if (clash) {
    console.log(`warning: $GITHUB_STEP_SUMMARY (${summary.path}) names the same file as ${clash.names}: appending the job summary would change it, so the summary was skipped; the report itself was written`);
    return;
  }
  await appendJobSummary(summary.path, `${format === 'md' ? text : renderMarkdown(report)}\n`, console);
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

/** Interrupted beats row errors, which beat the gate: a run that could not score everything says so first. */
export function evalExitCode(result: { incomplete: boolean; gate: { worse: boolean } | null; counts: { errors: number } }): ExitCodeValue {
  const code = exitCodeForRun({ incomplete: result.incomplete, errorRows: result.counts.errors });
  return code === ExitCode.ok && result.gate?.worse ? ExitCode.gateFailed : code;
}
