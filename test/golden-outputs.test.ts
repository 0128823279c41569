/**
 * Every output format, byte for byte, against goldens recorded in fixtures/goldens: rank over the
 * reference images (and one unreadable file, an error row) in csv, json, jsonl, md, html and table, with
 * EXIF ignored, with the fast resize, and through a cache; eval of fixtures/eval (pointwise with a gate,
 * pairwise with a validation manifest) as json, md and html with --scores in csv and jsonl; and the
 * merge of sharded rank and eval runs. The tiny reference CLIP runs on the CPU.
 *
 * Outputs are compared after three rewrites that keep them machine-independent: the work folder's path
 * becomes `<work>`, pickscore's own version `<version>`, and each thumbnail's base64 its SHA-256 (the
 * goldens stay small, the comparison stays exact).
 *
 * Scores come from onnxruntime's CPU kernels, which sum in another order on another instruction set.
 * So the comparison is exact on a machine like the one that recorded the goldens (same CPU model and
 * onnxruntime version, in recorded.json); elsewhere the text between numbers must still be identical
 * and each number within one unit of its last printed digit or 1e-5 relative.
 *
 *   PICKSCORE_UPDATE_GOLDENS=1 node --test build/test/golden-outputs.test.js    records them again
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { cp, mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { fixturesDir, referenceDir, skipWithoutReference } from './helpers/paths.js';
import { tinyModel } from './helpers/tiny-model.js';
import { runCli, type CliRun } from './helpers/shard-cli.js';
import { PICKSCORE_VERSION } from '../src/version.js';

const GOLDEN_DIR = path.join(fixturesDir, 'goldens');
const RECORDED = path.join(GOLDEN_DIR, 'recorded.json');
const UPDATE = process.env.PICKSCORE_UPDATE_GOLDENS === '1';
const PROMPTS = ['--prompt', 'a photo of an astronaut', '--prompt', 'a cup of coffee on a table'];

interface Recorded { cpu: string; onnxruntime: string; exitCodes: Record<string, number> }

let work: string;
let scoring: string[];
let recorded: Recorded;
const onnxruntimeVersion = (createRequire(import.meta.url)('onnxruntime-node/package.json') as { version: string }).version;
const seen: Recorded = { cpu: os.cpus()[0]?.model ?? 'unknown', onnxruntime: onnxruntimeVersion, exitCodes: {} };

before(async () => {
  if (skipWithoutReference) return;
  work = await mkdtemp(path.join(os.tmpdir(), 'pickscore-golden-'));
  await mkdir(path.join(work, 'images', 'bad'), { recursive: true });
  for (const name of await readdir(path.join(referenceDir, 'images'))) await cp(path.join(referenceDir, 'images', name), path.join(work, 'images', name));
  await writeFile(path.join(work, 'images', 'bad', 'broken.png'), 'not an image');
  await cp(path.join(fixturesDir, 'eval'), path.join(work, 'eval'), { recursive: true });
  scoring = ['--model', await tinyModel(), '--device', 'cpu', '--threads', '2'];
  recorded = UPDATE ? { ...seen } : JSON.parse(await readFile(RECORDED, 'utf8')) as Recorded;
});

after(async () => {
  if (!work) return;
  await rm(work, { recursive: true, force: true });
  if (UPDATE) await writeFile(RECORDED, `${JSON.stringify(seen, null, 2)}\n`);
});

function cli(args: string[]): Promise<CliRun> {
  return runCli(args, { cwd: work, env: { PICKSCORE_HOME: path.join(work, 'home') } });
}

/** The machine-dependent parts of an output, rewritten (see the file comment). */
function normalise(text: string): string {
  return text
    .replace(/data:image\/webp;base64,([A-Za-z0-9+/=]+)/g, (_, data: string) => `data:image/webp;sha256,${createHash('sha256').update(data).digest('hex')}`)
    .split(work).join('<work>')
    .replace(new RegExp(`(?<![\\d.])${PICKSCORE_VERSION.replace(/\./g, '\\.')}(?![\\d.])`, 'g'), '<version>');
}

const NUMBER = /-?\d+(?:\.\d+)?(?:e[-+]?\d+)?/gi;

/** Text between numbers identical; numbers within one unit of their last printed digit, or 1e-5 relative. */
function closeEnough(actual: string, expected: string): string | undefined {
  const actualText = actual.split(NUMBER);
  const expectedText = expected.split(NUMBER);
  if (actualText.length !== expectedText.length || actualText.some((part, i) => part !== expectedText[i])) return 'the text between the numbers differs';
  const a = actual.match(NUMBER) ?? [];
  const e = expected.match(NUMBER) ?? [];
  for (let i = 0; i < e.length; i++) {
    const decimals = (e[i].split('.')[1] ?? '').replace(/e.*$/i, '').length;
    const tolerance = Math.max(1.5 * 10 ** -decimals, 1e-5 * Math.abs(Number(e[i])));
    if (Math.abs(Number(a[i]) - Number(e[i])) > tolerance) return `number ${i}: ${a[i]} vs ${e[i]}`;
  }
  return undefined;
}

async function expectGolden(name: string, output: string): Promise<void> {
  const file = path.join(GOLDEN_DIR, name);
  const actual = normalise(output);
  if (UPDATE) {
    await mkdir(GOLDEN_DIR, { recursive: true });
    await writeFile(file, actual);
    return;
  }
  const expected = await readFile(file, 'utf8');
  if (actual === expected) return;
  const sameMachine = recorded.cpu === seen.cpu && recorded.onnxruntime === seen.onnxruntime;
  const problem = sameMachine ? 'not byte-identical on the machine that recorded it' : closeEnough(actual, expected);
  if (problem) assert.equal(actual, expected, `${name}: ${problem}`);
}

function expectCode(name: string, run: CliRun): void {
  if (UPDATE) {
    seen.exitCodes[name] = run.code ?? -1;
    return;
  }
  assert.equal(run.code, recorded.exitCodes[name], `${name}: exit code ${run.code}, stderr:\n${run.stderr}`);
}

/** Runs `args`, checks its exit code and its stdout against the golden `name`. */
async function golden(name: string, args: string[]): Promise<CliRun> {
  const run = await cli(args);
  expectCode(name, run);
  await expectGolden(name, run.stdout);
  return run;
}

const RANK_FORMATS = ['csv', 'json', 'jsonl', 'md', 'html', 'table'];

test('rank: every format is byte-identical to its golden', { skip: skipWithoutReference }, async () => {
  for (const format of RANK_FORMATS) {
    await golden(`rank.${format}`, ['rank', 'images', ...PROMPTS, ...scoring, '--no-cache', '--format', format]);
  }
});

test('rank: --exif ignore and --resize fast outputs are byte-identical to their goldens', { skip: skipWithoutReference }, async () => {
  await golden('rank-exif-ignore.jsonl', ['rank', 'images', ...PROMPTS, ...scoring, '--no-cache', '--exif', 'ignore', '--format', 'jsonl']);
  await golden('rank-exif-ignore.html', ['rank', 'images', ...PROMPTS, ...scoring, '--no-cache', '--exif', 'ignore', '--format', 'html']);
  await golden('rank-resize-fast.jsonl', ['rank', 'images', ...PROMPTS, ...scoring, '--no-cache', '--resize', 'fast', '--format', 'jsonl']);
});

test('rank: a run that fills the cache and its cached rerun both give the uncached rows', { skip: skipWithoutReference }, async () => {
  const cache = ['--cache-dir', path.join(work, 'cache')];
  await golden('rank.jsonl', ['rank', 'images', ...PROMPTS, ...scoring, ...cache, '--format', 'jsonl']);
  await golden('rank.jsonl', ['rank', 'images', ...PROMPTS, ...scoring, ...cache, '--format', 'jsonl']);
});

test('eval: the gated pointwise report, its scores and the pairwise report with validation are byte-identical to their goldens', { skip: skipWithoutReference }, async () => {
  const gate = ['eval', 'eval/checkpoints.jsonl', '--baseline', 'ckpt-a', '--candidate', 'ckpt-b', ...scoring, '--no-cache'];
  for (const format of ['json', 'md', 'html']) await golden(`eval-gate.${format}`, [...gate, '--format', format]);
  for (const scores of ['csv', 'jsonl']) {
    const file = path.join(work, `scores.${scores}`);
    await golden(`eval-gate-report-with-scores.json`, [...gate, '--format', 'json', '--scores', file]);
    await expectGolden(`eval-gate-scores.${scores}`, await readFile(file, 'utf8'));
  }
  const pairs = ['eval', 'eval/pairs.jsonl', '--validation', 'eval/validation.jsonl', ...scoring, '--no-cache'];
  for (const format of ['json', 'md', 'html']) await golden(`eval-pairs.${format}`, [...pairs, '--format', format]);
});

test('merge: the merged shards of a rank and of an eval are byte-identical to their goldens', { skip: skipWithoutReference }, async () => {
  const parts = [0, 1].map((i) => path.join(work, `rank-part-${i}.json`));
  for (const [i, part] of parts.entries()) {
    const run = await cli(['rank', 'images', ...PROMPTS, ...scoring, '--no-cache', '--shard', `${i}/2`, '--out', part]);
    expectCode(`rank-part-${i}`, run);
    await expectGolden(`rank-part-${i}.json`, await readFile(part, 'utf8'));
  }
  for (const format of ['csv', 'json', 'html']) await golden(`merge-rank.${format}`, ['merge', ...parts, '--format', format]);
  const evalParts = [0, 1].map((i) => path.join(work, `eval-part-${i}.json`));
  for (const [i, part] of evalParts.entries()) {
    const run = await cli(['eval', 'eval/checkpoints.jsonl', '--baseline', 'ckpt-a', '--candidate', 'ckpt-b', ...scoring, '--no-cache', '--shard', `${i}/2`, '--out', part]);
    expectCode(`eval-part-${i}`, run);
  }
  for (const format of ['json', 'md']) await golden(`merge-eval.${format}`, ['merge', ...evalParts, '--format', format]);
});
