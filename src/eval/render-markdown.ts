/**
 * The eval report as GitHub-flavoured Markdown, for a pull-request comment or the job summary
 * ($GITHUB_STEP_SUMMARY): the gate's verdict first, then every model against the baseline, the
 * per-prompt means of the prompts with the largest differences (the bottom and top 10), and preference
 * accuracy. Its size is bounded whatever the run (models, prompts and names are capped and shortened,
 * MARKDOWN_LIMITS), far inside GitHub's 1 MiB per step; the JSON report holds everything.
 */
import { describeGate, type EvalReport, type GateDecision, type Interval95 } from './report.js';
import { focusComparison, modelLabels, modelRows, promptGrid, shortenEnd, shortenMiddle, type GridRow } from './report-view.js';
import { scorerBlocks } from './scorers-view.js';

export const MARKDOWN_LIMITS = {
  /** Rows of the models table. */
  models: 50,
  /** Prompts at each end of the per-prompt table. */
  promptsEachEnd: 10,
  /** Characters of a prompt, and of a model name or path, as shown. */
  promptChars: 160,
  nameChars: 60,
  /** Scorers of the "Every scorer" table, and rows (models) of each. */
  scorers: 8,
  modelsPerScorer: 6,
} as const;

export function renderMarkdown(report: EvalReport): string {
  const labels = modelLabels(report.models.map((m) => m.model), MARKDOWN_LIMITS.nameChars);
  const name = (model: string): string => labels.get(model) ?? shortenMiddle(model, MARKDOWN_LIMITS.nameChars);
  const out: string[] = ['## PickScore eval', ''];
  if (report.incomplete) out.push('> **Incomplete:** the run was interrupted; the figures cover the rows scored before it stopped.', '');
  if (report.gate) out.push(`**Gate:** ${gateIcon(report.gate)} ${describeGate(report.gate, (model) => text(name(model)))}`, '');
  modelsTable(report, name, out);
  scorersTable(report, name, out);
  promptsTable(report, name, out);
  const pw = report.pairwise;
  if (pw) {
    const source = pw.validation ? `chosen on ${text(shortenMiddle(pw.validation.manifest, MARKDOWN_LIMITS.nameChars))} (${pw.validation.n} pairs)` : pw.thresholdSource;
    out.push('| pairwise accuracy | accuracy | counts |', '| --- | ---: | --- |',
      `| paper protocol (tie threshold ${pw.threshold}, ${source}) | ${pct(pw.paper.accuracy)} | ${pw.paper.points} points / ${pw.paper.n} pairs; ${pw.paper.tieLabels} tie labels, ${pw.paper.predictedTies} predicted ties |`,
      `| ties excluded | ${pct(pw.tiesExcluded.accuracy)} | ${pw.tiesExcluded.correct} / ${pw.tiesExcluded.n} pairs |`, '');
    if (pw.mistakes.length > 0) out.push(`${pw.mistakes.length} pairs earned less than a point; the HTML report shows them side by side.`, '');
  }
  const counts = report.counts;
  out.push(`${counts.pointwise} pointwise and ${counts.pairwise} pairwise rows; ${counts.errors} with errors; ${counts.skippedLines} invalid lines skipped.`);
  const p = report.provenance;
  // Every field as text: a merged report's provenance is what its parts' files say.
  const field = (value: unknown): string => text(shortenMiddle(String(value), MARKDOWN_LIMITS.nameChars));
  if (p) out.push('', `<sub>${field(p.model)} · ${field(p.precision)} · ${field(p.executionProvider)} (${field(p.device)}) · exif ${field(p.exif)} · resize ${field(p.resize)} · onnxruntime ${field(p.onnxruntimeVersion)} · pickscore ${field(p.pickscoreVersion)} · seed ${report.settings.seed}</sub>`);
  return `${out.join('\n')}\n`;
}

/** One row per model: its figures, and for every model but the baseline its paired comparison with it. */
function modelsTable(report: EvalReport, name: (model: string) => string, out: string[]): void {
  const rows = modelRows(report);
  if (rows.length === 0) return;
  const compared = report.comparisons.length > 0;
  const reference = rows.find((r) => r.isReference)?.model.model;
  if (compared && reference !== undefined) out.push(`### Models against ${text(name(reference))}, ${report.gate ? 'the baseline' : 'the first model'}`, '');
  out.push(compared
    ? '| model | images | mean | 95% CI | mean diff | paired 95% CI | win rate | W / L / T | sign test p | prompts | errors |'
    : '| model | images | mean | 95% CI | std | median | errors |');
  out.push(compared ? '| --- | ---: | ---: | --- | ---: | --- | ---: | --- | ---: | ---: | ---: |' : '| --- | ---: | ---: | --- | ---: | ---: | ---: |');
  const shown = rows.slice(0, MARKDOWN_LIMITS.models);
  // The baseline always has its row, wherever it stands in the report.
  if (compared && !shown.some((r) => r.isReference)) shown.splice(shown.length - 1, 1, rows.find((r) => r.isReference)!);
  for (const { model: m, isReference, comparison: c } of shown) {
    const figures = `${m.n} | ${num(m.mean)} | ${ci(m.ci95)}`;
    if (!compared) out.push(`| ${text(name(m.model))} | ${figures} | ${num(m.std)} | ${num(m.median)} | ${m.errors} |`);
    else if (isReference) out.push(`| ${text(name(m.model))} (baseline) | ${figures} | | | | | | | ${m.errors} |`);
    else if (c === null) out.push(`| ${text(name(m.model))} | ${figures} | – | – | – | – | – | – | ${m.errors} |`);
    else out.push(`| ${text(name(m.model))} | ${figures} | ${signed(c.meanDiff)} | ${ci(c.ci95)} | ${pct(c.winRate)} | ${c.wins} / ${c.losses} / ${c.ties} | ${pValue(c.signTestP)} | ${c.prompts} | ${m.errors} |`);
  }
  out.push('');
  if (rows.length > shown.length) out.push(`_The first ${shown.length} of ${rows.length} models are listed; all are in the JSON report._`, '');
  if (compared) out.push('Pairs are prompts: each model\'s mean score over its images for a prompt, on the prompts both have. A tie counts half a win.', '');
}

/**
 * With several scorers: every scorer's figures per model, as each scorer's own report holds them, the
 * gate's scorer marked. Absent for one scorer.
 */
function scorersTable(report: EvalReport, name: (model: string) => string, out: string[]): void {
  const blocks = scorerBlocks(report, MARKDOWN_LIMITS.scorers, MARKDOWN_LIMITS.modelsPerScorer);
  if (blocks.length === 0) return;
  out.push('### Every scorer', '',
    '| scorer | model | mean | 95% CI | mean diff | paired 95% CI | win rate | sign test p |',
    '| --- | --- | ---: | --- | ---: | --- | ---: | ---: |');
  let hidden = 0;
  for (const { scorer, isGate, compared, rows, hidden: more } of blocks) {
    hidden += more;
    const label = `${text(shortenMiddle(scorer, MARKDOWN_LIMITS.nameChars))}${isGate ? (report.gate ? ' (gate)' : ' (above)') : ''}`;
    for (const { model: m, isReference, comparison: c } of rows) {
      const figures = `${label} | ${text(name(m.model))}${isReference && compared ? ' (baseline)' : ''} | ${num(m.mean)} | ${ci(m.ci95)}`;
      if (!compared || isReference) out.push(`| ${figures} | | | | |`);
      else if (c === null) out.push(`| ${figures} | – | – | – | – |`);
      else out.push(`| ${figures} | ${signed(c.meanDiff)} | ${ci(c.ci95)} | ${pct(c.winRate)} | ${pValue(c.signTestP)} |`);
    }
  }
  out.push('');
  const scorers = Object.keys(report.scorers!.reports).length;
  if (scorers > blocks.length || hidden > 0) out.push(`_Not every scorer or model is listed (${blocks.length} of ${scorers} scorers, ${hidden} model rows left out); all are in the JSON report under \`scorers.reports\`._`, '');
}

/** The per-prompt means of the focus comparison's prompts with the lowest and the highest differences. */
function promptsTable(report: EvalReport, name: (model: string) => string, out: string[]): void {
  const focus = focusComparison(report);
  const grid = promptGrid(report);
  if (!focus || grid.baseline === null || grid.candidate === null) return;
  const rows = grid.rows.filter((r) => r.diff !== null);
  if (rows.length === 0) return;
  const each = MARKDOWN_LIMITS.promptsEachEnd;
  const [baseline, candidate] = [name(focus.baseline), name(focus.candidate)].map(text);
  const line = (r: GridRow): string =>
    `| ${text(shortenEnd(r.prompt, MARKDOWN_LIMITS.promptChars))} | ${num(r.cells[grid.baseline!]!.mean)} | ${num(r.cells[grid.candidate!]!.mean)} | ${signed(r.diff)} |`;
  out.push(`### Per prompt: ${candidate} − ${baseline}`, '',
    rows.length > 2 * each
      ? `The ${each} prompts where ${candidate} fell furthest below ${baseline}, then the ${each} where it rose furthest (of ${rows.length}); each figure is the mean over that model's images for the prompt.`
      : `Every prompt both have, the largest drop first; each figure is the mean over that model's images for the prompt.`,
    '', `| prompt | ${baseline} | ${candidate} | difference |`, '| --- | ---: | ---: | ---: |');
  if (rows.length > 2 * each) {
    out.push(...rows.slice(0, each).map(line), `| _… ${rows.length - 2 * each} prompts between_ | | | |`, ...rows.slice(-each).map(line));
  } else {
    out.push(...rows.map(line));
  }
  out.push('');
}

/** An interrupted run's gate has no difference to judge: it is neither a pass nor a fail. */
function gateIcon(gate: GateDecision): string {
  if (gate.meanDiff === null) return '⚠️';
  return gate.worse ? '❌' : '✅';
}

const BIDI_CONTROLS = /[\u202a-\u202e\u2066-\u2069\u200e\u200f\u061c]/g;

/**
 * Text from the run made inert in Markdown and in a table cell: HTML is shown, not rendered; Markdown
 * syntax is escaped; line breaks and control characters become spaces; bidirectional controls, which
 * could reorder the rest of a line, are shown by their code point.
 */
function text(raw: string): string {
  return raw
    .replace(/[\u0000-\u001f\u007f]+/g, ' ')
    .replace(BIDI_CONTROLS, (c) => `<U+${c.codePointAt(0)!.toString(16).toUpperCase().padStart(4, '0')}>`)
    .replace(/[\\`*_[\]~|]/g, (c) => `\\${c}`)
    .replace(/[&<>]/g, (c) => (c === '&' ? '&amp;' : c === '<' ? '&lt;' : '&gt;'));
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
