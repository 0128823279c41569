/**
 * The eval report: per-model statistics, paired comparisons, pairwise preference accuracy and the CI
 * gate, computed from scored manifest rows. Pure: no I/O, no model; every interval is seeded.
 */
import { UsageError, InputError, expectedMessage } from '../errors.js';
import {
  mean, std, median, bootstrapMeanCI, pairedBootstrapCI, signTestP, winRate, DEFAULT_BOOTSTRAP,
} from '../score/stats.js';
import { pairwiseAccuracy, chooseTieThreshold, judgePair, PAPER_THRESHOLDS, type PairLabel, type ScoredPair } from '../score/pairwise.js';
import { groupBy, rankDescending } from '../score/rank.js';
import type { Provenance } from '../pipeline/scorer.js';

export const REPORT_SCHEMA_VERSION = 2;
/** The model name of pointwise rows that do not give one. */
export const UNNAMED_MODEL = 'default';
/** Examples kept per model (best and worst) and per comparison (largest gains and drops). */
const EXAMPLE_COUNT = 3;
const HISTOGRAM_BINS = 20;

/** One scored pointwise row. `image` is the path as the manifest wrote it, `path` where it was read. */
export interface PointScore {
  model: string | null; prompt: string; image: string; path: string;
  score: number | null; error: string | null;
}

/** One scored pairwise row. */
export interface PairScore {
  prompt: string; image0: string; image1: string; path0: string; path1: string; label0: PairLabel;
  score0: number | null; score1: number | null; error: string | null;
}

export interface ReportOptions {
  seed?: number;
  resamples?: number;
  /** The tie threshold of the paper's protocol; exclusive with validationPairs. Default 0. */
  tieThreshold?: number;
  /** Scored pairs of a validation manifest: the threshold is chosen on them as the paper does. */
  validation?: { manifest: string; pairs: PairScore[] };
  baseline?: string;
  candidate?: string;
  /** The gate's margin, in score units (default 0). */
  maxDrop?: number;
}

export interface ReportInput {
  points: PointScore[];
  pairs: PairScore[];
  provenance: Provenance | null;
  /** Interrupted: the report covers the rows scored before the stop. */
  incomplete: boolean;
  manifests: string[];
  skippedLines: number;
  notReached: number;
  options: ReportOptions;
}

export interface Interval95 { low: number | null; high: number | null }
export interface Example { prompt: string; image: string; path: string; score: number }
/** One image and its score: `image` as the manifest wrote it, `path` where it was read. */
export interface ImageScore { image: string; path: string; score: number }
/** A model's images for one prompt: how many, their mean score, and the best of them. */
export interface PromptSummary { prompt: string; n: number; mean: number; best: ImageScore }
export interface ModelSummary {
  model: string; n: number; errors: number;
  mean: number | null; std: number | null; median: number | null; ci95: Interval95;
  perPrompt: PromptSummary[];
  best: Example[]; worst: Example[];
  /** Counts of scores in equal bins over [low, high], the same range for every model so that plots compare. */
  histogram: Histogram;
}
export interface Histogram { low: number; high: number; counts: number[] }
export interface SideBySide { prompt: string; diff: number; baseline: Example; candidate: Example }
export interface Comparison {
  baseline: string; candidate: string;
  /** The unit of pairing is the prompt: each model's mean score over its images for that prompt. */
  prompts: number; wins: number; losses: number; ties: number; winRate: number | null;
  meanDiff: number | null; ci95: Interval95; signTestP: number;
  largestGains: SideBySide[]; largestDrops: SideBySide[];
}
/** A scored pair that earned less than a point under the paper's protocol, with what the scorer saw. */
export interface PairMistake {
  prompt: string; image0: string; image1: string; path0: string; path1: string; label0: PairLabel;
  score0: number; score1: number; prob0: number; prob1: number;
  /** The scorer's call in the label's terms: 1 image 0, 0 image 1, 0.5 a tie. */
  predicted: PairLabel;
  /** 0 (the other image, or no tie on a tie label's opposite) or 0.5 (a tie on exactly one side). */
  points: number;
}
export interface PairwiseSummary {
  n: number; errors: number;
  threshold: number; thresholdSource: 'flag' | 'validation' | 'default';
  validation: { manifest: string; n: number; table: { threshold: number; accuracy: number }[] } | null;
  paper: { accuracy: number | null; points: number; n: number; tieLabels: number; predictedTies: number };
  tiesExcluded: { accuracy: number | null; correct: number; n: number };
  /** Every pair that earned less than a point: wrong ones (0) first, then half-right ones; most confident first within each. */
  mistakes: PairMistake[];
}
export interface GateDecision {
  baseline: string; candidate: string; maxDrop: number;
  worse: boolean; meanDiff: number | null; ci95: Interval95;
  /** Prompts both models scored: the pairs the interval is over. */
  prompts: number;
  reason: string;
}
export interface EvalReport {
  schemaVersion: typeof REPORT_SCHEMA_VERSION;
  provenance: Provenance | null;
  incomplete: boolean;
  manifests: string[];
  settings: { seed: number; bootstrapResamples: number; confidenceLevel: number };
  counts: { pointwise: number; pairwise: number; errors: number; skippedLines: number; notReached: number };
  models: ModelSummary[];
  comparisons: Comparison[];
  pairwise: PairwiseSummary | null;
  gate: GateDecision | null;
  errors: { prompt: string; image: string; error: string }[];
  /**
   * With several scorers only: each scorer's whole report, by scorer name, and the one this report is
   * (the gate scorer's). Absent for one scorer, so a PickScore report is as it was.
   */
  scorers?: { gate: string; reports: Record<string, EvalReport> };
}

/** NaN has no JSON form; the report says null instead. */
function finite(x: number): number | null {
  return Number.isFinite(x) ? x : null;
}

function interval(ci: { low: number; high: number }): Interval95 {
  return { low: finite(ci.low), high: finite(ci.high) };
}

type Scored = PointScore & { score: number };
const isScored = (p: PointScore): p is Scored => p.score !== null && p.error === null;

export function buildReport(input: ReportInput): EvalReport {
  const opts = input.options;
  const bootstrap = { seed: opts.seed ?? DEFAULT_BOOTSTRAP.seed, resamples: opts.resamples ?? DEFAULT_BOOTSTRAP.resamples };
  const byModel = groupBy(input.points, (p) => p.model ?? UNNAMED_MODEL);
  const range = scoreRange(input.points.filter(isScored).map((p) => p.score));
  const models = [...byModel].map(([model, points]) => summarizeModel(model, points, bootstrap, range));
  const comparisons = comparisonPairs([...byModel.keys()], opts)
    .map(([baseline, candidate]) => compareModels(baseline, byModel.get(baseline)!, candidate, byModel.get(candidate)!, bootstrap));
  const errors = [
    ...input.points.filter((p) => p.error !== null).map((p) => ({ prompt: p.prompt, image: p.image, error: p.error! })),
    ...input.pairs.filter((p) => p.error !== null).map((p) => ({ prompt: p.prompt, image: `${p.image0} | ${p.image1}`, error: p.error! })),
  ];
  return {
    schemaVersion: REPORT_SCHEMA_VERSION,
    provenance: input.provenance,
    incomplete: input.incomplete,
    manifests: input.manifests,
    settings: { seed: bootstrap.seed, bootstrapResamples: bootstrap.resamples, confidenceLevel: DEFAULT_BOOTSTRAP.level },
    counts: { pointwise: input.points.length, pairwise: input.pairs.length, errors: errors.length, skippedLines: input.skippedLines, notReached: input.notReached },
    models,
    comparisons,
    pairwise: input.pairs.length > 0 || opts.validation ? summarizePairs(input.pairs, opts) : null,
    gate: gateDecision(comparisons, opts, input.incomplete),
    errors,
  };
}

function summarizeModel(model: string, points: PointScore[], bootstrap: { seed: number; resamples: number },
  range: { low: number; high: number }): ModelSummary {
  const scored = points.filter(isScored);
  const scores = scored.map((p) => p.score);
  const ranked = rankDescending(scored.map((p) => ({ ...p, key: p.path })));
  const example = ({ prompt, image, path, score }: Scored): Example => ({ prompt, image, path, score });
  return {
    model, n: scores.length, errors: points.length - scored.length,
    mean: finite(mean(scores)), std: finite(std(scores)), median: finite(median(scores)),
    ci95: interval(bootstrapMeanCI(scores, bootstrap)),
    perPrompt: [...perPromptGroups(scored)].map(([prompt, group]) => {
      const { image, path, score } = bestOf(group);
      return { prompt, n: group.length, mean: mean(group.map((p) => p.score)), best: { image, path, score } };
    }),
    best: ranked.slice(0, EXAMPLE_COUNT).map(example),
    worst: ranked.slice(-EXAMPLE_COUNT).reverse().filter((p) => p.rank > EXAMPLE_COUNT).map(example),
    histogram: histogram(scores, range),
  };
}

/** The range all histograms share; a single value gets a unit-wide range around it. */
function scoreRange(scores: number[]): { low: number; high: number } {
  if (scores.length === 0) return { low: 0, high: 1 };
  // reduce, not Math.min(...scores): spreading a large run's scores would overflow the call stack.
  const low = scores.reduce((a, b) => Math.min(a, b));
  const high = scores.reduce((a, b) => Math.max(a, b));
  return low === high ? { low: low - 0.5, high: high + 0.5 } : { low, high };
}

function histogram(scores: number[], { low, high }: { low: number; high: number }): Histogram {
  const counts = new Array<number>(HISTOGRAM_BINS).fill(0);
  const width = (high - low) / HISTOGRAM_BINS;
  // The top edge belongs to the last bin.
  for (const s of scores) counts[Math.min(HISTOGRAM_BINS - 1, Math.floor((s - low) / width))]++;
  return { low, high, counts };
}

/**
 * Every other model against the reference: --baseline, else the first model, in order of appearance.
 * One comparison per model, not one per pair: a run of many models stays linear, and every comparison
 * is against the same model, as the report's table shows them.
 */
function comparisonPairs(models: string[], opts: ReportOptions): [string, string][] {
  if (opts.baseline !== undefined) {
    requireModel(opts.baseline, '--baseline', models);
    if (opts.candidate !== undefined) {
      requireModel(opts.candidate, '--candidate', models);
      if (opts.candidate === opts.baseline) throw new UsageError('--baseline and --candidate name the same model');
    }
  } else if (opts.candidate !== undefined) {
    throw new UsageError('--candidate needs --baseline');
  }
  const reference = opts.baseline ?? models[0];
  return models.filter((m) => m !== reference).map((m): [string, string] => [reference, m]);
}

/** A --baseline or --candidate must name a model of the manifests. */
export function requireModel(name: string, flag: string, models: string[]): void {
  if (!models.includes(name)) throw new UsageError(expectedMessage(`a model of the manifest (${models.join(', ') || 'none'})`, flag, name));
}

function compareModels(baseline: string, basePoints: PointScore[], candidate: string, candPoints: PointScore[],
  bootstrap: { seed: number; resamples: number }): Comparison {
  const baseByPrompt = perPromptGroups(basePoints.filter(isScored));
  const candByPrompt = perPromptGroups(candPoints.filter(isScored));
  const shared = [...baseByPrompt.keys()].filter((prompt) => candByPrompt.has(prompt));
  const baseMeans = shared.map((prompt) => mean(baseByPrompt.get(prompt)!.map((p) => p.score)));
  const candMeans = shared.map((prompt) => mean(candByPrompt.get(prompt)!.map((p) => p.score)));
  const wins = winRate(baseMeans, candMeans);
  const ci = pairedBootstrapCI(baseMeans, candMeans, bootstrap);
  const sides: SideBySide[] = shared.map((prompt, i) => ({
    prompt, diff: candMeans[i] - baseMeans[i],
    baseline: bestOf(baseByPrompt.get(prompt)!), candidate: bestOf(candByPrompt.get(prompt)!),
  }));
  const byDiff = [...sides].sort((a, b) => b.diff - a.diff || (a.prompt < b.prompt ? -1 : 1));
  return {
    baseline, candidate, prompts: shared.length, wins: wins.wins, losses: wins.losses, ties: wins.ties, winRate: finite(wins.winRate),
    meanDiff: finite(ci.mean), ci95: interval(ci), signTestP: signTestP(candMeans.map((c, i) => c - baseMeans[i])),
    largestGains: byDiff.filter((s) => s.diff > 0).slice(0, EXAMPLE_COUNT),
    largestDrops: byDiff.filter((s) => s.diff < 0).reverse().slice(0, EXAMPLE_COUNT),
  };
}

function bestOf(points: Scored[]): Example {
  const { prompt, image, path, score } = rankDescending(points.map((p) => ({ ...p, key: p.path })))[0];
  return { prompt, image, path, score };
}

function summarizePairs(pairs: PairScore[], opts: ReportOptions): PairwiseSummary {
  const toScored = (list: PairScore[]): ScoredPair[] => list
    .filter((p) => p.error === null && p.score0 !== null && p.score1 !== null)
    .map((p) => ({ score0: p.score0!, score1: p.score1!, label0: p.label0 }));
  const scored = toScored(pairs);
  let threshold = opts.tieThreshold ?? 0;
  let thresholdSource: PairwiseSummary['thresholdSource'] = opts.tieThreshold === undefined ? 'default' : 'flag';
  let validation: PairwiseSummary['validation'] = null;
  if (opts.validation) {
    if (opts.tieThreshold !== undefined) throw new UsageError('Give --tie-threshold or --validation, not both');
    const validationPairs = toScored(opts.validation.pairs);
    if (validationPairs.length === 0) throw new InputError(`The validation manifest ${opts.validation.manifest} has no scored pairwise lines`);
    const chosen = chooseTieThreshold(validationPairs, PAPER_THRESHOLDS);
    threshold = chosen.threshold;
    thresholdSource = 'validation';
    validation = { manifest: opts.validation.manifest, n: validationPairs.length, table: chosen.table };
  }
  const acc = pairwiseAccuracy(scored, threshold);
  return {
    n: scored.length, errors: pairs.length - scored.length, threshold, thresholdSource, validation,
    paper: { accuracy: finite(acc.accuracy), points: acc.points, n: acc.n, tieLabels: acc.tieLabels, predictedTies: acc.predictedTies },
    tiesExcluded: { ...acc.tiesExcluded, accuracy: finite(acc.tiesExcluded.accuracy) },
    mistakes: pairMistakes(pairs, threshold),
  };
}

/** The pairs that earned less than a point, wrong before half-right, the most confident call first, then in manifest order. */
function pairMistakes(pairs: PairScore[], threshold: number): PairMistake[] {
  const mistakes: PairMistake[] = [];
  for (const p of pairs) {
    if (p.error !== null || p.score0 === null || p.score1 === null) continue;
    const judged = judgePair({ score0: p.score0, score1: p.score1, label0: p.label0 }, threshold);
    if (judged.points === 1) continue;
    mistakes.push({
      prompt: p.prompt, image0: p.image0, image1: p.image1, path0: p.path0, path1: p.path1, label0: p.label0,
      score0: p.score0, score1: p.score1, ...judged,
    });
  }
  // Array.prototype.sort is stable: equal keys keep manifest order.
  return mistakes.sort((a, b) => a.points - b.points || Math.abs(b.prob0 - b.prob1) - Math.abs(a.prob0 - a.prob1));
}

/**
 * "Worse" means the upper end of the paired 95% CI of mean(candidate - baseline), over shared prompts,
 * is below -maxDrop: even the most favourable plausible difference is a drop larger than the margin.
 */
function gateDecision(comparisons: Comparison[], opts: ReportOptions, incomplete: boolean): GateDecision | null {
  if (opts.baseline === undefined || opts.candidate === undefined) {
    if (opts.maxDrop !== undefined) throw new UsageError('--max-drop needs --baseline and --candidate');
    return null;
  }
  const maxDrop = opts.maxDrop ?? 0;
  if (!(Number.isFinite(maxDrop) && maxDrop >= 0)) throw new UsageError(expectedMessage('a number >= 0', '--max-drop', maxDrop));
  const c = comparisons.find((x) => x.baseline === opts.baseline && x.candidate === opts.candidate)!;
  const { baseline, candidate, prompts } = c;
  if (c.prompts === 0 || c.ci95.high === null || c.ci95.low === null || c.meanDiff === null) {
    // An interrupted run still writes its report; the exit code (130) already says it is not a verdict.
    if (incomplete) {
      const undecided = { baseline, candidate, maxDrop, worse: false, meanDiff: null, ci95: c.ci95, prompts };
      return { ...undecided, reason: describeGate(undecided) };
    }
    throw new InputError(`Cannot gate: ${candidate} and ${baseline} have no scored prompt in common`);
  }
  const decided = { baseline, candidate, maxDrop, worse: c.ci95.high < -maxDrop, meanDiff: c.meanDiff, ci95: c.ci95, prompts };
  return { ...decided, reason: describeGate(decided) };
}

/**
 * The gate's verdict as one sentence (the `reason`). `name` shortens model names for a page that must
 * stay readable; the report itself names them in full.
 */
export function describeGate(gate: Omit<GateDecision, 'reason'>, name: (model: string) => string = (model) => model): string {
  const baseline = name(gate.baseline);
  const candidate = name(gate.candidate);
  const { meanDiff, ci95: { low, high }, maxDrop } = gate;
  if (meanDiff === null || low === null || high === null) return `UNDECIDED: interrupted before any prompt was scored for both ${baseline} and ${candidate}`;
  const range = `mean(${candidate} - ${baseline}) = ${fmt(meanDiff)} over ${gate.prompts} prompts, 95% CI [${fmt(low)}, ${fmt(high)}]`;
  return gate.worse
    ? `FAIL: ${candidate} is worse than ${baseline}: ${range}, whose upper end is below ${fmt(-maxDrop)}`
    : `PASS: ${candidate} is not worse than ${baseline} beyond ${fmt(maxDrop)}: ${range}, whose upper end is at or above ${fmt(-maxDrop)}`;
}

/** Four decimals at most, and never "-0". */
function fmt(x: number): string {
  return (Number(x.toFixed(4)) + 0).toString();
}

function perPromptGroups(points: Scored[]): Map<string, Scored[]> {
  return groupBy(points, (p) => p.prompt);
}
