/**
 * The CPU session options as they act: encoders opened off the main thread (the encoder thread of rank
 * and eval) flush denormal floats on that thread, which also runs its share of onnxruntime's work, while
 * encoders opened on the main thread leave its floating-point semantics alone.
 *
 * onnxruntime applies the flag to the thread that creates the first session of a process, once; this file
 * runs in its own process, and the worker test runs first.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';
import { openEncoders } from '../src/encoder/session.js';
import { skipWithoutReference } from './helpers/paths.js';
import { buildReferenceEncoders, tempDir, type BuiltEncoders } from './helpers/graph-models.js';

/** A double below the normal range; multiplied by one at run time, it stays itself unless denormals are flushed. */
const DENORMAL = '1e-310';

/** In a worker: the product before and after opening the encoders there, and one image encoded. */
const WORKER_SOURCE = `
(async () => {
  const { parentPort, workerData } = await import('node:worker_threads');
  const { openEncoders } = await import(workerData.sessionModule);
  const product = () => Number(workerData.denormal) * Number('1');
  const before = product();
  const sessions = await openEncoders(workerData.dir, workerData.manifest, { device: { kind: 'cpu' }, threads: 2 });
  const after = product();
  const embeddings = await sessions.encodeImages(new Float32Array(3 * 224 * 224), 1);
  await sessions.close();
  parentPort.postMessage({ before, after, finite: embeddings.every(Number.isFinite) });
})();
`;

describe('CPU session options', { skip: skipWithoutReference }, () => {
  let scratch: { dir: string; remove(): Promise<void> };
  let built: BuiltEncoders;
  before(async () => {
    scratch = await tempDir('cpu-session');
    built = await buildReferenceEncoders('tiny-clip safetensors', 'fp32', 'plain', path.join(scratch.dir, 'tiny'));
  });
  after(async () => scratch?.remove());

  it('encoders opened off the main thread flush denormals on that thread', async () => {
    const sessionModule = pathToFileURL(path.resolve('build/src/encoder/session.js')).href;
    const worker = new Worker(WORKER_SOURCE, { eval: true, workerData: { sessionModule, dir: built.dir, manifest: built.manifest, denormal: DENORMAL } });
    const reply = await new Promise<{ before: number; after: number; finite: boolean }>((resolve, reject) => {
      worker.once('message', resolve);
      worker.once('error', reject);
    });
    await worker.terminate();
    assert.ok(reply.before > 0, 'a fresh thread keeps denormals');
    assert.equal(reply.after, 0, 'the encoder thread flushes them once its sessions exist');
    assert.ok(reply.finite);
  });

  it('encoders opened on the main thread leave its denormals alone', async () => {
    const sessions = await openEncoders(built.dir, built.manifest, { device: { kind: 'cpu' }, threads: 1 });
    try {
      assert.ok(Number(DENORMAL) * Number('1') > 0);
      await sessions.encodeImages(new Float32Array(3 * 224 * 224), 1);
      assert.ok(Number(DENORMAL) * Number('1') > 0);
    } finally {
      await sessions.close();
    }
  });
});
