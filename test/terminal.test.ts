/**
 * What a person at a terminal sees on stderr: progress bars that survive the lines logged while they
 * run, a short line where `--device auto` falls back to the CPU, and a run interrupted with its bar up
 * that still ends. The end-to-end cases run the CLI on a pseudo-terminal (test/helpers/pty.ts).
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { copyFile, mkdir } from 'node:fs/promises';
import { createConsole, describeTransfer, formatDuration } from '../src/cli/output.js';
import { cudaProviderInstalled } from '../src/encoder/cuda-provider.js';
import { cliEntry } from './helpers/pipe-cli.js';
import { fixturesDir, referenceDir, repoRoot, skipWithoutReference } from './helpers/paths.js';
import { ptyAvailable, screen, spawnInPty } from './helpers/pty.js';
import { makeTempDir, removeTempDirs } from './helpers/hub-temp.js';
import { tinyModel } from './helpers/tiny-model.js';

after(removeTempDirs);

/** A stand-in for a terminal's stderr that records what is written. */
function fakeTerminal(): { stream: NodeJS.WriteStream; written: () => string } {
  let text = '';
  const stream = { isTTY: true, columns: 100, write: (chunk: string | Uint8Array) => { text += String(chunk); return true; } };
  return { stream: stream as unknown as NodeJS.WriteStream, written: () => text };
}

const BAR = /^rank \[[█░]+\] \d+\/\d+/;

test('a line logged while a bar runs is written above it, and the bar is drawn again below', () => {
  const terminal = fakeTerminal();
  const console = createConsole({ quiet: false, stderr: terminal.stream });
  const bar = console.progress('rank');
  bar.update(1, 10);
  console.log('device auto: using the CPU');
  const afterLog = terminal.written().slice(terminal.written().indexOf('device auto'));
  assert.match(afterLog, /rank \[/, 'the bar is drawn again after the line');
  bar.update(5, 10);
  console.log('warning: something to know');
  bar.update(6, 10);
  assert.deepEqual(screen(terminal.written()).slice(0, 2), ['device auto: using the CPU', 'warning: something to know']);
  assert.match(screen(terminal.written())[2] ?? '', BAR);
  bar.stop();
  const written = terminal.written();
  assert.match(written.slice(written.lastIndexOf('rank [')), /^rank \[[█░]+\] 6\/10 /, 'updates after the log lines reach the bar');
  // Stopping clears the bar's own line, not a logged line above it.
  assert.deepEqual(screen(terminal.written()), ['device auto: using the CPU', 'warning: something to know']);
});

test('a bar created before a log line (rank creates it, then the model logs) is still drawn', () => {
  const terminal = fakeTerminal();
  const console = createConsole({ quiet: false, stderr: terminal.stream });
  const bar = console.progress('rank');
  console.log('device auto: using the CPU');
  bar.update(3, 7);
  assert.match(screen(terminal.written()).at(-1) ?? '', /^rank \[[█░]+\] 3\/7/);
  bar.stop();
  assert.deepEqual(screen(terminal.written()), ['device auto: using the CPU']);
});

test('a newer bar takes the line from an older one; the older one goes quiet', () => {
  const terminal = fakeTerminal();
  const console = createConsole({ quiet: false, stderr: terminal.stream });
  const first = console.progress('config.json', 'bytes');
  first.update(10, 100);
  const second = console.progress('model.safetensors', 'bytes');
  second.update(0, 3_900_000_000);
  first.update(100, 100);
  const lines = screen(terminal.written());
  assert.equal(lines.length, 1, lines.join('\n'));
  assert.match(lines[0], /^model\.safetensors \[░+\] 0 B\/3\.9 GB /);
  second.stop();
  first.stop();
  assert.deepEqual(screen(terminal.written()), []);
});

test('a download bar shows sizes, the rate and the time left, counting only this run\'s bytes for the rate', () => {
  assert.equal(describeTransfer(1_200_000_000, 3_900_000_000, 700_000_000, 20_000), '1.2 GB/3.9 GB  35.0 MB/s  ETA 1m17s');
  assert.equal(describeTransfer(0, 3_900_000_000, 0, 0), '0 B/3.9 GB  0 B/s  ETA ?');
  assert.deepEqual([0, 59.4, 75, 3599, 3700].map(formatDuration), ['0s', '59s', '1m15s', '59m59s', '1h01m']);
  const terminal = fakeTerminal();
  const bar = createConsole({ quiet: false, stderr: terminal.stream }).progress('model.safetensors', 'bytes');
  bar.update(500_000_000, 3_900_000_000);
  assert.match(screen(terminal.written())[0], /^model\.safetensors \[[█░]+\] 500\.0 MB\/3\.9 GB  .*B\/s  ETA /);
  assert.doesNotMatch(terminal.written(), /500000000/, 'no raw byte counts');
  bar.stop();
});

test('without a terminal, --verbose progress lines show sizes for downloads', () => {
  let text = '';
  const pipe = { isTTY: false, write: (chunk: string) => { text += chunk; return true; } } as unknown as NodeJS.WriteStream;
  const bar = createConsole({ quiet: false, verbose: true, stderr: pipe }).progress('model.safetensors', 'bytes');
  bar.update(2_000_000, 4_000_000);
  assert.match(text, /^model\.safetensors: 2\.0 MB\/4\.0 MB {2}.*B\/s {2}ETA \S+\n$/);
});

const skipPty = skipWithoutReference || (ptyAvailable() ? false : 'python3 with the pty module is not available');

test('rank --device auto on a terminal: one short line where the CUDA provider is not installed, then the bar', { skip: skipPty }, async () => {
  const model = await tinyModel();
  const home = await makeTempDir('terminal');
  const run = await spawnInPty(process.execPath, [...cliEntry, 'rank', path.join(fixturesDir, 'eval', 'images'), '--prompt', 'a fox',
    '--model', model, '--batch-size', '1', '--no-cache'], { cwd: repoRoot, env: { ...process.env, PICKSCORE_HOME: home } }).done;
  assert.equal(run.code, 0, run.stderr);
  const transcript = run.stderr;
  if (!cudaProviderInstalled()) {
    const notice = "device auto: using the CPU (onnxruntime-node's CUDA provider is not installed)";
    assert.ok(transcript.startsWith(`${notice}\r\n`), JSON.stringify(transcript.slice(0, 300)));
  }
  // The bar is drawn after every line that was logged, up to its last value, and cleared at the end.
  const lastLine = transcript.lastIndexOf('\r\n');
  assert.match(transcript.slice(lastLine), /rank \[[█░]+\] 7\/7/);
  const finalScreen = screen(transcript);
  assert.ok(finalScreen.every((line) => !/rank \[/.test(line)), finalScreen.join('\n'));
  assert.equal(run.stdout.trim().split('\n').length, 7, 'seven rows of JSONL on stdout, a pipe');
});

test('rank interrupted on a terminal with its bar up still ends: exit 130, the bar cleared, the cursor shown again', { skip: skipPty, timeout: 60_000 }, async () => {
  const model = await tinyModel();
  const dir = await makeTempDir('terminal');
  const images = path.join(dir, 'imgs');
  await mkdir(images);
  for (let i = 0; i < 400; i++) await copyFile(path.join(referenceDir, 'images', 'coffee.png'), path.join(images, `coffee-${String(i).padStart(3, '0')}.png`));
  const { child, done } = spawnInPty(process.execPath, [...cliEntry, 'rank', images, '--prompt', 'a cup', '--model', model, '--batch-size', '1',
    '--no-cache', '--out', path.join(dir, 'ranked.jsonl')], { cwd: repoRoot, env: { ...process.env, PICKSCORE_HOME: dir } });
  let sent = false;
  child.stderr?.on('data', (chunk: Buffer) => {
    if (sent || !/rank \[[█░]+\] [1-9]\d*\//.test(chunk.toString())) return;
    sent = true;
    child.kill('SIGINT');
  });
  const run = await done;
  assert.ok(sent, 'the bar was drawn');
  assert.equal(run.code, 130, run.stderr);
  const finalScreen = screen(run.stderr);
  assert.ok(finalScreen.some((line) => /^warning: interrupted; wrote \d+ rows/.test(line)), finalScreen.join('\n'));
  assert.ok(finalScreen.every((line) => !/rank \[/.test(line)), finalScreen.join('\n'));
  assert.ok(run.stderr.lastIndexOf('\x1b[?25h') > run.stderr.lastIndexOf('\x1b[?25l'), 'the cursor is shown again');
});
