import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { referenceDir, skipWithoutReference } from './helpers/paths.js';
import { tinyModel } from './helpers/tiny-model.js';
import { runCli, signalWhen, spawnCli } from './helpers/pipe-cli.js';
import { writeGradientPngs } from './helpers/pipe-images.js';
import { withTempDir } from './helpers/temp-dir.js';

interface Reference {
  prompts: { prompt: string }[];
  images: { image: string; orientation: 'raw' | 'exif' }[];
  scores: { values: number[][] };
}

interface Row { path: string; prompt: string; score: number | null; prob: number | null; rank: number | null; width: number | null; height: number | null; error: string | null }

const SCORE_TOLERANCE = 0.01;


function parseJsonl(text: string): Row[] {
  return text.trim().split('\n').map((line) => JSON.parse(line) as Row);
}

/** Lines on stderr that are neither warnings nor errors: there must be none when stderr is not a TTY. */
function chatter(stderr: string): string[] {
  return stderr.split('\n').filter((line) => line !== '' && !/^(warning|error)\b/.test(line));
}

async function checkParity(orientation: 'raw' | 'exif'): Promise<void> {
  const reference = JSON.parse(await readFile(path.join(referenceDir, 'reference.json'), 'utf8')) as Reference;
  const model = await tinyModel();
  const prompts = reference.prompts.map((p, row) => ({ prompt: p.prompt, row })).filter((p) => p.prompt !== '');
  const args = ['rank', path.join(referenceDir, 'images'), ...prompts.flatMap((p) => ['--prompt', p.prompt]),
    '--model', model, '--device', 'cpu', '--format', 'jsonl', '--no-cache', '--threads', '2'];
  const result = await runCli(orientation === 'raw' ? [...args, '--exif', 'ignore'] : args);
  assert.equal(result.code, 0, result.stderr);
  assert.deepEqual(chatter(result.stderr), []);
  const rows = parseJsonl(result.stdout);
  assert.equal(rows.length, prompts.length * 10);
  const column = new Map(reference.images.map((image, i) => [`${image.image}/${image.orientation}`, i]));
  const rowOf = new Map(prompts.map((p) => [p.prompt, p.row]));
  let worst = 0;
  for (const row of rows) {
    assert.equal(row.error, null);
    const expected = reference.scores.values[rowOf.get(row.prompt) as number][column.get(`${path.basename(row.path)}/${orientation}`) as number];
    worst = Math.max(worst, Math.abs((row.score as number) - expected));
    assert.ok(Math.abs((row.score as number) - expected) <= SCORE_TOLERANCE, `${row.path} / ${row.prompt}: ${row.score} vs ${expected}`);
  }
  assert.ok(worst <= SCORE_TOLERANCE, `largest deviation ${worst}`);
}

test('rank --exif ignore reproduces the reference scores of the raw images', { skip: skipWithoutReference }, () => checkParity('raw'));

test('rank applies EXIF orientation by default and reproduces the reference scores of the exif images', { skip: skipWithoutReference }, () => checkParity('exif'));

test('a corrupt image becomes an error row, the run completes, and the exit code is 3', { skip: skipWithoutReference }, async () => {
  const model = await tinyModel();
  await withTempDir('cli', async (dir) => {
    await writeGradientPngs(dir, 2);
    await writeFile(path.join(dir, 'broken.png'), Buffer.from('this is not a png'));
    const result = await runCli(['rank', dir, '--prompt', 'a gradient', '--model', model, '--device', 'cpu', '--format', 'json', '--no-cache']);
    assert.equal(result.code, 3, result.stderr);
    assert.deepEqual(chatter(result.stderr), []);
    const doc = JSON.parse(result.stdout) as { incomplete: boolean; rows: Row[]; provenance: { model: string; exif: string } };
    assert.equal(doc.incomplete, false);
    assert.equal(doc.provenance.exif, 'apply');
    assert.equal(doc.rows.length, 3);
    const broken = doc.rows.find((r) => r.path.endsWith('broken.png'));
    assert.ok(broken?.error, 'the broken image has an error');
    assert.equal(broken?.score, null);
    assert.deepEqual(doc.rows.filter((r) => r.error === null).map((r) => r.rank), [1, 2]);
  });
});

test('a missing path exits 4 and names the path', async () => {
  const result = await runCli(['rank', '/nonexistent/pickscore-inputs', '--prompt', 'p', '--no-cache']);
  assert.equal(result.code, 4);
  assert.match(result.stderr, /\/nonexistent\/pickscore-inputs/);
  assert.equal(result.stdout, '');
});

test('bad flags exit 2 and name the flag', async () => {
  const unknown = await runCli(['rank', '.', '--prompt', 'p', '--bogus']);
  assert.equal(unknown.code, 2);
  assert.match(unknown.stderr, /--bogus/);
  const badNumber = await runCli(['rank', '.', '--prompt', 'p', '--batch-size', 'zero']);
  assert.equal(badNumber.code, 2);
  assert.match(badNumber.stderr, /--batch-size/);
  const badChoice = await runCli(['rank', '.', '--prompt', 'p', '--format', 'xml']);
  assert.equal(badChoice.code, 2);
  assert.match(badChoice.stderr, /--format/);
  const unknownExtension = await runCli(['rank', '.', '--prompt', 'p', '--out', 'ranked.xyz']);
  assert.equal(unknownExtension.code, 2);
  assert.match(unknownExtension.stderr, /--out ranked\.xyz/);
  const noPrompt = await runCli(['rank', '.']);
  assert.equal(noPrompt.code, 2);
  assert.match(noPrompt.stderr, /--prompt/);
});

test('--help shows the commands and examples; --version prints the version', async () => {
  const help = await runCli(['--help']);
  assert.equal(help.code, 0);
  for (const command of ['rank', 'eval', 'model', 'cache', 'Examples']) assert.match(help.stdout, new RegExp(command));
  const rankHelp = await runCli(['rank', '--help']);
  assert.equal(rankHelp.code, 0);
  assert.match(rankHelp.stdout, /--prompt-from/);
  const version = await runCli(['--version']);
  assert.equal(version.code, 0);
  assert.match(version.stdout, /^\d+\.\d+\.\d+/);
});

test('SIGINT mid-run writes a valid output marked incomplete and exits 130; a rerun encodes only the rest', { skip: skipWithoutReference }, async () => {
  const model = await tinyModel();
  const total = 120;
  await withTempDir('cli', async (dir) => {
    const images = path.join(dir, 'images');
    await mkdir(images);
    await writeGradientPngs(images, total);
    const cacheDir = path.join(dir, 'cache');
    const out = path.join(dir, 'ranked.json');
    const base = ['rank', images, '--prompt', 'a gradient', '--model', model, '--device', 'cpu', '--batch-size', '4', '--threads', '1',
      '--cache-dir', cacheDir, '--out', out];

    const { child, done } = spawnCli([...base, '--verbose', '--stats']);
    signalWhen(child, (chunk) => /^rank: \d+\/\d+$/m.test(chunk), 'SIGINT');
    const first = await done;
    assert.equal(first.code, 130, first.stderr);
    const partial = JSON.parse(await readFile(out, 'utf8')) as { incomplete: boolean; rows: Row[]; provenance: { stats: { imagesEncoded: number } } };
    assert.equal(partial.incomplete, true);
    assert.ok(partial.rows.length > 0 && partial.rows.length < total, `${partial.rows.length} rows`);
    const encodedFirst = partial.provenance.stats.imagesEncoded;
    assert.equal(encodedFirst, partial.rows.length);

    const second = await runCli([...base, '--stats']);
    assert.equal(second.code, 0, second.stderr);
    const stats = JSON.parse(second.stderr.trim().split('\n').at(-1) as string) as { stats: { imagesEncoded: number; imageCacheHits: number } };
    assert.equal(stats.stats.imageCacheHits, encodedFirst);
    assert.equal(stats.stats.imagesEncoded, total - encodedFirst);
    const complete = JSON.parse(await readFile(out, 'utf8')) as { incomplete: boolean; rows: Row[] };
    assert.equal(complete.incomplete, false);
    assert.equal(complete.rows.length, total);
  });
});

test('a reader that closes the pipe early (pickscore ... | head) ends the run quietly, without a crash', async () => {
  const { child, done } = spawnCli(['rank', '--help']);
  // Closed before the child has started, so its first write meets a broken pipe.
  child.stdout?.destroy();
  const result = await done;
  assert.doesNotMatch(result.stderr, /Unhandled 'error' event|EPIPE/, result.stderr);
  assert.equal(result.code, 0);
});

test('exit codes say what went wrong, as the README has them: a bad flag value 2, a missing path 4, a broken model 5', async () => {
  await withTempDir('cli-codes', async (dir) => {
    for (const prompt of ['', '   ']) {
      const empty = await runCli(['rank', dir, '--prompt', prompt, '--model', path.join(dir, 'no-model'), '--no-cache']);
      assert.equal(empty.code, 2, empty.stderr);
      assert.match(empty.stderr, /Expected a non-empty prompt for --prompt but received "\s*"/);
    }
    const file = path.join(dir, 'a-file.txt');
    await writeFile(file, 'not a folder');
    // The model is opened after the images are listed, and before any is read.
    const images = path.join(dir, 'imgs');
    await mkdir(images);
    await writeFile(path.join(images, 'a.png'), 'not read');
    const cases: { args: string[]; code: number; message: RegExp }[] = [
      { args: ['model', 'convert', path.join(dir, 'nonexistent'), '--out', path.join(dir, 'out')], code: 4, message: /The checkpoint folder .*nonexistent does not exist/ },
      { args: ['model', 'convert', file, '--out', path.join(dir, 'out')], code: 4, message: /The checkpoint folder .*a-file\.txt is not a folder/ },
      { args: ['model', 'convert', dir, '--tokenizer', path.join(dir, 'no-tokenizer'), '--out', path.join(dir, 'out')], code: 4, message: /The tokenizer folder \(--tokenizer\) .*no-tokenizer does not exist/ },
      // An existing folder that is no checkpoint is a model that cannot be used.
      { args: ['model', 'convert', dir, '--out', path.join(dir, 'out')], code: 5, message: /config\.json/ },
      { args: ['rank', images, '--prompt', 'p', '--model', file, '--no-cache'], code: 4, message: /The model folder .*a-file\.txt is not a folder/ },
    ];
    for (const { args, code, message } of cases) {
      const result = await runCli(args);
      assert.equal(result.code, code, `${args.join(' ')}: ${result.stderr}`);
      assert.match(result.stderr, message);
    }
  });
});
