/**
 * openEncoders and the device decision above it: device parsing, the CUDA provider's fallback under
 * 'auto' (this machine has no CUDA provider, so the CPU path and its reason are what run here), and
 * input checks.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { InternalError, ModelError, UsageError } from '../src/errors.js';
import { onnxruntimeVersion, openEncoders } from '../src/encoder/session.js';
import { diagnoseCudaProvider } from '../src/encoder/cuda-provider.js';
import { parseDevice } from '../src/encoder/device.js';
import { openModel } from '../src/pipeline/open-model.js';
import { resolveScorerOptions } from '../src/pipeline/options.js';
import { skipWithoutReference } from './helpers/paths.js';
import { tinyModel } from './helpers/tiny-model.js';
import { buildReferenceEncoders, loadReference, loadReferencePixels, tempDir, PIXELS_PER_IMAGE, type BuiltEncoders } from './helpers/graph-models.js';

describe('device requests', () => {
  it('parses auto, cpu, cuda and cuda:N, keeping the spelling for messages', () => {
    assert.deepEqual(parseDevice('auto'), { kind: 'auto', request: 'auto' });
    assert.deepEqual(parseDevice('cpu'), { kind: 'cpu', request: 'cpu' });
    assert.deepEqual(parseDevice('cuda'), { kind: 'cuda', id: 0, request: 'cuda' });
    assert.deepEqual(parseDevice('cuda:3'), { kind: 'cuda', id: 3, request: 'cuda:3' });
    assert.deepEqual(parseDevice('cuda:all', { all: true }), { kind: 'all', request: 'cuda:all' });
  });

  for (const bad of ['gpu', 'cuda:', 'cuda:x', 'CUDA', 'cuda:1234', 'cuda:all', 3]) {
    it(`rejects ${JSON.stringify(bad)} with the accepted values`, () => {
      assert.throws(() => parseDevice(bad), (err: unknown) => err instanceof UsageError
        && /^Expected one of auto, cpu, cuda, cuda:N for the device but received/.test(err.message));
    });
  }
});

describe('CUDA provider diagnosis', () => {
  const loadFailure = new Error('OrtSessionOptionsAppendExecutionProvider_Cuda: Failed to load shared library');

  it('names the provider libraries missing from the binding folder', async () => {
    const scratch = await tempDir('cuda-missing');
    try {
      assert.equal(diagnoseCudaProvider(loadFailure, scratch.dir), `onnxruntime-node ${onnxruntimeVersion} has no CUDA provider: `
        + `libonnxruntime_providers_shared.so and libonnxruntime_providers_cuda.so missing in ${scratch.dir} `
        + '(onnxruntime-node installs them for CUDA 13 on linux x64 unless its install script was skipped)');
    } finally {
      await scratch.remove();
    }
  });

  it("passes on the dynamic loader's reason when a provider library is present but cannot load", async () => {
    const scratch = await tempDir('cuda-broken');
    try {
      for (const lib of ['libonnxruntime_providers_shared.so', 'libonnxruntime_providers_cuda.so']) await writeFile(path.join(scratch.dir, lib), 'not an ELF file');
      assert.match(diagnoseCudaProvider(loadFailure, scratch.dir),
        /^onnxruntime-node 1\.29\.0's CUDA provider cannot load: .*libonnxruntime_providers_shared\.so.*(invalid ELF header|file too short).*\(it needs CUDA 13 and cuDNN 9 on the library path\)$/);
    } finally {
      await scratch.remove();
    }
  });
});

describe('openEncoders', { skip: skipWithoutReference }, () => {
  let scratch: { dir: string; remove(): Promise<void> };
  let built: BuiltEncoders;
  before(async () => {
    scratch = await tempDir('session');
    built = await buildReferenceEncoders('tiny-clip safetensors', 'fp32', 'plain', path.join(scratch.dir, 'model'));
  });
  after(async () => scratch?.remove());

  it(`reports onnxruntime ${onnxruntimeVersion} and the CPU provider`, async () => {
    const sessions = await openEncoders(built.dir, built.manifest, { device: { kind: 'cpu' } });
    try {
      assert.equal(sessions.onnxruntimeVersion, '1.29.0');
      assert.equal(sessions.executionProvider, 'CPUExecutionProvider');
    } finally {
      await sessions.close();
    }
  });

  it("'auto' uses CUDA when it loads, else falls back to CPU naming what is missing and records it; 'cuda' then fails with that reason", async () => {
    const model = await tinyModel();
    const opened = await openModel(resolveScorerOptions({ model, device: 'auto' }), openEncoders);
    try {
      if (opened.placement.device.kind === 'cuda') {
        assert.equal(opened.placement.fallbackReason, undefined);
        assert.equal(opened.placement.executionProvider, 'CUDAExecutionProvider');
        return;
      }
      assert.deepEqual([opened.placement.name, opened.placement.executionProvider], ['cpu', 'CPUExecutionProvider']);
      assert.match(opened.placement.fallbackReason ?? '', /^CUDA unavailable, using CPU: onnxruntime-node 1\.29\.0.*(libonnxruntime_providers_\w+\.so|lib\w+\.so[.\d]*|CUDA)/);
      const reason = opened.placement.fallbackReason!.replace('CUDA unavailable, using CPU: ', '');
      for (const device of ['cuda:0', 'cuda'] as const) {
        await assert.rejects(openModel(resolveScorerOptions({ model, device }), openEncoders),
          (err: unknown) => err instanceof UsageError && err.message === `Device ${device} was requested, but ${reason}`);
      }
    } finally {
      await opened.sessions.close();
    }
  });

  it('encodes from subarray views as from copies (the pipeline passes views of a reused buffer)', async () => {
    const ref = await loadReference();
    const pixels = (await loadReferencePixels(ref)).subarray(0, 3 * PIXELS_PER_IMAGE);
    const sessions = await openEncoders(built.dir, built.manifest, { device: { kind: 'cpu' }, threads: 1 });
    try {
      const view = await sessions.encodeImages(pixels.subarray(PIXELS_PER_IMAGE), 2);
      const copy = await sessions.encodeImages(pixels.slice(PIXELS_PER_IMAGE), 2);
      assert.deepEqual([...view], [...copy]);
      assert.deepEqual([...view.subarray(0, 16)].map((v) => v.toFixed(4)), ref.images[1].image_embeds.map((v) => v.toFixed(4)));
    } finally {
      await sessions.close();
    }
  });

  it('checks batch sizes against the data', async () => {
    const sessions = await openEncoders(built.dir, built.manifest, { device: { kind: 'cpu' } });
    try {
      await assert.rejects(sessions.encodeText(new BigInt64Array(77 * 2), 3), (err: unknown) => err instanceof InternalError && /Expected 3 x 77 input ids, received 154/.test(err.message));
      await assert.rejects(sessions.encodeImages(new Float32Array(10), 1), InternalError);
    } finally {
      await sessions.close();
    }
  });

  it('rejects bad thread counts where they are given, and missing model files', async () => {
    assert.throws(() => resolveScorerOptions({ threads: 0 }),
      (err: unknown) => err instanceof UsageError && /Expected a positive integer for threads but received number 0/.test(err.message));
    const other = await buildReferenceEncoders('tiny-clip safetensors', 'fp32', 'plain', path.join(scratch.dir, 'incomplete'));
    await rm(path.join(other.dir, 'image.onnx'));
    await assert.rejects(openEncoders(other.dir, other.manifest, { device: { kind: 'cpu' } }), (err: unknown) => err instanceof ModelError && /has no image\.onnx/.test(err.message));
  });
});
