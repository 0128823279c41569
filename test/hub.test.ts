import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { copyFile, link, lstat, readFile, readlink, readdir, rm, stat, writeFile, mkdir, symlink } from 'node:fs/promises';
import path from 'node:path';
import { after, before, beforeEach, describe, test } from 'node:test';
import { InterruptedError, ModelError, UsageError } from '../src/errors.js';
import { HubNotFoundError, hubCacheDir, hubDownload, hubRepoDir, linkSnapshotFile, parseRetryAfter, retryDelayMs, type HubRetry, type SnapshotFileOps } from '../src/model/hub.js';
import { startHubServer, type HubServer } from './helpers/hub-server.js';
import { fixturesDir } from './helpers/paths.js';
import { makeTempDir, removeTempDirs } from './helpers/hub-temp.js';

after(removeTempDirs);

const REPO = 'acme/tiny-repo';
const fixtureRepo = path.join(fixturesDir, 'hub', 'acme', 'tiny-repo');
const weightsBytes = await readFile(path.join(fixtureRepo, 'weights.bin'));
const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

describe('hubDownload against a loopback Hub', () => {
  let server: HubServer;
  let hfHome: string;
  before(async () => {
    for (const key of ['HF_TOKEN', 'HF_TOKEN_PATH', 'HF_HUB_OFFLINE']) delete process.env[key]; // this suite sets its own
    server = await startHubServer(path.join(fixturesDir, 'hub'));
  });
  after(async () => { await server.close(); });
  beforeEach(async () => {
    hfHome = await makeTempDir('hub');
    server.requests.length = 0;
    for (const key of Object.keys(server.faults)) delete server.faults[key as keyof typeof server.faults];
  });

  const download = (extra: Partial<Parameters<typeof hubDownload>[0]> = {}) =>
    // Pauses between tries shortened to milliseconds; the real schedule is checked on its own below.
    hubDownload({ repo: REPO, files: ['config.json', 'weights.bin', 'sub/notes.txt'], endpoint: server.endpoint, hfHome,
      retry: { baseDelayMs: 5, maxDelayMs: 20 }, ...extra });

  test('a fresh download lands in the Hub cache layout with relative symlinks and a ref', async () => {
    const progress: { file: string; done: number; total: number }[] = [];
    const snapshot = await download({ onProgress: (e) => progress.push(e) });
    const commit = server.commitOf(REPO);
    const repoDir = hubRepoDir(REPO, hfHome);
    assert.equal(snapshot, path.join(repoDir, 'snapshots', commit));
    assert.equal((await readFile(path.join(repoDir, 'refs', 'main'), 'utf8')).trim(), commit);
    for (const file of ['config.json', 'weights.bin', 'sub/notes.txt']) {
      const expected = await readFile(path.join(fixtureRepo, file));
      assert.deepEqual(await readFile(path.join(snapshot, file)), expected, file);
      const link = await readlink(path.join(snapshot, file));
      assert.ok(!path.isAbsolute(link), `${file} links relatively: ${link}`);
    }
    const weights = await readFile(path.join(fixtureRepo, 'weights.bin'));
    assert.equal(await readlink(path.join(snapshot, 'weights.bin')), `../../blobs/${sha256(weights)}`);
    assert.equal(await readlink(path.join(snapshot, 'sub/notes.txt')), path.join('..', '..', '..', 'blobs', createHash('sha1').update(`blob 41\0`).update(await readFile(path.join(fixtureRepo, 'sub/notes.txt'))).digest('hex')));
    const last = progress.filter((e) => e.file === 'weights.bin').at(-1);
    assert.deepEqual(last, { file: 'weights.bin', done: weights.length, total: weights.length });
    assert.ok(server.requests.some((r) => r.url.startsWith('/lfs/')), 'the LFS file was fetched through its redirect');
  });

  test('a dropped connection is resumed with a Range request', async () => {
    server.faults.dropAfter = { file: 'weights.bin', bytes: 20_000 };
    const snapshot = await download();
    const ranged = server.requests.filter((r) => r.method === 'GET' && r.headers.range);
    assert.equal(ranged.length, 1);
    const offset = Number(/^bytes=(\d+)-$/.exec(String(ranged[0].headers.range))?.[1]);
    assert.ok(offset > 0 && offset <= 20_000, `resumed from ${offset}`);
    assert.deepEqual(await readFile(path.join(snapshot, 'weights.bin')), await readFile(path.join(fixtureRepo, 'weights.bin')));
  });

  test('a download that keeps failing keeps its bytes, and the next run resumes them', async () => {
    server.faults.dropAfter = { file: 'weights.bin', bytes: 10_000, times: 3 };
    await assert.rejects(download({ files: ['weights.bin'], retry: { attempts: 3, baseDelayMs: 5 } }),
      /weights\.bin failed 3 times \(last: .*\); 30000 of 65536 bytes are kept .* the next run resumes/);
    server.requests.length = 0;
    const snapshot = await download({ files: ['weights.bin'] });
    assert.deepEqual(server.requests.filter((r) => r.method === 'GET').map((r) => r.headers.range), ['bytes=30000-']);
    assert.deepEqual(await readFile(path.join(snapshot, 'weights.bin')), weightsBytes);
  });

  test('an overloaded Hub (503 on metadata) is tried again after a pause, and the pauses are reported', async () => {
    server.faults.overloaded = { status: 503, times: 2, on: 'metadata' };
    const retries: HubRetry[] = [];
    const snapshot = await download({ files: ['config.json'], onRetry: (e) => retries.push(e) });
    assert.deepEqual(await readFile(path.join(snapshot, 'config.json')), await readFile(path.join(fixtureRepo, 'config.json')));
    assert.deepEqual(retries.map((e) => [e.file, e.attempt, e.attempts, e.delayMs]), [['config.json', 1, 5, 5], ['config.json', 2, 5, 10]]);
    assert.match(retries[0].reason, /HTTP 503 .*config\.json in acme\/tiny-repo/);
    assert.equal(server.requests.filter((r) => r.method === 'HEAD').length, 3);
  });

  test('a 429 on the bytes waits as long as Retry-After asks, then resumes', async () => {
    server.faults.dropAfter = { file: 'weights.bin', bytes: 20_000 };
    server.faults.overloaded = { status: 429, times: 1, on: 'bytes', retryAfter: '1' };
    const retries: HubRetry[] = [];
    const started = performance.now();
    const snapshot = await download({ files: ['weights.bin'], onRetry: (e) => retries.push(e) });
    assert.deepEqual(await readFile(path.join(snapshot, 'weights.bin')), weightsBytes);
    // First GET refused with 429 and Retry-After: 1, the second dropped after 20,000 bytes, the third resumed.
    assert.deepEqual(retries.map((e) => e.delayMs), [1000, 10]);
    assert.match(retries[0].reason, /HTTP 429/);
    assert.match(retries[1].reason, /closed early|connection/i);
    assert.ok(performance.now() - started >= 990, 'Retry-After was honoured (to the timer\'s granularity)');
    const gets = server.requests.filter((r) => r.method === 'GET' && r.url.startsWith('/lfs/'));
    assert.equal(gets.length, 3);
    assert.match(String(gets[2].headers.range), /^bytes=\d+-$/);
  });

  test('a Hub that stays down fails after the last try and says what it answered', async () => {
    server.faults.overloaded = { status: 500, times: 100, on: 'metadata' };
    await assert.rejects(download({ files: ['config.json'], retry: { attempts: 3, baseDelayMs: 1 } }),
      /The Hub answered HTTP 500 Internal Server Error for config\.json in acme\/tiny-repo at revision main/);
    assert.equal(server.requests.filter((r) => r.method === 'HEAD').length, 3);
  });

  test('answers that will not change (404, 401) are not retried', async () => {
    const retries: HubRetry[] = [];
    await assert.rejects(download({ files: ['nope.json'], onRetry: (e) => retries.push(e) }), HubNotFoundError);
    server.faults.requireToken = 'hf_secret';
    await assert.rejects(download({ files: ['config.json'], onRetry: (e) => retries.push(e) }), /Access denied \(HTTP 401\)/);
    assert.deepEqual(retries, []);
    assert.equal(server.requests.length, 2);
  });

  test('a refused connection is retried, then named with what to check', async () => {
    const closed = await startHubServer(path.join(fixturesDir, 'hub'));
    const endpoint = closed.endpoint;
    await closed.close();
    const retries: HubRetry[] = [];
    await assert.rejects(download({ files: ['config.json'], endpoint, retry: { attempts: 2, baseDelayMs: 1 }, onRetry: (e) => retries.push(e) }),
      /Could not reach http:\/\/127\.0\.0\.1:\d+ to download acme\/tiny-repo\/config\.json: .*Check the network or HF_ENDPOINT/);
    assert.equal(retries.length, 1);
  });

  // The idle timeouts below are a second: far longer than a loopback answer takes even on a loaded
  // machine, so only the injected silence trips them.
  test('a Hub that takes the metadata request and never answers: the try gives up after the idle timeout, with a warning, and the next one succeeds', { timeout: 60_000 }, async () => {
    server.faults.silent = { times: 1 };
    const retries: HubRetry[] = [];
    const snapshot = await download({ files: ['config.json'], idleTimeoutMs: 1000, onRetry: (e) => retries.push(e) });
    assert.deepEqual(await readFile(path.join(snapshot, 'config.json')), await readFile(path.join(fixtureRepo, 'config.json')));
    assert.equal(retries.length, 1);
    assert.match(retries[0].reason, /^No answer from http:\/\/127\.0\.0\.1:\d+ in 1 s to the request for acme\/tiny-repo\/config\.json \(HF_HUB_DOWNLOAD_TIMEOUT sets how long to wait\)/);
  });

  test('a download that stalls part way is a failed try: the bytes received are kept and the next try resumes after them', { timeout: 60_000 }, async () => {
    server.faults.stallAfter = { file: 'weights.bin', bytes: 20_000 };
    const retries: HubRetry[] = [];
    const snapshot = await download({ files: ['weights.bin'], idleTimeoutMs: 1000, onRetry: (e) => retries.push(e) });
    assert.deepEqual(await readFile(path.join(snapshot, 'weights.bin')), weightsBytes);
    assert.equal(retries.length, 1);
    assert.match(retries[0].reason, /^The download of acme\/tiny-repo\/weights\.bin stalled at 0\.0 MB of 0\.1 MB: no bytes for 1 s/);
    assert.deepEqual(server.requests.filter((r) => r.method === 'GET' && r.url.startsWith('/lfs/')).map((r) => r.headers.range), [undefined, 'bytes=20000-']);
  });

  test('a Hub that stalls on every try fails after the last one, keeping every byte received', { timeout: 60_000 }, async () => {
    server.faults.stallAfter = { file: 'weights.bin', bytes: 20_000, times: 2 };
    await assert.rejects(download({ files: ['weights.bin'], idleTimeoutMs: 1000, retry: { attempts: 2, baseDelayMs: 5 } }),
      (err: unknown) => err instanceof ModelError && /^Download of acme\/tiny-repo\/weights\.bin failed 2 times \(last: .*stalled.*\); 40000 of 65536 bytes are kept/.test(err.message));
  });

  test('HF_HUB_DOWNLOAD_TIMEOUT sets the idle timeout in seconds; a value that is not a positive number is refused, naming it', { timeout: 60_000 }, async () => {
    try {
      process.env.HF_HUB_DOWNLOAD_TIMEOUT = '1.5';
      server.faults.silent = { times: 1 };
      const retries: HubRetry[] = [];
      await download({ files: ['config.json'], onRetry: (e) => retries.push(e) });
      assert.match(retries[0]?.reason ?? '', / in 1\.5 s /);
      for (const bad of ['soon', '0', '-1', 'Infinity']) {
        process.env.HF_HUB_DOWNLOAD_TIMEOUT = bad;
        await assert.rejects(download({ files: ['config.json'] }), (err: unknown) => err instanceof UsageError && /HF_HUB_DOWNLOAD_TIMEOUT/.test(err.message), bad);
      }
    } finally {
      delete process.env.HF_HUB_DOWNLOAD_TIMEOUT;
    }
  });

  test('aborting stops a stalled download at once and keeps its bytes; the next run resumes after them', { timeout: 60_000 }, async () => {
    server.faults.stallAfter = { file: 'weights.bin', bytes: 20_000 };
    const controller = new AbortController();
    const retries: HubRetry[] = [];
    // The idle timeout is far beyond the test's own: only the abort can end this download in time.
    const pulled = download({ files: ['weights.bin'], idleTimeoutMs: 600_000, signal: controller.signal, onRetry: (e) => retries.push(e),
      onProgress: (e) => { if (e.done >= 20_000) controller.abort(); } });
    await assert.rejects(pulled, (err: unknown) => err instanceof InterruptedError
      && /^Interrupted: stopped downloading acme\/tiny-repo\/weights\.bin; 0\.0 MB of 0\.1 MB are kept in .*\.incomplete and the next run resumes from there$/.test(err.message));
    assert.deepEqual(retries, [], 'an interrupted try is not tried again');
    server.requests.length = 0;
    const snapshot = await download({ files: ['weights.bin'] });
    assert.deepEqual(server.requests.filter((r) => r.method === 'GET').map((r) => r.headers.range), ['bytes=20000-']);
    assert.deepEqual(await readFile(path.join(snapshot, 'weights.bin')), weightsBytes);
  });

  test('aborting during the pause between tries, or while the metadata request hangs, stops at once with no further request', { timeout: 60_000 }, async () => {
    server.faults.overloaded = { status: 503, times: 5, on: 'metadata' };
    const controller = new AbortController();
    await assert.rejects(download({ files: ['config.json'], retry: { baseDelayMs: 600_000, maxDelayMs: 600_000 }, signal: controller.signal, onRetry: () => controller.abort() }),
      (err: unknown) => err instanceof InterruptedError && /stopped fetching acme\/tiny-repo\/config\.json while waiting to try again/.test(err.message));
    assert.equal(server.requests.filter((r) => r.method === 'HEAD').length, 1);
    server.faults.overloaded = undefined;
    server.faults.silent = { times: 1 };
    const hanging = new AbortController();
    setImmediate(() => hanging.abort());
    await assert.rejects(download({ files: ['config.json'], idleTimeoutMs: 600_000, signal: hanging.signal }),
      (err: unknown) => err instanceof InterruptedError && /stopped fetching acme\/tiny-repo\/config\.json/.test(err.message));
  });

  test('the pause schedule: doubling from the base up to the cap; Retry-After in seconds or as a date, at most a minute', () => {
    const policy = { attempts: 5, baseDelayMs: 1000, maxDelayMs: 8000 };
    assert.deepEqual([1, 2, 3, 4, 5].map((attempt) => retryDelayMs(policy, attempt)), [1000, 2000, 4000, 8000, 8000]);
    assert.equal(retryDelayMs(policy, 1, 30_000), 30_000);
    assert.equal(retryDelayMs(policy, 3, 0), 4000, 'a shorter Retry-After does not shorten the backoff');
    assert.equal(retryDelayMs(policy, 1, 3_600_000), 60_000);
    const now = Date.parse('2026-11-26T10:00:00Z');
    assert.equal(parseRetryAfter('120', now), 120_000);
    assert.equal(parseRetryAfter('Thu, 26 Nov 2026 10:00:30 GMT', now), 30_000);
    assert.equal(parseRetryAfter('Thu, 26 Nov 2026 09:00:00 GMT', now), 0);
    assert.equal(parseRetryAfter('soon', now), undefined);
    assert.equal(parseRetryAfter(null, now), undefined);
  });

  test('a partial file left by an earlier run is resumed, not fetched again', async () => {
    const weights = await readFile(path.join(fixtureRepo, 'weights.bin'));
    const blobs = path.join(hubRepoDir(REPO, hfHome), 'blobs');
    await mkdir(blobs, { recursive: true });
    await writeFile(path.join(blobs, `${sha256(weights)}.incomplete`), weights.subarray(0, 30_000));
    await download({ files: ['weights.bin'] });
    const gets = server.requests.filter((r) => r.method === 'GET' && r.url.startsWith('/lfs/'));
    assert.deepEqual(gets.map((r) => r.headers.range), ['bytes=30000-']);
  });

  test('corrupted bytes are detected by sha256, named, and the bad blob deleted', async () => {
    server.faults.corrupt = 'weights.bin';
    await assert.rejects(download(), (err: unknown) => {
      assert.ok(err instanceof ModelError);
      assert.match(err.message, /Corrupt download of acme\/tiny-repo\/weights\.bin: sha256/);
      return true;
    });
    const blobs = await readdir(path.join(hubRepoDir(REPO, hfHome), 'blobs'));
    assert.ok(!blobs.some((name) => name.startsWith(sha256(weightsBytes))), `no blob left: ${blobs.join(', ')}`);
  });

  test('a missing file names the repo, the revision and the file', async () => {
    await assert.rejects(download({ files: ['nope.json'] }), (err: unknown) => {
      assert.ok(err instanceof HubNotFoundError);
      assert.match(err.message, /File nope\.json not found in acme\/tiny-repo at revision main/);
      return true;
    });
    await assert.rejects(download({ repo: 'acme/absent' }), /Repository acme\/absent not found/);
    await assert.rejects(download({ revision: 'v9' }), /Revision v9 not found in acme\/tiny-repo/);
  });

  test('an optional file that the repo lacks is skipped', async () => {
    const snapshot = await download({ files: ['config.json'], optionalFiles: ['tokenizer.json'] });
    await assert.rejects(stat(path.join(snapshot, 'tokenizer.json')));
    assert.ok((await stat(path.join(snapshot, 'config.json'))).isFile());
  });

  test('the token is sent to the Hub; a refusal says the repo may be gated', async () => {
    server.faults.requireToken = 'hf_secret';
    await assert.rejects(download({ token: undefined }), /Access denied \(HTTP 401\).*gated or private.*HF_TOKEN/);
    server.requests.length = 0;
    await download({ token: 'hf_secret' });
    const hubRequests = server.requests.filter((r) => r.server === 'hub');
    assert.ok(hubRequests.length > 0 && hubRequests.every((r) => r.headers.authorization === 'Bearer hf_secret'));
  });

  test('without HF_TOKEN, the token saved by huggingface-cli login in HF_HOME is used', async () => {
    server.faults.requireToken = 'hf_saved';
    await writeFile(path.join(hfHome, 'token'), 'hf_saved\n');
    await download({ files: ['config.json'] });
    assert.ok(server.requests.every((r) => r.headers.authorization === 'Bearer hf_saved'));
  });

  test('a pre-populated Hub cache is used with no request at all', async () => {
    await download();
    server.requests.length = 0;
    const snapshot = await download({ endpoint: 'http://127.0.0.1:9' }); // nothing listens there
    assert.equal(server.requests.length, 0);
    assert.equal(await readFile(path.join(snapshot, 'config.json'), 'utf8'), await readFile(path.join(fixtureRepo, 'config.json'), 'utf8'));
  });

  test('a cache whose snapshots hold plain files (huggingface_hub on Windows without symlinks) is used as is', async () => {
    const commit = server.commitOf(REPO);
    const snapshotDir = path.join(hubRepoDir(REPO, hfHome), 'snapshots', commit);
    await mkdir(path.join(hubRepoDir(REPO, hfHome), 'refs'), { recursive: true });
    await writeFile(path.join(hubRepoDir(REPO, hfHome), 'refs', 'main'), commit);
    await mkdir(snapshotDir, { recursive: true });
    await copyFile(path.join(fixtureRepo, 'config.json'), path.join(snapshotDir, 'config.json'));
    const snapshot = await download({ files: ['config.json'], endpoint: 'http://127.0.0.1:9' }); // nothing listens there
    assert.equal(snapshot, snapshotDir);
    assert.equal(server.requests.length, 0);
  });

  test('HF_HUB_OFFLINE with nothing cached says so', async () => {
    process.env.HF_HUB_OFFLINE = '1';
    try {
      await assert.rejects(download(), /not in the Hub cache .* HF_HUB_OFFLINE is set/);
      assert.equal(server.requests.length, 0);
      delete process.env.HF_HUB_OFFLINE;
      await download({ files: ['config.json'] });
      process.env.HF_HUB_OFFLINE = '1';
      const snapshot = await download({ files: ['config.json'], optionalFiles: ['weights.bin'] });
      assert.ok((await stat(path.join(snapshot, 'config.json'))).isFile(), 'offline, a cached file is served and a missing optional one skipped');
    } finally {
      delete process.env.HF_HUB_OFFLINE;
    }
  });

  test('a snapshot written by huggingface_hub (Python) is reused', async () => {
    const repoDir = hubRepoDir(REPO, hfHome);
    const commit = 'c'.repeat(40);
    await mkdir(path.join(repoDir, 'blobs'), { recursive: true });
    await mkdir(path.join(repoDir, 'snapshots', commit), { recursive: true });
    await mkdir(path.join(repoDir, 'refs'), { recursive: true });
    await writeFile(path.join(repoDir, 'blobs', 'abc123'), '{"from": "python"}');
    await symlink('../../blobs/abc123', path.join(repoDir, 'snapshots', commit, 'config.json'));
    await writeFile(path.join(repoDir, 'refs', 'main'), commit);
    const snapshot = await download({ files: ['config.json'] });
    assert.equal(snapshot, path.join(repoDir, 'snapshots', commit));
    assert.equal(server.requests.length, 0);
  });
});

describe('hubCacheDir', () => {
  test('an explicit HF home wins, then HF_HUB_CACHE, then HF_HOME/hub, then XDG_CACHE_HOME/huggingface/hub', () => {
    const saved = { ...process.env };
    try {
      Object.assign(process.env, { HF_HUB_CACHE: '/hubcache', HF_HOME: '/hfhome', XDG_CACHE_HOME: '/xdg' });
      assert.equal(hubCacheDir('/explicit'), '/explicit/hub');
      assert.equal(hubCacheDir(), '/hubcache');
      delete process.env.HF_HUB_CACHE;
      assert.equal(hubCacheDir(), '/hfhome/hub');
      delete process.env.HF_HOME;
      assert.equal(hubCacheDir(), '/xdg/huggingface/hub');
      assert.equal(hubRepoDir('org/name'), '/xdg/huggingface/hub/models--org--name');
    } finally {
      for (const key of ['HF_HUB_CACHE', 'HF_HOME', 'XDG_CACHE_HOME']) {
        if (saved[key] === undefined) delete process.env[key];
        else process.env[key] = saved[key];
      }
    }
  });
});

describe('hubDownload with the LFS file on a CDN origin and plain files behind a same-host redirect', () => {
  let server: HubServer;
  before(async () => { server = await startHubServer(path.join(fixturesDir, 'hub'), { cdnOnOtherOrigin: true, resolveCacheRedirect: true }); });

  test('same-host redirects are followed for metadata and bytes', async () => {
    const hfHome = await makeTempDir('hub');
    try {
      const snapshot = await hubDownload({ repo: REPO, files: ['config.json', 'sub/notes.txt'], endpoint: server.endpoint, hfHome });
      assert.deepEqual(await readFile(path.join(snapshot, 'sub/notes.txt')), await readFile(path.join(fixtureRepo, 'sub/notes.txt')));
      assert.ok(server.requests.some((r) => r.method === 'HEAD' && r.url.startsWith('/api/resolve-cache/models/acme/tiny-repo/')));
    } finally {
      await rm(hfHome, { recursive: true, force: true });
    }
  });
  after(async () => { await server.close(); });

  test('the token never crosses the redirect to another host', async () => {
    server.requests.length = 0;
    const hfHome = await makeTempDir('hub');
    try {
      await hubDownload({ repo: REPO, files: ['weights.bin'], endpoint: server.endpoint, hfHome, token: 'hf_secret' });
      const cdn = server.requests.filter((r) => r.server === 'cdn');
      assert.equal(cdn.length, 1);
      assert.equal(cdn[0].headers.authorization, undefined);
      assert.ok(server.requests.filter((r) => r.server === 'hub').every((r) => r.headers.authorization === 'Bearer hf_secret'));
    } finally {
      await rm(hfHome, { recursive: true, force: true });
    }
  });
});



describe('snapshot links where the filesystem refuses symlinks', () => {
  const refuse = (code: string) => async () => { throw Object.assign(new Error(`${code}: operation not permitted`), { code }); };
  const nodeOps: SnapshotFileOps = { symlink: (t, l) => symlink(t, l), link, copyFile };

  test('a symlink when it can, else a hard link to the blob, else a copy; the snapshot file reads the same each way', async () => {
    const dir = await makeTempDir('links');
    const blob = path.join(dir, 'blobs', 'abc');
    await mkdir(path.dirname(blob), { recursive: true });
    await writeFile(blob, 'weights');
    const cases: [SnapshotFileOps, string][] = [
      [nodeOps, 'symlink'],
      [{ ...nodeOps, symlink: refuse('EPERM') }, 'hardlink'],
      [{ ...nodeOps, symlink: refuse('EPERM'), link: refuse('ENOTSUP') }, 'copy'],
    ];
    for (const [ops, expected] of cases) {
      const snapshot = path.join(dir, 'snapshots', expected, 'sub', 'weights.bin');
      assert.equal(await linkSnapshotFile(blob, snapshot, ops), expected);
      assert.equal(await readFile(snapshot, 'utf8'), 'weights', expected);
      assert.equal((await lstat(snapshot)).isSymbolicLink(), expected === 'symlink', expected);
      assert.equal((await stat(snapshot)).ino === (await stat(blob)).ino, expected !== 'copy', `${expected} shares the blob's inode`);
      assert.deepEqual((await readdir(path.dirname(snapshot))).filter((n) => n.endsWith('.tmp')), [], 'no temporary file left');
    }
  });

  test('a failure that is not about links (a full disk) is not papered over', async () => {
    const dir = await makeTempDir('links');
    const blob = path.join(dir, 'blob');
    await writeFile(blob, 'x');
    await assert.rejects(linkSnapshotFile(blob, path.join(dir, 'snap', 'f'), { ...nodeOps, symlink: refuse('ENOSPC') }), /ENOSPC/);
    await assert.rejects(linkSnapshotFile(blob, path.join(dir, 'snap', 'g'), { ...nodeOps, symlink: refuse('EPERM'), link: refuse('EPERM'), copyFile: refuse('ENOSPC') }), /ENOSPC/);
    assert.deepEqual(await readdir(path.join(dir, 'snap')), [], 'no temporary file left');
  });
});
