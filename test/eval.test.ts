import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { runEval, runEvalPart } from '../src/commands/eval.js';
import { mergeEvalParts } from '../src/commands/merge.js';
import { Scorer } from '../src/pipeline/scorer.js';
import { softmax } from '../src/score/similarity.js';
import { fixturesDir, referenceDir, skipWithoutReference } from './helpers/paths.js';
import { tinyModel } from './helpers/tiny-model.js';
import { runCli } from './helpers/pipe-cli.js';
import { withTempDir } from './helpers/temp-dir.js';

const evalDir = path.join(fixturesDir, 'eval');
const SCORE_TOLERANCE = 0.01;   // the end-to-end parity bound of the rank pipeline

interface Reference { prompts: { prompt: string }[]; images: { image: string; orientation: string }[]; scores: { values: number[][] } }


function close(actual: number | null, expected: number, what: string): void {
  assert.ok(actual !== null && Math.abs(actual - expected) <= SCORE_TOLERANCE, `${what}: ${actual} is not within ${SCORE_TOLERANCE} of ${expected}`);
}

const mean = (xs: number[]): number => xs.reduce((a, b) => a + b, 0) / xs.length;

test('eval on reference images reproduces the Python scores, and the report agrees with them', { skip: skipWithoutReference }, async () => {
  const ref = JSON.parse(await readFile(path.join(referenceDir, 'reference.json'), 'utf8')) as Reference;
  const column = (image: string): number => ref.images.findIndex((i) => i.image === image && i.orientation === 'raw');
  const expected = (p: number, image: string): number => ref.scores.values[p][column(image)];
  const prompts = [0, 4];
  const models = { x: ['astronaut.jpg', 'chelsea.webp'], y: ['coffee.png', 'tiny-5x3.png'] };
  await withTempDir('eval', async (dir) => {
    const imagePath = (name: string): string => path.join(referenceDir, 'images', name);
    const lines = prompts.flatMap((p) => Object.entries(models).flatMap(([model, images]) =>
      images.map((image) => ({ prompt: ref.prompts[p].prompt, image: imagePath(image), model }))));
    const pairs = [
      { caption: ref.prompts[0].prompt, image_0: imagePath('astronaut.jpg'), image_1: imagePath('coffee.png'), label_0: 1 },
      { caption: ref.prompts[4].prompt, image_0: imagePath('chelsea.webp'), image_1: imagePath('tiny-5x3.png'), label_0: 0 },
      { caption: ref.prompts[4].prompt, image_0: imagePath('astronaut.jpg'), image_1: imagePath('coffee.png'), label_0: 0.5 },
    ];
    const manifest = path.join(dir, 'm.jsonl');
    await writeFile(manifest, [...lines, ...pairs].map((l) => JSON.stringify(l)).join('\n'));
    const result = await runEval({ manifests: [manifest], model: await tinyModel(), device: 'cpu', cacheDir: false, threads: 2, exif: 'ignore' });
    assert.equal(result.incomplete, false);
    assert.equal(result.counts.uniqueImages, 4);

    for (const item of result.items.filter((i) => i.kind === 'pointwise')) {
      const p = prompts.find((q) => ref.prompts[q].prompt === item.prompt)!;
      close(item.score as number, expected(p, path.basename(item.image as string)), `${item.image} x prompt ${p}`);
    }
    for (const [model, images] of Object.entries(models)) {
      const summary = result.report.models.find((m) => m.model === model)!;
      const values = prompts.flatMap((p) => images.map((image) => expected(p, image)));
      assert.equal(summary.n, 4);
      close(summary.mean, mean(values), `${model} mean`);
      summary.perPrompt.forEach((pp, k) => close(pp.mean, mean(images.map((image) => expected(prompts[k], image))), `${model} prompt mean`));
    }
    const comparison = result.report.comparisons[0];
    const diffs = prompts.map((p) => mean(models.y.map((i) => expected(p, i))) - mean(models.x.map((i) => expected(p, i))));
    assert.deepEqual([comparison.baseline, comparison.candidate, comparison.prompts], ['x', 'y', 2]);
    close(comparison.meanDiff, mean(diffs), 'mean difference');
    assert.equal(comparison.wins, diffs.filter((d) => d > 0).length);

    // Pairwise accuracy from the reference scores, under the paper's rule with the default threshold 0.
    const outcome = (s0: number, s1: number, label: number): number => {
      const [p0, p1] = softmax([s0, s1]);
      const predicted = p0 === p1 ? 0.5 : p0 > p1 ? 1 : 0;
      return predicted === label ? 1 : predicted === 0.5 || label === 0.5 ? 0.5 : 0;
    };
    const points = pairs.map((pr) => {
      const p = prompts.find((q) => ref.prompts[q].prompt === pr.caption)!;
      return outcome(expected(p, path.basename(pr.image_0)), expected(p, path.basename(pr.image_1)), pr.label_0);
    });
    assert.equal(result.report.pairwise?.paper.points, points.reduce((a, b) => a + b, 0));
    assert.equal(result.report.pairwise?.tiesExcluded.n, 2);
    assert.equal(result.report.provenance?.model, 'tiny-clip');
  });
});

let fixtureRun: ReturnType<typeof runEval> | undefined;

/** The fixture manifests scored once, shared by the tests that read the result. */
function fixtureEval(): ReturnType<typeof runEval> {
  fixtureRun ??= tinyModel().then((model) => runEval({
    manifests: [path.join(evalDir, 'checkpoints.jsonl'), path.join(evalDir, 'pairs.jsonl')],
    validation: path.join(evalDir, 'validation.jsonl'),
    model, device: 'cpu', cacheDir: false, threads: 2, baseline: 'ckpt-a', candidate: 'ckpt-b',
  }));
  return fixtureRun;
}

test('eval on the fixture manifests: identical files scored once, ties, validation threshold', { skip: skipWithoutReference }, async () => {
  const result = await fixtureEval();
  // car-a.png and car-a-copy.png have the same bytes: 6 distinct images. Distinct (image, prompt) pairs: 6 in
  // checkpoints.jsonl, fox-b x ramen from pairs.jsonl, car-b x ramen from validation.jsonl; the rest repeat.
  assert.equal(result.counts.uniqueImages, 6);
  assert.equal(result.counts.scoreRequests, 8);
  const car = result.items.filter((i) => i.kind === 'pointwise' && String(i.image).startsWith('images/car-a'));
  assert.equal(car.length, 2);
  assert.equal(car[0].score, car[1].score);
  assert.equal(car[1].seed, 4, 'extra manifest fields pass through');

  const report = result.report;
  assert.deepEqual(report.models.map((m) => [m.model, m.n, m.perPrompt.length]), [['ckpt-a', 4, 3], ['ckpt-b', 3, 3]]);
  assert.equal(report.comparisons.length, 1);
  assert.equal(report.comparisons[0].prompts, 3);
  assert.equal(report.gate?.baseline, 'ckpt-a');
  const pw = report.pairwise!;
  assert.deepEqual([pw.n, pw.paper.tieLabels, pw.thresholdSource, pw.validation?.n, pw.tiesExcluded.n], [5, 2, 'validation', 3, 3]);
  assert.ok(pw.paper.predictedTies >= 1, 'the pair of identical images is a predicted tie at any threshold');
  assert.equal(pw.paper.points, pw.paper.accuracy! * 5);
});

test('CLI gate: exit 1 when the candidate is worse on every prompt, 0 the other way, one line why; summary appended', { skip: skipWithoutReference }, async () => {
  const model = await tinyModel();
  const first = await runEval({ manifests: [path.join(evalDir, 'checkpoints.jsonl')], model, device: 'cpu', cacheDir: false, threads: 2 });
  // Per prompt, the better and the worse of the two checkpoints' images under this model.
  const byPrompt = new Map<string, { image: string; score: number }[]>();
  for (const item of first.items) {
    if (item.id === 'car-2') continue;
    const list = byPrompt.get(item.prompt as string) ?? [];
    list.push({ image: item.image as string, score: item.score as number });
    byPrompt.set(item.prompt as string, list);
  }
  await withTempDir('eval', async (dir) => {
    const lines = [...byPrompt].flatMap(([prompt, [one, two]]) => {
      const [better, worse] = one.score >= two.score ? [one, two] : [two, one];
      assert.notEqual(better.score, worse.score);
      return [
        { prompt, image: path.join(evalDir, better.image), model: 'good' },
        { prompt, image: path.join(evalDir, worse.image), model: 'bad' },
      ];
    });
    const manifest = path.join(dir, 'gate.jsonl');
    await writeFile(manifest, lines.map((l) => JSON.stringify(l)).join('\n'));
    const summary = path.join(dir, 'summary.md');
    const scores = path.join(dir, 'scores.csv');
    const common = [manifest, '--model', model, '--device', 'cpu', '--no-cache', '--format', 'md'];
    const worse = await runCli(['eval', ...common, '--baseline', 'good', '--candidate', 'bad', '--scores', scores], { env: { GITHUB_STEP_SUMMARY: summary } });
    assert.equal(worse.code, 1, worse.stderr);
    assert.match(worse.stderr, /^gate: FAIL: bad is worse than good: mean\(bad - good\) = -[\d.]+ over 3 prompts/m);
    assert.match(worse.stdout, /\*\*Gate:\*\* ❌ FAIL/);
    assert.equal(await readFile(summary, 'utf8'), `${worse.stdout}\n`, 'the Markdown summary is appended to $GITHUB_STEP_SUMMARY');
    assert.equal((await readFile(scores, 'utf8')).split('\n')[0], 'manifest,line,kind,id,model,prompt,image,score,error');

    const better = await runCli(['eval', ...common, '--baseline', 'bad', '--candidate', 'good']);
    assert.equal(better.code, 0, better.stderr);
    assert.match(better.stderr, /^gate: PASS: good is not worse than bad beyond 0/m);

    const usage = await runCli(['eval', ...common, '--baseline', 'bad', '--candidate', 'nobody']);
    assert.equal(usage.code, 2);
    assert.match(usage.stderr, /Expected a model of the manifest \(good, bad\) for --candidate but received "nobody"/);

    const invalid = await runCli(['eval', path.join(evalDir, 'invalid.jsonl'), '--model', model, '--device', 'cpu', '--no-cache']);
    assert.equal(invalid.code, 4);
    assert.match(invalid.stderr, /invalid\.jsonl:4: json: Expected a JSON object/);
  });
});

test('sharded eval: the parts merge into the report of the unsharded run; an interrupted run is marked incomplete', { skip: skipWithoutReference }, async () => {
  const scorer = await Scorer.open({ model: await tinyModel(), device: 'cpu', cacheDir: false, threads: 2, batchSize: 2 });
  try {
    const options = {
      manifests: [path.join(evalDir, 'checkpoints.jsonl'), path.join(evalDir, 'pairs.jsonl')],
      validation: path.join(evalDir, 'validation.jsonl'), baseline: 'ckpt-a', candidate: 'ckpt-b', scorer,
    };
    const whole = await runEval(options);
    const parts = [];
    for (const index of [0, 1]) {
      // One after the other: a scorer runs one stream at a time.
      const shard = { index, count: 2 };
      const { part } = await runEvalPart({ ...options, shard });
      parts.push({ ...part, file: `part-${index}.json`, shardOf: shard });
    }
    assert.ok(parts.every((p) => p.items.length > 0), 'both shards hold rows');
    const merged = mergeEvalParts(parts);
    assert.deepEqual(merged.report, whole.report);
    assert.deepEqual(merged.items, whole.items);

    const controller = new AbortController();
    const stopped = await runEval({ ...options, signal: controller.signal, onProgress: () => controller.abort() });
    assert.equal(stopped.incomplete, true);
    assert.equal(stopped.report.incomplete, true);
    assert.ok(stopped.counts.notReached > 0);
    assert.equal(stopped.report.counts.notReached, stopped.counts.notReached);
  } finally {
    await scorer.close();
  }
});

test('a manifest with nothing to score exits 4 naming it: empty, blank, or every line skipped; counts are of lines', async () => {
  await withTempDir('eval-empty', async (dir) => {
    // A model that does not exist: the manifest must stop the run before the model is looked at.
    const noModel = ['--model', path.join(dir, 'no-such-model'), '--device', 'cpu', '--no-cache', '--format', 'json'];
    for (const [name, text, said] of [['empty.jsonl', '', 'is empty'], ['blank.jsonl', '\n  \r\n\t\n', 'is blank'], ['bom.jsonl', '\uFEFF\n', 'is blank']]) {
      const file = path.join(dir, name);
      await writeFile(file, text);
      const run = await runCli(['eval', file, ...noModel]);
      assert.equal(run.code, 4, `${name}: ${run.stderr}`);
      assert.equal(run.stdout, '');
      assert.match(run.stderr, new RegExp(`The manifest ${file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} ${said}: it holds no JSON lines to score`));
    }
    // Beside a good manifest, an empty one is still a mistake worth stopping for.
    const good = path.join(dir, 'good.jsonl');
    await writeFile(good, `${JSON.stringify({ prompt: 'a fox', image: path.join(evalDir, 'images', 'fox-a.png') })}\n`);
    const withEmpty = await runCli(['eval', good, path.join(dir, 'empty.jsonl'), ...noModel]);
    assert.equal(withEmpty.code, 4, withEmpty.stderr);
    assert.match(withEmpty.stderr, /empty\.jsonl is empty/);

    const invalid = path.join(evalDir, 'invalid.jsonl');
    const listed = await runCli(['eval', invalid, ...noModel]);
    assert.equal(listed.code, 4);
    assert.match(listed.stderr, /^error: 11 problems on 9 invalid manifest lines \(pass --skip-invalid to score the others\):$/m);
    // --skip-invalid with every line bad: nothing is left, so the run stops too.
    const allBad = path.join(dir, 'all-bad.jsonl');
    await writeFile(allBad, '{"prompt": "a fox"}\nnot json\n\n[1, 2]\n');
    const skipped = await runCli(['eval', allBad, '--skip-invalid', ...noModel]);
    assert.equal(skipped.code, 4, skipped.stderr);
    assert.match(skipped.stderr, /Every line of the manifest .*all-bad\.jsonl is invalid \(3 lines, all skipped with --skip-invalid\): it holds nothing to score/);
  });
});
