import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { InputError } from '../src/errors.js';
import { buildEvalPart, evalShardKey, runMerge, type MergedEval } from '../src/commands/merge.js';
import { evalRunIdentity } from '../src/commands/eval.js';
import { buildReport, type PairScore, type PointScore, type ReportInput } from '../src/eval/report.js';
import { pairwiseRecord, pointwiseRecord, type ItemRecord } from '../src/eval/scores-file.js';
import { parseManifest, type ManifestRow } from '../src/io/manifest.js';
import type { Provenance } from '../src/pipeline/scorer.js';
import { mulberry32 } from '../src/score/stats.js';
import { shardOfKey } from '../src/shard.js';

const provenance: Provenance = {
  model: 'tiny-clip', fingerprint: 'f00d', sourceFiles: [], precision: 'fp32', attention: 'plain', executionProvider: 'cpu', device: 'cpu',
  onnxruntimeVersion: '1.29.0', pickscoreVersion: '0.1.0', exif: 'apply', resize: 'exact', maxPixels: 178956970,
};

/** Manifests as text, so rows come from the real manifest parser. */
function manifests(): { main: ManifestRow[]; validation: ManifestRow[] } {
  const pointwise: string[] = [];
  for (let p = 0; p < 12; p++) {
    for (const model of ['base', 'cand']) {
      for (let k = 0; k < 2; k++) pointwise.push(JSON.stringify({ prompt: `prompt ${p}`, image: `${model}/p${p}-${k}.png`, model }));
    }
  }
  // An image shared by two prompts, and a line that fails to score.
  pointwise.push(JSON.stringify({ prompt: 'prompt 3', image: 'base/p0-0.png', model: 'base' }));
  pointwise.push(JSON.stringify({ prompt: 'prompt 5', image: 'cand/missing.png', model: 'cand' }));
  const pairs = Array.from({ length: 20 }, (_, i) => JSON.stringify({ prompt: `pair ${i}`, image_0: `pairs/${i}a.png`, image_1: `pairs/${i}b.png`, label_0: [0, 0.5, 1][i % 3] }));
  const validation = Array.from({ length: 15 }, (_, i) => JSON.stringify({ prompt: `val ${i}`, image_0: `val/${i}a.png`, image_1: `val/${i}b.png`, label_0: [1, 0, 0.5][i % 3] }));
  return {
    main: [...parseManifest(pointwise.join('\n'), 'runs/points.jsonl').rows, ...parseManifest(pairs.join('\n'), 'runs/pairs.jsonl').rows],
    validation: parseManifest(validation.join('\n'), 'runs/val.jsonl').rows,
  };
}

/** A deterministic stand-in for the model: a score per (image, prompt); candidates score a little higher. */
function scoreOf(image: string, prompt: string): number | null {
  if (image.includes('missing')) return null;
  let seed = 0;
  for (const c of `${image}|${prompt}`) seed = (seed * 31 + c.charCodeAt(0)) >>> 0;
  return 18 + 4 * mulberry32(seed)() + (image.startsWith('cand') ? 0.3 : 0);
}

/** What eval does with scored rows: report rows and per-item records, in row order. */
function scoreRows(rows: ManifestRow[]): { points: PointScore[]; pairs: PairScore[]; items: ItemRecord[] } {
  const out = { points: [] as PointScore[], pairs: [] as PairScore[], items: [] as ItemRecord[] };
  for (const row of rows) {
    if (row.kind === 'pointwise') {
      const score = scoreOf(row.image.given, row.prompt);
      const error = score === null ? 'cannot read image' : null;
      out.points.push({ model: row.model, prompt: row.prompt, image: row.image.given, path: row.image.path, score, error });
      out.items.push(pointwiseRecord(row, score, error));
    } else {
      const [score0, score1] = [scoreOf(row.image0.given, row.prompt), scoreOf(row.image1.given, row.prompt)];
      out.pairs.push({ prompt: row.prompt, image0: row.image0.given, image1: row.image1.given, path0: row.image0.path, path1: row.image1.path, label0: row.label0, score0, score1, error: null });
      out.items.push(pairwiseRecord(row, score0, score1, null));
    }
  }
  return out;
}

const settings = { seed: 7, resamples: 2000, baseline: 'base', candidate: 'cand', maxDrop: 0.05 };

function reportInput(main: ManifestRow[], validation: ManifestRow[], overrides: Partial<typeof settings> = {}): { input: ReportInput; items: ItemRecord[]; validationItems: ItemRecord[] } {
  const scored = scoreRows(main);
  const scoredValidation = scoreRows(validation);
  return {
    input: {
      points: scored.points, pairs: scored.pairs, provenance, incomplete: false,
      manifests: ['runs/points.jsonl', 'runs/pairs.jsonl'], skippedLines: 1, notReached: 0,
      options: { ...settings, ...overrides, validation: { manifest: 'runs/val.jsonl', pairs: scoredValidation.pairs } },
    },
    items: scored.items,
    validationItems: scoredValidation.items,
  };
}

let dir: string;
before(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'pickscore-merge-eval-test-'));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function writeEvalParts(count: number, tag: string, overrides: (index: number) => Partial<typeof settings> = () => ({})): Promise<string[]> {
  const { main, validation } = manifests();
  const files: string[] = [];
  for (let index = 0; index < count; index++) {
    const mine = (rows: ManifestRow[]): ManifestRow[] => rows.filter((row) => shardOfKey(evalShardKey(row), count) === index);
    const { input, items, validationItems } = reportInput(mine(main), mine(validation), overrides(index));
    const file = path.join(dir, `${tag}-${index}.json`);
    await writeFile(file, `${JSON.stringify(buildEvalPart({ index, count }, input, items, validationItems, evalRunIdentity(main, validation)), null, 2)}\n`);
    files.push(file);
  }
  return files;
}

async function mergeEval(parts: string[]): Promise<MergedEval> {
  const merged = await runMerge({ parts });
  assert.equal(merged.kind, 'eval');
  return merged as MergedEval;
}

test('merged eval parts give the unsharded report: aggregates, bootstrap intervals, accuracy and gate', async () => {
  const { main, validation } = manifests();
  const unsharded = reportInput(main, validation);
  const expected = buildReport(unsharded.input);
  assert.ok(expected.gate !== null && expected.pairwise?.validation !== null, 'the fixture exercises the gate and the validation threshold');
  for (const count of [1, 2, 3]) {
    const merged = await mergeEval(await writeEvalParts(count, `eval${count}`));
    assert.equal(JSON.stringify(merged.report, null, 2), JSON.stringify(expected, null, 2), `N=${count}`);
    assert.deepEqual(merged.items, unsharded.items);
    assert.equal(merged.counts.errors, 1);
    assert.equal(merged.shardCount, count);
  }
});

test('each shard really holds part of the rows, and an image with several prompts stays in one shard', async () => {
  const files = await writeEvalParts(3, 'split');
  const parts = await Promise.all(files.map(async (f) => JSON.parse(await readFile(f, 'utf8')) as { points: { image: string }[]; pairs: unknown[] }));
  for (const part of parts) assert.ok(part.points.length > 0 && part.points.length < 50);
  const holding = parts.filter((part) => part.points.some((p) => p.image === 'base/p0-0.png'));
  assert.equal(holding.length, 1);
  assert.equal(holding[0].points.filter((p) => p.image === 'base/p0-0.png').length, 2);
});

test('eval parts scored with different settings, or overlapping, are refused', async () => {
  const mixed = await writeEvalParts(2, 'mixed', (i) => (i === 1 ? { seed: 8 } : {}));
  await assert.rejects(runMerge({ parts: mixed }), /mixed-0\.json and .*mixed-1\.json differ in settings/);
  const good = await writeEvalParts(2, 'good');
  await assert.rejects(runMerge({ parts: [good[0], good[0]] }), /are both shard 0\/2/);
  const other = await writeEvalParts(3, 'three');
  await assert.rejects(runMerge({ parts: [good[0], other[1]] }), /split 2 and 3 ways/);
  await assert.rejects(runMerge({ parts: good, top: 3 }), /--top applies to rank outputs/);
});

test('an eval report is not a part, and says so', async () => {
  const { main, validation } = manifests();
  const report = path.join(dir, 'report.json');
  await writeFile(report, JSON.stringify(buildReport(reportInput(main, validation).input)));
  await assert.rejects(runMerge({ parts: [report] }), /report\.json is an eval report, not a shard part/);
});

test('eval parts of runs over other manifest rows are refused, naming what differs and the parts', async () => {
  const { main, validation } = manifests();
  const files = await writeEvalParts(2, 'rows');
  // Shard 1 of a run whose manifest held another prompt on one line (the same file name, other contents).
  const edited = main.map((row, i) => (i === 0 ? { ...row, prompt: 'an edited prompt' } : row));
  const part = JSON.parse(await readFile(files[1], 'utf8')) as Record<string, unknown>;
  await writeFile(files[1], JSON.stringify({ ...part, run: evalRunIdentity(edited, validation) }));
  await assert.rejects(runMerge({ parts: files }), (err: unknown) => err instanceof InputError
    && /^The parts come from different runs/.test(err.message)
    && /manifest rows: .*rows-0\.json: 70 valid rows \(sha256 [0-9a-f]{12}\); .*rows-1\.json: 70 valid rows \(sha256 [0-9a-f]{12}\)/.test(err.message));
  const noValidation = await writeEvalParts(2, 'noval');
  const other = JSON.parse(await readFile(noValidation[0], 'utf8')) as Record<string, unknown>;
  await writeFile(noValidation[0], JSON.stringify({ ...other, run: evalRunIdentity(main, undefined) }));
  await assert.rejects(runMerge({ parts: noValidation }), /validation rows: .*noval-0\.json: no --validation; .*noval-1\.json: 15 valid rows/);
});

test('eval parts without a run identity are refused; parts that lost rows are refused', async () => {
  const legacy = await writeEvalParts(2, 'legacy');
  const part = JSON.parse(await readFile(legacy[0], 'utf8')) as Record<string, unknown>;
  delete part.run;
  await writeFile(legacy[0], JSON.stringify(part));
  await assert.rejects(runMerge({ parts: legacy }), (err: unknown) => err instanceof InputError && /legacy-0\.json has no run, the identity of the run it is a part of/.test(err.message));
  const lossy = await writeEvalParts(2, 'lossy');
  const doc = JSON.parse(await readFile(lossy[1], 'utf8')) as { points: unknown[] };
  await writeFile(lossy[1], JSON.stringify({ ...doc, points: doc.points.slice(1) }));
  await assert.rejects(runMerge({ parts: lossy }), /lossy-0\.json, .*lossy-1\.json hold 69 scored manifest rows, but their run had 70/);
});
