/**
 * End-to-end conversion of the reference checkpoints into model folders: contents, manifest, and the
 * guarantee that a failed conversion leaves no folder a later run would trust. The embeddings of the
 * converted encoders are checked against the reference in the ONNX graph tests.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { copyFile, mkdir, mkdtemp, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { ModelError, UsageError } from '../src/errors.js';
import { CLIP_PREPROCESS } from '../src/image/preprocess.js';
import { convertCheckpoint, writingFile } from '../src/convert/convert.js';
import { modelConvert, modelPull } from '../src/commands/model.js';
import { readModelManifest, type ModelManifest } from '../src/model-format.js';
import { openCheckpoint } from '../src/convert/checkpoint.js';
import { ONNX_OPSET } from '../src/convert/onnx-builder.js';
import { PICKSCORE_VERSION } from '../src/version.js';
import { writeSafetensors } from './helpers/checkpoint-writers.js';
import { referenceDir, skipWithoutReference } from './helpers/paths.js';

const tokenizerDir = path.join(referenceDir, 'clip-tokenizer');
const FOLDER_CONTENTS = ['image.onnx', 'merges.txt', 'pickscore-model.json', 'text.onnx', 'tokenizer.json', 'tokenizer_config.json', 'vocab.json'];

let scratch: string;
before(async () => {
  scratch = await mkdtemp(path.join(os.tmpdir(), 'pickscore-convert-'));
});
after(async () => {
  await rm(scratch, { recursive: true, force: true });
});

async function sha256(file: string): Promise<string> {
  return createHash('sha256').update(await readFile(file)).digest('hex');
}

/** tiny-clip with only its .bin, so that the PyTorch reader is the one used. */
async function tinyClipBinOnly(): Promise<string> {
  const dir = path.join(scratch, 'tiny-clip-bin');
  await mkdir(dir, { recursive: true });
  for (const file of ['config.json', 'pytorch_model.bin']) await copyFile(path.join(referenceDir, 'tiny-clip', file), path.join(dir, file));
  return dir;
}

async function siblingsOf(dir: string): Promise<string[]> {
  return (await readdir(path.dirname(dir))).filter((name) => name.startsWith(`${path.basename(dir)}.`));
}

describe('converting the reference checkpoints', { skip: skipWithoutReference }, () => {
  const converted = new Map<string, { dir: string; manifest: ModelManifest }>();

  before(async () => {
    const sources: [string, string][] = [
      ['safetensors', path.join(referenceDir, 'tiny-clip')],
      ['bin', await tinyClipBinOnly()],
      ['legacy', path.join(referenceDir, 'tiny-clip-legacy')],
    ];
    for (const [label, src] of sources) {
      const dir = path.join(scratch, 'out', label);
      const manifest = await convertCheckpoint(src, { outDir: dir, precision: 'fp32', tokenizerDir, source: { repo: 'test/tiny-clip', revision: 'abc' } });
      converted.set(label, { dir, manifest });
    }
  });

  test('each folder holds the encoders, the tokenizer files and the manifest, and nothing else', async () => {
    for (const [label, { dir }] of converted) {
      assert.deepEqual((await readdir(dir)).sort(), FOLDER_CONTENTS, label);
      assert.deepEqual(await siblingsOf(dir), [], `${label}: no temporary folder is left beside the output`);
      for (const file of ['tokenizer.json', 'vocab.json', 'merges.txt', 'tokenizer_config.json']) {
        assert.equal(await sha256(path.join(dir, file)), await sha256(path.join(tokenizerDir, file)), `${label}: ${file}`);
      }
    }
  });

  test('the manifest records the model and reads back identically', async () => {
    for (const [label, { dir, manifest }] of converted) {
      assert.deepEqual(await readModelManifest(dir), manifest, label);
      assert.equal(manifest.schema, 1);
      assert.equal(manifest.name, 'test/tiny-clip');
      assert.deepEqual([manifest.source.repo, manifest.source.revision], ['test/tiny-clip', 'abc']);
      assert.deepEqual([manifest.precision, manifest.attention], ['fp32', 'plain']);
      assert.deepEqual(manifest.text, { file: 'text.onnx', contextLength: 77, embedDim: 16 });
      assert.deepEqual(manifest.image, { file: 'image.onnx', imageSize: 224, embedDim: 16 });
      assert.deepEqual(manifest.preprocess, { ...CLIP_PREPROCESS });
      assert.deepEqual(manifest.tokenizerFiles, ['tokenizer.json', 'vocab.json', 'merges.txt', 'tokenizer_config.json']);
      assert.deepEqual([manifest.onnxOpset, manifest.pickscoreVersion], [ONNX_OPSET, PICKSCORE_VERSION]);
    }
  });

  test('logit_scale comes from the trained tensor, not logit_scale_init_value', () => {
    // The checkpoints hold ln(100) as float32; the legacy config's init value is 2.6592 (exp = 14.28).
    for (const [label, { manifest }] of converted) assert.ok(Math.abs(manifest.logitScale - 100) < 1e-4, `${label}: ${manifest.logitScale}`);
  });

  test('source files are listed with their sizes and SHA-256', async () => {
    const { manifest } = converted.get('legacy')!;
    const src = path.join(referenceDir, 'tiny-clip-legacy');
    assert.equal(manifest.source.dir, src);
    assert.deepEqual(manifest.source.files, [
      { name: 'config.json', size: (await stat(path.join(src, 'config.json'))).size, sha256: await sha256(path.join(src, 'config.json')) },
      { name: 'pytorch_model.bin', size: (await stat(path.join(src, 'pytorch_model.bin'))).size, sha256: await sha256(path.join(src, 'pytorch_model.bin')) },
    ]);
    const fingerprints = new Set([...converted.values()].map((c) => c.manifest.fingerprint));
    assert.equal(fingerprints.size, 3, 'different source files give different fingerprints');
  });

  test('the same weights give the same encoders whichever file format they came from', async () => {
    const bytes = async (label: string, file: string) => readFile(path.join(converted.get(label)!.dir, file));
    assert.ok((await bytes('safetensors', 'image.onnx')).equals(await bytes('bin', 'image.onnx')));
    assert.ok((await bytes('safetensors', 'image.onnx')).equals(await bytes('legacy', 'image.onnx')));
    assert.ok((await bytes('safetensors', 'text.onnx')).equals(await bytes('bin', 'text.onnx')));
  });

  test('converting again replaces the folder, and the precision changes the fingerprint', async () => {
    const { dir, manifest: fp32 } = converted.get('safetensors')!;
    const seen: [number, number][] = [];
    const fp16 = await convertCheckpoint(path.join(referenceDir, 'tiny-clip'), { outDir: dir, precision: 'fp16', tokenizerDir, source: { repo: 'test/tiny-clip', revision: 'abc' }, onProgress: (d, t) => seen.push([d, t]) });
    assert.equal((await readModelManifest(dir)).precision, 'fp16');
    assert.notEqual(fp16.fingerprint, fp32.fingerprint);
    assert.deepEqual(fp16.source.files, fp32.source.files);
    assert.deepEqual(await siblingsOf(dir), []);
    assert.ok(seen.length > 2);
    assert.ok(seen.every(([d, t], i) => d <= t && (i === 0 || d >= seen[i - 1][0])), 'progress only moves forward');
    assert.deepEqual(seen.at(-1), [seen[0][1], seen[0][1]]);
    converted.set('safetensors', { dir, manifest: fp16 });
  });

  test('a conversion that fails midway leaves the earlier folder as it was and no partial one', async () => {
    const { dir } = converted.get('bin')!;
    const before = await readFile(path.join(dir, 'pickscore-model.json'), 'utf8');
    // Hashing is under half of the work, so past three quarters the tower writer is filling the temporary folder.
    const interrupt = (done: number, total: number): void => {
      if (done > 0.75 * total) throw new Error('interrupted');
    };
    const failing = convertCheckpoint(path.join(referenceDir, 'tiny-clip'), { outDir: dir, precision: 'fp16', tokenizerDir, onProgress: interrupt });
    await assert.rejects(failing, /interrupted/);
    assert.equal(await readFile(path.join(dir, 'pickscore-model.json'), 'utf8'), before);
    assert.deepEqual(await siblingsOf(dir), []);

    const fresh = path.join(scratch, 'out', 'never-written');
    await assert.rejects(convertCheckpoint(path.join(referenceDir, 'tiny-clip'), { outDir: fresh, precision: 'fp32', tokenizerDir, onProgress: interrupt }), /interrupted/);
    await assert.rejects(stat(fresh), { code: 'ENOENT' });
    assert.deepEqual(await siblingsOf(fresh), []);
  });

  test('a preprocessor_config.json beside the tokenizer is copied and used', async () => {
    const processorDir = path.join(scratch, 'processor');
    await mkdir(processorDir, { recursive: true });
    await copyFile(path.join(tokenizerDir, 'tokenizer.json'), path.join(processorDir, 'tokenizer.json'));
    const mean = [0.5, 0.5, 0.5];
    await writeFile(path.join(processorDir, 'preprocessor_config.json'), JSON.stringify({ size: { shortest_edge: 256 }, crop_size: { height: 224, width: 224 }, image_mean: mean }));
    const out = path.join(scratch, 'out', 'with-processor');
    const manifest = await convertCheckpoint(path.join(referenceDir, 'tiny-clip'), { outDir: out, precision: 'fp32', tokenizerDir: processorDir });
    assert.deepEqual([manifest.preprocess.shortestEdge, manifest.preprocess.mean], [256, mean]);
    assert.deepEqual(manifest.tokenizerFiles, ['tokenizer.json']);
    assert.deepEqual((await readdir(out)).sort(), ['image.onnx', 'pickscore-model.json', 'preprocessor_config.json', 'text.onnx', 'tokenizer.json']);

    await writeFile(path.join(processorDir, 'preprocessor_config.json'), JSON.stringify({ crop_size: 336 }));
    await assert.rejects(
      convertCheckpoint(path.join(referenceDir, 'tiny-clip'), { outDir: path.join(scratch, 'out', 'bad-crop'), precision: 'fp32', tokenizerDir: processorDir }),
      (err: unknown) => err instanceof ModelError && /preprocessor_config\.json: crop_size 336x336 disagrees with vision_config\.image_size 224/.test(err.message),
    );
  });
});

describe('conversion errors', { skip: skipWithoutReference }, () => {
  const src = path.join(referenceDir, 'tiny-clip');

  test('bad options are usage errors, raised where they enter and before any work', async () => {
    await assert.rejects(modelConvert({ src, out: path.join(scratch, 'x'), precision: 'fp8' as never }), (err: unknown) => err instanceof UsageError && /Expected fp32 \| fp16 \| int8 for precision but received "fp8"/.test(err.message));
    await assert.rejects(modelConvert({ src, out: path.join(scratch, 'x'), precision: 'fp32', attention: 'flash' as never }), (err: unknown) => err instanceof UsageError && /Expected plain \| fused for attention but received "flash"/.test(err.message));
    await assert.rejects(modelPull({ model: src, precision: 'fp8' as never }), (err: unknown) => err instanceof UsageError && /for precision but received "fp8"/.test(err.message));
    await assert.rejects(stat(path.join(scratch, 'x')), { code: 'ENOENT' }, 'nothing was written');
  });

  test('a folder that is not a model folder is never replaced', async () => {
    const precious = path.join(scratch, 'precious');
    await mkdir(precious, { recursive: true });
    await writeFile(path.join(precious, 'notes.txt'), 'keep me');
    await assert.rejects(convertCheckpoint(src, { outDir: precious, precision: 'fp32', tokenizerDir }), (err: unknown) => err instanceof UsageError && err.message.includes(precious));
    assert.deepEqual(await readdir(precious), ['notes.txt']);
  });

  test('a checkpoint without tokenizer files says where it looked', async () => {
    await assert.rejects(convertCheckpoint(src, { outDir: path.join(scratch, 'no-tokenizer'), precision: 'fp32' }), (err: unknown) => err instanceof ModelError && err.message.startsWith(`No tokenizer found in ${src}`));
  });

  test('a checkpoint missing a tensor is refused before anything is written', async () => {
    const dir = path.join(scratch, 'missing-tensor');
    await mkdir(dir, { recursive: true });
    await copyFile(path.join(src, 'config.json'), path.join(dir, 'config.json'));
    const checkpoint = await openCheckpoint(src);
    try {
      const kept = [...checkpoint.tensors.values()].filter((t) => t.name !== 'text_model.final_layer_norm.bias');
      const tensors = await Promise.all(kept.map(async (t) => ({ name: t.name, dtype: t.dtype, shape: t.shape, data: await t.read() })));
      await writeSafetensors(path.join(dir, 'model.safetensors'), tensors);
    } finally {
      await checkpoint.close();
    }
    const outDir = path.join(scratch, 'out', 'missing-tensor');
    await assert.rejects(convertCheckpoint(dir, { outDir, precision: 'fp32', tokenizerDir }), (err: unknown) => {
      assert.ok(err instanceof ModelError);
      assert.match(err.message, /^Tensor text_model\.final_layer_norm\.bias is missing from .*missing-tensor\/model\.safetensors/);
      return true;
    });
    await assert.rejects(stat(outDir), { code: 'ENOENT' });
    assert.deepEqual(await siblingsOf(outDir), []);
  });

  test('a full disk is a ModelError naming the file', async () => {
    await assert.rejects(writingFile('/dev/full', () => writeFile('/dev/full', 'weights')), (err: unknown) => {
      assert.ok(err instanceof ModelError);
      assert.equal(err.message, 'Cannot write /dev/full: the disk is full (ENOSPC); nothing was left half-written');
      return true;
    });
  });
});

describe('reading a manifest', () => {
  test('a folder without one is not a model', async () => {
    await assert.rejects(readModelManifest(scratch), (err: unknown) => err instanceof ModelError && err.message.includes('is not a converted pickscore model'));
  });

  test('a bad field is named with what was expected', async () => {
    const dir = path.join(scratch, 'bad-manifest');
    await mkdir(dir, { recursive: true });
    const manifest = {
      schema: 1, name: 'm', fingerprint: 'f', source: { files: [] }, logitScale: 100, precision: 'fp64', attention: 'plain',
      text: { file: 'text.onnx', contextLength: 77, embedDim: 16 }, image: { file: 'image.onnx', imageSize: 224, embedDim: 16 },
      preprocess: { ...CLIP_PREPROCESS }, tokenizerFiles: [], pickscoreVersion: '0.1.0', onnxOpset: 17,
    };
    await writeFile(path.join(dir, 'pickscore-model.json'), JSON.stringify(manifest));
    await assert.rejects(readModelManifest(dir), /pickscore-model\.json: Expected fp32 \| fp16 \| int8 for field "precision" but received "fp64"/);
    await writeFile(path.join(dir, 'pickscore-model.json'), JSON.stringify({ ...manifest, precision: 'fp32' }));
    await assert.rejects(readModelManifest(dir), /lists text\.onnx, but the model folder has no such file/);
    await writeFile(path.join(dir, 'pickscore-model.json'), '{"schema": 1,');
    await assert.rejects(readModelManifest(dir), /pickscore-model\.json is not valid JSON/);
  });
});
