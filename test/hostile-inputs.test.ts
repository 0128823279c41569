/**
 * Inputs that must not crash, hang or exhaust the process: command-line arguments of 100,000
 * characters, FIFOs and devices where a file is read, binary and UTF-16 prompts files, file names that
 * are not UTF-8, absurd thread counts. Each runs the real CLI (or a program using the library) as a
 * child process, so a crash shows as its exit code or signal instead of taking the suite down.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { lstat, mkdir, readdir, readFile, rm, symlink, truncate, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { modelConvert } from '../src/commands/model.js';
import { UsageError } from '../src/errors.js';
import { PickScore } from '../src/index.js';
import { pathFromDisplay } from '../src/io/path-text.js';
import { CHECKSUM_FILE } from '../src/model-format.js';
import { pngWithChunks, textChunk } from './helpers/image-files.js';
import { runCli, spawnCli, spawnCollecting, type CliResult } from './helpers/pipe-cli.js';
import { encodePng, gradientRgb } from './helpers/pipe-images.js';
import { withTempDir } from './helpers/temp-dir.js';
import { tinyModel } from './helpers/tiny-model.js';
import { referenceDir, repoRoot, skipWithoutReference } from './helpers/paths.js';

/**
 * The environment of a desktop run: onnxruntime turns its telemetry off by itself when it sees a CI
 * variable (CI=true and the like), which hid the long-argument crash in CI; these cases must run without.
 */
function desktopEnv(): NodeJS.ProcessEnv {
  const ci = ['CI', 'TF_BUILD', 'GITHUB_ACTIONS', 'GITLAB_CI', 'CIRCLECI', 'TRAVIS', 'JENKINS_URL', 'CODEBUILD_BUILD_ID', 'BUILDKITE',
    'TEAMCITY_VERSION', 'APPVEYOR', 'BITBUCKET_BUILD_NUMBER', 'SYSTEM_TEAMFOUNDATIONCOLLECTIONURI', 'ORT_DISABLE_TELEMETRY',
    'ORT_TELEMETRY_DISABLED', 'ORT_RUNNING_UNIT_TESTS'];
  return Object.fromEntries(Object.entries(process.env).filter(([name]) => !ci.includes(name)));
}

const LONG_ARGUMENT = '!'.repeat(100_000);

async function onePng(dir: string, name = 'a.png'): Promise<string> {
  const file = path.join(dir, name);
  await writeFile(file, encodePng(gradientRgb(16, 16, 1), 16, 16));
  return file;
}

test('a 100,000-character --prompt is scored (it crashed the process with SIGSEGV, exit 139)', { skip: skipWithoutReference }, async () => {
  await withTempDir('long-arg', async (dir) => {
    await onePng(dir);
    const result = await runCli(['rank', dir, '--prompt', LONG_ARGUMENT, '--model', await tinyModel(), '--cache-dir', path.join(dir, 'cache'), '--format', 'jsonl'],
      { env: desktopEnv() });
    assert.equal(result.signal, null, result.stderr);
    assert.equal(result.code, 0, result.stderr);
    const rows = result.stdout.trim().split('\n').map((line) => JSON.parse(line) as { prompt: string; score: number | null });
    assert.equal(rows.length, 1);
    assert.equal(rows[0].prompt, LONG_ARGUMENT);
    assert.equal(typeof rows[0].score, 'number');
  });
});

test('a program that loads the library scores with a 100,000-character argument it never uses', { skip: skipWithoutReference }, async () => {
  await withTempDir('long-arg-lib', async (dir) => {
    const image = await onePng(dir);
    const index = new URL('../src/index.js', import.meta.url).href;
    const program = path.join(dir, 'program.mjs');
    await writeFile(program, [
      `const { PickScore } = await import(${JSON.stringify(index)});`,
      `const scorer = await PickScore.load({ model: ${JSON.stringify(await tinyModel())}, device: 'cpu', cacheDir: false, threads: 1 });`,
      `const [score] = await scorer.score('a photo', [${JSON.stringify(image)}]);`,
      'await scorer.close();',
      'console.log(JSON.stringify({ score }));',
    ].join('\n'));
    const { done } = spawnCollecting(process.execPath, [program, LONG_ARGUMENT], { cwd: repoRoot, env: desktopEnv() });
    const result = await done;
    assert.equal(result.signal, null, result.stderr);
    assert.equal(result.code, 0, result.stderr);
    assert.equal(typeof (JSON.parse(result.stdout) as { score: unknown }).score, 'number');
  });
});


/** Runs the CLI; a run that has not ended after `seconds` is killed, and `hung` says so (the case failed). */
async function runUnlessHung(args: string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv } = {}, seconds = 120): Promise<CliResult & { hung: boolean }> {
  const { child, done } = spawnCli(args, opts);
  let hung = false;
  const timer = setTimeout(() => { hung = true; child.kill('SIGKILL'); }, seconds * 1000);
  try {
    return { ...(await done), hung };
  } finally {
    clearTimeout(timer);
  }
}

interface Row { path: string; prompt: string; score: number | null; error: string | null }

function jsonlRows(stdout: string): Row[] {
  return stdout.trim() === '' ? [] : stdout.trim().split('\n').map((line) => JSON.parse(line) as Row);
}

async function modelArgs(dir: string): Promise<string[]> {
  return ['--model', await tinyModel(), '--cache-dir', path.join(dir, 'cache'), '--threads', '2'];
}

test('FIFOs and a link to /dev/zero where --prompt-from reads a prompt become error rows; the run ends', { skip: skipWithoutReference }, async () => {
  await withTempDir('fifo-prompts', async (dir) => {
    const imgs = path.join(dir, 'imgs');
    await mkdir(imgs);
    await onePng(imgs, 'a.png');
    await writeFile(path.join(imgs, 'a.txt'), 'a sidecar prompt');
    execFileSync('mkfifo', [path.join(imgs, 'b.png')]);          // a FIFO named like an image
    await onePng(imgs, 'c.png');
    execFileSync('mkfifo', [path.join(imgs, 'c.txt')]);          // a FIFO sidecar
    execFileSync('sh', ['-c', 'mkfifo "$1$(printf \'\\377\')".png', 'sh', `${imgs}/d`]); // a FIFO named d<0xFF>.png
    await symlink('/dev/zero', path.join(imgs, 'z.png'));        // reading it whole never ends
    // Sidecars for those, so that with --prompt-from sidecar it is the image read that must refuse them.
    for (const stem of [Buffer.from('b'), Buffer.from([0x64, 0xff]), Buffer.from('z')]) {
      await writeFile(Buffer.concat([Buffer.from(`${imgs}/`), stem, Buffer.from('.txt')]), 'a prompt');
    }
    for (const source of ['png', 'sidecar']) {
      const result = await runUnlessHung(['rank', imgs, '--prompt-from', source, ...await modelArgs(dir), '--format', 'jsonl']);
      assert.equal(result.hung, false, `--prompt-from ${source} hung`);
      assert.equal(result.code, 3, result.stderr);
      const rows = jsonlRows(result.stdout);
      const byPath = new Map(rows.map((r) => [path.basename(r.path), r]));
      assert.deepEqual([...byPath.keys()].sort(), ['a.png', 'b.png', 'c.png', 'd\\xFF.png', 'z.png'], source);
      for (const name of ['b.png', 'd\\xFF.png', 'z.png']) assert.match(byPath.get(name)?.error ?? '', /not a regular file \(a FIFO, socket or device\)/, `${source}: ${name}`);
      if (source === 'sidecar') {
        assert.equal(byPath.get('a.png')?.prompt, 'a sidecar prompt');
        assert.equal(typeof byPath.get('a.png')?.score, 'number');
        assert.match(byPath.get('c.png')?.error ?? '', /cannot read sidecar prompt file .*c\.txt \(not a regular file/);
      }
    }
  });
});

test('a FIFO or a link to /dev/zero as --prompts-file, an eval manifest or a merge part stops the run at once with exit 4', { skip: skipWithoutReference }, async () => {
  await withTempDir('fifo-lists', async (dir) => {
    await onePng(dir);
    execFileSync('mkfifo', [path.join(dir, 'prompts.txt')]);
    await symlink('/dev/zero', path.join(dir, 'zero.txt'));
    execFileSync('mkfifo', [path.join(dir, 'run.jsonl')]);
    execFileSync('mkfifo', [path.join(dir, 'part.json')]);
    const runs: [string, string[], RegExp][] = [
      ['prompts FIFO', ['rank', path.join(dir, 'a.png'), '--prompts-file', path.join(dir, 'prompts.txt'), ...await modelArgs(dir)], /Cannot read prompts file .*prompts\.txt \(not a regular file/],
      ['prompts /dev/zero', ['rank', path.join(dir, 'a.png'), '--prompts-file', path.join(dir, 'zero.txt'), ...await modelArgs(dir)], /Cannot read prompts file .*zero\.txt \(not a regular file/],
      ['manifest FIFO', ['eval', path.join(dir, 'run.jsonl'), ...await modelArgs(dir)], /Cannot read manifest .*run\.jsonl: not a regular file/],
      ['merge part FIFO', ['merge', path.join(dir, 'part.json'), '--out', path.join(dir, 'merged.json')], /Cannot read part .*part\.json \(not a regular file/],
    ];
    for (const [what, args, message] of runs) {
      const result = await runUnlessHung(args);
      assert.equal(result.hung, false, `${what} hung`);
      assert.equal(result.code, 4, `${what}: ${result.stderr}`);
      assert.match(result.stderr, message, what);
    }
  });
});

test('a FIFO in a model folder (its manifest, an encoder) is a model error, exit 5, naming the file', { skip: skipWithoutReference }, async () => {
  await withTempDir('fifo-model', async (dir) => {
    await onePng(dir);
    const source = await tinyModel();
    for (const replaced of ['pickscore-model.json', 'text.onnx', 'tokenizer.json']) {
      const model = path.join(dir, `model-${replaced}`);
      await mkdir(model);
      for (const name of await readdir(source)) {
        if (name === replaced) execFileSync('mkfifo', [path.join(model, name)]);
        else await symlink(path.join(source, name), path.join(model, name));
      }
      const result = await runUnlessHung(['rank', path.join(dir, 'a.png'), '--prompt', 'x', '--model', model, '--no-cache']);
      assert.equal(result.hung, false, `${replaced} hung`);
      assert.equal(result.code, 5, `${replaced}: ${result.stderr}`);
      assert.match(result.stderr, new RegExp(`${replaced.replace('.', '\\.')}.*not a regular file|not a regular file.*${replaced.replace('.', '\\.')}`), replaced);
    }
  });
});

test('model verify fails with exit 5, naming checksums.sha256, when the file is gone', { skip: skipWithoutReference }, async () => {
  await withTempDir('verify-no-sums', async (dir) => {
    const model = path.join(dir, 'model');
    await modelConvert({ src: path.join(referenceDir, 'tiny-clip'), out: model, precision: 'fp32', tokenizerDir: path.join(referenceDir, 'clip-tokenizer') });
    const intact = await runUnlessHung(['model', 'verify', model, '--no-inference']);
    assert.equal(intact.code, 0, intact.stdout + intact.stderr);
    await rm(path.join(model, CHECKSUM_FILE));
    const result = await runUnlessHung(['model', 'verify', model, '--no-inference']);
    assert.equal(result.code, 5, result.stdout + result.stderr);
    assert.match(result.stdout, /FAIL {2}files: checksums\.sha256 is missing/);
  });
});

test('prompts files in UTF-16 (either byte order, with a BOM) and UTF-8 with a BOM give the same prompts', { skip: skipWithoutReference }, async () => {
  await withTempDir('prompt-encodings', async (dir) => {
    await onePng(dir);
    const text = 'a café\r\nun 猫 🐈\n';
    const utf16be = Buffer.from(text, 'utf16le').swap16();
    const files: [string, Buffer][] = [
      ['utf8.txt', Buffer.from(text)],
      ['utf8-bom.txt', Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from(text)])],
      ['utf16le.txt', Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from(text, 'utf16le')])],
      ['utf16be.txt', Buffer.concat([Buffer.from([0xfe, 0xff]), utf16be])],
    ];
    for (const [name, bytes] of files) {
      await writeFile(path.join(dir, name), bytes);
      const result = await runUnlessHung(['rank', path.join(dir, 'a.png'), '--prompts-file', path.join(dir, name), ...await modelArgs(dir), '--format', 'jsonl']);
      assert.equal(result.code, 0, `${name}: ${result.stderr}`);
      assert.deepEqual(jsonlRows(result.stdout).map((r) => r.prompt).sort(), ['a café', 'un 猫 🐈'], name);
    }
  });
});

test('a binary prompts file, UTF-16 without a BOM or invalid UTF-8 is refused with exit 4 naming the file and line', { skip: skipWithoutReference }, async () => {
  await withTempDir('prompt-garbage', async (dir) => {
    await onePng(dir);
    const cases: [string, Buffer, RegExp][] = [
      ['utf16-no-bom.txt', Buffer.from('first\nsecond\n', 'utf16le'), /utf16-no-bom\.txt:1: NUL byte: a binary file, or UTF-16 without a byte-order mark/],
      ['binary.txt', Buffer.concat([Buffer.from('ok\nfine\n'), Buffer.from([0x7f, 0x45, 0x4c, 0x46, 0x02, 0x01, 0x00, 0x00])]), /binary\.txt:3: NUL byte/],
      ['latin1.txt', Buffer.from('fine\ncaf\xe9\n', 'latin1'), /latin1\.txt:2: not valid UTF-8 \(byte 0xE9\)/],
      ['lone.txt', Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from('a\n', 'utf16le'), Buffer.from([0x00, 0xd8, 0x0a, 0x00])]), /lone\.txt:2: not valid UTF-16LE \(a lone surrogate 0xD800\)/],
    ];
    for (const [name, bytes, message] of cases) {
      await writeFile(path.join(dir, name), bytes);
      const result = await runUnlessHung(['rank', path.join(dir, 'a.png'), '--prompts-file', path.join(dir, name), ...await modelArgs(dir)]);
      assert.equal(result.code, 4, `${name}: ${result.stderr}`);
      assert.match(result.stderr, message, name);
    }
  });
});

test('a prompt that is one 200,000-character token, from a prompts file or a PNG prompt chunk, is scored', { skip: skipWithoutReference }, async () => {
  await withTempDir('long-token', async (dir) => {
    const prompt = '['.repeat(100_000) + ']'.repeat(100_000);
    await onePng(dir);
    await writeFile(path.join(dir, 'prompts.txt'), `${prompt}\n`);
    const imgs = path.join(dir, 'imgs');
    await mkdir(imgs);
    await writeFile(path.join(imgs, 'p.png'), pngWithChunks([textChunk('prompt', prompt)]));
    for (const args of [['rank', path.join(dir, 'a.png'), '--prompts-file', path.join(dir, 'prompts.txt')], ['rank', imgs, '--prompt-from', 'png']]) {
      const result = await runUnlessHung([...args, ...await modelArgs(dir), '--format', 'jsonl']);
      assert.equal(result.code, 0, result.stderr);
      const [row] = jsonlRows(result.stdout);
      assert.equal(row.prompt, prompt);
      assert.equal(typeof row.score, 'number');
      assert.match(result.stderr, /has 200002 tokens; the model reads the first 77/);
    }
  });
});

test('--threads beyond 4 per CPU core is a usage error naming the limit, in the CLI and in the library', async () => {
  const limit = 4 * os.availableParallelism();
  const result = await runUnlessHung(['rank', '.', '--prompt', 'x', '--threads', '100000']);
  assert.equal(result.code, 2, result.stderr);
  assert.match(result.stderr, new RegExp(`Expected at most ${limit} \\(4 per CPU core, ${os.availableParallelism()} cores here\\) for --threads but received number 100000`));
  await assert.rejects(PickScore.load({ threads: 100_000, model: '/nonexistent' }), (e: unknown) => e instanceof UsageError && e.message.includes(`at most ${limit}`));
});

test('a name with byte 0xFF and a name that spells out \\xFF are two rows with their own paths, scores and thumbnails', { skip: skipWithoutReference }, async () => {
  await withTempDir('non-utf8', async (dir) => {
    const imgs = path.join(dir, 'imgs');
    await mkdir(imgs);
    const raw = Buffer.concat([Buffer.from(`${imgs}/bad`), Buffer.from([0xff]), Buffer.from('name.png')]);
    await writeFile(raw, encodePng(gradientRgb(32, 32, 3), 32, 32));
    await writeFile(path.join(imgs, 'bad\\xFFname.png'), encodePng(gradientRgb(32, 32, 90), 32, 32));
    const result = await runUnlessHung(['rank', imgs, '--prompt', 'a photo', ...await modelArgs(dir), '--format', 'jsonl']);
    assert.equal(result.code, 0, result.stderr);
    const rows = jsonlRows(result.stdout).sort((a, b) => a.path.localeCompare(b.path));
    assert.deepEqual(rows.map((r) => path.basename(r.path)), ['bad\\\\xFFname.png', 'bad\\xFFname.png']);
    // Each file's own score: the same as ranking that file alone, through a name that opens it.
    for (const row of rows) {
      const file = pathFromDisplay(row.path);
      const alone = path.join(dir, `alone-${rows.indexOf(row)}.png`);
      await writeFile(alone, await readFile(file));
      const single = await runUnlessHung(['rank', alone, '--prompt', 'a photo', ...await modelArgs(dir), '--format', 'jsonl']);
      assert.equal(jsonlRows(single.stdout)[0].score, row.score, row.path);
    }
    assert.notEqual(rows[0].score, rows[1].score);
    // The gallery shows each file's own thumbnail.
    const html = path.join(dir, 'gallery.html');
    const gallery = await runUnlessHung(['rank', imgs, '--prompt', 'a photo', ...await modelArgs(dir), '--out', html]);
    assert.equal(gallery.code, 0, gallery.stderr);
    const thumbnails = [...(await readFile(html, 'utf8')).matchAll(/<img src="(data:[^"]+)"/g)].map((m) => m[1]);
    assert.equal(thumbnails.length, 2);
    assert.notEqual(thumbnails[0], thumbnails[1]);
  });
});

test('a folder walk leaves .bmp files out and says so; a .bmp named on the command line is an error row saying BMP is not supported', { skip: skipWithoutReference }, async () => {
  await withTempDir('bmp', async (dir) => {
    await onePng(dir);
    execFileSync('/usr/bin/python3', ['-c', 'import sys; from PIL import Image; Image.new("RGB", (8, 8), (200, 10, 10)).save(sys.argv[1])', path.join(dir, 'red.bmp')]);
    const walked = await runUnlessHung(['rank', dir, '--prompt', 'x', ...await modelArgs(dir), '--format', 'jsonl']);
    assert.equal(walked.code, 0, walked.stderr);
    assert.deepEqual(jsonlRows(walked.stdout).map((r) => path.basename(r.path)), ['a.png']);
    assert.match(walked.stderr, /warning: skipped 1 BMP file \(BMP is not supported; convert to PNG to score\): .*red\.bmp/);
    const named = await runUnlessHung(['rank', path.join(dir, 'red.bmp'), path.join(dir, 'a.png'), '--prompt', 'x', ...await modelArgs(dir), '--format', 'jsonl']);
    assert.equal(named.code, 3, named.stderr);
    const bmpRow = jsonlRows(named.stdout).find((r) => r.path.endsWith('red.bmp'));
    assert.match(bmpRow?.error ?? '', /^BMP is not supported/);
  });
});

test('lone surrogates in prompts are named in a warning: they score as U+FFFD', { skip: skipWithoutReference }, async () => {
  await withTempDir('surrogates', async (dir) => {
    await onePng(dir);
    await writeFile(path.join(dir, 'prompts.jsonl'), ['{"prompt":"x\\ud800"}', '{"prompt":"x\\udbff"}', '{"prompt":"x\\ufffd"}'].join('\n'));
    const result = await runUnlessHung(['rank', path.join(dir, 'a.png'), '--prompts-file', path.join(dir, 'prompts.jsonl'), ...await modelArgs(dir), '--format', 'jsonl']);
    assert.equal(result.code, 0, result.stderr);
    const rows = jsonlRows(result.stdout);
    assert.equal(rows.length, 3);
    assert.equal(new Set(rows.map((r) => r.score)).size, 1);
    assert.match(result.stderr, /warning: prompt "x\\ud800" holds a lone surrogate \(U\+D800\), which is not a character; it was replaced by U\+FFFD/);
    assert.match(result.stderr, /warning: prompt "x\\udbff" holds a lone surrogate \(U\+DBFF\)/);
    assert.doesNotMatch(result.stderr, /"x\\ufffd"|"x\uFFFD" holds/);
  });
});

// Found by running every reproduction again by hand after the fixes above: two inputs that still crashed.

test('a 100,000-character --prompt is scored when ORT_DISABLE_TELEMETRY is 0, false or empty (those kept the telemetry on: exit 139)', { skip: skipWithoutReference }, async () => {
  await withTempDir('long-arg-telemetry', async (dir) => {
    await onePng(dir);
    for (const value of ['0', 'false', '']) {
      const result = await runUnlessHung(['rank', dir, '--prompt', LONG_ARGUMENT, ...await modelArgs(dir), '--format', 'jsonl'],
        { env: { ...desktopEnv(), ORT_DISABLE_TELEMETRY: value } });
      assert.equal(result.hung, false, `ORT_DISABLE_TELEMETRY=${JSON.stringify(value)}`);
      assert.equal(result.signal, null, `ORT_DISABLE_TELEMETRY=${JSON.stringify(value)}: ${result.stderr}`);
      assert.equal(result.code, 0, `ORT_DISABLE_TELEMETRY=${JSON.stringify(value)}: ${result.stderr}`);
      const rows = jsonlRows(result.stdout);
      assert.equal(rows.length, 1);
      assert.equal(typeof rows[0].score, 'number');
    }
  });
});

test('--batch-size beyond 1024 is a usage error naming the limit, in the CLI and in the library (100,000,000 was an internal error, exit 70)', { skip: skipWithoutReference }, async () => {
  await withTempDir('batch-size', async (dir) => {
    await onePng(dir);
    const result = await runUnlessHung(['rank', dir, '--prompt', 'x', ...await modelArgs(dir), '--batch-size', '100000000', '--format', 'jsonl']);
    assert.equal(result.code, 2, result.stderr);
    assert.match(result.stderr, /Expected at most 1024 for --batch-size but received number 100000000: each image of a batch holds its pixels twice/);
    assert.doesNotMatch(result.stderr, /internal error|RangeError/);
    await assert.rejects(PickScore.load({ batchSize: 100_000_000, model: '/nonexistent' }),
      (e: unknown) => e instanceof UsageError && /at most 1024 for batchSize/.test(e.message));
    const atLimit = await runUnlessHung(['rank', dir, '--prompt', 'x', ...await modelArgs(dir), '--batch-size', '1024', '--format', 'jsonl']);
    assert.equal(atLimit.code, 0, atLimit.stderr);
    assert.equal(jsonlRows(atLimit.stdout).length, 1);
  });
});

test('an image file over 1 GiB (a sparse 2 GiB file) is an error row saying so, without reading it; the other image is scored', { skip: skipWithoutReference }, async () => {
  await withTempDir('huge-image', async (dir) => {
    await onePng(dir);
    const huge = path.join(dir, 'huge.png');
    await writeFile(huge, '');
    await truncate(huge, 2 * 1024 ** 3);
    const result = await runUnlessHung(['rank', dir, '--prompt', 'x', ...await modelArgs(dir), '--format', 'jsonl']);
    assert.equal(result.code, 3, result.stderr);
    const rows = jsonlRows(result.stdout);
    assert.equal(rows.length, 2);
    assert.equal(rows.find((r) => r.path.endsWith('huge.png'))?.error, 'cannot read file: too large: 2147483648 bytes, over the limit of 1 GiB for an image');
    assert.equal(typeof rows.find((r) => r.path.endsWith('a.png'))?.score, 'number');
  });
});

test('--out naming a block device is exit 4 before any work, and the node stays a block device', { skip: process.getuid?.() === 0 ? skipWithoutReference : 'mknod needs root' }, async () => {
  await withTempDir('block-out', async (dir) => {
    await onePng(dir);
    const device = path.join(dir, 'disk');
    execFileSync('mknod', [device, 'b', '7', '200']);
    const result = await runUnlessHung(['rank', path.join(dir, 'a.png'), '--prompt', 'x', '--model', path.join(dir, 'no-model'), '--out', device, '--format', 'csv']);
    assert.equal(result.code, 4, result.stderr);
    assert.match(result.stderr, /Cannot write output file .*disk: it is a block device/);
    assert.ok((await lstat(device)).isBlockDevice());
  });
});
