/**
 * Sharded equals unsharded, through the real CLI: N=3 shards run as separate `pickscore` processes at
 * once, `pickscore merge` combines their parts, and the result is compared byte for byte with one
 * unsharded run, for rank (csv, jsonl, json) and for eval (the report and the gate's exit code). Then
 * `--device cuda:all` with a CPU device list: the same spawn-and-merge path, one worker per device.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { skipWithoutReference } from './helpers/paths.js';
import { tinyModel } from './helpers/tiny-model.js';
import { makeImageFolder, runCli, type CliRun } from './helpers/shard-cli.js';
import { writeGradientPngs } from './helpers/pipe-images.js';
import { cudaProviderState } from '../src/encoder/cuda-provider.js';

/** Where the CUDA provider loads, a cuda:0 worker would not fail. */
const cudaLoads = cudaProviderState() === 'loads' ? 'the CUDA provider loads here, so a CUDA worker would not fail' : false;

const SHARDS = 3;
let dir: string;
let images: string[];
let scoring: string[];
let env: NodeJS.ProcessEnv;

before(async () => {
  if (skipWithoutReference) return;
  dir = await mkdtemp(path.join(os.tmpdir(), 'pickscore-shard-cli-'));
  images = await makeImageFolder(dir);
  // One thread per process: three shards run at once on a small machine.
  scoring = ['--model', await tinyModel(), '--device', 'cpu', '--no-cache', '--threads', '1'];
  env = { PICKSCORE_HOME: path.join(dir, 'home') };
});

after(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

function cli(args: string[], extraEnv: NodeJS.ProcessEnv = {}): Promise<CliRun> {
  return runCli(args, { cwd: dir, env: { ...env, ...extraEnv } });
}

/** The run's exit code must be `code`; stderr is shown when it is not. */
function expectCode(run: CliRun, code: number, what: string): void {
  assert.equal(run.code, code, `${what}: exit code ${run.code}, stderr:\n${run.stderr}`);
}

const rankArgs = ['--prompt', 'a photo of an astronaut', '--prompt', 'a cat'];
const unshardedRuns = new Map<string, Promise<CliRun>>();

/** One unsharded rank per format, shared by the tests that compare with it. */
function unshardedRank(format: string): Promise<CliRun> {
  if (!unshardedRuns.has(format)) unshardedRuns.set(format, cli(['rank', 'imgs', ...rankArgs, ...scoring, '--format', format]));
  return unshardedRuns.get(format)!;
}

test('rank: three shard processes merged equal one unsharded run, byte for byte, in csv, jsonl and json', { skip: skipWithoutReference }, async () => {
  // The shards list the files in another order than the unsharded run's folder walk: the split
  // depends on each path, never on its position.
  const shuffled = [...images].reverse();
  const shardRuns = await Promise.all(Array.from({ length: SHARDS }, (_, i) =>
    cli(['rank', ...shuffled, ...rankArgs, ...scoring, '--shard', `${i}/${SHARDS}`, '--format', 'json', '--out', `rank-part-${i}.json`])));
  // The unreadable file is an error row of exactly one shard, which exits 3 as an unsharded run does.
  assert.deepEqual(shardRuns.map((run) => run.code).sort(), [0, 0, 3], shardRuns.map((run) => run.stderr).join('\n'));
  const parts = [];
  for (let i = 0; i < SHARDS; i++) {
    parts.push(JSON.parse(await readFile(path.join(dir, `rank-part-${i}.json`), 'utf8')) as { provenance: { shard: string }; rows: { path: string }[] });
  }
  assert.deepEqual(parts.map((p) => p.provenance.shard), ['0/3', '1/3', '2/3']);
  assert.ok(parts.every((p) => p.rows.length > 0 && p.rows.length < images.length * 2), 'every shard holds some but not all rows');
  assert.equal(parts.reduce((n, p) => n + p.rows.length, 0), images.length * 2);

  const partFiles = parts.map((_, i) => `rank-part-${i}.json`);
  for (const format of ['csv', 'jsonl', 'json']) {
    const [whole, merged] = await Promise.all([
      unshardedRank(format),
      cli(['merge', ...partFiles, '--format', format]),
    ]);
    // The unreadable file is an error row in both: exit code 3, the same as the unsharded run's.
    expectCode(whole, 3, `unsharded rank --format ${format}`);
    expectCode(merged, 3, `merge --format ${format}`);
    assert.equal(merged.stdout, whole.stdout, `--format ${format}`);
    assert.ok(whole.stdout.includes('imgs/sub/copy-of-astronaut.jpg'), 'the tie and the error row are in the output');
  }
});

test('eval: three shard processes merged give the unsharded report and the same gate exit code', { skip: skipWithoutReference }, async () => {
  const manifest = images.filter((p) => !p.includes('broken')).flatMap((image, i) =>
    ['a photo of an astronaut', 'a cat', 'a rocket'].map((prompt) => JSON.stringify({ prompt, image: `../${image}`, model: i % 2 === 0 ? 'base' : 'cand' })));
  const pairs = images.slice(0, 4).map((image, i) => JSON.stringify({ prompt: `pair ${i}`, image_0: `../${image}`, image_1: `../${images[i + 4]}`, label_0: [0, 0.5, 1][i % 3] }));
  await mkdir(path.join(dir, 'eval'));
  await writeFile(path.join(dir, 'eval', 'run.jsonl'), `${[...manifest, ...pairs].join('\n')}\n`);
  const gate = ['--baseline', 'base', '--candidate', 'cand', '--seed', '3'];
  const shardRuns = await Promise.all(Array.from({ length: SHARDS }, (_, i) =>
    cli(['eval', 'eval/run.jsonl', ...gate, ...scoring, '--shard', `${i}/${SHARDS}`, '--out', `eval-part-${i}.json`])));
  shardRuns.forEach((run, i) => expectCode(run, 0, `eval shard ${i}`));
  const whole = await cli(['eval', 'eval/run.jsonl', ...gate, ...scoring, '--format', 'json']);
  const merged = await cli(['merge', ...shardRuns.map((_, i) => `eval-part-${i}.json`), '--format', 'json']);
  assert.ok(whole.code === 0 || whole.code === 1, `unsharded eval: exit code ${whole.code}\n${whole.stderr}`);
  expectCode(merged, whole.code!, 'merge of eval parts');
  assert.equal(merged.stdout, whole.stdout);
  const report = JSON.parse(whole.stdout) as { gate: { reason: string }; models: { n: number }[]; pairwise: { n: number } };
  assert.deepEqual(report.models.map((m) => m.n).reduce((a, b) => a + b, 0), manifest.length);
  assert.equal(report.pairwise.n, pairs.length);
  assert.ok(merged.stderr.includes(`gate: ${report.gate.reason}`), merged.stderr);
});

test('--device cuda:all spawns one worker per device on disjoint shards and merges them', { skip: skipWithoutReference }, async () => {
  const whole = await unshardedRank('csv');
  const fanned = await cli(['rank', 'imgs', ...rankArgs, ...scoring.filter((a) => a !== 'cpu' && a !== '--device'), '--device', 'cuda:all', '--format', 'csv', '--verbose'],
    { PICKSCORE_DEVICES: 'cpu,cpu' });
  expectCode(fanned, 3, 'rank --device cuda:all');
  assert.equal(fanned.stdout, whole.stdout);
  // The workers really ran: the parent names them, merges their parts, and passes on their warnings
  // labelled with device and shard (the unreadable file is in exactly one of them).
  assert.match(fanned.stderr, /rank: 2 workers on cpu, cpu/);
  assert.match(fanned.stderr, new RegExp(`merged 2 shards: ${images.length * 2} rows, 2 with errors`));
  assert.match(fanned.stderr, /\[cpu \(shard [01]\/2\)\] warning: /);
});

test('--device cuda:all without nvidia-smi or a device list is a usage error that says what to do', { skip: skipWithoutReference }, async () => {
  // An empty PATH: no nvidia-smi, whatever this machine has installed.
  const run = await cli(['rank', 'imgs', '--prompt', 'a cat', '--device', 'cuda:all'], { PATH: path.join(dir, 'no-such-bin') });
  expectCode(run, 2, 'rank --device cuda:all without GPUs');
  assert.match(run.stderr, /--device cuda:all counts GPUs with nvidia-smi, but nvidia-smi is not installed or not on PATH; pass --device cuda:N, or list the devices in PICKSCORE_DEVICES/);
  const both = await cli(['rank', 'imgs', '--prompt', 'a cat', '--device', 'cuda:all', '--shard', '0/2'], { PICKSCORE_DEVICES: 'cpu' });
  expectCode(both, 2, 'cuda:all with --shard');
  assert.match(both.stderr, /cannot be combined with --shard/);
});

test('merge refuses the parts of different runs with exit 4: other prompts, other images', { skip: skipWithoutReference }, async () => {
  const [fox, cat] = await Promise.all([
    cli(['rank', 'imgs', '--prompt', 'a fox', ...scoring, '--shard', '0/2', '--out', 'fox-0.json']),
    cli(['rank', 'imgs', '--prompt', 'a cat', ...scoring, '--shard', '1/2', '--out', 'cat-1.json']),
  ]);
  assert.ok([fox, cat].every((run) => run.code === 0 || run.code === 3), `${fox.stderr}\n${cat.stderr}`);
  const mixed = await cli(['merge', 'fox-0.json', 'cat-1.json', '--format', 'csv']);
  expectCode(mixed, 4, 'merge of parts with other prompts');
  assert.equal(mixed.stdout, '');
  assert.match(mixed.stderr, /The parts come from different runs/);
  assert.match(mixed.stderr, /prompts: fox-0\.json: 1 prompt \("a fox"\); cat-1\.json: 1 prompt \("a cat"\)/);

  // The second shard was given only some of the images (another folder, a glob that matched less).
  const some = images.filter((image) => !image.startsWith('imgs/sub/'));
  const fewer = await cli(['rank', ...some, '--prompt', 'a fox', ...scoring, '--shard', '1/2', '--out', 'fox-fewer-1.json']);
  assert.ok(fewer.code === 0 || fewer.code === 3, fewer.stderr);
  const partial = await cli(['merge', 'fox-0.json', 'fox-fewer-1.json']);
  expectCode(partial, 4, 'merge of parts over other images');
  assert.match(partial.stderr, new RegExp(`images \\(the inputs before sharding\\): fox-0\\.json: ${images.length} images; fox-fewer-1\\.json: ${some.length} images`));
});

test('a shard refuses, before any work and with exit 2, what merge could not use: --top, and formats other than JSON', { skip: skipWithoutReference }, async () => {
  // A model that does not exist: had the flags been accepted, the run would stop on it with exit 4.
  const missingModel = ['--model', path.join(dir, 'no-such-model'), '--device', 'cpu', '--no-cache'];
  const top = await cli(['rank', 'imgs', '--prompt', 'a fox', ...missingModel, '--shard', '0/2', '--top', '3', '--out', 'top-0.json']);
  expectCode(top, 2, 'rank --shard --top');
  assert.match(top.stderr, /--top keeps the best K of the whole run, which a shard cannot know: run the shards without --top and pass --top to merge/);
  for (const flags of [['--format', 'csv'], ['--out', 'part-0.csv'], ['--format', 'html', '--out', 'part-0.json']]) {
    const run = await cli(['rank', 'imgs', '--prompt', 'a fox', ...missingModel, '--shard', '0/2', ...flags]);
    expectCode(run, 2, `rank --shard ${flags.join(' ')}`);
    assert.match(run.stderr, /--shard 0\/2 writes a JSON part for merge, but .* which merge cannot read/);
  }
  const report = await cli(['eval', 'eval/run.jsonl', ...missingModel, '--shard', '0/2', '--out', 'part-0.md']);
  expectCode(report, 2, 'eval --shard --out part-0.md');
  assert.match(report.stderr, /--out part-0\.md names a md report: write the part as \.json and pass --format md to merge/);
  assert.equal(existsSync(path.join(dir, 'part-0.md')), false);

  // Without --format or --out a shard writes its part, JSON, to stdout.
  const piped = await cli(['rank', 'imgs', '--prompt', 'a fox', ...scoring, '--shard', '0/2']);
  assert.ok(piped.code === 0 || piped.code === 3, piped.stderr);
  const part = JSON.parse(piped.stdout) as { provenance: { shard: string; run: { command: string; images: { count: number } } } };
  assert.equal(part.provenance.shard, '0/2');
  assert.deepEqual([part.provenance.run.command, part.provenance.run.images.count], ['rank', images.length]);
});

test('--device cuda:all: a worker that fails stops the others, which are waited for before the work folder goes: no write into a removed folder, nothing left behind', { skip: skipWithoutReference || cudaLoads, timeout: 300_000 }, async () => {
  // A CUDA device on a machine without one fails as soon as its session would start, while the CPU
  // worker has a folder of images to score one at a time.
  const many = path.join(dir, 'many');
  await mkdir(many, { recursive: true });
  const names = await writeGradientPngs(many, 40, 64);
  assert.equal(names.length, 40);
  const tmp = path.join(dir, 'tmp-fail');
  await mkdir(tmp);
  const run = await cli(['rank', 'many', '--prompt', 'a gradient', '--model', await tinyModel(), '--no-cache', '--threads', '1', '--batch-size', '1',
    '--device', 'cuda:all', '--format', 'csv'], { PICKSCORE_DEVICES: 'cpu,cuda:0', TMPDIR: tmp });
  expectCode(run, 2, 'cuda:all with a failing worker');
  assert.match(run.stderr, /^\[cuda:0 \(shard 1\/2\)\] error: Device cuda:0 was requested, but /m);
  assert.match(run.stderr, /^error: The worker for cuda:0 \(shard 1\/2\) failed; its messages are above$/m);
  assert.doesNotMatch(run.stderr, /does not exist|ENOENT/, 'no worker wrote into a removed folder');
  assert.doesNotMatch(run.stderr, /\[cpu \(shard 0\/2\)\] error/, 'the stopped worker has nothing to say');
  assert.deepEqual(await readdir(tmp), [], 'the work folder is gone, and nothing else was left');
});
