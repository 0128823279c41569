/** openEncodersInThread: the same embeddings and errors as in-process sessions, buffers that come back, a clean end. */
import { test } from 'node:test';
import { spawnSync } from 'node:child_process';
import type { Worker } from 'node:worker_threads';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile, cp } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { openEncoders } from '../src/encoder/session.js';
import { openEncodersInThread } from '../src/encoder/threaded-encoders.js';
import { readModelManifest } from '../src/model-format.js';
import { CudaUnavailableError, cudaProviderProblem, cudaProviderState } from '../src/encoder/cuda-provider.js';
import { ImagePool } from '../src/image/pool.js';
import { CLIP_PREPROCESS } from '../src/image/preprocess.js';
import { DEFAULT_MAX_PIXELS } from '../src/image/image.js';
import { referenceDir, skipWithoutReference } from './helpers/paths.js';
import { tinyModel } from './helpers/tiny-model.js';

function wave(length: number, phase: number): Float32Array {
  return new Float32Array(length).map((_, i) => Math.sin(i * 0.37 + phase));
}

test('text and image embeddings are bit-identical to the in-process sessions', { skip: skipWithoutReference }, async () => {
  const dir = await tinyModel();
  const manifest = await readModelManifest(dir);
  const [threaded, local] = await Promise.all([openEncodersInThread(dir, manifest, { device: { kind: 'cpu' } }), openEncoders(dir, manifest, { device: { kind: 'cpu' } })]);
  try {
    assert.deepEqual(
      [threaded.executionProvider, threaded.onnxruntimeVersion],
      [local.executionProvider, local.onnxruntimeVersion],
    );
    const ids = new BigInt64Array(2 * manifest.text.contextLength).map((_, i) => BigInt([49406, 320 + (i % 7), 49407][Math.min(i % 77, 2)]));
    assert.deepEqual(await threaded.encodeText(ids, 2), await local.encodeText(ids, 2));
    const perImage = 3 * manifest.image.imageSize ** 2;
    const pixels = wave(2 * perImage, 1);
    const expected = await local.encodeImages(pixels, 2);
    assert.deepEqual(await threaded.encodeImages(pixels, 2), expected);
    assert.equal(pixels.length, 2 * perImage, 'encodeImages leaves the caller\'s array usable');
  } finally {
    await Promise.all([threaded.close(), local.close()]);
  }
});

test('a transferred buffer comes back intact, a short batch reads its prefix, and runs are timed', { skip: skipWithoutReference }, async () => {
  const dir = await tinyModel();
  const manifest = await readModelManifest(dir);
  const encoders = await openEncodersInThread(dir, manifest, { device: { kind: 'cpu' } });
  try {
    const perImage = 3 * manifest.image.imageSize ** 2;
    const buffer = wave(3 * perImage, 2);
    const copy = buffer.slice();
    const expected = await encoders.encodeImages(copy.subarray(0, perImage), 1);
    const done = await encoders.encodeImagesTransferring(buffer, 1);
    assert.equal(buffer.length, 0, 'the array is detached while the thread holds its buffer');
    assert.deepEqual(done.pixels, copy);
    assert.deepEqual(done.embeddings, expected);
    assert.ok(done.endedAt >= done.startedAt && done.startedAt > 0);
  } finally {
    await encoders.close();
  }
});

test('errors in the thread come back typed with their message, and calls after close are refused', { skip: skipWithoutReference }, async () => {
  const dir = await tinyModel();
  const manifest = await readModelManifest(dir);
  const encoders = await openEncodersInThread(dir, manifest, { device: { kind: 'cpu' } });
  await assert.rejects(encoders.encodeText(new BigInt64Array(5), 1), { name: 'InternalError', message: /Expected 1 x 77 input ids, received 5 values/ });
  await encoders.close();
  await encoders.close();
  await assert.rejects(encoders.encodeText(new BigInt64Array(77), 1), { name: 'UsageError', message: /closed/ });
});

test('opening errors keep their type: a CUDA device that cannot be used (with its reason), a missing encoder file', { skip: skipWithoutReference }, async () => {
  const dir = await tinyModel();
  const manifest = await readModelManifest(dir);
  if (cudaProviderState() !== 'loads') {
    await assert.rejects(openEncodersInThread(dir, manifest, { device: { kind: 'cuda', id: 0 } }), (err: unknown) =>
      err instanceof CudaUnavailableError && err.reason === cudaProviderProblem() && err.message === `CUDA is unavailable: ${err.reason}`);
  }
  const broken = await mkdtemp(path.join(os.tmpdir(), 'pickscore-thread-'));
  try {
    await cp(dir, broken, { recursive: true });
    await rm(path.join(broken, manifest.image.file));
    await assert.rejects(openEncodersInThread(broken, manifest, { device: { kind: 'cpu' } }), { name: 'ModelError', message: new RegExp(`has no ${manifest.image.file}`) });
    await writeFile(path.join(broken, manifest.image.file), 'not onnx');
    await assert.rejects(openEncodersInThread(broken, manifest, { device: { kind: 'cpu' } }), { name: 'ModelError', message: /onnxruntime cannot load the encoders/ });
  } finally {
    await rm(broken, { recursive: true, force: true });
  }
});

test('a crashed encoder thread rejects the calls waiting for it', { skip: skipWithoutReference }, async () => {
  const dir = await tinyModel();
  const manifest = await readModelManifest(dir);
  const encoders = await openEncodersInThread(dir, manifest, { device: { kind: 'cpu' } });
  // A request the thread cannot read throws inside it, and the uncaught error ends the thread with the
  // next call still queued. (terminate() from outside is no substitute: cutting a running call aborts the process.)
  const worker = (encoders as unknown as { worker: Worker }).worker;
  worker.postMessage(null);
  const pending = encoders.encodeText(new BigInt64Array(manifest.text.contextLength), 1);
  await assert.rejects(pending, { name: 'InternalError', message: /The encoder thread (failed|exited)/ });
  await assert.rejects(encoders.encodeText(new BigInt64Array(manifest.text.contextLength), 1), { name: 'InternalError' });
  await encoders.close();
});

test('process.exit() during a run (a second Ctrl-C) exits with its code instead of aborting in onnxruntime', { skip: skipWithoutReference }, async () => {
  const dir = await tinyModel();
  const threadedUrl = new URL('../src/encoder/threaded-encoders.js', import.meta.url).href;
  const manifestUrl = new URL('../src/model-format.js', import.meta.url).href;
  const script = [
    `const { openEncodersInThread } = await import(${JSON.stringify(threadedUrl)});`,
    `const { readModelManifest } = await import(${JSON.stringify(manifestUrl)});`,
    `const manifest = await readModelManifest(${JSON.stringify(dir)});`,
    `const encoders = await openEncodersInThread(${JSON.stringify(dir)}, manifest, { device: { kind: 'cpu' } });`,
    'const batch = 64;',
    'void encoders.encodeImages(new Float32Array(batch * 3 * manifest.image.imageSize ** 2), batch);',
    'setTimeout(() => process.exit(130), 20);',
  ].join('\n');
  // A file, not --eval: the encoder thread would inherit --input-type and refuse to start.
  const scratch = await mkdtemp(path.join(os.tmpdir(), 'pickscore-thread-exit-'));
  try {
    await writeFile(path.join(scratch, 'exit-during-run.mjs'), script);
    const child = spawnSync(process.execPath, [path.join(scratch, 'exit-during-run.mjs')], { encoding: 'utf8', timeout: 60_000 });
    assert.equal(child.signal, null, child.stderr);
    assert.equal(child.status, 130, child.stderr);
    assert.doesNotMatch(child.stderr, /terminate called/);
  } finally {
    await rm(scratch, { recursive: true, force: true });
  }
});

test('an image pool with several images queued per worker answers each with its own image', { skip: skipWithoutReference }, async () => {
  const poolOptions = { threads: 1, preprocess: CLIP_PREPROCESS, image: { exif: 'ignore' as const, resize: 'exact' as const, maxPixels: DEFAULT_MAX_PIXELS } };
  const queued = new ImagePool({ ...poolOptions, queueDepth: 3 });
  const single = new ImagePool({ ...poolOptions, queueDepth: 1 });
  try {
    const sources = ['astronaut.jpg', 'coffee.png', 'chelsea.webp', 'tiny-5x3.png', 'palette.gif'].map((name) => ({ path: path.join(referenceDir, 'images', name) }));
    const hashes = async (pool: ImagePool): Promise<string[]> =>
      (await Promise.all(sources.map(async (source) => pool.prepare(source)))).map((r) => (r.ok ? `${r.width}x${r.height} ${r.contentHash}` : r.error));
    const [fromQueued, fromSingle] = await Promise.all([hashes(queued), hashes(single)]);
    assert.deepEqual(fromQueued, fromSingle);
    assert.equal(new Set(fromQueued).size, sources.length, fromQueued.join('\n'));
  } finally {
    await Promise.all([queued.close(), single.close()]);
  }
});
