import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { after, before, describe, test } from 'node:test';
import { InputError, ModelError, UsageError } from '../src/errors.js';
import { hubRepoDir } from '../src/model/hub.js';
import { CHECKSUM_FILE } from '../src/model-format.js';
import { identifyModel, knownModels, pickscoreHome, resolveModel } from '../src/model/registry.js';
import { startHubServer, type HubServer } from './helpers/hub-server.js';
import { skipWithoutReference } from './helpers/paths.js';
import { makeTempDir, removeTempDirs } from './helpers/hub-temp.js';
import { buildHubRoot } from './helpers/tiny-hub.js';
import { runCli } from './helpers/pipe-cli.js';

after(removeTempDirs);

describe('pickscoreHome', () => {
  test('PICKSCORE_HOME wins, then XDG_CACHE_HOME, then ~/.cache', () => {
    const saved = { home: process.env.PICKSCORE_HOME, xdg: process.env.XDG_CACHE_HOME };
    try {
      process.env.PICKSCORE_HOME = '/data/ps';
      process.env.XDG_CACHE_HOME = '/xdg';
      assert.equal(pickscoreHome(), '/data/ps');
      delete process.env.PICKSCORE_HOME;
      assert.equal(pickscoreHome(), '/xdg/pickscore');
      delete process.env.XDG_CACHE_HOME;
      assert.equal(pickscoreHome(), path.join(os.homedir(), '.cache', 'pickscore'));
    } finally {
      for (const [key, value] of [['PICKSCORE_HOME', saved.home], ['XDG_CACHE_HOME', saved.xdg]] as const) {
        if (value === undefined) delete process.env[key];
        else process.env[key] = value;
      }
    }
  });
});

describe('knownModels', () => {
  test('PickScore v1 is the one default; a CLIP baseline is listed', async () => {
    const models = await knownModels();
    const defaults = models.filter((m) => m.default);
    assert.deepEqual(defaults.map((m) => m.name), ['pickscore-v1']);
    assert.equal(defaults[0].weights.repo, 'yuvalkirstain/PickScore_v1');
    assert.equal(defaults[0].processor.repo, 'laion/CLIP-ViT-H-14-laion2B-s32B-b79K');
    assert.ok(models.some((m) => m.name === 'clip-vit-h14-laion' && m.weights.repo === 'laion/CLIP-ViT-H-14-laion2B-s32B-b79K'));
    // open_clip weights (HPSv2's .pt) come without config.json: their architecture is named instead.
    for (const m of models) assert.ok(m.weights.files.includes('config.json') || m.openClip !== undefined, `${m.name} fetches config.json or names its open_clip architecture`);
  });
});

describe('identifyModel', () => {
  test('names, repositories and folders are told apart; bad ones are named', async () => {
    assert.equal((await identifyModel(undefined)).kind, 'known');
    assert.deepEqual(await identifyModel('acme/model@v2'), { kind: 'hub', repo: 'acme/model', revision: 'v2' });
    assert.deepEqual(await identifyModel('acme/model'), { kind: 'hub', repo: 'acme/model', revision: 'main' });
    await assert.rejects(identifyModel('no-such-model'), (err: unknown) => err instanceof UsageError && /pickscore-v1/.test(err.message) && /"no-such-model"/.test(err.message));
    await assert.rejects(identifyModel('./no/such/folder'), (err: unknown) => err instanceof InputError && /does not exist/.test(err.message));
    const empty = await makeTempDir('empty');
    await assert.rejects(identifyModel(empty), (err: unknown) => err instanceof ModelError && /neither a converted pickscore model/.test(err.message));
  });
});

describe('resolveModel against a loopback Hub', { skip: skipWithoutReference }, () => {
  let server: HubServer;
  let home: string;
  before(async () => {
    home = await makeTempDir('registry');
    await buildHubRoot(path.join(home, 'hub-root'));
    const pinned = Object.fromEntries((await knownModels()).map((m) => [m.weights.repo, m.weights.revision]).filter(([, rev]) => /^[0-9a-f]{40}$/.test(rev)));
    server = await startHubServer(path.join(home, 'hub-root'), { commits: pinned });
    process.env.PICKSCORE_HOME = path.join(home, 'pickscore');
    process.env.HF_HOME = path.join(home, 'hf');
    process.env.HF_ENDPOINT = server.endpoint;
  });
  after(async () => {
    await server.close();
    for (const key of ['PICKSCORE_HOME', 'HF_HOME', 'HF_ENDPOINT']) delete process.env[key];
  });

  test('pull: false on a model not yet converted says how to get it', async () => {
    await assert.rejects(resolveModel('pickscore-v1', { precision: 'fp32', pull: false }),
      (err: unknown) => err instanceof ModelError && /not converted yet.*pickscore model pull pickscore-v1 --precision fp32/.test(err.message));
    assert.equal(server.requests.length, 0);
  });

  test('the default model is pulled (falling back to pytorch_model.bin), converted, and then reused', async () => {
    const progress: string[] = [];
    const { dir, manifest } = await resolveModel(undefined, { precision: 'fp32', onProgress: (e) => progress.push(e.file) });
    assert.equal(dir, path.join(home, 'pickscore', 'models', 'pickscore-v1--fp32'));
    assert.equal(manifest.source.repo, 'yuvalkirstain/PickScore_v1');
    assert.equal(manifest.source.revision, server.commitOf('yuvalkirstain/PickScore_v1'));
    assert.equal(manifest.source.dir, path.join(hubRepoDir('yuvalkirstain/PickScore_v1'), 'snapshots', server.commitOf('yuvalkirstain/PickScore_v1')));
    assert.deepEqual(manifest.source.files.map((f) => f.name).sort(), ['config.json', 'pytorch_model.bin']);
    assert.ok(Math.abs(manifest.logitScale - 100) < 1e-3, `logit scale ${manifest.logitScale}`);
    assert.ok(progress.includes('pytorch_model.bin') && progress.some((f) => f.startsWith('convert pickscore-v1')));
    const sums = await readFile(path.join(dir, CHECKSUM_FILE), 'utf8');
    assert.match(sums, /^[0-9a-f]{64} {2}image\.onnx$/m);
    assert.match(sums, /^[0-9a-f]{64} {2}pickscore-model\.json$/m);

    server.requests.length = 0;
    const again = await resolveModel('pickscore-v1', { precision: 'fp32', pull: false });
    assert.equal(again.dir, dir);
    assert.equal(again.manifest.fingerprint, manifest.fingerprint);
    assert.equal(server.requests.length, 0);
    const asFolder = await resolveModel(dir, { precision: 'fp16' });
    assert.equal(asFolder.dir, dir, 'a converted folder is used as is');
  });

  test('two resolves of the same repository at once convert it once', async () => {
    server.requests.length = 0;
    const [a, b] = await Promise.all([0, 1].map(() => resolveModel('acme/tiny-clip', { precision: 'fp32' })));
    assert.equal(a.dir, b.dir);
    assert.equal(a.dir, path.join(home, 'pickscore', 'models', 'acme--tiny-clip--main--fp32'));
    assert.equal(a.manifest.fingerprint, b.manifest.fingerprint);
    const configHeads = server.requests.filter((r) => r.method === 'HEAD' && r.url.endsWith('/config.json'));
    assert.equal(configHeads.length, 1);
    assert.ok(a.manifest.tokenizerFiles.includes('tokenizer.json'));
  });

  test('two processes pulling the same model at once download and convert it once', async () => {
    server.requests.length = 0;
    const resolver = fileURLToPath(new URL('./helpers/registry-resolver.js', import.meta.url));
    const env = { ...process.env, PICKSCORE_HOME: path.join(home, 'pickscore-2'), HF_HOME: path.join(home, 'hf-2') };
    const outputs = await Promise.all([0, 1].map(() => promisify(execFile)(process.execPath, [resolver, 'acme/tiny-clip'], { env })));
    const [a, b] = outputs.map((o) => JSON.parse(o.stdout) as { dir: string; fingerprint: string });
    assert.deepEqual(a, b);
    assert.equal(a.dir, path.join(home, 'pickscore-2', 'models', 'acme--tiny-clip--main--fp32'));
    assert.equal(server.requests.filter((r) => r.method === 'GET' && r.url.startsWith('/lfs/')).length, 1, 'the weights were fetched once');
    assert.equal(server.requests.filter((r) => r.method === 'HEAD' && r.url.endsWith('/config.json')).length, 1, 'the second process waited, then found the model converted');
  });

  test('`model pull` rides out an overloaded Hub, saying on stderr what it answered and when it tries again', async () => {
    server.requests.length = 0;
    server.faults.overloaded = { status: 503, times: 1, on: 'metadata' };
    const env = { ...process.env, PICKSCORE_HOME: path.join(home, 'pickscore-3'), HF_HOME: path.join(home, 'hf-3') };
    const pulled = await runCli(['model', 'pull', 'acme/tiny-clip'], { env });
    assert.equal(pulled.code, 0, pulled.stderr);
    assert.match(pulled.stderr, /^warning: The Hub answered HTTP 503 Service Unavailable for config\.json in acme\/tiny-clip at revision main; trying again in 1 s \(try 2 of 5\)$/m);
    assert.match(pulled.stdout, /^converted: acme\/tiny-clip/m);
    assert.equal(server.requests.filter((r) => r.method === 'HEAD' && r.url.endsWith('/config.json')).length, 2);
  });
});
