/**
 * What the eval pages show of a run of several scorers: one block per scorer with its models' rows,
 * each row's figures taken as they are from that scorer's own report (report.scorers.reports), so the
 * pages never compute a number the JSON does not hold. Pure.
 */
import type { EvalReport } from './report.js';
import { modelRows, referenceModel, focusComparison, type ModelRow } from './report-view.js';

/** One scorer's rows of the "Every scorer" table. */
export interface ScorerBlock {
  scorer: string;
  /** The scorer the report leads with (and gates on, when it has a gate). */
  isGate: boolean;
  /** Whether its report compares models with a baseline. */
  compared: boolean;
  rows: ModelRow[];
  /** Models of its report not shown here. */
  hidden: number;
}

/**
 * Every scorer's block, in the order of the run's scorers, at most `maxScorers` of them and
 * `maxModels` rows each: the baseline and the focus candidate always, then the others in report order.
 * Empty without `report.scorers`.
 */
export function scorerBlocks(report: EvalReport, maxScorers: number, maxModels: number): ScorerBlock[] {
  const scorers = report.scorers;
  if (!scorers) return [];
  return Object.entries(scorers.reports).slice(0, maxScorers).map(([scorer, sub]) => {
    const all = modelRows(sub);
    const keep = new Set<number>();
    const reference = referenceModel(sub);
    const focus = focusComparison(sub);
    for (const row of all) if (row.model.model === reference || row.model.model === focus?.candidate) keep.add(row.index);
    for (const row of all) if (keep.size < maxModels) keep.add(row.index);
    const rows = all.filter((r) => keep.has(r.index)).slice(0, Math.max(maxModels, 1));
    return { scorer, isGate: scorer === scorers.gate, compared: sub.comparisons.length > 0, rows, hidden: all.length - rows.length };
  });
}
