/**
 * The CPU benchmark's PyTorch peer (bench/torch-peer.ts, bench/torch/clip_peer.py) and the profile summary
 * of bench/op-profile.bench.ts. The lead runs `npm run -s bench -- cpu-peer` unattended, so the peer's
 * protocol is run here end to end on towers cut down to one narrow layer, and a machine without torch
 * gets a reason to print instead of a crash.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chmod, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { startTorchPeer, torchPython, type TorchPeer } from '../bench/torch-peer.js';
import { summarizeProfile } from '../bench/op-profile.bench.js';
import { busyWarning } from '../bench/cpu-peer.bench.js';
import { tempDir } from './helpers/graph-models.js';

const TINY = { width: 64, layers: 1, heads: 2, mlp: 128 };

test('a Python that is missing, or has no torch, is a reason to skip the peer, naming the Python', async () => {
  const scratch = await tempDir('cpu-peer');
  try {
    const missing = await startTorchPeer(1, () => undefined, path.join(scratch.dir, 'no-such-python'));
    assert.ok('skipped' in missing);
    assert.match(missing.skipped, /PyTorch is not available to .*no-such-python \(.*ENOENT/);

    const noTorch = path.join(scratch.dir, 'python-without-torch');
    await writeFile(noTorch, "#!/bin/sh\necho \"ModuleNotFoundError: No module named 'torch'\" >&2\nexit 1\n");
    await chmod(noTorch, 0o755);
    const without = await startTorchPeer(1, () => undefined, noTorch);
    assert.ok('skipped' in without);
    assert.match(without.skipped, /python-without-torch \(ModuleNotFoundError: No module named 'torch'\); install Debian's python3-torch/);
  } finally {
    await scratch.remove();
  }
});

test('the peer loads, warms up, times and unloads both towers in both precisions, and answers errors', async (t) => {
  const lines: string[] = [];
  const started = await startTorchPeer(1, (line) => lines.push(line), torchPython);
  if ('skipped' in started) {
    t.skip(started.skipped);
    return;
  }
  const peer: TorchPeer = started;
  try {
    const fp32 = await peer.load('image', 'fp32', 2, TINY);
    assert.equal(fp32.fast_path, true, 'fp32 takes nn.TransformerEncoderLayer\'s fast path');
    assert.equal(fp32.engine, 'fp32');
    assert.match(fp32.blas, /OpenBLAS|no OpenBLAS loaded/);
    const seconds = await peer.run();
    assert.ok(seconds > 0 && Number.isFinite(seconds));
    await peer.unload();

    const int8 = await peer.load('text', 'int8', 3, { ...TINY, width: 32, mlp: 64 });
    assert.equal(int8.fast_path, false);
    assert.match(int8.engine, /fbgemm|onednn|x86|qnnpack/);
    assert.ok((await peer.run()) > 0);

    await assert.rejects(peer.load('audio' as 'text', 'fp32', 1, TINY), /PyTorch peer: ValueError: unknown tower audio/);
    await assert.rejects(peer.load('image', 'fp16' as 'fp32', 1, TINY), /PyTorch peer: ValueError: unknown precision fp16/);
    assert.ok((await peer.run()) > 0, 'a refused load leaves the loaded model in place');
    await peer.unload();
    await assert.rejects(peer.run(), /PyTorch peer: RuntimeError: no model is loaded/);
  } finally {
    await peer.close();
  }
  await assert.rejects(peer.run(), /the PyTorch peer exited/);
});

test('the profile summary counts only the runs after the warm-up, per operator and per part of the model', () => {
  const node = (op: string, ts: number, dur: number, shape: number[] = [8, 257, 1280]) => ({
    cat: 'Node', name: `${op}_node_kernel_time`, ts, dur, args: { op_name: op, input_type_shape: [{ float: shape }] },
  });
  const run = (ts: number) => ({ cat: 'Session', name: 'model_run', ts, dur: 1 });
  const summary = summarizeProfile([
    run(0), node('MatMul', 10, 99_000_000),
    run(100), node('MatMul', 110, 4000), node('MatMul', 120, 2000, [8, 16, 257, 80]), node('DynamicQuantizeLinear', 130, 1000),
    run(200), node('MatMulIntegerToFloat', 210, 6000), node('SkipLayerNormalization', 220, 3000), node('Gelu', 230, 1000), node('Cast', 240, 1000),
  ]);
  assert.equal(summary.runs, 2);
  assert.deepEqual(summary.by_op, { MatMulIntegerToFloat: 3, MatMul: 3, SkipLayerNormalization: 2, DynamicQuantizeLinear: 1, Gelu: 1, Cast: 1 });
  assert.deepEqual(summary.by_part, { gemm: 5, layernorm: 2, attention: 1, quantize_activations: 1, gelu: 1, other: 1 });
  assert.equal(summary.total_ms, 9);
  assert.throws(() => summarizeProfile([run(0)]), /1 model runs; expected a warm-up and at least one more/);
});

test('a benchmark run on a busy machine says so, and a quiet one, where its own threads are the load, does not', () => {
  assert.equal(busyWarning([0.3, 0.2, 0.1], [2.1, 2.0, 1.6], 2), undefined);
  assert.equal(busyWarning([1.8, 0.9, 0.4], [3.4, 2.6, 2.1], 2), undefined, 'the build before it and its own two threads');
  assert.match(busyWarning([11.6, 8.8, 7.45], [3.91, 6.87, 7.91], 2) ?? '', /busy \(load average up to 11\.6 on 2 cores\): these ratios are not a quiet machine's/);
  assert.match(busyWarning([0.5, 0.5, 0.5], [1.0, 3.0, 4.2], 2) ?? '', /up to 4\.2 on 2 cores/, 'load that came and went during the run');
});
