import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { l2normalize, scoreMatrix, softmax, rankDescending, kendallTau, pairwiseAccuracy, chooseTieThreshold, embeddingDrift, rankingAgreement, relativeError, type ScoredPair } from '../src/score/index.js';
import { compareCodePoints } from '../src/score/rank.js';
import { unitEmbeddingProblem } from '../src/score/similarity.js';
import { referenceDir, skipWithoutReference } from './helpers/paths.js';

function assertClose(actual: number, expected: number, tolerance: number, what: string): void {
  assert.ok(Math.abs(actual - expected) <= tolerance, `${what}: ${actual} is not within ${tolerance} of ${expected}`);
}

test('scoreMatrix reproduces the reference scores from the reference embeddings (1e-4)', { skip: skipWithoutReference }, async () => {
  const ref = JSON.parse(await readFile(path.join(referenceDir, 'reference.json'), 'utf8')) as {
    logit_scale: number; prompts: { text_embeds: number[] }[]; images: { image_embeds: number[] }[]; scores: { values: number[][] };
  };
  const dim = ref.prompts[0].text_embeds.length;
  const text = Float32Array.from(ref.prompts.flatMap((p) => p.text_embeds));
  const images = Float32Array.from(ref.images.flatMap((i) => i.image_embeds));
  const scores = scoreMatrix(text, images, dim, Math.exp(ref.logit_scale));
  assert.equal(scores.length, ref.prompts.length * ref.images.length);
  ref.scores.values.forEach((row, p) => row.forEach((expected, i) => {
    assertClose(scores[p * ref.images.length + i], expected, 1e-4, `score[${p}][${i}]`);
  }));
  // Normalising first changes nothing but float32 rounding of the stored unit vectors: the score is a cosine.
  const normalised = scoreMatrix(l2normalize(text.slice(), dim), l2normalize(images.slice(), dim), dim, Math.exp(ref.logit_scale));
  normalised.forEach((s, k) => assertClose(s, scores[k], 1e-5, `normalised score ${k}`));
});

test('l2normalize scales each row to unit length in place and leaves a zero row alone', () => {
  const v = Float32Array.from([3, 4, 0, 0, 0, 5]);
  assert.equal(l2normalize(v, 2), v);
  assert.deepEqual(Array.from(v), [Math.fround(0.6), Math.fround(0.8), 0, 0, 0, 1]);
  assert.throws(() => l2normalize(new Float32Array(5), 2), /Expected a length that is a multiple of 2 for the embeddings but received number 5/);
});

test('softmax matches math.exp in Python and survives large scores', () => {
  // /usr/bin/python3: e = [math.exp(x) for x in (2.0, 1.0, 0.1)]; [x / sum(e) for x in e]
  const expected = [0.6590011388859679, 0.2424329707047139, 0.09856589040931818];
  softmax([2, 1, 0.1]).forEach((p, i) => assertClose(p, expected[i], 1e-15, `p${i}`));
  // Shifting every score leaves the probabilities as they are; 1000 would overflow exp without the shift.
  softmax([1002, 1001, 1000.1]).forEach((p, i) => assertClose(p, expected[i], 1e-12, `shifted p${i}`));
  assert.deepEqual(softmax([]), []);
});

test('rankDescending: best first, 1-based, equal scores ordered by key, NaN last', () => {
  const ranked = rankDescending([
    { key: 'b.png', score: 20 }, { key: 'c.png', score: Number.NaN }, { key: 'a.png', score: 20 }, { key: 'd.png', score: 21 },
  ]);
  assert.deepEqual(ranked.map((r) => [r.key, r.rank]), [['d.png', 1], ['a.png', 2], ['b.png', 3], ['c.png', 4]]);
});

test('kendallTau: worked by hand, with and without ties', () => {
  // One discordant pair out of six: (5 - 1) / 6.
  assertClose(kendallTau([1, 2, 3, 4], [1, 3, 2, 4]), 4 / 6, 1e-15, 'tau');
  assert.equal(kendallTau([1, 2, 3], [3, 2, 1]), -1);
  // a ties items 0 and 1: 2 concordant, tau-b = 2 / sqrt((3 - 1) * 3).
  assertClose(kendallTau([1, 1, 2], [1, 2, 3]), 2 / Math.sqrt(6), 1e-15, 'tau-b');
  assert.throws(() => kendallTau([1, 2], [1]), /Expected two lists of equal length/);
});

/** Scores whose softmax gives prob_0 = p: score0 - score1 = ln(p / (1 - p)). */
function pairWithProb0(prob0: number, label0: 0 | 0.5 | 1): ScoredPair {
  return { score0: Math.log(prob0 / (1 - prob0)), score1: 0, label0 };
}

test('pairwiseAccuracy follows PickScore\'s eval_preference_predictor.py, worked by hand', () => {
  const pairs = [
    pairWithProb0(0.9, 1),    // predicted 0, label 0: 1 point
    pairWithProb0(0.2, 1),    // predicted 1, label 0: 0 points
    pairWithProb0(0.52, 0.5), // |0.48 - 0.52| = 0.04 <= 0.1: predicted tie on a tie label: 1 point
    pairWithProb0(0.7, 0.5),  // predicted 0 on a tie label: 0.5
    pairWithProb0(0.47, 0),   // |0.53 - 0.47| = 0.06: predicted tie on a non-tie label: 0.5
  ];
  const at01 = pairwiseAccuracy(pairs, 0.1);
  assert.equal(at01.points, 3);
  assert.equal(at01.n, 5);
  assertClose(at01.accuracy, 0.6, 1e-15, 'accuracy');
  assert.equal(at01.tieLabels, 2);
  assert.equal(at01.predictedTies, 2);
  // Ties excluded: pairs 1, 2 and 5 remain; 1 and 5 (0.47 < 0.53, label image 1) are right.
  assert.deepEqual(at01.tiesExcluded, { accuracy: 2 / 3, correct: 2, n: 3 });

  // Threshold 0 predicts no ties here: 1 + 0 + 0.5 + 0.5 + 1 = 3 points.
  assert.equal(pairwiseAccuracy(pairs, 0).points, 3);
  // Threshold 1 predicts a tie everywhere: 0.5 + 0.5 + 1 + 1 + 0.5.
  assert.equal(pairwiseAccuracy(pairs, 1).points, 3.5);
  // The inclusive rule: |prob_1 - prob_0| equal to the threshold is a tie.
  assert.equal(pairwiseAccuracy([{ score0: 0, score1: 0, label0: 0.5 }], 0).points, 1);
  assert.throws(() => pairwiseAccuracy(pairs, 1.5), /Expected a number from 0 to 1 for the tie threshold but received number 1.5/);
});

test('chooseTieThreshold takes the first best of the paper\'s grid', () => {
  const pairs = [pairWithProb0(0.52, 0.5), pairWithProb0(0.58, 0.5), pairWithProb0(0.9, 1), pairWithProb0(0.85, 1)];
  // |diff| is 0.04, 0.16, 0.8, 0.7. Threshold 0.2 makes both tie labels ties (4 points) while 0.7 starts
  // to cost the non-tie pairs: 0: 3, 0.1: 3.5, 0.2..0.6: 4, 0.7: 3.5, 0.8..1: 3.
  const chosen = chooseTieThreshold(pairs);
  assert.equal(chosen.threshold, 0.2);
  assert.equal(chosen.accuracy, 1);
  assert.deepEqual(chosen.table.map((row) => row.accuracy * 4), [3, 3.5, 4, 4, 4, 4, 4, 3.5, 3, 3, 3]);
});

test('rankDescending breaks ties by code point, so an astral character sorts after U+FF01 as discovery sorts it', () => {
  // By UTF-16 code unit the emoji's high surrogate (0xD83D) would sort before U+FF01.
  const ranked = rankDescending([{ key: 'a\u{1F600}.png', score: 1 }, { key: 'a\uFF01.png', score: 1 }]);
  assert.deepEqual(ranked.map((r) => r.key), ['a\uFF01.png', 'a\u{1F600}.png']);
  assert.ok(compareCodePoints('\uFF01', '\u{1F600}') < 0);
});

test('rankingAgreement: drift, tau, top-1 and what a wrong pick costs, worked by hand', () => {
  const baseline = [[3, 2, 1], [1, 2, 3]];
  const same = rankingAgreement(baseline, baseline);
  assert.deepEqual(same, { maxScoreDrift: 0, scoreSpread: 2, kendallTauMean: 1, kendallTauMin: 1, top1Agreement: 1, top1RegretMean: 0, top1RegretMax: 0 });
  // Prompt 0: the first two images swap (tau 1/3, the pick costs 3 - 2 = 1); prompt 1 drifts by 0.25 without reordering.
  const swapped = rankingAgreement([[2, 3, 1], [1.25, 2, 3]], baseline);
  assert.equal(swapped.maxScoreDrift, 1);
  assertClose(swapped.kendallTauMean, (1 / 3 + 1) / 2, 1e-15, 'mean tau');
  assertClose(swapped.kendallTauMin, 1 / 3, 1e-15, 'min tau');
  assert.equal(swapped.top1Agreement, 0.5);
  assert.equal(swapped.top1RegretMean, 0.5);
  assert.equal(swapped.top1RegretMax, 1);
  assert.throws(() => rankingAgreement([[1, 2]], baseline), /same prompts/);
  assert.throws(() => rankingAgreement([[1, 2], [1, 2]], baseline), /prompt 0/);
});

test('embeddingDrift: largest error, error relative to the scale, and the worst row cosine', () => {
  const expected = Float32Array.from([1, 0, 0, 2]);
  const actual = Float32Array.from([1, 0, 0.5, 2]);
  const drift = embeddingDrift(actual, expected, 2);
  assert.equal(drift.maxAbsError, 0.5);
  assert.equal(drift.relError, 0.25);
  assertClose(drift.minCosine, 4 / (2 * Math.hypot(0.5, 2)), 1e-7, 'row 1 turned; row 0 is identical');
  assertClose(embeddingDrift(Float32Array.from([0, 1]), Float32Array.from([1, 1]), 2).minCosine, Math.SQRT1_2, 1e-15, 'cosine of 45 degrees');
  assert.equal(relativeError([1, 2], [1, 4]), 0.5);
});

test('softmax and rankingAgreement take one prompt over 300,000 images (no spread of the list onto the call stack)', () => {
  const scores = Array.from({ length: 300_000 }, (_, i) => (i % 1000) / 100);
  const probs = softmax(scores);
  assertClose(probs.reduce((a, b) => a + b, 0), 1, 1e-9, 'probabilities sum to 1');
  assertClose(probs[999] / probs[0], Math.exp(9.99), 1e-9, 'ratio of the largest to the smallest');
  const agreement = rankingAgreement([scores.slice(0, 200_000)], [scores.slice(0, 200_000)]);
  assert.equal(agreement.scoreSpread, 9.99);
  assert.equal(agreement.top1RegretMax, 0);
});

test('unitEmbeddingProblem accepts a unit vector of the width and names what is wrong with anything else', () => {
  const unit = l2normalize(Float32Array.from({ length: 1024 }, (_, i) => Math.sin(i + 1)), 1024);
  assert.equal(unitEmbeddingProblem(unit, 1024), undefined);
  assert.equal(unitEmbeddingProblem(Float32Array.of(0.6, 0.8), 2), undefined);
  assert.equal(unitEmbeddingProblem(Float32Array.of(1), 2), '1 value where the model gives 2');
  assert.equal(unitEmbeddingProblem(Float32Array.of(1, 0, 0), 2), '3 values where the model gives 2');
  assert.equal(unitEmbeddingProblem(Float32Array.of(Number.NaN, 1), 2), 'value 0 is NaN');
  assert.equal(unitEmbeddingProblem(Float32Array.of(1, -Infinity), 2), 'value 1 is -Infinity');
  assert.equal(unitEmbeddingProblem(Float32Array.of(0, 0), 2), 'its length is 0.000, not 1');
  assert.equal(unitEmbeddingProblem(Float32Array.of(1.2, 1.6), 2), 'its length is 2.000, not 1');
  assert.equal(unitEmbeddingProblem(Float32Array.of(0.6006, 0.8), 2), undefined, 'float rounding is within the tolerance');
});
