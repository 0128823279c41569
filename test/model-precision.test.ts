/**
 * A precision asked for is the precision that runs, or the run is refused; and the provenance states
 * what ran (precision, attention, device), on every path a model is opened by: a converted folder, a
 * checkpoint folder converted into the cache, a cached conversion, and `--device auto` falling back
 * to the CPU.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { cp, mkdir } from 'node:fs/promises';
import path from 'node:path';
import { UsageError, ModelError } from '../src/errors.js';
import { modelPull } from '../src/commands/model.js';
import { locateModel, resolveModel } from '../src/model/registry.js';
import { openEncoders, type EncoderSessions, type OpenEncodersOptions } from '../src/encoder/session.js';
import { CudaUnavailableError } from '../src/encoder/cuda-provider.js';
import { deviceName } from '../src/encoder/device.js';
import type { ModelManifest } from '../src/model-format.js';
import { resolveScorerOptions } from '../src/pipeline/options.js';
import { Scorer } from '../src/pipeline/scorer.js';
import { openModel } from '../src/pipeline/open-model.js';
import { referenceDir, skipWithoutReference } from './helpers/paths.js';
import { runCli } from './helpers/pipe-cli.js';
import { withTempDir } from './helpers/temp-dir.js';
import { clipTokenizerDir, tinyClipDir, tinyModel } from './helpers/tiny-model.js';

/** Runs `fn` with $PICKSCORE_HOME in a fresh folder, so conversions into the cache stay out of the user's. */
async function withPickscoreHome<T>(fn: (dir: string) => Promise<T>): Promise<T> {
  return withTempDir('precision', async (dir) => {
    const before = process.env.PICKSCORE_HOME;
    process.env.PICKSCORE_HOME = path.join(dir, 'home');
    try {
      return await fn(dir);
    } finally {
      if (before === undefined) delete process.env.PICKSCORE_HOME;
      else process.env.PICKSCORE_HOME = before;
    }
  });
}

/** A Hugging Face checkpoint folder with its tokenizer beside the weights, as a local clone has it. */
async function checkpointFolder(dir: string): Promise<string> {
  const checkpoint = path.join(dir, 'checkpoint');
  await mkdir(checkpoint);
  for (const file of ['config.json', 'model.safetensors']) await cp(path.join(tinyClipDir, file), path.join(checkpoint, file));
  for (const file of ['tokenizer.json', 'vocab.json', 'merges.txt']) await cp(path.join(clipTokenizerDir, file), path.join(checkpoint, file));
  return checkpoint;
}

test('a converted folder without the precision asked for is refused with exit 2, saying what it holds and how to build the other', { skip: skipWithoutReference }, async () => {
  const fp32 = await tinyModel('fp32');
  for (const precision of ['fp16', 'int8'] as const) {
    await assert.rejects(Scorer.open({ model: fp32, precision, device: 'cpu', cacheDir: false }), (err: unknown) => err instanceof UsageError
      && err.message.startsWith(`--precision ${precision} was asked for, but the model folder ${fp32} holds fp32 encoders only`)
      && err.message.includes(`\`pickscore model convert ${tinyClipDir} --tokenizer ${fp32} --out <new folder> --precision ${precision}\``)
      && err.message.includes('or pass --precision fp32 (or auto)'));
  }
  const fp16 = await tinyModel('fp16');
  await assert.rejects(Scorer.open({ model: fp16, precision: 'fp32', device: 'cpu', cacheDir: false }), /--precision fp32 was asked for, but the model folder .* holds fp16 encoders only/);
  // Through the CLI, before any image is scored.
  const cli = await runCli(['rank', path.join(referenceDir, 'images'), '--prompt', 'a fox', '--model', fp32, '--precision', 'fp16', '--no-cache']);
  assert.equal(cli.stdout, '');
  assert.equal(cli.code, 2, cli.stderr);
  assert.match(cli.stderr, /--precision fp16 was asked for, but the model folder .* holds fp32 encoders only/);
  // `model pull` of a converted folder does not report it as pulled at another precision.
  await assert.rejects(modelPull({ model: fp32, precision: 'fp16' }), (err: unknown) => err instanceof UsageError && /holding fp32\/plain encoders, not fp16\/plain/.test(err.message));
});

test('auto takes what a converted folder holds, and the provenance states precision, attention and the pixel limit', { skip: skipWithoutReference }, async () => {
  for (const [precision, asked] of [['fp16', 'auto'], ['fp16', 'fp16'], ['fp32', 'auto']] as const) {
    const scorer = await Scorer.open({ model: await tinyModel(precision), precision: asked, device: 'cpu', cacheDir: false, maxPixels: 1_000_000 });
    try {
      const provenance = scorer.provenance();
      assert.deepEqual([provenance.precision, provenance.attention, provenance.device, provenance.maxPixels], [precision, 'plain', 'cpu', 1_000_000]);
    } finally {
      await scorer.close();
    }
  }
});

test('a cached conversion whose manifest is another variant than its folder is for is a model error, not a silent fp32 run', { skip: skipWithoutReference }, async () => {
  await withPickscoreHome(async (dir) => {
    const checkpoint = await checkpointFolder(dir);
    const { dir: target } = await locateModel(checkpoint, { precision: 'fp16' });
    await mkdir(path.dirname(target), { recursive: true });
    await cp(await tinyModel('fp32'), target, { recursive: true });
    await assert.rejects(resolveModel(checkpoint, { precision: 'fp16' }), (err: unknown) => err instanceof ModelError
      && err.message === `The cached model ${target} should hold fp16/plain encoders, but its pickscore-model.json says fp32/plain; remove the folder so that it is converted again`);
  });
});

test('--device auto that falls back to the CPU: auto converts the CPU variant, a precision asked for is kept, and what opened is what is reported', { skip: skipWithoutReference }, async () => {
  await withPickscoreHome(async (dir) => {
    const checkpoint = await checkpointFolder(dir);
    // The CUDA provider's libraries load, but no GPU session starts: the CPU opens with the reason.
    const opened: { manifest: ModelManifest; device: string }[] = [];
    const fallingBack = async (modelDir: string, manifest: ModelManifest, opts: OpenEncodersOptions): Promise<EncoderSessions> => {
      opened.push({ manifest, device: deviceName(opts.device) });
      if (opts.device.kind === 'cuda') throw new CudaUnavailableError('no GPU');
      return openEncoders(modelDir, manifest, opts);
    };
    const logged: string[] = [];
    const options = (precision: 'auto' | 'fp16') => resolveScorerOptions({ model: checkpoint, device: 'auto', precision, log: (line) => logged.push(line) });

    const auto = await openModel(options('auto'), fallingBack, () => 'loads');
    await auto.sessions.close();
    assert.deepEqual(opened.map((o) => [o.manifest.precision, o.manifest.attention, o.device]), [['fp16', 'fused', 'cuda:0'], ['fp32', 'fused', 'cpu']]);
    assert.deepEqual([auto.manifest.precision, auto.manifest.attention, auto.placement.name, auto.placement.fallbackReason], ['fp32', 'fused', 'cpu', 'CUDA unavailable, using CPU: no GPU']);
    assert.deepEqual(logged, ['warning: device auto: using CPUExecutionProvider (CUDA unavailable, using CPU: no GPU)']);

    opened.length = 0;
    const fp16 = await openModel(options('fp16'), fallingBack, () => 'loads');
    await fp16.sessions.close();
    assert.deepEqual(opened.map((o) => [o.manifest.precision, o.device]), [['fp16', 'cuda:0'], ['fp16', 'cpu']], 'the fp16 encoders asked for run on the CPU; nothing else is converted');
    assert.deepEqual([fp16.manifest.precision, fp16.manifest.attention, fp16.placement.name], ['fp16', 'fused', 'cpu']);
  });
});
