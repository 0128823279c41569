/**
 * What the eval report's renderers (HTML and Markdown) show, derived from the report alone: the model
 * the others are compared with, one comparison row per model, the per-prompt grid in the order that
 * puts the largest regressions first, and text shortened so that hostile names and prompts cannot
 * swamp a page. Pure: everything here can be recomputed from the JSON report.
 */
import type { Comparison, EvalReport, ModelSummary, PromptSummary } from './report.js';

/** The model every comparison is against: the gate's baseline, else the comparisons', else the first model. */
export function referenceModel(report: EvalReport): string | null {
  return report.gate?.baseline ?? report.comparisons[0]?.baseline ?? report.models[0]?.model ?? null;
}

/** One row per model: its figures and, for every model but the reference, its comparison with the reference. */
export interface ModelRow { model: ModelSummary; index: number; isReference: boolean; comparison: Comparison | null }

export function modelRows(report: EvalReport): ModelRow[] {
  const reference = referenceModel(report);
  return report.models.map((model, index) => ({
    model,
    index,
    isReference: model.model === reference,
    comparison: report.comparisons.find((c) => c.baseline === reference && c.candidate === model.model) ?? null,
  }));
}

/** The comparison the page leads with and sorts its grid by: the gate's, else the first. */
export function focusComparison(report: EvalReport): Comparison | null {
  const gate = report.gate;
  if (gate) return report.comparisons.find((c) => c.baseline === gate.baseline && c.candidate === gate.candidate) ?? null;
  return report.comparisons[0] ?? null;
}

/** One prompt across the models: `cells[i]` is models[i]'s images for it (null when it has none). */
export interface GridRow {
  prompt: string;
  /** Position in the order the models list their prompts (the first model's first). */
  index: number;
  cells: (PromptSummary | null)[];
  /** The focus comparison's difference of prompt means (candidate − baseline); null without both. */
  diff: number | null;
}

export interface PromptGrid {
  /** Index into report.models of the focus comparison's baseline and candidate, or null. */
  baseline: number | null;
  candidate: number | null;
  /** Every prompt, largest drop first, then the rest of the differences in order, then prompts without one (in prompt order). */
  rows: GridRow[];
}

export function promptGrid(report: EvalReport): PromptGrid {
  const focus = focusComparison(report);
  const baseline = focus ? report.models.findIndex((m) => m.model === focus.baseline) : -1;
  const candidate = focus ? report.models.findIndex((m) => m.model === focus.candidate) : -1;
  const byPrompt = new Map<string, GridRow>();
  report.models.forEach((model, m) => {
    for (const summary of model.perPrompt) {
      let row = byPrompt.get(summary.prompt);
      if (!row) {
        row = { prompt: summary.prompt, index: byPrompt.size, cells: new Array<PromptSummary | null>(report.models.length).fill(null), diff: null };
        byPrompt.set(summary.prompt, row);
      }
      row.cells[m] = summary;
    }
  });
  const rows = [...byPrompt.values()];
  if (baseline >= 0 && candidate >= 0) {
    for (const row of rows) {
      const [base, cand] = [row.cells[baseline], row.cells[candidate]];
      // The same subtraction of the same prompt means as the comparison's, so the figures agree exactly.
      if (base && cand) row.diff = cand.mean - base.mean;
    }
  }
  rows.sort(byDiffAscending);
  return { baseline: baseline >= 0 ? baseline : null, candidate: candidate >= 0 ? candidate : null, rows };
}

function byDiffAscending(a: GridRow, b: GridRow): number {
  if (a.diff === null || b.diff === null) return a.diff === b.diff ? a.index - b.index : a.diff === null ? 1 : -1;
  return a.diff - b.diff || a.index - b.index;
}

/**
 * Rows in the order they deserve space (images, or a place on a page that cannot hold them all): the
 * largest drop, the largest gain, the second largest drop, ..., so that a page sorted either way shows
 * its first rows in full; rows without a difference after them, in their order.
 */
export function extremesFirst(rows: readonly GridRow[]): GridRow[] {
  const withDiff = rows.filter((r) => r.diff !== null);
  const out: GridRow[] = [];
  for (let lo = 0, hi = withDiff.length - 1, fromLow = true; lo <= hi; fromLow = !fromLow) out.push(fromLow ? withDiff[lo++] : withDiff[hi--]);
  return [...out, ...rows.filter((r) => r.diff === null)];
}

/** The best mean of a row (the cells a page marks best), or null when no cell has one. */
export function bestMean(row: GridRow): number | null {
  let best: number | null = null;
  for (const cell of row.cells) if (cell && (best === null || cell.mean > best)) best = cell.mean;
  return best;
}

/** At most `max` characters (code points), cut at the end with an ellipsis. */
export function shortenEnd(text: string, max: number): string {
  if (text.length <= max) return text;
  const chars = Array.from(text);
  return chars.length <= max ? text : `${chars.slice(0, max - 1).join('')}…`;
}

/** At most `max` characters, cut in the middle: names and paths differ most at their ends (ckpt-1000, ckpt-1200). */
export function shortenMiddle(text: string, max: number): string {
  if (text.length <= max) return text;
  const chars = Array.from(text);
  if (chars.length <= max) return text;
  const head = Math.ceil((max - 1) / 2);
  return `${chars.slice(0, head).join('')}…${chars.slice(chars.length - (max - 1 - head)).join('')}`;
}

/**
 * Short labels for the models, one each, all different: two long names that shorten alike get their
 * position in the report appended, so no column or mark can be taken for another's.
 */
export function modelLabels(models: readonly string[], max: number): Map<string, string> {
  const short = models.map((m) => shortenMiddle(m, max));
  const seen = new Map<string, number>();
  for (const s of short) seen.set(s, (seen.get(s) ?? 0) + 1);
  return new Map(models.map((m, i) => [m, seen.get(short[i])! > 1 || (short[i] !== m && models.includes(short[i])) ? `${short[i]} (model ${i + 1})` : short[i]]));
}

/** Round numbers for an axis over [low, high]: steps of 1, 2 or 5 times a power of ten, at most about `target` + 1 ticks. */
export function niceTicks(low: number, high: number, target = 6): { ticks: number[]; decimals: number } {
  if (!(Number.isFinite(low) && Number.isFinite(high)) || high <= low) return { ticks: [low], decimals: 2 };
  const raw = (high - low) / target;
  const power = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((f) => f * power).find((s) => s >= raw) ?? 10 * power;
  const decimals = Math.max(0, -Math.floor(Math.log10(step) + 1e-9));
  const ticks: number[] = [];
  for (let k = Math.ceil(low / step - 1e-9); k * step <= high + step * 1e-9; k++) ticks.push(Number((k * step).toFixed(decimals)));
  return { ticks, decimals };
}
