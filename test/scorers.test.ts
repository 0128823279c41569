/**
 * The scorers beside PickScore (`--scorer`), end to end through the CLI and the library, with the tiny
 * models the tests build: the tiny open_clip checkpoint as hpsv2.1, the tiny CLIP with a tiny LAION head
 * as aesthetic. Scores are checked against values computed independently, by torchvision (HPSv2's and
 * OpenAI clip's transforms), a float64 PyTorch forward of open_clip and PyTorch's head, never against
 * pickscore's own output. Ids come from HPSv2's own tokenizer (fixtures/tokenizer/open-clip-ids.json).
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { UsageError } from '../src/errors.js';
import { PickScore } from '../src/index.js';
import { parseScorers, scorerDescription, scorerModelProblem, scorerCacheTag } from '../src/scorers/scorers.js';
import { scoreFromCosine } from '../src/score/scorer-formula.js';
import { modelFlags } from '../src/cli/scoring.js';
import { readModelManifest } from '../src/model-format.js';
import { ClipTokenizer } from '../src/tokenizer/clip-tokenizer.js';
import { makeHead, torchHead } from './helpers/aesthetic-head.js';
import { torchAvailable, torchOpenClipForward } from './helpers/open-clip-torch.js';
import { fixturesDir, referenceDir, skipWithoutReference } from './helpers/paths.js';
import { runCli } from './helpers/pipe-cli.js';
import { torchvisionAvailable, torchvisionClip, torchvisionHps } from './helpers/torchvision-transforms.js';
import { startHubServer } from './helpers/hub-server.js';
import { copyFile, mkdir } from 'node:fs/promises';

const TOLERANCE = 1e-4;
const openClipDir = path.join(referenceDir, 'open_clip', 'tiny-openclip');
const tinyClipDir = path.join(referenceDir, 'tiny-clip');
const tokenizerDir = path.join(referenceDir, 'clip-tokenizer');
const imagesDir = path.join(referenceDir, 'images');
const skipWithoutTorch = skipWithoutReference || (torchAvailable() && torchvisionAvailable() ? false : 'python3-torch or python3-torchvision is not installed');

/** Images of several sizes and modes (grey, wide, tall, a size not divisible evenly); EXIF is not applied, as in HPSv2's and clip's code. */
const IMAGES = ['astronaut.jpg', 'camera-gray.png', 'coffee.png', 'tall-300x900.png', 'wide-1600x400.jpg'];
const imageFiles = IMAGES.map((name) => path.join(imagesDir, name));

interface IdFixture { prompts: { prompt: string; input_ids: number[] }[] }
const idFixture = JSON.parse(readFileSync(path.join(fixturesDir, 'tokenizer', 'open-clip-ids.json'), 'utf8')) as IdFixture;
/** Two prompts whose open_clip ids HPSv2's tokenizer recorded, one with an HTML entity that open_clip's cleaning unescapes. */
const PROMPTS = [idFixture.prompts[0], idFixture.prompts.find((p) => p.prompt.includes('&amp;')) ?? idFixture.prompts[1]];

function cosine(a: number[], b: number[]): number {
  let dot = 0;
  let na = 0;
  let nb = 0;
  for (let i = 0; i < a.length; i++) {
    dot += a[i] * b[i];
    na += a[i] * a[i];
    nb += b[i] * b[i];
  }
  return dot / Math.sqrt(na * nb);
}

interface JsonRank { provenance: Record<string, unknown>; rows: { path: string; prompt: string; score: number | null; prob: number | null; rank: number | null; error: string | null; scores?: Record<string, number | null> }[] }

let scratch: string;
let hpsDir: string;
let aestheticDir: string;
let clipDir: string;
let headFile: string;
/** Independent values: hps[prompt][image] cosines, aesthetic[image]. */
let expectedHps: number[][];
let expectedAesthetic: number[];

function cli(args: string[]) {
  return runCli(args);
}

async function rankJson(args: string[]): Promise<JsonRank> {
  const run = await cli(['rank', ...imageFiles, ...PROMPTS.flatMap((p) => ['--prompt', p.prompt]), '--exif', 'ignore', '--format', 'json', '--no-cache', '-q', ...args]);
  assert.equal(run.code, 0, run.stderr);
  return JSON.parse(run.stdout) as JsonRank;
}

function scoreOf(result: JsonRank, image: string, prompt: string, scorer?: string): number {
  const row = result.rows.find((r) => r.path === image && r.prompt === prompt);
  assert.ok(row, `no row for ${image} / ${prompt}`);
  const value = scorer ? row.scores?.[scorer] : row.score;
  assert.equal(typeof value, 'number', `${image}: ${row.error}`);
  return value as number;
}

describe('scorer descriptions and formulas', () => {
  test('--scorer takes a comma list of known names in order, and refuses unknown or repeated ones', () => {
    assert.deepEqual(parseScorers('hpsv2.1, pickscore,aesthetic').map((s) => s.name), ['hpsv2.1', 'pickscore', 'aesthetic']);
    assert.throws(() => parseScorers('pickscore,imagereward'), (err: unknown) => err instanceof UsageError && /imagereward/.test(err.message));
    assert.throws(() => parseScorers('hpsv2.1,hpsv2.1'), (err: unknown) => err instanceof UsageError && /twice/.test(err.message));
    assert.throws(() => parseScorers(''), UsageError);
  });

  test('the formulas: PickScore scales, HPSv2 is the cosine, CLIPScore clamps and weighs', () => {
    assert.equal(scoreFromCosine({ kind: 'scaled-cosine' }, 0.25, 100), 25);
    assert.equal(scoreFromCosine({ kind: 'cosine' }, -0.25, 100), -0.25);
    assert.equal(scoreFromCosine(scorerDescription('clipscore').formula, 0.3, 100), 0.75);
    assert.equal(scoreFromCosine(scorerDescription('clipscore').formula, -0.3, 100), 0);
    assert.equal(scoreFromCosine(scorerDescription('clipscore-l14').formula, 0.3, 100), 30);
    assert.equal(scorerDescription('clipscore').textPrefix, 'A photo depicts ');
  });

  test('cache keys: PickScore keeps its own, every other scorer adds its tokenizer, prefix, transform and output', () => {
    assert.equal(scorerCacheTag(scorerDescription('pickscore')), '');
    const tags = (['hpsv2.1', 'clipscore', 'clipscore-l14', 'aesthetic'] as const).map((name) => scorerCacheTag(scorerDescription(name)));
    assert.equal(new Set(tags).size, tags.length);
    assert.match(tags[0], /tokenizer=open_clip;.*transform=hps;output=image_embeds/);
    assert.match(tags[3], /transform=openai-clip;output=image_score/);
  });

  test('--model: a bare model, or <scorer>=<model> per scorer; a path with = that names no scorer is a model', () => {
    assert.deepEqual(modelFlags([]), {});
    assert.deepEqual(modelFlags(['/m/a=b']), { model: '/m/a=b' });
    assert.deepEqual(modelFlags(['hpsv2.1=/m/h', 'aesthetic=/m/a']), { models: { 'hpsv2.1': '/m/h', aesthetic: '/m/a' } });
    assert.throws(() => modelFlags(['hpsv2.1=/a', 'hpsv2.1=/b']), UsageError);
    assert.throws(() => modelFlags(['/a', '/b']), UsageError);
  });
});

describe('scorers end to end', { skip: skipWithoutTorch }, () => {
  before(async () => {
    scratch = await mkdtemp(path.join(os.tmpdir(), 'pickscore-scorers-'));
    hpsDir = path.join(scratch, 'hps');
    aestheticDir = path.join(scratch, 'aesthetic');
    clipDir = path.join(scratch, 'clip');
    headFile = path.join(scratch, 'sac+logos+ava1-tiny.pth');
    makeHead(headFile);
    for (const args of [
      [openClipDir, '--tokenizer', tokenizerDir, '--out', hpsDir],
      [tinyClipDir, '--tokenizer', tokenizerDir, '--head', headFile, '--out', aestheticDir],
      [tinyClipDir, '--tokenizer', tokenizerDir, '--out', clipDir],
    ]) {
      const run = await cli(['model', 'convert', ...args, '-q']);
      assert.equal(run.code, 0, run.stderr);
    }
    // Independent references: torchvision's transforms, PyTorch's open_clip forward in float64, PyTorch's head.
    const cfg = (JSON.parse(await readFile(path.join(openClipDir, 'open_clip_config.json'), 'utf8')) as { model_cfg: object }).model_cfg;
    const weights = path.join(openClipDir, 'open_clip_model.safetensors');
    const rawFiles = async (name: string, tensors: Float32Array[]) => Promise.all(tensors.map(async (t, i) => {
      const file = path.join(scratch, `${name}-${i}.f32`);
      await writeFile(file, Buffer.from(t.buffer, t.byteOffset, t.byteLength));
      return file;
    }));
    const hpsPixels = await rawFiles('hps', torchvisionHps(imageFiles, { antialias: false, padUnresized: true, outFile: path.join(scratch, 'hps.f32') }));
    const hps = torchOpenClipForward(weights, cfg, PROMPTS.map((p) => p.input_ids), hpsPixels);
    const dim = hps.text.length / PROMPTS.length;
    const rows = (flat: number[], n: number) => Array.from({ length: n }, (_, i) => flat.slice(i * dim, (i + 1) * dim));
    const texts = rows(hps.text, PROMPTS.length);
    const images = rows(hps.image, IMAGES.length);
    expectedHps = texts.map((t) => images.map((img) => cosine(t, img)));
    // The tiny open_clip checkpoint holds the tiny CLIP's weights: the aesthetic head reads that image tower after clip's transform.
    const clipPixels = await rawFiles('clip', torchvisionClip(imageFiles, path.join(scratch, 'clip.f32')));
    const clip = torchOpenClipForward(weights, cfg, [PROMPTS[0].input_ids], clipPixels);
    expectedAesthetic = torchHead(headFile, rows(clip.image, IMAGES.length));
  });
  after(async () => rm(scratch, { recursive: true, force: true }));

  test('the converted folders say how they tokenize and whether they end in a head', async () => {
    assert.equal((await readModelManifest(hpsDir)).tokenizerMode, 'open_clip');
    const aesthetic = await readModelManifest(aestheticDir);
    assert.equal(aesthetic.tokenizerMode, undefined);
    assert.deepEqual(aesthetic.imageScore, { output: 'image_score', outFeatures: 1, head: path.basename(headFile) });
    assert.ok(aesthetic.source.files.some((f) => f.name === path.basename(headFile)), 'the head is a source file, so it is in the fingerprint');
    assert.notEqual(aesthetic.fingerprint, (await readModelManifest(clipDir)).fingerprint);
  });

  test('rank --scorer hpsv2.1 gives the cosine of open_clip under HPSv2\'s transform and tokenizer', async (t) => {
    const result = await rankJson(['--scorer', 'hpsv2.1', '--model', hpsDir]);
    assert.equal(result.provenance.scorer, 'hpsv2.1');
    let worst = 0;
    PROMPTS.forEach((p, pi) => imageFiles.forEach((file, ii) => {
      worst = Math.max(worst, Math.abs(scoreOf(result, file, p.prompt) - expectedHps[pi][ii]));
    }));
    t.diagnostic(`hpsv2.1: largest |difference| from PyTorch ${worst.toExponential(2)} over ${PROMPTS.length * IMAGES.length} scores`);
    assert.ok(worst < TOLERANCE, `largest difference from PyTorch ${worst}`);
    // The model card's softmax is PickScore's; of a cosine it would mean nothing, so it is left empty.
    assert.ok(result.rows.every((r) => r.prob === null));
    const ranked = result.rows.filter((r) => r.prompt === PROMPTS[0].prompt).map((r) => r.path);
    assert.deepEqual(ranked, imageFiles.map((f, i) => ({ f, s: expectedHps[0][i] })).sort((a, b) => b.s - a.s).map((x) => x.f));
  });

  test('rank --scorer aesthetic gives the LAION head of the L2-normalised embedding after clip\'s transform, whatever the prompt', async (t) => {
    const result = await rankJson(['--scorer', 'aesthetic', '--model', aestheticDir]);
    let worst = 0;
    for (const p of PROMPTS) imageFiles.forEach((file, ii) => { worst = Math.max(worst, Math.abs(scoreOf(result, file, p.prompt) - expectedAesthetic[ii]) / Math.max(1, Math.abs(expectedAesthetic[ii]))); });
    t.diagnostic(`aesthetic: largest relative difference from PyTorch ${worst.toExponential(2)} over ${IMAGES.length} images (scores ${expectedAesthetic.map((v) => v.toFixed(3)).join(', ')})`);
    assert.ok(worst < TOLERANCE, `largest relative difference from PyTorch ${worst}`);
  });

  test('rank --scorer clipscore gives 2.5 * max(cos, 0) with "A photo depicts " before the prompt, under clip\'s transform', async (t) => {
    // The tiny CLIP in transformers' layout runs as clipscore; the reference is the same weights in PyTorch, on torchvision's
    // clip transform, with the ids of the prefixed prompt from the transformers tokenizer (checked against transformers elsewhere).
    const tokenizer = await ClipTokenizer.fromDir(tokenizerDir);
    const prompts = ['a cat', 'a photo of an astronaut riding a horse on the moon'];
    const ids = prompts.map((p) => tokenizer.encode(`A photo depicts ${p}`).inputIds);
    const cfg = (JSON.parse(await readFile(path.join(openClipDir, 'open_clip_config.json'), 'utf8')) as { model_cfg: object }).model_cfg;
    const pixels = await Promise.all(torchvisionClip(imageFiles, path.join(scratch, 'clipscore.f32')).map(async (tensor, i) => {
      const file = path.join(scratch, `clipscore-${i}.f32`);
      await writeFile(file, Buffer.from(tensor.buffer, tensor.byteOffset, tensor.byteLength));
      return file;
    }));
    const ref = torchOpenClipForward(path.join(openClipDir, 'open_clip_model.safetensors'), cfg, ids, pixels);
    const dim = ref.text.length / prompts.length;
    const run = await cli(['rank', ...imageFiles, ...prompts.flatMap((p) => ['--prompt', p]), '--scorer', 'clipscore', '--model', clipDir,
      '--exif', 'ignore', '--format', 'json', '--no-cache', '-q']);
    assert.equal(run.code, 0, run.stderr);
    const result = JSON.parse(run.stdout) as JsonRank;
    let worst = 0;
    let clamped = 0;
    prompts.forEach((p, pi) => imageFiles.forEach((file, ii) => {
      const cos = cosine(ref.text.slice(pi * dim, (pi + 1) * dim), ref.image.slice(ii * dim, (ii + 1) * dim));
      if (cos <= 0) clamped++;
      worst = Math.max(worst, Math.abs(scoreOf(result, file, p) - 2.5 * Math.max(cos, 0)));
    }));
    t.diagnostic(`clipscore: largest |difference| from PyTorch ${worst.toExponential(2)} over ${prompts.length * IMAGES.length} scores, ${clamped} clamped at 0`);
    assert.ok(worst < TOLERANCE, `largest difference from PyTorch ${worst}`);
    assert.ok(clamped < prompts.length * IMAGES.length, 'some cosines are positive, so the weight is checked, not only the clamp');
  });

  test('several scorers: a column each, ranked by the first, each equal to its own run; one decode per image per distinct transform', async () => {
    const run = await cli(['rank', ...imageFiles, '--prompt', PROMPTS[0].prompt, '--exif', 'ignore', '--no-cache', '--format', 'csv', '--stats', '-q',
      '--scorer', 'aesthetic,hpsv2.1', '--model', `hpsv2.1=${hpsDir}`, '--model', `aesthetic=${aestheticDir}`]);
    assert.equal(run.code, 0, run.stderr);
    const [header, ...lines] = run.stdout.trim().split('\n');
    assert.equal(header, 'path,prompt,score,prob,rank,width,height,error,score:aesthetic,score:hpsv2.1');
    const cells = lines.map((line) => line.split(','));
    const order = imageFiles.map((f, i) => ({ f, s: expectedAesthetic[i] })).sort((a, b) => b.s - a.s).map((x) => x.f);
    assert.deepEqual(cells.map((c) => c[0]), order);
    for (const c of cells) {
      const i = imageFiles.indexOf(c[0]);
      assert.equal(c[2], c[8], 'score is the first scorer\'s');
      assert.ok(Math.abs(Number(c[8]) - expectedAesthetic[i]) / Math.max(1, Math.abs(expectedAesthetic[i])) < TOLERANCE);
      assert.ok(Math.abs(Number(c[9]) - expectedHps[0][i]) < TOLERANCE);
    }
    // Two scorers with different transforms: each image is decoded once for each, never more.
    const stats = JSON.parse(run.stderr.trim().split('\n').pop()!) as { stats: { imagesDecoded: number } };
    assert.equal(stats.stats.imagesDecoded, 2 * imageFiles.length);
  });

  test('several scorers: rank\'s terminal table, Markdown and HTML gallery show each scorer\'s score, named, as the JSON rows hold them, ranked by the first', async () => {
    const args = (format: string) => ['rank', ...imageFiles, '--prompt', PROMPTS[0].prompt, '--exif', 'ignore', '--no-cache', '-q', '--format', format,
      '--scorer', 'aesthetic,hpsv2.1', '--model', `hpsv2.1=${hpsDir}`, '--model', `aesthetic=${aestheticDir}`];
    const json = await cli(args('json'));
    assert.equal(json.code, 0, json.stderr);
    const rows = (JSON.parse(json.stdout) as JsonRank).rows;
    const table = await cli(args('table'));
    assert.equal(table.code, 0, table.stderr);
    const lines = table.stdout.trim().split('\n');
    assert.deepEqual(lines[1].trim().split(/\s+/), ['rank', 'score', 'prob', 'score:aesthetic', 'score:hpsv2.1', 'size', 'path']);
    const four = (x: number | null | undefined) => (x === null || x === undefined ? '-' : x.toFixed(4));
    assert.deepEqual(lines.slice(2).map((line) => line.trim().split(/\s+/)),
      rows.map((r) => [String(r.rank), four(r.score), four(r.prob), four(r.scores!.aesthetic), four(r.scores!['hpsv2.1']), `${(r as { width?: number }).width}x${(r as { height?: number }).height}`, r.path]));
    const md = await cli(args('md'));
    assert.equal(md.code, 0, md.stderr);
    const mdLines = md.stdout.trim().split('\n');
    assert.equal(mdLines[0], '| rank | score | prob | score:aesthetic | score:hpsv2.1 | size | path | prompt | error |');
    assert.deepEqual(mdLines.slice(2).map((line) => line.split(' | ').slice(1, 5)),
      rows.map((r) => [four(r.score), four(r.prob), four(r.scores!.aesthetic), four(r.scores!['hpsv2.1'])]));
    const out = path.join(scratch, 'gallery.html');
    const gallery = await cli([...args('html'), '--out', out]);
    assert.equal(gallery.code, 0, gallery.stderr);
    const html = await readFile(out, 'utf8');
    const cards = [...html.matchAll(/<li class="card"[^>]*data-score="([^"]*)"[^>]*>(.*?)<\/li>/g)];
    assert.equal(cards.length, rows.length);
    cards.forEach(([, score, body], i) => {
      assert.equal(Number(score), rows[i].score, 'cards in rank order, by the first scorer');
      for (const name of ['aesthetic', 'hpsv2.1']) {
        const shown = new RegExp(`data-scorer="${name.replace('.', '\\.')}" data-score="([^"]*)"[^>]*>${name.replace('.', '\\.')} ([^<]*)<`).exec(body);
        assert.ok(shown, `${name} on card ${i}`);
        assert.equal(Number(shown[1]), rows[i].scores![name]);
        assert.equal(shown[2], four(rows[i].scores![name]));
      }
    });
  });

  test('scorers that prepare images alike share one decode per image, with or without a cache, and score as they do alone', async () => {
    const runSet = async (scorers: string, models: string[], cacheArgs: string[]) => {
      const run = await cli(['rank', ...imageFiles, '--prompt', PROMPTS[0].prompt, '--exif', 'ignore', '--format', 'json', '--stats', '-q',
        '--scorer', scorers, ...models.flatMap((m) => ['--model', m]), ...cacheArgs]);
      assert.equal(run.code, 0, run.stderr);
      const stats = (JSON.parse(run.stderr.trim().split('\n').pop()!) as { stats: { imagesDecoded: number; imageCacheHits: number } }).stats;
      return { rows: (JSON.parse(run.stdout) as JsonRank).rows, stats };
    };
    // clipscore and aesthetic both use OpenAI clip's transform at 224 with the same mean and std; hpsv2.1 has its own.
    const models = [`clipscore=${clipDir}`, `aesthetic=${aestheticDir}`, `hpsv2.1=${hpsDir}`];
    const together = await runSet('clipscore,aesthetic,hpsv2.1', models, ['--no-cache']);
    assert.equal(together.stats.imagesDecoded, 2 * imageFiles.length, 'two distinct transforms: two decodes per image');
    const alone = await runSet('clipscore', [clipDir], ['--no-cache']);
    for (const row of together.rows) {
      assert.equal(row.scores?.clipscore, alone.rows.find((r) => r.path === row.path)!.score);
      const i = imageFiles.indexOf(row.path);
      assert.ok(Math.abs(row.scores!.aesthetic! - expectedAesthetic[i]) / Math.max(1, Math.abs(expectedAesthetic[i])) < TOLERANCE);
      assert.ok(Math.abs(row.scores!['hpsv2.1']! - expectedHps[0][i]) < TOLERANCE);
    }
    // With a cache: the misses are read once and decoded once for both; a rerun decodes nothing.
    const cacheArgs = ['--cache-dir', path.join(scratch, 'shared-cache')];
    const cold = await runSet('clipscore,aesthetic', models.slice(0, 2), cacheArgs);
    assert.equal(cold.stats.imagesDecoded, imageFiles.length);
    const warm = await runSet('clipscore,aesthetic', models.slice(0, 2), cacheArgs);
    assert.equal(warm.stats.imagesDecoded, 0);
    assert.equal(warm.stats.imageCacheHits, 2 * imageFiles.length);
    assert.deepEqual(warm.rows, cold.rows);
  });

  test('eval with several scorers reports each one and gates on --gate-scorer', async () => {
    const manifest = path.join(scratch, 'run.jsonl');
    await writeFile(manifest, imageFiles.map((file, i) => JSON.stringify({ prompt: PROMPTS[0].prompt, image: file, model: i % 2 === 0 ? 'a' : 'b' })).join('\n') + '\n');
    const run = await cli(['eval', manifest, '--scorer', 'hpsv2.1,aesthetic', '--model', `hpsv2.1=${hpsDir}`, '--model', `aesthetic=${aestheticDir}`,
      '--gate-scorer', 'aesthetic', '--baseline', 'a', '--candidate', 'b', '--exif', 'ignore', '--no-cache', '--format', 'json', '-q']);
    const report = JSON.parse(run.stdout) as { models: { model: string; mean: number }[]; scorers: { gate: string; reports: Record<string, { models: { model: string; mean: number }[] }> }; gate: { passed: boolean } };
    assert.equal(report.scorers.gate, 'aesthetic');
    assert.deepEqual(Object.keys(report.scorers.reports), ['hpsv2.1', 'aesthetic']);
    const mean = (values: number[], model: string) => {
      const picked = values.filter((_, i) => (i % 2 === 0 ? 'a' : 'b') === model);
      return picked.reduce((s, v) => s + v, 0) / picked.length;
    };
    for (const model of ['a', 'b']) {
      const hps = report.scorers.reports['hpsv2.1'].models.find((m) => m.model === model)!.mean;
      const aes = report.scorers.reports.aesthetic.models.find((m) => m.model === model)!.mean;
      assert.ok(Math.abs(hps - mean(expectedHps[0], model)) < TOLERANCE);
      assert.ok(Math.abs(aes - mean(expectedAesthetic, model)) < TOLERANCE * Math.max(1, Math.abs(aes)));
      assert.equal(report.models.find((m) => m.model === model)!.mean, aes, 'the report leads with the gate scorer');
    }
    const worse = mean(expectedAesthetic, 'b') < mean(expectedAesthetic, 'a');
    assert.equal(run.code, worse ? 1 : 0, run.stderr);
  });

  test('eval\'s Markdown and HTML pages show every scorer\'s figures as the JSON report holds them, and --scores holds every scorer\'s scores', async () => {
    const manifest = path.join(scratch, 'pages.jsonl');
    await writeFile(manifest, imageFiles.map((file, i) => JSON.stringify({ prompt: PROMPTS[0].prompt, image: file, model: i % 2 === 0 ? 'a' : 'b' })).join('\n') + '\n');
    const evalRun = async (format: string, extra: string[] = []) => {
      const run = await cli(['eval', manifest, '--scorer', 'hpsv2.1,aesthetic', '--model', `hpsv2.1=${hpsDir}`, '--model', `aesthetic=${aestheticDir}`,
        '--baseline', 'a', '--candidate', 'b', '--exif', 'ignore', '--no-cache', '--format', format, '-q', ...extra]);
      assert.ok(run.code === 0 || run.code === 1, run.stderr);
      return run.stdout;
    };
    type Sub = { models: { model: string; mean: number; ci95: { low: number; high: number } }[]; comparisons: { meanDiff: number; winRate: number; signTestP: number; ci95: { low: number; high: number } }[] };
    const csvFile = path.join(scratch, 'scores.csv');
    const jsonlFile = path.join(scratch, 'scores.jsonl');
    const report = JSON.parse(await evalRun('json', ['--scores', csvFile])) as { scorers: { gate: string; reports: Record<string, Sub> } };
    const md = await evalRun('md', ['--scores', jsonlFile]);
    const html = await evalRun('html');
    // --scores: a score:<name> column (CSV) and field (JSONL) per scorer, `score` the first's; each scorer's
    // per-model mean of them is its report's, and each value is PyTorch's.
    const [head, ...csvLines] = (await readFile(csvFile, 'utf8')).trim().split('\n');
    const columns = head.split(',');
    assert.ok(columns.includes('score:hpsv2.1') && columns.includes('score:aesthetic'), head);
    const csvRows = csvLines.map((line) => Object.fromEntries(line.split(',').map((cell, i) => [columns[i], cell])));
    const jsonlRows = (await readFile(jsonlFile, 'utf8')).trim().split('\n').map((line) => JSON.parse(line) as Record<string, unknown>);
    assert.equal(csvRows.length, imageFiles.length);
    csvRows.forEach((row, i) => {
      assert.equal(Number(row.score), Number(row['score:hpsv2.1']), 'score is the first scorer\'s');
      assert.equal(jsonlRows[i]['score:hpsv2.1'], Number(row['score:hpsv2.1']));
      assert.equal(jsonlRows[i]['score:aesthetic'], Number(row['score:aesthetic']));
      assert.ok(Math.abs(Number(row['score:hpsv2.1']) - expectedHps[0][i]) < TOLERANCE);
      assert.ok(Math.abs(Number(row['score:aesthetic']) - expectedAesthetic[i]) / Math.max(1, Math.abs(expectedAesthetic[i])) < TOLERANCE);
    });
    for (const [scorer, sub] of Object.entries(report.scorers.reports)) {
      for (const m of sub.models) {
        const values = csvRows.filter((r) => r.model === m.model).map((r) => Number(r[`score:${scorer}`]));
        assert.ok(Math.abs(values.reduce((x, y) => x + y, 0) / values.length - m.mean) < 1e-9, `${scorer} ${m.model}`);
      }
    }
    const f = (x: number) => x.toFixed(3);
    const table = md.slice(md.indexOf('### Every scorer')).split('\n\n')[1].split('\n').slice(2);
    assert.equal(table.length, 4, md);
    for (const [scorer, sub] of Object.entries(report.scorers.reports)) {
      const label = scorer === report.scorers.gate ? `${scorer} (gate)` : scorer;
      const [a, b] = ['a', 'b'].map((m) => sub.models.find((x) => x.model === m)!);
      const c = sub.comparisons[0];
      assert.equal(table.find((l) => l.startsWith(`| ${label} | a (baseline) |`)), `| ${label} | a (baseline) | ${f(a.mean)} | [${f(a.ci95.low)}, ${f(a.ci95.high)}] | | | | |`);
      const pText = c.signTestP < 0.001 ? c.signTestP.toExponential(1) : c.signTestP.toFixed(3);
      assert.equal(table.find((l) => l.startsWith(`| ${label} | b |`)),
        `| ${label} | b | ${f(b.mean)} | [${f(b.ci95.low)}, ${f(b.ci95.high)}] | ${c.meanDiff >= 0 ? '+' : ''}${f(c.meanDiff)} | [${f(c.ci95.low)}, ${f(c.ci95.high)}] | ${(100 * c.winRate).toFixed(1)}% | ${pText} |`);
      for (const m of [a, b]) {
        const row = new RegExp(`<tr data-scorer="${scorer.replace('.', '\\.')}" data-m="${sub.models.indexOf(m)}"[^>]*>.*?data-field="mean" data-value="([^"]*)"`).exec(html);
        assert.ok(row, `${scorer} / ${m.model} in the HTML table`);
        assert.equal(Number(row[1]), m.mean);
      }
    }
  });

  test('a folder made for another scorer is refused (exit 2), naming the scorer and the folder', async () => {
    const cases: [string[], RegExp][] = [
      [['--scorer', 'hpsv2.1', '--model', clipDir], /hpsv2\.1.*tiny-clip.*open_clip/s],
      [['--scorer', 'pickscore', '--model', hpsDir], /pickscore.*tiny-openclip.*open_clip/s],
      [['--scorer', 'aesthetic', '--model', clipDir], /aesthetic.*no head/s],
      [['--scorer', 'hpsv2.1', '--model', hpsDir, '--resize', 'fast'], /--resize fast.*hpsv2\.1/s],
      [['--scorer', 'pickscore,hpsv2.1', '--model', hpsDir], /several scorers.*--model pickscore=/s],
      [['--scorer', 'hpsv2.1', '--model', `aesthetic=${aestheticDir}`], /aesthetic, which this run does not use/],
      [['--scorer', 'imagereward'], /imagereward/],
      [['--scorer', 'hpsv2.1,aesthetic', '--device', 'cuda:all'], /cuda:all runs one scorer/],
    ];
    for (const [args, message] of cases) {
      const run = await cli(['rank', imageFiles[0], '--prompt', 'x', '--no-cache', '-q', ...args]);
      assert.equal(run.code, 2, `${args.join(' ')}: ${run.stderr}`);
      assert.match(run.stderr, message, args.join(' '));
    }
    const gate = await cli(['eval', path.join(fixturesDir, 'eval', 'checkpoints.jsonl'), '--scorer', 'hpsv2.1', '--model', hpsDir, '--gate-scorer', 'aesthetic', '-q']);
    assert.equal(gate.code, 2, gate.stderr);
    assert.match(gate.stderr, /--gate-scorer.*aesthetic/);
    const shard = await cli(['eval', path.join(fixturesDir, 'eval', 'checkpoints.jsonl'), '--scorer', 'hpsv2.1,aesthetic', '--shard', '0/2', '-q', '--out', path.join(scratch, 'never.json')]);
    assert.equal(shard.code, 2, shard.stderr);
    assert.match(shard.stderr, /sharded eval runs one scorer/);
    // --head must name a regular file: a folder, a FIFO or a missing path is refused before any weights are read.
    const fifo = path.join(scratch, 'head.fifo');
    execFileSync('mkfifo', [fifo]);
    for (const [head, message] of [[scratch, /is not a regular file/], [fifo, /is not a regular file/], [path.join(scratch, 'missing.pth'), /does not exist/]] as const) {
      const run = await cli(['model', 'convert', tinyClipDir, '--tokenizer', tokenizerDir, '--head', head, '--out', path.join(scratch, 'never'), '-q']);
      assert.equal(run.code, 4, run.stderr);
      assert.match(run.stderr, message);
    }
  });

  test('caches are kept apart per scorer: a head\'s score is never read back as an embedding of the same folder', async () => {
    const cacheDir = path.join(scratch, 'cache');
    const runWith = (scorer: string) => cli(['rank', ...imageFiles, '--prompt', PROMPTS[0].prompt, '--exif', 'ignore', '--format', 'json', '--stats',
      '--cache-dir', cacheDir, '--scorer', scorer, '--model', aestheticDir, '-q']);
    const stats = (stderr: string) => (JSON.parse(stderr.trim().split('\n').pop()!) as { stats: { imageCacheHits: number } }).stats;
    const first = await runWith('aesthetic');
    assert.equal(first.code, 0, first.stderr);
    const other = await runWith('clipscore');
    assert.equal(other.code, 0, other.stderr);
    assert.doesNotMatch(other.stderr, /invalid/);
    assert.equal(stats(other.stderr).imageCacheHits, 0);
    const again = await runWith('aesthetic');
    assert.equal(stats(again.stderr).imageCacheHits, imageFiles.length);
    assert.deepEqual((JSON.parse(again.stdout) as JsonRank).rows.map((r) => r.score), (JSON.parse(first.stdout) as JsonRank).rows.map((r) => r.score));
  });

  test('shard parts carry the scorers in the run identity, and merge refuses parts of different scorers', async () => {
    const part = async (shard: string, scorer: string, model: string) => {
      const out = path.join(scratch, `part-${shard.replace('/', '-')}-${scorer}.json`);
      const run = await cli(['rank', ...imageFiles, '--prompt', PROMPTS[0].prompt, '--shard', shard, '--no-cache', '-q', '--scorer', scorer, '--model', model, '--out', out]);
      assert.equal(run.code, 0, run.stderr);
      return out;
    };
    const a = await part('0/2', 'hpsv2.1', hpsDir);
    const b = await part('1/2', 'pickscore', clipDir);
    const refused = await cli(['merge', a, b, '--format', 'json']);
    assert.equal(refused.code, 4, refused.stderr);
    assert.match(refused.stderr, /scorers: .*hpsv2\.1.*pickscore/s);
    const c = await part('1/2', 'hpsv2.1', hpsDir);
    const merged = await cli(['merge', a, c, '--format', 'json']);
    assert.equal(merged.code, 0, merged.stderr);
    const rows = (JSON.parse(merged.stdout) as JsonRank).rows;
    assert.equal(rows.length, imageFiles.length);
    assert.ok(rows.every((r) => r.prob === null && r.score !== null));
  });

  test('the library: PickScore.load({ scorer }) scores as the CLI does, and probs() is PickScore\'s only', async () => {
    const hps = await PickScore.load({ scorer: 'hpsv2.1', model: hpsDir, cacheDir: false, exif: 'ignore', device: 'cpu' });
    try {
      assert.equal(hps.scorerName, 'hpsv2.1');
      const scores = await hps.score(PROMPTS[0].prompt, imageFiles);
      scores.forEach((s, i) => assert.ok(Math.abs(s - expectedHps[0][i]) < TOLERANCE));
      await assert.rejects(hps.probs(PROMPTS[0].prompt, imageFiles), UsageError);
    } finally {
      await hps.close();
    }
    await assert.rejects(PickScore.load({ scorer: 'hpsv2.1', model: clipDir, cacheDir: false }), UsageError);
  });

  test('the scorer descriptions accept the folders made for them', async () => {
    assert.equal(scorerModelProblem(scorerDescription('hpsv2.1'), await readModelManifest(hpsDir)), undefined);
    assert.equal(scorerModelProblem(scorerDescription('aesthetic'), await readModelManifest(aestheticDir)), undefined);
    assert.equal(scorerModelProblem(scorerDescription('clipscore'), await readModelManifest(aestheticDir)), undefined);
    assert.match(scorerModelProblem(scorerDescription('clipscore'), await readModelManifest(hpsDir)) ?? '', /open_clip/);
  });

  test('model pull hpsv2.1 downloads HPSv2\'s .pt and converts it as the architecture its description names; the aesthetic head is checked before any download', async () => {
    // A loopback Hub where the tiny HPSv2-style .pt stands in for HPS_v2.1_compressed.pt (its architecture is tiny, so it is named by a config here).
    const root = path.join(scratch, 'hub');
    await mkdir(path.join(root, 'xswu', 'HPSv2'), { recursive: true });
    await mkdir(path.join(root, 'laion', 'CLIP-ViT-H-14-laion2B-s32B-b79K'), { recursive: true });
    await copyFile(path.join(referenceDir, 'open_clip', 'tiny-hpsv2', 'tiny_hps.pt'), path.join(root, 'xswu', 'HPSv2', 'HPS_v2.1_compressed.pt'));
    for (const f of ['tokenizer.json', 'tokenizer_config.json', 'vocab.json', 'merges.txt']) await copyFile(path.join(tokenizerDir, f), path.join(root, 'laion', 'CLIP-ViT-H-14-laion2B-s32B-b79K', f));
    const server = await startHubServer(root);
    try {
      const env = { PICKSCORE_HOME: path.join(scratch, 'home'), HF_HOME: path.join(scratch, 'hf'), HF_ENDPOINT: server.endpoint };
      // The real description names ViT-H-14, which the tiny .pt is not: the converter refuses it, naming the tensor that does not fit.
      const pulled = await runCli(['model', 'pull', 'hpsv2.1', '--precision', 'fp32', '-q'], { env });
      assert.equal(pulled.code, 5, pulled.stderr);
      assert.match(pulled.stderr, /ViT-H-14/);
      const before = server.requests.length;
      const aesthetic = await runCli(['model', 'pull', 'laion-aesthetic-l14', '-q'], { env });
      assert.equal(aesthetic.code, 5, aesthetic.stderr);
      assert.match(aesthetic.stderr, /github\.com.*heads\/sac\+logos\+ava1-l14-linearMSE\.pth.*21dd590f/s);
      assert.equal(server.requests.length, before, 'nothing is downloaded for a model whose head is missing');
      await mkdir(path.join(env.PICKSCORE_HOME, 'heads'), { recursive: true });
      await copyFile(headFile, path.join(env.PICKSCORE_HOME, 'heads', 'sac+logos+ava1-l14-linearMSE.pth'));
      const wrong = await runCli(['model', 'pull', 'laion-aesthetic-l14', '-q'], { env });
      assert.equal(wrong.code, 5, wrong.stderr);
      assert.match(wrong.stderr, /has SHA-256 [0-9a-f]{64}, not the 21dd590f/);
    } finally {
      await server.close();
    }
  });
});
