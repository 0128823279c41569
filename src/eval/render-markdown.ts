/**
 * The eval report as GitHub-flavoured Markdown, short enough for a pull-request comment or the job
 * summary: the gate verdict first, then per-model figures, comparisons and preference accuracy.
 */
import type { EvalReport, GateDecision, Interval95 } from './report.js';

export function renderMarkdown(report: EvalReport): string {
  const out: string[] = ['## PickScore eval', ''];
  if (report.incomplete) out.push('> **Incomplete:** the run was interrupted; the figures cover the rows scored before it stopped.', '');
  if (report.gate) out.push(`**Gate:** ${gateIcon(report.gate)} ${cell(report.gate.reason)}`, '');
  if (report.models.length > 0) {
    out.push('| model | n | mean | std | median | 95% CI of the mean | errors |', '| --- | ---: | ---: | ---: | ---: | --- | ---: |');
    for (const m of report.models) {
      out.push(`| ${cell(m.model)} | ${m.n} | ${num(m.mean)} | ${num(m.std)} | ${num(m.median)} | ${ci(m.ci95)} | ${m.errors} |`);
    }
    out.push('');
  }
  if (report.comparisons.length > 0) {
    out.push('| candidate vs baseline | prompts | win rate | W / L / T | mean diff | 95% CI | sign test p |',
      '| --- | ---: | ---: | --- | ---: | --- | ---: |');
    for (const c of report.comparisons) {
      out.push(`| ${cell(c.candidate)} vs ${cell(c.baseline)} | ${c.prompts} | ${pct(c.winRate)} | ${c.wins} / ${c.losses} / ${c.ties} | ${signed(c.meanDiff)} | ${ci(c.ci95)} | ${pValue(c.signTestP)} |`);
    }
    out.push('', 'Pairs are prompts: each model\'s mean score over its images for a prompt. A tie counts half a win.', '');
  }
  const pw = report.pairwise;
  if (pw) {
    const source = pw.thresholdSource === 'validation' ? `chosen on ${cell(pw.validation!.manifest)} (${pw.validation!.n} pairs)` : pw.thresholdSource;
    out.push('| pairwise accuracy | accuracy | counts |', '| --- | ---: | --- |',
      `| paper protocol (tie threshold ${pw.threshold}, ${source}) | ${pct(pw.paper.accuracy)} | ${pw.paper.points} points / ${pw.paper.n} pairs; ${pw.paper.tieLabels} tie labels, ${pw.paper.predictedTies} predicted ties |`,
      `| ties excluded | ${pct(pw.tiesExcluded.accuracy)} | ${pw.tiesExcluded.correct} / ${pw.tiesExcluded.n} pairs |`, '');
  }
  const counts = report.counts;
  out.push(`${counts.pointwise} pointwise and ${counts.pairwise} pairwise rows; ${counts.errors} with errors; ${counts.skippedLines} invalid lines skipped.`);
  const p = report.provenance;
  if (p) out.push('', `<sub>${cell(p.model)} · ${p.precision} · ${p.executionProvider} (${p.device}) · exif ${p.exif} · resize ${p.resize} · onnxruntime ${p.onnxruntimeVersion} · pickscore ${p.pickscoreVersion} · seed ${report.settings.seed}</sub>`);
  return `${out.join('\n')}\n`;
}

/** An interrupted run's gate has no difference to judge: it is neither a pass nor a fail. */
function gateIcon(gate: GateDecision): string {
  if (gate.meanDiff === null) return '⚠️';
  return gate.worse ? '❌' : '✅';
}

/** Table cells cannot hold a raw pipe or a line break. */
function cell(text: string): string {
  return text.replace(/\|/g, '\\|').replace(/\r?\n/g, ' ');
}

function num(x: number | null): string {
  return x === null ? '–' : x.toFixed(3);
}

function signed(x: number | null): string {
  return x === null ? '–' : `${x >= 0 ? '+' : ''}${x.toFixed(3)}`;
}

function pct(x: number | null): string {
  return x === null ? '–' : `${(100 * x).toFixed(1)}%`;
}

function ci(c: Interval95): string {
  return c.low === null || c.high === null ? '–' : `[${num(c.low)}, ${num(c.high)}]`;
}

function pValue(p: number): string {
  return p < 0.001 ? p.toExponential(1) : p.toFixed(3);
}
