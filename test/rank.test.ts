import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFile, copyFile } from 'node:fs/promises';
import path from 'node:path';
import { rankRecords, runRank } from '../src/commands/rank.js';
import type { ScoredItem } from '../src/pipeline/scorer.js';
import { referenceDir, skipWithoutReference } from './helpers/paths.js';
import { tinyModel } from './helpers/tiny-model.js';
import { writeGradientPngs } from './helpers/pipe-images.js';
import { withTempDir } from './helpers/temp-dir.js';

function item(key: string, prompt: string, score: number | null, error: string | null = null): ScoredItem {
  return { key, prompt, score, width: score === null ? null : 10, height: score === null ? null : 10, contentHash: null, error };
}


test('rankRecords ranks per prompt, breaks ties by path, and gives the model card probabilities', () => {
  const records = rankRecords([
    item('b.png', 'p', 20), item('a.png', 'p', 20), item('c.png', 'p', 22), item('bad.png', 'p', null, 'truncated'),
    item('a.png', 'q', 1), item('b.png', 'q', 3),
  ]);
  assert.deepEqual(records.map((r) => [r.prompt, r.path, r.rank]), [
    ['p', 'c.png', 1], ['p', 'a.png', 2], ['p', 'b.png', 3], ['p', 'bad.png', null], ['q', 'b.png', 1], ['q', 'a.png', 2],
  ]);
  // calc_probs: softmax over one prompt's scores, which already include logit_scale.
  const z = Math.exp(22) + 2 * Math.exp(20);
  assert.ok(Math.abs((records[0].prob as number) - Math.exp(22) / z) < 1e-12);
  assert.ok(Math.abs((records[1].prob as number) - Math.exp(20) / z) < 1e-12);
  assert.equal(records[3].error, 'truncated');
  assert.equal(records[3].prob, null);
  assert.ok(Math.abs((records[4].prob as number) - Math.exp(3) / (Math.exp(1) + Math.exp(3))) < 1e-12);
});

test('rankRecords with top keeps the best K per prompt, and every failed row', () => {
  const records = rankRecords([item('a', 'p', 1), item('b', 'p', 3), item('c', 'p', 2), item('d', 'p', null, 'unreadable')], 2);
  assert.deepEqual(records.map((r) => r.path), ['b', 'c', 'd']);
});

test('runRank needs a prompt source, and only one kind', async () => {
  await assert.rejects(runRank({ inputs: ['x'] }), { name: 'UsageError', message: /--prompt, --prompts-file or --prompt-from/ });
  await assert.rejects(runRank({ inputs: ['x'], prompts: ['p'], promptFrom: 'png' }), { name: 'UsageError', message: /--prompt-from/ });
  await assert.rejects(runRank({ inputs: ['x'], prompts: ['p'], top: 0 }), { name: 'UsageError', message: /--top/ });
});

test('runRank: a missing path is an input error naming it', async () => {
  await assert.rejects(runRank({ inputs: ['/nonexistent/pickscore-images'], prompts: ['p'], cacheDir: false }), {
    name: 'InputError', message: /\/nonexistent\/pickscore-images/,
  });
});

test('runRank scores every image against every prompt, warns once about a truncated prompt, and counts', { skip: skipWithoutReference }, async () => {
  const model = await tinyModel();
  const longPrompt = Array.from({ length: 90 }, (_, i) => `word${i}`).join(' ');
  const log: string[] = [];
  const result = await runRank({
    inputs: [path.join(referenceDir, 'images')], prompts: ['a cat', longPrompt], model, device: 'cpu', cacheDir: false, threads: 2, log: (l) => log.push(l),
  });
  assert.equal(result.counts.images, 10);
  assert.equal(result.records.length, 20);
  assert.equal(result.incomplete, false);
  for (const prompt of ['a cat', longPrompt]) {
    const rows = result.records.filter((r) => r.prompt === prompt);
    assert.deepEqual(rows.map((r) => r.rank), Array.from({ length: 10 }, (_, i) => i + 1));
    const total = rows.reduce((sum, r) => sum + (r.prob as number), 0);
    assert.ok(Math.abs(total - 1) < 1e-9);
  }
  const truncation = log.filter((l) => l.startsWith('warning:') && /tokens/.test(l));
  assert.equal(truncation.length, 1, log.join('\n'));
  const tokenCount = Number(/has (\d+) tokens/.exec(truncation[0])?.[1]);
  assert.ok(tokenCount > 77, truncation[0]);
  assert.equal(result.stats.imagesEncoded, 10, 'each image is encoded once for both prompts');
});

test('runRank --prompt-from sidecar: each image its own prompt; a missing sidecar is an error row', { skip: skipWithoutReference }, async () => {
  const model = await tinyModel();
  await withTempDir('rank', async (dir) => {
    const names = await writeGradientPngs(dir, 3);
    await writeFile(path.join(dir, 'img-000.txt'), 'red\n');
    await writeFile(path.join(dir, 'img-001.txt'), 'red');
    await copyFile(path.join(referenceDir, 'images', 'tiny-5x3.png'), path.join(dir, 'img-003.png'));
    await writeFile(path.join(dir, 'img-003.txt'), 'blue');
    const result = await runRank({ inputs: [dir], promptFrom: 'sidecar', model, device: 'cpu', cacheDir: false, threads: 1 });
    const byPath = new Map(result.records.map((r) => [path.basename(r.path), r]));
    assert.equal(byPath.get(names[0])?.prompt, 'red');
    assert.equal(byPath.get('img-003.png')?.rank, 1);
    assert.equal(byPath.get('img-003.png')?.prob, 1);
    assert.match(byPath.get(names[2])?.error ?? '', /sidecar/);
    assert.deepEqual(result.records.filter((r) => r.prompt === 'red').map((r) => r.rank).sort(), [1, 2]);
    assert.equal(result.counts.errors, 1);
  });
});

test('runRank stopped by its signal returns what was done, marked incomplete', { skip: skipWithoutReference }, async () => {
  const model = await tinyModel();
  await withTempDir('rank', async (dir) => {
    await writeGradientPngs(dir, 12);
    const controller = new AbortController();
    const result = await runRank({
      inputs: [dir], prompts: ['p'], model, device: 'cpu', cacheDir: false, batchSize: 4, threads: 1,
      signal: controller.signal, onProgress: (done) => { if (done >= 1) controller.abort(); },
    });
    assert.equal(result.incomplete, true);
    assert.equal(result.records.length, 4);
    assert.equal(result.counts.notReached, 8);
    assert.deepEqual(result.records.map((r) => r.rank), [1, 2, 3, 4]);
  });
});

test('runRank scores a file whose name is not valid UTF-8', { skip: skipWithoutReference }, async () => {
  const model = await tinyModel();
  await withTempDir('rank', async (dir) => {
    const rawName = Buffer.concat([Buffer.from(`${dir}/odd-`), Buffer.from([0xff, 0xfe]), Buffer.from(',"name.png')]);
    await copyFile(path.join(referenceDir, 'images', 'tiny-5x3.png'), rawName);
    const result = await runRank({ inputs: [dir], prompts: ['p'], model, device: 'cpu', cacheDir: false, threads: 1 });
    assert.equal(result.records.length, 1);
    assert.equal(result.records[0].error, null, result.records[0].error ?? '');
    assert.deepEqual([result.records[0].width, result.records[0].height], [5, 3]);
    assert.match(result.records[0].path, /odd-\\x[Ff]{2}\\x[Ff][Ee],"name\.png$/);
  });
});
