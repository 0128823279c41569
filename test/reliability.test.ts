/**
 * Reliability end to end: the real CLI over folders, manifests, models, caches and outputs that are
 * wrong in every way docs/reliability.md lists. Each run must finish with a row or a message for everything, lose
 * nothing, and exit with the documented code. Unit-level cases live beside their modules (image-codec,
 * image-pool, discover, manifest, cache, atomic, writers); these tests cover what only a whole run shows.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { copyFile, mkdir, readdir, readFile, rm, truncate, writeFile } from 'node:fs/promises';
import { openSync, closeSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { repoRoot, skipWithoutReference } from './helpers/paths.js';
import { tinyModel } from './helpers/tiny-model.js';
import { cliEntry, runCli, signalWhen, spawnCli, type CliResult } from './helpers/pipe-cli.js';
import { writeGradientPngs } from './helpers/pipe-images.js';
import { writeBadInputFolder, writeDistinctPngs } from './helpers/bad-inputs.js';
import { withTempDir } from './helpers/temp-dir.js';

interface Row { path: string; prompt: string; score: number | null; prob: number | null; rank: number | null; error: string | null }
interface RankJson { incomplete: boolean; rows: Row[]; provenance: { stats: { imagesEncoded: number; imageCacheHits: number; imageEncoderCalls: number } } }
interface Stats { stats: { imagesEncoded: number; imageCacheHits: number; imageEncoderCalls: number } }

const PROMPTS = ['a gradient', 'a cat'];
/** A hung run (a FIFO read once blocked forever) fails the test instead of stalling the suite. */
const SPAWNING = { skip: skipWithoutReference, timeout: 300_000 };


/** The CLI as another user (root reads chmod 000 files) or with stdout on a given file descriptor. */
function runCliWith(args: string[], opts: { runAs?: { uid: number; gid: number }; stdoutFd?: number }): Promise<CliResult> {
  const child = spawn(process.execPath, [...cliEntry, ...args], {
    cwd: repoRoot, stdio: ['ignore', opts.stdoutFd ?? 'pipe', 'pipe'], uid: opts.runAs?.uid, gid: opts.runAs?.gid,
    env: { ...process.env, HOME: os.tmpdir() },
  });
  let stdout = '';
  let stderr = '';
  child.stdout?.setEncoding('utf8').on('data', (chunk: string) => { stdout += chunk; });
  child.stderr?.setEncoding('utf8').on('data', (chunk: string) => { stderr += chunk; });
  return new Promise((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr }));
  });
}

/** An independent CSV parser (Python's csv module) over text. */
function parseCsv(text: string): string[][] {
  return JSON.parse(execFileSync('/usr/bin/python3', ['-c', 'import csv, json, sys, io; print(json.dumps(list(csv.reader(io.StringIO(sys.stdin.read(), newline="")))))'], { input: text, encoding: 'utf8', env: { ...process.env, PYTHONIOENCODING: 'utf-8' } })) as string[][];
}

function rankArgs(inputs: string, model: string, extra: string[]): string[] {
  return ['rank', inputs, ...PROMPTS.flatMap((p) => ['--prompt', p]), '--model', model, '--device', 'cpu', '--threads', '2', ...extra];
}

test('every bad image becomes one row per prompt with a clear error, good ones are scored, names round-trip, exit 3', SPAWNING, async (t) => {
  const model = await tinyModel();
  const folder = await writeBadInputFolder([...cliEntry, path.join(model, 'pickscore-model.json'), path.join(repoRoot, 'node_modules', 'sharp', 'package.json')]);
  if (folder.unreadableNotTried) t.diagnostic(`unreadable file not tried: ${folder.unreadableNotTried}`);
  t.diagnostic(`${folder.cases.length} image entries, ${folder.cases.filter((c) => c.error).length} of them bad; ${folder.runAs ? 'run as nobody' : 'run as the current user'}`);
  try {
    const json = await runCliWith(rankArgs(folder.dir, model, ['--no-cache', '--format', 'json']), { runAs: folder.runAs });
    assert.equal(json.code, 3, json.stderr);
    const doc = JSON.parse(json.stdout) as RankJson;
    assert.equal(doc.incomplete, false);

    // No row lost and none doubled: exactly one row per (image entry, prompt), whatever went wrong.
    const expectedKeys = folder.cases.flatMap((c) => PROMPTS.map((p) => `${path.join(folder.dir, c.name)}\u0000${p}`)).sort();
    assert.deepEqual(doc.rows.map((r) => `${r.path}\u0000${r.prompt}`).sort(), expectedKeys);
    for (const name of folder.notListed) assert.ok(!doc.rows.some((r) => r.path.endsWith(name)), `${name} is not an image by extension`);

    const byPath = new Map<string, Row[]>();
    for (const row of doc.rows) byPath.set(row.path, [...(byPath.get(row.path) ?? []), row]);
    for (const c of folder.cases) {
      for (const row of byPath.get(path.join(folder.dir, c.name))!) {
        if (c.error) {
          assert.match(row.error ?? '', c.error, `${c.kind} (${c.name})`);
          assert.deepEqual([row.score, row.prob, row.rank], [null, null, null], c.kind);
        } else {
          assert.equal(row.error, null, `${c.kind} (${c.name}) must be scored`);
          assert.ok(Number.isFinite(row.score) && Number.isInteger(row.rank), `${c.kind}: score ${row.score}, rank ${row.rank}`);
        }
      }
    }
    const failed = folder.cases.filter((c) => c.error).length * PROMPTS.length;
    assert.match(json.stderr, new RegExp(`warning: ${failed} of ${doc.rows.length} rows could not be scored`));

    // The same run as CSV parses back to the same paths, prompts and errors as the JSON.
    const csv = await runCliWith(rankArgs(folder.dir, model, ['--no-cache', '--format', 'csv']), { runAs: folder.runAs });
    assert.equal(csv.code, 3, csv.stderr);
    const [header, ...records] = parseCsv(csv.stdout);
    const column = (name: string): number => header.indexOf(name);
    assert.deepEqual(records.map((r) => [r[column('path')], r[column('prompt')]]), doc.rows.map((r) => [r.path, r.prompt]));
    // Compared by case, not with the JSON run's text: libvips' detail in parentheses differs from run to run.
    const caseOf = new Map(folder.cases.map((c) => [path.join(folder.dir, c.name), c]));
    for (const record of records) {
      const expected = caseOf.get(record[column('path')])!;
      if (expected.error) assert.match(record[column('error')], expected.error, `CSV, ${expected.kind}`);
      else assert.equal(record[column('error')], '', `CSV, ${expected.kind}`);
    }
  } finally {
    await folder.cleanup();
  }
});

test('eval: invalid manifests stop the run with exit 4 and every bad line as file:line: field', SPAWNING, async () => {
  const model = await tinyModel();
  await withTempDir('reliability', async (dir) => {
    await writeGradientPngs(dir, 2);
    const manifest = path.join(dir, 'bad.jsonl');
    await writeFile(manifest, [
      '{"prompt": "a gradient", "image": "img-000.png", "model": "m1"}',
      '{"prompt": "a gradient", "image": ',
      '{"image": "img-001.png", "model": "m1"}',
      '{"prompt": ["not", "a", "string"], "image": "img-001.png"}',
      '{"prompt": "a gradient", "image": "missing.png", "model": "m2"}',
      '{"prompt": "p", "image_0": "img-000.png", "image_1": "img-001.png", "label_0": "left"}',
    ].join('\n'));
    const result = await runCli(['eval', manifest, '--model', model, '--device', 'cpu', '--no-cache']);
    assert.equal(result.code, 4, result.stderr);
    assert.equal(result.stdout, '', 'no report from a run that did not start');
    for (const expected of [
      new RegExp(`${escapeRegExp(manifest)}:2: json: not valid JSON`),
      new RegExp(`${escapeRegExp(manifest)}:3: prompt: missing`),
      new RegExp(`${escapeRegExp(manifest)}:4: prompt: Expected a string for prompt but received array of length 3`),
      new RegExp(`${escapeRegExp(manifest)}:5: image: no such file: ${escapeRegExp(path.join(dir, 'missing.png'))}`),
      new RegExp(`${escapeRegExp(manifest)}:6: label_0: Expected 1, 0 or 0.5 \\(0\\.5 is a tie\\) for label_0 but received "left"`),
    ]) assert.match(result.stderr, expected);

    const missing = await runCli(['eval', path.join(dir, 'nope.jsonl'), '--model', model, '--device', 'cpu', '--no-cache']);
    assert.equal(missing.code, 4);
    assert.match(missing.stderr, /Cannot read manifest .*nope\.jsonl: ENOENT/);
  });
});

test('eval: --skip-invalid scores the rest; an unreadable image is an error row (exit 3); unknown model names are usage errors', SPAWNING, async () => {
  const model = await tinyModel();
  await withTempDir('reliability', async (dir) => {
    await writeGradientPngs(dir, 3);
    await writeFile(path.join(dir, 'corrupt.png'), 'not a png');
    const manifest = path.join(dir, 'run.jsonl');
    await writeFile(manifest, [
      '{"prompt": "a gradient", "image": "img-000.png", "model": "m1"}',
      '{"prompt": "a gradient", "image": "img-001.png", "model": "m2"}',
      '{"prompt": "a gradient", "image": "corrupt.png", "model": "m2"}',
      '{"prompt": "a gradient", "image": "gone.png", "model": "m2"}',
      'not json',
    ].join('\n'));
    const base = ['eval', manifest, '--model', model, '--device', 'cpu', '--no-cache', '--format', 'json'];
    const result = await runCli([...base, '--skip-invalid']);
    assert.equal(result.code, 3, result.stderr);
    assert.match(result.stderr, /warning: skipped 2 invalid manifest lines/);
    const report = JSON.parse(result.stdout) as { incomplete: boolean; counts: { errors: number } };
    assert.equal(report.incomplete, false);
    assert.equal(report.counts.errors, 1, 'the corrupt image is one error row');

    const unknownBaseline = await runCli([...base, '--skip-invalid', '--baseline', 'm9', '--candidate', 'm1']);
    assert.equal(unknownBaseline.code, 2);
    assert.match(unknownBaseline.stderr, /Expected a model of the manifest \(m1, m2\) for --baseline but received "m9"/);
    const unknownScorer = await runCli(['eval', manifest, '--skip-invalid', '--model', 'no-such-model', '--device', 'cpu', '--no-cache']);
    assert.equal(unknownScorer.code, 2);
    assert.match(unknownScorer.stderr, /for the model but received "no-such-model"/);
  });
});

test('models: a missing encoder file, a corrupt ONNX file or manifest exits 5 and names the file', SPAWNING, async () => {
  const source = await tinyModel();
  await withTempDir('reliability', async (dir) => {
    await writeGradientPngs(dir, 1);
    const damaged = async (name: string, damage: (folder: string) => Promise<void>): Promise<CliResult> => {
      const folder = path.join(dir, name);
      await mkdir(folder);
      for (const file of await readdir(source)) await copyFile(path.join(source, file), path.join(folder, file));
      await damage(folder);
      return runCli(['rank', path.join(dir, 'img-000.png'), '--prompt', 'p', '--model', folder, '--device', 'cpu', '--no-cache']);
    };
    const cases: [string, (folder: string) => Promise<void>, RegExp][] = [
      ['missing-image-onnx', (f) => rm(path.join(f, 'image.onnx')), /image\.onnx/],
      ['truncated-text-onnx', async (f) => truncate(path.join(f, 'text.onnx'), 100), /onnxruntime cannot load the encoders in .*truncated-text-onnx/],
      ['garbage-image-onnx', (f) => writeFile(path.join(f, 'image.onnx'), 'garbage'), /onnxruntime cannot load the encoders in .*garbage-image-onnx/],
      ['bad-manifest', (f) => writeFile(path.join(f, 'pickscore-model.json'), '{"schema": 1,'), /pickscore-model\.json is not valid JSON/],
    ];
    for (const [name, damage, message] of cases) {
      const result = await damaged(name, damage);
      assert.equal(result.code, 5, `${name}: ${result.stderr}`);
      assert.match(result.stderr, message, name);
      assert.equal(result.stdout, '', `${name}: no output from a run that did not start`);
    }
  });
});

test('a corrupt cache file is moved aside with a warning, rebuilt, and serves the next run', SPAWNING, async () => {
  const model = await tinyModel();
  await withTempDir('reliability', async (dir) => {
    const images = path.join(dir, 'images');
    await mkdir(images);
    await writeGradientPngs(images, 4);
    const cacheDir = path.join(dir, 'cache');
    await mkdir(cacheDir);
    await writeFile(path.join(cacheDir, 'embeddings.sqlite'), Buffer.alloc(8192, 0x5a));
    const args = ['rank', images, '--prompt', 'p', '--model', model, '--device', 'cpu', '--cache-dir', cacheDir, '--format', 'jsonl', '--stats'];
    const first = await runCli(args);
    assert.equal(first.code, 0, first.stderr);
    assert.match(first.stderr, /^warning: .*embeddings\.sqlite.*moved/m);
    assert.equal(first.stdout.trim().split('\n').length, 4);
    const aside = (await readdir(cacheDir)).filter((f) => /^embeddings\.sqlite\.corrupt-/.test(f));
    assert.equal(aside.length, 1, 'the damaged file is kept aside for inspection');
    assert.equal((await readFile(path.join(cacheDir, aside[0]))).length, 8192);

    const second = await runCli(args);
    assert.equal(second.code, 0, second.stderr);
    assert.doesNotMatch(second.stderr, /warning/);
    const stats = lastJsonLine<Stats>(second.stderr).stats;
    assert.deepEqual([stats.imageCacheHits, stats.imagesEncoded], [4, 0]);
  });
});

test('a full disk on stdout (/dev/full) is an error naming the output, not a silent truncation', SPAWNING, async () => {
  const model = await tinyModel();
  await withTempDir('reliability', async (dir) => {
    await writeGradientPngs(dir, 2);
    const full = openSync('/dev/full', 'w');
    try {
      const result = await runCliWith(['rank', dir, '--prompt', 'p', '--model', model, '--device', 'cpu', '--no-cache', '--format', 'jsonl'], { stdoutFd: full });
      assert.equal(result.code, 4, result.stderr);
      assert.match(result.stderr, /^error: Cannot write the output stream: ENOSPC: no space left on device/m);
      assert.doesNotMatch(result.stderr, /\n\s+at /, 'a message, not a stack trace');
    } finally {
      closeSync(full);
    }
  });
});

/** The interrupted run's size: small in the suite; docs/reliability.md records a 2,000-image run. */
const INTERRUPTED_RUN_IMAGES = Number(process.env.PICKSCORE_RELIABILITY_IMAGES ?? 200);

test('SIGTERM halfway: the previous output stays whole until an incomplete one replaces it; exit 130; the rerun encodes only the rest', SPAWNING, async (t) => {
  const model = await tinyModel();
  const total = INTERRUPTED_RUN_IMAGES;
  await withTempDir('reliability', async (dir) => {
    const images = path.join(dir, 'images');
    await mkdir(images);
    await writeDistinctPngs(images, total);
    const out = path.join(dir, 'ranked.json');
    const previous = '{"previous": "run"}\n';
    await writeFile(out, previous);
    const base = ['rank', images, '--prompt', 'a gradient', '--model', model, '--device', 'cpu', '--batch-size', '8', '--threads', '1',
      '--cache-dir', path.join(dir, 'cache'), '--out', out];

    const { child, done } = spawnCli([...base, '--verbose', '--stats']);
    const seen = new Set<string>();
    const watcher = setInterval(() => {
      readFile(out, 'utf8').then((text) => {
        seen.add(text === previous ? 'previous' : isCompleteJson(text) ? 'complete' : `truncated: ${text.slice(-80)}`);
      }, (err: NodeJS.ErrnoException) => seen.add(`unreadable: ${err.code}`));
    }, 5);
    signalWhen(child, (chunk) => Math.max(0, ...[...chunk.matchAll(/^rank: (\d+)\/\d+$/gm)].map((m) => Number(m[1]))) >= total / 2, 'SIGTERM');
    const first = await done;
    clearInterval(watcher);
    assert.equal(first.code, 130, first.stderr);
    assert.match(first.stderr, /warning: SIGTERM received/);
    assert.deepEqual([...seen].filter((s) => s !== 'previous' && s !== 'complete'), [], 'the output was only ever the old file or a whole new one');
    assert.deepEqual(await readdir(dir), ['cache', 'images', 'ranked.json'], 'no temporary file is left behind');
    const partial = JSON.parse(await readFile(out, 'utf8')) as RankJson;
    assert.equal(partial.incomplete, true);
    assert.ok(partial.rows.length >= total / 2 && partial.rows.length < total, `${partial.rows.length} rows`);
    assert.ok(partial.rows.every((r) => r.error === null && r.score !== null), 'every row written was scored');
    const encodedFirst = partial.provenance.stats.imagesEncoded;
    assert.equal(encodedFirst, partial.rows.length);

    const started = performance.now();
    const second = await runCli([...base, '--stats']);
    const rerunSeconds = (performance.now() - started) / 1000;
    assert.equal(second.code, 0, second.stderr);
    const stats = lastJsonLine<Stats>(second.stderr).stats;
    t.diagnostic(`images ${total}; interrupted run: ${partial.rows.length} rows written, ${encodedFirst} images encoded in ${partial.provenance.stats.imageEncoderCalls} encoder calls`);
    t.diagnostic(`rerun: ${stats.imageCacheHits} cache hits, ${stats.imagesEncoded} images encoded in ${stats.imageEncoderCalls} encoder calls, ${rerunSeconds.toFixed(1)} s`);
    assert.equal(stats.imageCacheHits, encodedFirst, 'what was done is read from the cache');
    assert.equal(stats.imagesEncoded, total - encodedFirst, 'only what was not done is encoded');
    const complete = JSON.parse(await readFile(out, 'utf8')) as RankJson;
    assert.equal(complete.incomplete, false);
    assert.deepEqual(complete.rows.map((r) => path.basename(r.path)).sort(), (await readdir(images)).sort());
  });
});

test('eval interrupted by SIGINT writes a report marked incomplete and exits 130', SPAWNING, async () => {
  const model = await tinyModel();
  const total = 200;
  await withTempDir('reliability', async (dir) => {
    const names = await writeDistinctPngs(dir, total);
    const manifest = path.join(dir, 'run.jsonl');
    await writeFile(manifest, names.map((name, i) => JSON.stringify({ prompt: 'a gradient', image: name, model: `m${i % 2}` })).join('\n'));
    const out = path.join(dir, 'report.json');
    const { child, done } = spawnCli(['eval', manifest, '--model', model, '--device', 'cpu', '--batch-size', '2', '--threads', '1', '--no-cache', '--out', out, '--verbose']);
    signalWhen(child, (chunk) => /^eval: \d+\/\d+$/m.test(chunk), 'SIGINT');
    const result = await done;
    assert.equal(result.code, 130, result.stderr);
    const report = JSON.parse(await readFile(out, 'utf8')) as { incomplete: boolean };
    assert.equal(report.incomplete, true);
    const notReached = Number(/warning: interrupted; the report covers what was scored \((\d+) rows not reached\)/.exec(result.stderr)?.[1]);
    assert.ok(notReached > 0 && notReached < total, `${notReached} rows not reached: ${result.stderr}`);
  });
});

function isCompleteJson(text: string): boolean {
  try {
    JSON.parse(text);
    return true;
  } catch {
    return false;
  }
}

function lastJsonLine<T>(stderr: string): T {
  return JSON.parse(stderr.trim().split('\n').at(-1) as string) as T;
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

test('SIGHUP (a closed terminal) is an interrupt like SIGINT: the rows done are written, marked incomplete; exit 130', SPAWNING, async () => {
  const model = await tinyModel();
  await withTempDir('reliability', async (dir) => {
    const images = path.join(dir, 'images');
    await mkdir(images);
    await writeDistinctPngs(images, 200);
    const out = path.join(dir, 'ranked.json');
    const { child, done } = spawnCli(['rank', images, '--prompt', 'a gradient', '--model', model, '--device', 'cpu', '--batch-size', '2',
      '--threads', '1', '--no-cache', '--out', out, '--verbose']);
    signalWhen(child, (chunk) => /^rank: \d+\/\d+$/m.test(chunk), 'SIGHUP');
    const result = await done;
    assert.equal(result.code, 130, result.stderr);
    assert.match(result.stderr, /warning: SIGHUP received/);
    const written = JSON.parse(await readFile(out, 'utf8')) as RankJson;
    assert.equal(written.incomplete, true);
    assert.ok(written.rows.length > 0 && written.rows.length < 200, `${written.rows.length} rows`);
  });
});
