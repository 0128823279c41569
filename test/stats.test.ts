import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mean, std, median, mulberry32, bootstrapMeanCI, pairedBootstrapCI, signTestP, winRate } from '../src/score/stats.js';

function assertClose(actual: number, expected: number, tolerance: number, what: string): void {
  assert.ok(Math.abs(actual - expected) <= tolerance, `${what}: ${actual} is not within ${tolerance} of ${expected}`);
}

const scores = [21.5, 19.25, 22.75, 20.0, 18.5, 23.25, 20.75, 21.0];

test('mean, sample std and median agree with Python\'s statistics module', () => {
  // /usr/bin/python3: statistics.mean(xs), statistics.stdev(xs), statistics.median(xs)
  assert.equal(mean(scores), 20.875);
  assertClose(std(scores), 1.6311696066670338, 1e-14, 'stdev (n - 1)');
  assert.equal(median(scores), 20.875);
  assert.equal(median([3, 1, 2]), 2);
  assert.ok(Number.isNaN(mean([])));
  assert.ok(Number.isNaN(std([5])), 'one value has no sample deviation');
});

test('mulberry32 gives the published sequence for a seed', () => {
  // The same generator written in Python (32-bit arithmetic masked by hand), seed 42.
  const rng = mulberry32(42);
  assert.deepEqual([rng(), rng(), rng()], [0.6011037519201636, 0.44829055899754167, 0.8524657934904099]);
});

test('bootstrapMeanCI: the percentile interval of a Python port of the same resampling', () => {
  // Python: mulberry32(7), 2000 resamples of floor(rng() * n) indices, type-7 quantiles 0.025 and 0.975.
  const ci = bootstrapMeanCI(scores, { seed: 7, resamples: 2000 });
  assertClose(ci.low, 19.78125, 1e-12, 'low');
  assertClose(ci.high, 21.907031249999996, 1e-12, 'high');
  assert.deepEqual(bootstrapMeanCI(scores, { seed: 7, resamples: 2000 }), ci, 'the same seed gives the same interval');
  assert.notDeepEqual(bootstrapMeanCI(scores, { seed: 8, resamples: 2000 }), ci, 'another seed gives another interval');
  assert.deepEqual(bootstrapMeanCI([4, 4, 4]), { low: 4, high: 4 });
  assert.ok(Number.isNaN(bootstrapMeanCI([]).low));
});

test('bootstrapMeanCI is close to the normal-theory interval on a large sample', () => {
  // 400 evenly spread values: mean 0.5; the bootstrap sd of the mean is sigma_pop / sqrt(n).
  const xs = Array.from({ length: 400 }, (_, i) => (i + 0.5) / 400);
  const sigma = Math.sqrt(xs.reduce((s, x) => s + (x - 0.5) ** 2, 0) / xs.length);
  const halfWidth = (1.959964 * sigma) / Math.sqrt(xs.length);
  const ci = bootstrapMeanCI(xs, { seed: 1 });
  assertClose(ci.low, 0.5 - halfWidth, 0.003, 'low');
  assertClose(ci.high, 0.5 + halfWidth, 0.003, 'high');
});

test('pairedBootstrapCI bootstraps the per-pair differences', () => {
  const baseline = [20.1, 19.8, 21.3, 22.0, 18.9, 20.5];
  const candidate = [20.6, 19.7, 21.9, 22.4, 19.5, 20.5];
  // Python: d = candidate - baseline; statistics.mean(d); the same bootstrap with seed 3, 1000 resamples.
  const ci = pairedBootstrapCI(baseline, candidate, { seed: 3, resamples: 1000 });
  assertClose(ci.mean, 0.33333333333333276, 1e-12, 'mean difference');
  assertClose(ci.low, 0.11624999999999912, 1e-12, 'low');
  assertClose(ci.high, 0.5499999999999995, 1e-12, 'high');
  assert.throws(() => pairedBootstrapCI([1, 2], [1]), /Expected as many candidate values as baseline values \(2\) for the paired comparison but received number 1/);
});

test('signTestP: exact two-sided binomial, zero differences dropped', () => {
  // 8 positive, 2 negative, 3 zero: 2 * (C(10,0) + C(10,1) + C(10,2)) / 2^10 = 2 * 56 / 1024 = 7/64.
  const diffs = [1, 2, 3, 4, 5, 6, 7, 8, -1, -2, 0, 0, 0];
  assertClose(signTestP(diffs), 7 / 64, 1e-15, '8 vs 2');
  assert.equal(signTestP([1, -1, 2, -2, 3, -3, 4, -4, 5, -5]), 1);
  assert.equal(signTestP([0, 0]), 1);
  // 1100 vs 900, from Python's fractions and math.comb: 2 * sum(comb(2000, j) for j <= 900) / 2^2000.
  const large = [...Array<number>(1100).fill(1), ...Array<number>(900).fill(-1)];
  assertClose(signTestP(large) / 8.457089535503927e-06, 1, 1e-9, '1100 vs 900 (relative)');
  assert.ok(signTestP(Array<number>(3000).fill(1)) < 1e-300);
});

test('winRate counts exact ties as half a win', () => {
  assert.deepEqual(winRate([1, 1, 1, 1], [2, 0, 1, 3]), { wins: 2, losses: 1, ties: 1, n: 4, winRate: 0.625 });
});
