/**
 * Descriptive statistics, seeded bootstrap intervals and the sign test. Pure and deterministic: every
 * random draw comes from `mulberry32(seed)`, so a rerun with the same seed gives the same interval.
 * Empty inputs give NaN rather than throwing; the report turns NaN into null.
 */
import { UsageError, expectedMessage } from '../errors.js';

export function mean(xs: ArrayLike<number>): number {
  let sum = 0;
  for (let i = 0; i < xs.length; i++) sum += xs[i];
  return xs.length === 0 ? NaN : sum / xs.length;
}

/** The sample standard deviation (divides by n - 1, as Python's statistics.stdev); NaN below two values. */
export function std(xs: ArrayLike<number>): number {
  if (xs.length < 2) return NaN;
  const m = mean(xs);
  let sum = 0;
  for (let i = 0; i < xs.length; i++) sum += (xs[i] - m) ** 2;
  return Math.sqrt(sum / (xs.length - 1));
}

export function median(xs: ArrayLike<number>): number {
  return quantileSorted(Float64Array.from(xs).sort(), 0.5);
}

/**
 * The p-quantile of sorted values by linear interpolation between order statistics (numpy's default,
 * Hyndman-Fan type 7): position p * (n - 1).
 */
export function quantileSorted(sorted: ArrayLike<number>, p: number): number {
  if (sorted.length === 0) return NaN;
  const pos = p * (sorted.length - 1);
  const lo = Math.floor(pos);
  const hi = Math.min(lo + 1, sorted.length - 1);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo);
}

/** mulberry32: a small 32-bit seeded generator, uniform on [0, 1). Good enough for resampling, and trivial to port. */
export function mulberry32(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export interface BootstrapOptions {
  seed?: number;          // default 0
  resamples?: number;     // default 10,000
  level?: number;         // default 0.95
}

export interface Interval { low: number; high: number }

export const DEFAULT_BOOTSTRAP = { seed: 0, resamples: 10_000, level: 0.95 } as const;

/**
 * Percentile bootstrap interval of the mean: draw `resamples` samples of size n with replacement
 * (index = floor(rng() * n)), take each mean, and return the (1 - level)/2 and (1 + level)/2 quantiles
 * of those means (type 7, as `quantileSorted`). NaN bounds for an empty sample.
 */
export function bootstrapMeanCI(xs: ArrayLike<number>, opts: BootstrapOptions = {}): Interval {
  const { seed, resamples, level } = { ...DEFAULT_BOOTSTRAP, ...opts };
  if (!Number.isInteger(resamples) || resamples < 1) throw new UsageError(expectedMessage('a positive integer', 'bootstrap resamples', resamples));
  if (!(level > 0 && level < 1)) throw new UsageError(expectedMessage('a level between 0 and 1', 'the confidence level', level));
  const n = xs.length;
  if (n === 0) return { low: NaN, high: NaN };
  const values = Float64Array.from(xs);
  const means = new Float64Array(resamples);
  // mulberry32(seed), inlined: this loop draws resamples * n numbers, a billion for a large eval.
  let state = seed >>> 0;
  for (let r = 0; r < resamples; r++) {
    let sum = 0;
    for (let i = 0; i < n; i++) {
      state = (state + 0x6d2b79f5) >>> 0;
      let t = Math.imul(state ^ (state >>> 15), state | 1);
      t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
      sum += values[Math.floor((((t ^ (t >>> 14)) >>> 0) / 4294967296) * n)];
    }
    means[r] = sum / n;
  }
  means.sort();
  return { low: quantileSorted(means, (1 - level) / 2), high: quantileSorted(means, (1 + level) / 2) };
}

/** The paired differences candidate[i] - baseline[i]. */
export function pairedDifferences(baseline: ArrayLike<number>, candidate: ArrayLike<number>): Float64Array {
  if (baseline.length !== candidate.length) {
    throw new UsageError(expectedMessage(`as many candidate values as baseline values (${baseline.length})`, 'the paired comparison', candidate.length));
  }
  return Float64Array.from(candidate, (c, i) => c - baseline[i]);
}

/**
 * Paired bootstrap interval of mean(candidate - baseline): pairs are resampled together, which is the
 * bootstrap of the mean of the per-pair differences.
 */
export function pairedBootstrapCI(baseline: ArrayLike<number>, candidate: ArrayLike<number>, opts: BootstrapOptions = {}): Interval & { mean: number } {
  const diffs = pairedDifferences(baseline, candidate);
  return { mean: mean(diffs), ...bootstrapMeanCI(diffs, opts) };
}

/**
 * Two-sided exact sign test of "positive and negative differences are equally likely": zero differences
 * are dropped, then p = min(1, 2 * P(X <= min(pos, neg))) with X ~ Binomial(pos + neg, 1/2). Summed in
 * log space so that it holds for any n. 1 when every difference is zero.
 */
export function signTestP(differences: ArrayLike<number>): number {
  let positive = 0;
  let negative = 0;
  for (let i = 0; i < differences.length; i++) {
    if (differences[i] > 0) positive++;
    else if (differences[i] < 0) negative++;
  }
  const n = positive + negative;
  const k = Math.min(positive, negative);
  if (n === 0) return 1;
  // log C(n, j) / 2^n for j = 0..k, built up by the ratio C(n, j) / C(n, j - 1) = (n - j + 1) / j.
  const logTerms: number[] = [-n * Math.LN2];
  for (let j = 1; j <= k; j++) logTerms.push(logTerms[j - 1] + Math.log((n - j + 1) / j));
  const largest = logTerms[k];
  const tail = Math.exp(largest) * logTerms.reduce((sum, t) => sum + Math.exp(t - largest), 0);
  return Math.min(1, 2 * tail);
}

export interface WinRate { wins: number; losses: number; ties: number; n: number; winRate: number }

/** How often the candidate beats the baseline on the same item; an exact tie counts half a win. */
export function winRate(baseline: ArrayLike<number>, candidate: ArrayLike<number>): WinRate {
  const diffs = pairedDifferences(baseline, candidate);
  let wins = 0;
  let losses = 0;
  for (const d of diffs) {
    if (d > 0) wins++;
    else if (d < 0) losses++;
  }
  const ties = diffs.length - wins - losses;
  return { wins, losses, ties, n: diffs.length, winRate: diffs.length === 0 ? NaN : (wins + ties / 2) / diffs.length };
}
