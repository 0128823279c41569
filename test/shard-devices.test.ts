import { test } from 'node:test';
import assert from 'node:assert/strict';
import { UsageError } from '../src/errors.js';
import { listDevices as listAllDevices } from '../src/commands/all-devices.js';

test('--device cuda:all: PICKSCORE_DEVICES lists the workers\' devices explicitly', async () => {
  assert.deepEqual(await listAllDevices({ PICKSCORE_DEVICES: 'cuda:0, cuda:2' }), ['cuda:0', 'cuda:2']);
  assert.deepEqual(await listAllDevices({ PICKSCORE_DEVICES: 'cpu,cpu', CUDA_VISIBLE_DEVICES: '0,1,2' }), ['cpu', 'cpu']);
  await assert.rejects(listAllDevices({ PICKSCORE_DEVICES: 'cuda:0,gpu1' }), (err: unknown) =>
    err instanceof UsageError && /Expected a comma-separated list of cpu or cuda:N for environment variable PICKSCORE_DEVICES but received "cuda:0,gpu1"/.test(err.message));
});

test('--device cuda:all: CUDA_VISIBLE_DEVICES entries are numbered from 0, as CUDA numbers them', async () => {
  assert.deepEqual(await listAllDevices({ CUDA_VISIBLE_DEVICES: '2,3' }), ['cuda:0', 'cuda:1']);
  assert.deepEqual(await listAllDevices({ CUDA_VISIBLE_DEVICES: 'GPU-8a1c,GPU-77f0,GPU-0b3e' }), ['cuda:0', 'cuda:1', 'cuda:2']);
});

test('--device cuda:all: a CUDA_VISIBLE_DEVICES that hides every GPU is a usage error, not a silent CPU run', async () => {
  for (const hidden of ['', '-1']) {
    await assert.rejects(listAllDevices({ CUDA_VISIBLE_DEVICES: hidden }), /found no GPU: CUDA_VISIBLE_DEVICES=.* hides them all/);
  }
});
