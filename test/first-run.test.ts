/**
 * A newcomer's first minutes, from the README on: its first command ranks images that ship with the
 * project; without the Hub, the error says what to do instead; a stalled Hub is given up on after the
 * idle timeout with a warning; Ctrl-C stops a download at once, keeping its bytes; `model convert`
 * without tokenizer files names the flag that supplies them. A loopback Hub in which the tiny
 * reference CLIP stands in for PickScore v1 (test/helpers/tiny-hub.ts) plays the Hub.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readdir, readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { hubRepoDir } from '../src/model/hub.js';
import { knownModels } from '../src/model/registry.js';
import { startHubServer, type HubServer } from './helpers/hub-server.js';
import { makeTempDir, removeTempDirs } from './helpers/hub-temp.js';
import { referenceDir, repoRoot, skipWithoutReference } from './helpers/paths.js';
import { runCli, signalWhen, spawnCli } from './helpers/pipe-cli.js';
import { buildHubRoot } from './helpers/tiny-hub.js';

after(removeTempDirs);

const readme = await readFile(path.join(repoRoot, 'README.md'), 'utf8');

/** Splits a shell command line into words: double-quoted words keep their spaces; nothing else is expanded. */
function shellWords(line: string): string[] {
  return [...line.matchAll(/"([^"]*)"|(\S+)/g)].map((m) => m[1] ?? m[2]);
}

/** The `node bin/pickscore.js ...` part of the README's first command, as words. */
function firstCommand(): string[] {
  const block = /```sh\n([\s\S]*?)```/.exec(readme)?.[1] ?? '';
  const line = block.split('\n').find((l) => !l.startsWith('#') && l.includes('bin/pickscore.js'));
  assert.ok(line, `the README's first shell block runs bin/pickscore.js:\n${block}`);
  const words = shellWords(line.slice(line.indexOf('node bin/pickscore.js')));
  assert.deepEqual(words.slice(0, 2), ['node', 'bin/pickscore.js']);
  return words.slice(2);
}

describe('the first run, against a loopback Hub', { skip: skipWithoutReference }, () => {
  let server: HubServer;
  let home: string;
  const envFor = (name: string, extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv => ({
    PICKSCORE_HOME: path.join(home, name, 'pickscore'), HF_HOME: path.join(home, name, 'hf'), HF_ENDPOINT: server.endpoint, ...extra,
  });
  const weightsRepo = 'yuvalkirstain/PickScore_v1';
  before(async () => {
    home = await makeTempDir('first-run');
    await buildHubRoot(path.join(home, 'hub-root'));
    const pinned = Object.fromEntries((await knownModels()).map((m) => [m.weights.repo, m.weights.revision]).filter(([, rev]) => /^[0-9a-f]{40}$/.test(rev)));
    server = await startHubServer(path.join(home, 'hub-root'), { commits: pinned });
  });
  after(async () => { await server.close(); });

  test('the README\'s first command ranks images that a fresh clone has, and does real work', { timeout: 120_000 }, async () => {
    const args = firstCommand();
    assert.equal(args[0], 'rank');
    const folder = args[1];
    const tracked = execFileSync('git', ['ls-files', '--', folder], { cwd: repoRoot, encoding: 'utf8' }).trim().split('\n').filter(Boolean);
    const images = (await readdir(path.join(repoRoot, folder))).filter((f) => /\.(png|jpe?g|webp|gif)$/i.test(f));
    assert.ok(images.length >= 3, `${folder} holds images: ${images.join(', ')}`);
    assert.deepEqual(tracked.map((f) => path.basename(f)).filter((f) => images.includes(f)).sort(), images.sort(), `every image in ${folder} is in git, so a clone has it`);
    const run = await runCli(args, { env: envFor('readme') });
    assert.equal(run.code, 0, run.stderr);
    const rows = run.stdout.trim().split('\n').map((l) => JSON.parse(l) as { score: number | null; rank: number });
    assert.equal(rows.length, images.length);
    assert.ok(rows.every((r) => typeof r.score === 'number'), run.stdout);
  });

  test('model pull through a Hub that stalls part way: a warning after the idle timeout, then the download resumes and completes', { timeout: 120_000 }, async () => {
    server.requests.length = 0;
    server.faults.stallAfter = { file: 'pytorch_model.bin', bytes: 1_000_000 };
    // A second of silence: far longer than a loopback answer takes, so only the injected stall trips it.
    const pulled = await runCli(['model', 'pull'], { env: envFor('stall', { HF_HUB_DOWNLOAD_TIMEOUT: '1' }) });
    assert.equal(pulled.code, 0, pulled.stderr);
    assert.match(pulled.stderr, /^warning: The download of yuvalkirstain\/PickScore_v1\/pytorch_model\.bin stalled at 1\.0 MB of 6\.8 MB: no bytes for 1 s \(HF_HUB_DOWNLOAD_TIMEOUT sets how long to wait\); trying again in 1 s \(try 2 of 5\)$/m);
    assert.deepEqual(server.requests.filter((r) => r.method === 'GET' && r.url.startsWith('/lfs/') && r.headers.range).map((r) => r.headers.range), ['bytes=1000000-']);
  });

  for (const command of ['model pull', 'rank'] as const) {
    test(`Ctrl-C during a stalled download of ${command} stops at once: exit 130, the bytes kept, and the next run resumes them`, { timeout: 120_000 }, async () => {
      server.faults.stallAfter = { file: 'pytorch_model.bin', bytes: 1_000_000 };
      const name = command.replace(' ', '-');
      // An idle timeout far beyond the test's: only the interrupt can end this run in time.
      const env = envFor(`interrupt-${name}`, { HF_HUB_DOWNLOAD_TIMEOUT: '600' });
      const args = command === 'rank' ? ['rank', path.join(referenceDir, 'images'), '--prompt', 'a cat', '--verbose'] : ['model', 'pull', '--verbose'];
      const { child, done } = spawnCli(args, { env });
      signalWhen(child, (chunk) => /pytorch_model\.bin: [1-9]/.test(chunk), 'SIGINT');
      const run = await done;
      assert.equal(run.code, 130, run.stderr);
      const kept = /^error: Interrupted: stopped downloading yuvalkirstain\/PickScore_v1\/pytorch_model\.bin; ([\d.]+) MB of 6\.8 MB are kept in (\S+\.incomplete) and the next run resumes from there$/m.exec(run.stderr);
      assert.ok(kept, run.stderr);
      assert.ok((await stat(kept[2])).size > 0, 'the partial file is on disk');
      assert.ok(kept[2].startsWith(hubRepoDir(weightsRepo, path.join(home, `interrupt-${name}`, 'hf'))));

      server.requests.length = 0;
      server.faults.stallAfter = undefined;
      const again = await runCli(['model', 'pull'], { env });
      assert.equal(again.code, 0, again.stderr);
      const ranges = server.requests.filter((r) => r.method === 'GET' && r.url.startsWith('/lfs/')).map((r) => r.headers.range);
      assert.ok(ranges.some((range) => /^bytes=[1-9]\d*-$/.test(String(range))), `resumed with a Range request: ${JSON.stringify(ranges)}`);
    });
  }

  test('--device cuda:all: workers interrupted during a stalled model download write no part, and the run is an interrupted one (exit 130), never a merge of parts that are not there', { timeout: 120_000 }, async () => {
    server.requests.length = 0;
    server.faults.stallAfter = { file: 'pytorch_model.bin', bytes: 1_000_000 };
    const env = envFor('interrupt-all', { HF_HUB_DOWNLOAD_TIMEOUT: '600', PICKSCORE_DEVICES: 'cpu,cpu' });
    const { child, done } = spawnCli(['rank', path.join(referenceDir, 'images'), '--prompt', 'a cat', '--device', 'cuda:all'], { env });
    // One worker downloads (and stalls); the other waits for its lock. Then the workers alone are
    // interrupted, as a job engine or a user with `kill` may do.
    await waitFor(() => server.requests.some((r) => r.method === 'GET' && r.url.startsWith('/lfs/')), 60_000);
    const workers = execFileSync('ps', ['-o', 'pid=', '--ppid', String(child.pid)], { encoding: 'utf8' }).trim().split(/\s+/).map(Number);
    assert.equal(workers.length, 2, 'two worker processes');
    for (const pid of workers) process.kill(pid, 'SIGINT');
    const run = await done;
    server.faults.stallAfter = undefined;
    assert.equal(run.code, 130, run.stderr);
    assert.match(run.stderr, /^\[cpu \(shard [01]\/2\)\] error: Interrupted: stopped downloading yuvalkirstain\/PickScore_v1\/pytorch_model\.bin; .* are kept in /m);
    assert.match(run.stderr, /^error: The worker for cpu \(shard [01]\/2\) was interrupted before it wrote its part, so there is nothing to merge; its messages are above$/m);
    assert.doesNotMatch(run.stderr, /Cannot read part|no such file/);
  });
});

/** Polls `ready` every 50 ms until it holds, for at most `timeoutMs`. */
async function waitFor(ready: () => boolean, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!ready()) {
    if (Date.now() > deadline) throw new Error(`not ready after ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

test('without the Hub, rank fails at once and names the way forward: --model <dir> and `pickscore model convert`', { skip: skipWithoutReference, timeout: 120_000 }, async () => {
  const home = await makeTempDir('first-run');
  const advice = /Without network access, score with a local model: `--model <dir>` takes a model folder, and `pickscore model convert <local checkpoint> --out <dir>` makes one from any local CLIPModel checkpoint \(see "Without network access" in the README\)/;
  // A name that never resolves (RFC 2606), and the Hub cache switched off: both end in the same advice.
  const unresolvable = await runCli(['rank', path.join(referenceDir, 'images'), '--prompt', 'a cat'],
    { env: { PICKSCORE_HOME: path.join(home, 'a'), HF_HOME: path.join(home, 'a-hf'), HF_ENDPOINT: 'http://hub.invalid' } });
  assert.equal(unresolvable.code, 5, unresolvable.stderr);
  assert.match(unresolvable.stderr, /^error: Could not reach http:\/\/hub\.invalid to download yuvalkirstain\/PickScore_v1\/config\.json: /m);
  assert.match(unresolvable.stderr, advice);
  const offline = await runCli(['rank', path.join(referenceDir, 'images'), '--prompt', 'a cat'],
    { env: { PICKSCORE_HOME: path.join(home, 'b'), HF_HOME: path.join(home, 'b-hf'), HF_HUB_OFFLINE: '1' } });
  assert.equal(offline.code, 5, offline.stderr);
  assert.match(offline.stderr, /HF_HUB_OFFLINE is set/);
  assert.match(offline.stderr, advice);

  // The README section the message names exists and says how to convert and where the tokenizer comes from.
  const section = readme.slice(readme.indexOf('\n## Without network access\n'));
  assert.ok(readme.includes('\n## Without network access\n'), 'README has the section');
  const body = section.slice(0, section.indexOf('\n## ', 1));
  assert.match(body, /pickscore model convert \S+ --out \S+ --tokenizer \S+/);
  assert.match(body, /--model \.\/\S+/);
  assert.match(body, /laion\/CLIP-ViT-H-14-laion2B-s32B-b79K/);
});

test('model convert of a checkpoint without tokenizer files names the --tokenizer flag', { skip: skipWithoutReference }, async () => {
  const home = await makeTempDir('first-run');
  const run = await runCli(['model', 'convert', path.join(referenceDir, 'tiny-clip'), '--out', path.join(home, 'out')], { env: { PICKSCORE_HOME: home } });
  assert.equal(run.code, 5, run.stderr);
  assert.match(run.stderr, /^error: No tokenizer found in .*tiny-clip: expected tokenizer\.json, or vocab\.json and merges\.txt\. Name a folder that has them with `--tokenizer <dir>`/m);
});
