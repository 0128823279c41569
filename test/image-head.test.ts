/**
 * The aesthetic head (src/convert/image-head.ts) appended to the image graph, against PyTorch's own
 * forward of the same head: a tiny head in the LAION predictor's layout, saved by torch.save as the real
 * `.pth` is (root folder `archive/`, storages tagged `cuda:0`), on the reference tiny CLIP's image tower
 * and on embeddings fed to the head alone (a zero embedding included).
 */
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import * as ort from 'onnxruntime-node';
import { ModelError } from '../src/errors.js';
import { openCheckpoint } from '../src/convert/checkpoint.js';
import { readClipConfig } from '../src/convert/clip-config.js';
import { writeClipTowerOnnx } from '../src/convert/clip-graph.js';
import { IMAGE_INPUT, IMAGE_OUTPUT } from '../src/model-format.js';
import { IMAGE_SCORE_OUTPUT, LAION_AESTHETIC_LAYOUT, readImageHead } from '../src/convert/image-head.js';
import { GraphBuilder } from '../src/convert/onnx-builder.js';
import { writeOnnxModel } from '../src/convert/onnx-proto.js';
import { relativeError } from '../src/score/agreement.js';
import { loadReference, loadReferencePixels, type Reference } from './helpers/graph-models.js';
import { referenceDir, skipWithoutReference } from './helpers/paths.js';
import { pythonHas } from './helpers/torch-python.js';
import { makeHead, torchHead } from './helpers/aesthetic-head.js';

const TOLERANCE = 1e-4;
const skipWithoutTorch = pythonHas(['torch', 'numpy'], 'aesthetic head tests') ? false : 'python3-torch is not installed';

let scratch: string;
before(async () => {
  scratch = await mkdtemp(path.join(os.tmpdir(), 'pickscore-head-'));
});
after(async () => rm(scratch, { recursive: true, force: true }));

async function run(modelPath: string, feeds: Record<string, ort.Tensor>): Promise<Record<string, Float32Array>> {
  const session = await ort.InferenceSession.create(modelPath, { intraOpNumThreads: 1 });
  try {
    const out = await session.run(feeds);
    return Object.fromEntries(Object.entries(out).map(([k, v]) => [k, v.data as Float32Array]));
  } finally {
    await session.release();
  }
}

describe('the aesthetic head appended to the image graph', { skip: skipWithoutReference || skipWithoutTorch }, () => {
  let ref: Reference;
  let headFile: string;
  before(async () => {
    ref = await loadReference();
    headFile = path.join(scratch, 'tiny-aesthetic.pth');
    const printed = makeHead(headFile);
    // The layout the converter assumes is the one the torch module has: Linear, Dropout, ..., Linear, Linear.
    assert.equal((printed.match(/Linear\(/g) ?? []).length, 5);
    assert.equal((printed.match(/Dropout\(/g) ?? []).length, 3);
  });

  test('the file is what the real one is: an archive/ root, storages tagged cuda:0', async () => {
    const bytes = await readFile(headFile);
    assert.ok(bytes.includes(Buffer.from('archive/data.pkl')));
    assert.ok(bytes.includes(Buffer.from('cuda:0')));
  });

  for (const precision of ['fp32', 'fp16'] as const) {
    test(`${precision} image tower + head: image_score within ${precision === 'fp32' ? TOLERANCE : 'the fp16 drift'} of PyTorch's head on transformers' embeddings`, async (t) => {
      const config = await readClipConfig(path.join(referenceDir, 'tiny-clip'));
      const checkpoint = await openCheckpoint(path.join(referenceDir, 'tiny-clip'));
      const head = await readImageHead(headFile);
      const outPath = path.join(scratch, `image-${precision}.onnx`);
      try {
        await writeClipTowerOnnx({ tower: 'image', config, checkpoint, precision, attention: 'plain', outPath, head });
      } finally {
        await head.close();
        await checkpoint.close();
      }
      const pixels = await loadReferencePixels(ref);
      const out = await run(outPath, { [IMAGE_INPUT]: new ort.Tensor('float32', pixels, [ref.images.length, 3, 224, 224]) });
      const expected = torchHead(headFile, ref.images.map((im) => im.image_embeds));
      const error = relativeError(out[IMAGE_SCORE_OUTPUT], expected);
      const embedError = relativeError(out[IMAGE_OUTPUT], ref.images.flatMap((im) => im.image_embeds));
      t.diagnostic(`image_score relative error ${error.toExponential(2)}, image_embeds ${embedError.toExponential(2)}; scores ${[...out[IMAGE_SCORE_OUTPUT]].slice(0, 3).map((s) => s.toFixed(4)).join(', ')}...`);
      assert.equal(out[IMAGE_SCORE_OUTPUT].length, ref.images.length);
      assert.ok(error < (precision === 'fp32' ? TOLERANCE : 5e-3), `relative error ${error}`);
    });
  }

  test('the head alone on chosen embeddings: a zero embedding counts its norm as 1, scaling does not change the score', async (t) => {
    const head = await readImageHead(headFile);
    const g = new GraphBuilder('head');
    g.input('embeds', 'float32', ['batch', 16]);
    head.append(g, 'embeds', 16);
    const outPath = path.join(scratch, 'head.onnx');
    await writeOnnxModel(g.build('test'), outPath, { externalData: false });
    await head.close();
    const embeds = [new Array(16).fill(0), Array.from({ length: 16 }, (_, i) => Math.sin(i + 1)), Array.from({ length: 16 }, (_, i) => 1000 * Math.sin(i + 1)), Array.from({ length: 16 }, (_, i) => (i % 3) - 1)];
    const out = await run(outPath, { embeds: new ort.Tensor('float32', Float32Array.from(embeds.flat()), [embeds.length, 16]) });
    const expected = torchHead(headFile, embeds);
    t.diagnostic(`image_score relative error ${relativeError(out[IMAGE_SCORE_OUTPUT], expected).toExponential(2)}`);
    assert.ok(relativeError(out[IMAGE_SCORE_OUTPUT], expected) < TOLERANCE, `${[...out[IMAGE_SCORE_OUTPUT]]} vs ${expected}`);
    assert.ok(Math.abs(out[IMAGE_SCORE_OUTPUT][1] - out[IMAGE_SCORE_OUTPUT][2]) < 1e-4);
  });

  test('a head with ReLUs (the reluMSE variant) is refused under the linear layout; described as such, it matches PyTorch', async () => {
    const reluFile = path.join(scratch, 'relu.pth');
    makeHead(reluFile, { relu: true });
    await assert.rejects(readImageHead(reluFile), (err: unknown) => err instanceof ModelError && /holds tensor layers\.3\.weight, but module 3 of the layout linear, dropout, .* is a dropout \(no parameters\); this file is another head/.test(err.message));
    const layout = ['linear', 'relu', 'dropout', 'linear', 'relu', 'dropout', 'linear', 'relu', 'dropout', 'linear', 'relu', 'linear'] as const;
    const head = await readImageHead(reluFile, { layout });
    const g = new GraphBuilder('head');
    g.input('embeds', 'float32', ['batch', 16]);
    head.append(g, 'embeds', 16);
    const outPath = path.join(scratch, 'relu.onnx');
    await writeOnnxModel(g.build('test'), outPath, { externalData: false });
    await head.close();
    const out = await run(outPath, { embeds: new ort.Tensor('float32', Float32Array.from(ref.images.flatMap((im) => im.image_embeds)), [ref.images.length, 16]) });
    assert.ok(relativeError(out[IMAGE_SCORE_OUTPUT], torchHead(reluFile, ref.images.map((im) => im.image_embeds), { relu: true })) < TOLERANCE);
  });

  test('a head for another embedding size is refused when appended, naming both sizes', async () => {
    const wide = path.join(scratch, 'wide.pth');
    makeHead(wide, { sizes: [24, 20, 12, 8, 4, 1] });
    const head = await readImageHead(wide);
    try {
      assert.throws(() => head.append(new GraphBuilder('x'), 'embeds', 16), /is a head for 24-dimensional image embeddings, but this model's are 16-dimensional/);
    } finally {
      await head.close();
    }
  });

  test('a state dict that is not the layout\'s: missing layers, another prefix', async () => {
    const short = path.join(scratch, 'short.pth');
    makeHead(short, { sizes: [16, 8, 1] });   // Linear, Linear: index 1 is not a Dropout's
    await assert.rejects(readImageHead(short), /holds tensor layers\.1\.weight, but module 1 of the layout .* is a dropout/);
    await assert.rejects(readImageHead(headFile, { prefix: 'mlp' }), /holds tensor layers\.0\.(weight|bias), which is not a parameter of mlp\.<index>/);
    await assert.rejects(readImageHead(headFile, { layout: [...LAION_AESTHETIC_LAYOUT, 'dropout', 'linear'] }), /lacks layers\.9\.weight, the parameters of Linear 9/);
  });
});
