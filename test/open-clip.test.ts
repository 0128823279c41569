/**
 * open_clip checkpoints through the converter: the layouts open_clip and HPSv2 publish
 * (../shared/reference/open_clip), a .bin and an fp16 DDP-prefixed .pt re-saved from them by PyTorch,
 * and a held-out QuickGELU checkpoint made here by PyTorch, each against outputs computed without
 * pickscore; then the configs and checkpoints the converter must refuse, each with the field named.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { copyFile, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { ModelError, UsageError } from '../src/errors.js';
import { convertCheckpoint } from '../src/convert/convert.js';
import { readModelManifest, type ModelManifest } from '../src/model-format.js';
import { openSafetensorsFile } from '../src/convert/safetensors.js';
import { openEncoders } from '../src/encoder/session.js';
import { parseOpenClipConfigFile, namedOpenClipModel, OPEN_CLIP_ARCHITECTURES } from '../src/convert/open-clip-config.js';
import { relativeError } from '../src/score/agreement.js';
import { writeSafetensors, type RawTensor } from './helpers/checkpoint-writers.js';
import { referenceDir, skipWithoutReference } from './helpers/paths.js';
import { runCli } from './helpers/pipe-cli.js';
import { resaveCheckpoint, torchAvailable, torchOpenClipForward, writeRandomCheckpoint } from './helpers/open-clip-torch.js';

const TOLERANCE = 1e-4;
const openClipDir = path.join(referenceDir, 'open_clip');
const fixtureDir = path.join(openClipDir, 'tiny-openclip');
const hpsFile = path.join(openClipDir, 'tiny-hpsv2', 'tiny_hps.pt');
const tokenizerDir = path.join(referenceDir, 'clip-tokenizer');
const skipWithoutTorch = skipWithoutReference || (torchAvailable() ? false : 'python3-torch is not installed');

interface Expected {
  prompts: { input_ids: number[]; text_embeds: number[] }[];
  images: { file: string; image_embeds: number[] }[];
  hps_scores: { values: number[][] };
}

let scratch: string;
let expected: Expected;
before(async () => {
  scratch = await mkdtemp(path.join(os.tmpdir(), 'pickscore-open-clip-'));
  if (!skipWithoutReference) expected = JSON.parse(await readFile(path.join(openClipDir, 'expected.json'), 'utf8')) as Expected;
});
after(async () => rm(scratch, { recursive: true, force: true }));

async function folderWith(name: string, files: Record<string, string>): Promise<string> {
  const dir = path.join(scratch, name);
  await mkdir(dir, { recursive: true });
  for (const [target, from] of Object.entries(files)) await copyFile(from, path.join(dir, target));
  return dir;
}

const fixtureConfig = () => path.join(fixtureDir, 'open_clip_config.json');

async function encode(dir: string, manifest: ModelManifest): Promise<{ text: Float32Array; images: Float32Array }> {
  const sessions = await openEncoders(dir, manifest, { device: { kind: 'cpu' }, threads: 1 });
  try {
    const ids = BigInt64Array.from(expected.prompts.flatMap((p) => p.input_ids.map((id) => BigInt(id))));
    const pixels = new Float32Array(expected.images.length * 3 * 224 * 224);
    for (const [i, image] of expected.images.entries()) {
      const bytes = await readFile(path.join(referenceDir, image.file));
      pixels.set(new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4), i * 3 * 224 * 224);
    }
    return { text: await sessions.encodeText(ids, expected.prompts.length), images: await sessions.encodeImages(pixels, expected.images.length) };
  } finally {
    await sessions.close();
  }
}

async function convert(src: string, label: string, extra: { openClipArchitecture?: string } = {}): Promise<{ dir: string; manifest: ModelManifest }> {
  const dir = path.join(scratch, 'out', label);
  const manifest = await convertCheckpoint(src, { outDir: dir, precision: 'fp32', tokenizerDir, ...extra });
  return { dir, manifest };
}

function cosines(text: Float32Array, images: Float32Array, dim: number): number[][] {
  const norm = (v: Float32Array, row: number) => Math.hypot(...v.subarray(row * dim, (row + 1) * dim));
  return Array.from({ length: text.length / dim }, (_, p) => Array.from({ length: images.length / dim }, (_, i) => {
    let dot = 0;
    for (let k = 0; k < dim; k++) dot += text[p * dim + k] * images[i * dim + k];
    return dot / (norm(text, p) * norm(images, i));
  }));
}

describe('open_clip layouts convert and match open_clip', { skip: skipWithoutReference }, () => {
  for (const [label, files] of [
    ['open_clip_model.safetensors', () => ({ 'open_clip_model.safetensors': path.join(fixtureDir, 'open_clip_model.safetensors'), 'open_clip_config.json': fixtureConfig() })],
    ["HPSv2's .pt {'state_dict'}", () => ({ 'tiny_hps.pt': hpsFile, 'open_clip_config.json': fixtureConfig() })],
  ] as const) {
    test(`${label}: embeddings within ${TOLERANCE} relative of expected.json, cosines as HPSv2 computes them`, async (t) => {
      const src = await folderWith(label.replace(/\W+/g, '-'), files());
      const { dir, manifest } = await convert(src, label.replace(/\W+/g, '-'));
      const out = await encode(dir, manifest);
      const textError = relativeError(out.text, expected.prompts.flatMap((p) => p.text_embeds));
      const imageError = relativeError(out.images, expected.images.flatMap((im) => im.image_embeds));
      const scores = cosines(out.text, out.images, 16);
      const scoreError = Math.max(...scores.flatMap((row, p) => row.map((s, i) => Math.abs(s - expected.hps_scores.values[p][i]))));
      t.diagnostic(`text ${textError.toExponential(2)}, image ${imageError.toExponential(2)}, cosine max abs ${scoreError.toExponential(2)}`);
      assert.ok(textError < TOLERANCE, `text ${textError}`);
      assert.ok(imageError < TOLERANCE, `image ${imageError}`);
      assert.ok(scoreError < TOLERANCE, `cosine ${scoreError}`);
      assert.ok(Math.abs(manifest.logitScale - 100) < 1e-3, `logit scale ${manifest.logitScale}`);
      assert.deepEqual(manifest.source.files.map((f) => f.name).sort(), Object.keys(files()).sort());
      assert.deepEqual(manifest.preprocess.mean, [0.48145466, 0.4578275, 0.40821073]);
      assert.deepEqual((await readModelManifest(dir)).text, { file: 'text.onnx', contextLength: 77, embedDim: 16 });
    });
  }

  test('the PyTorch forward the held-out tests trust reproduces expected.json', { skip: skipWithoutTorch }, () => {
    const cfg = parseRaw(fixtureConfig()).model_cfg as object;
    const ref = torchOpenClipForward(hpsFile, cfg, expected.prompts.map((p) => p.input_ids), expected.images.map((im) => path.join(referenceDir, im.file)));
    assert.ok(relativeError(ref.text, expected.prompts.flatMap((p) => p.text_embeds)) < 1e-5);
    assert.ok(relativeError(ref.image, expected.images.flatMap((im) => im.image_embeds)) < 1e-5);
  });

  for (const [label, opts] of [
    ['open_clip_pytorch_model.bin re-saved by torch.save', { layout: 'bin', name: 'open_clip_pytorch_model.bin' }],
    ["an fp16 .pt with DDP's module. prefix (HPSv2.1's compressed release)", { layout: 'pt', name: 'HPS_v2.1_compressed.pt', dtype: 'float16', ddp: true }],
  ] as const) {
    test(`${label}: embeddings within ${TOLERANCE} of open_clip's forward in PyTorch`, { skip: skipWithoutTorch }, async (t) => {
      const src = path.join(scratch, label.replace(/\W+/g, '-'));
      await mkdir(src, { recursive: true });
      await copyFile(fixtureConfig(), path.join(src, 'open_clip_config.json'));
      const weights = path.join(src, opts.name);
      resaveCheckpoint(path.join(fixtureDir, 'open_clip_model.safetensors'), weights, { layout: opts.layout, dtype: 'dtype' in opts ? opts.dtype : undefined, ddp: 'ddp' in opts ? opts.ddp : undefined });
      const { dir, manifest } = await convert(src, label.replace(/\W+/g, '-'));
      const out = await encode(dir, manifest);
      const cfg = parseRaw(fixtureConfig()).model_cfg as object;
      const ref = torchOpenClipForward(weights, cfg, expected.prompts.map((p) => p.input_ids), expected.images.map((im) => path.join(referenceDir, im.file)));
      const textError = relativeError(out.text, ref.text);
      const imageError = relativeError(out.images, ref.image);
      t.diagnostic(`text ${textError.toExponential(2)}, image ${imageError.toExponential(2)}`);
      assert.ok(textError < TOLERANCE && imageError < TOLERANCE, `text ${textError}, image ${imageError}`);
      if ('dtype' in opts) {
        // The fp16 weights are not the fp32 ones: the reference moved, and the conversion followed it.
        assert.ok(relativeError(ref.text, expected.prompts.flatMap((p) => p.text_embeds)) > 1e-5);
      }
    });
  }
});

function parseRaw(file: string): Record<string, unknown> {
  return JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>;
}

/** Not in ../shared: QuickGELU, a 32-pixel patch, head width 10, MLP ratios 3 and 2.5, three text layers. */
const HELD_OUT_CFG = {
  embed_dim: 12,
  quick_gelu: true,
  vision_cfg: { image_size: 224, layers: 2, width: 40, head_width: 10, mlp_ratio: 3.0, patch_size: 32 },
  text_cfg: { context_length: 77, vocab_size: 49408, width: 24, heads: 3, layers: 3, mlp_ratio: 2.5 },
};

describe('a held-out open_clip checkpoint with QuickGELU', { skip: skipWithoutTorch }, () => {
  test('`model convert <folder> --out <dir> --tokenizer <dir>` converts it, and its encoders match PyTorch', async (t) => {
    const src = path.join(scratch, 'held-out');
    await mkdir(src, { recursive: true });
    await writeFile(path.join(src, 'open_clip_config.json'), JSON.stringify({ model_cfg: HELD_OUT_CFG, preprocess_cfg: { mean: [0.5, 0.5, 0.5], std: [0.5, 0.5, 0.5] } }));
    const weights = path.join(src, 'open_clip_pytorch_model.bin');
    writeRandomCheckpoint(HELD_OUT_CFG, weights, { seed: 7, layout: 'bin' });
    const out = path.join(scratch, 'held-out-model');
    const run = await runCli(['model', 'convert', src, '--out', out, '--tokenizer', tokenizerDir]);
    assert.equal(run.code, 0, run.stderr);
    const manifest = await readModelManifest(out);
    assert.equal(manifest.text.embedDim, 12);
    assert.deepEqual(manifest.preprocess.mean, [0.5, 0.5, 0.5]);
    const encoded = await encode(out, manifest);
    const pixelFiles = expected.images.map((im) => path.join(referenceDir, im.file));
    const ids = expected.prompts.map((p) => p.input_ids);
    const ref = torchOpenClipForward(weights, HELD_OUT_CFG, ids, pixelFiles);
    const textError = relativeError(encoded.text, ref.text);
    const imageError = relativeError(encoded.images, ref.image);
    t.diagnostic(`text ${textError.toExponential(2)}, image ${imageError.toExponential(2)}`);
    assert.ok(textError < TOLERANCE && imageError < TOLERANCE, `text ${textError}, image ${imageError}`);
    // QuickGELU is what makes it match: the same weights with exact GELU are far away.
    const gelu = torchOpenClipForward(weights, { ...HELD_OUT_CFG, quick_gelu: false }, ids, pixelFiles);
    assert.ok(relativeError(encoded.text, gelu.text) > 1e-3 && relativeError(encoded.images, gelu.image) > 1e-3);
    // open_clip pools at argmax(input_ids) even where no end-of-text id is present (transformers' rule would take position 0).
    const noEot = [320, 5000, 1125, ...new Array<number>(74).fill(0)];
    const sessions = await openEncoders(out, manifest, { device: { kind: 'cpu' }, threads: 1 });
    try {
      const pooled = await sessions.encodeText(BigInt64Array.from(noEot.map(BigInt)), 1);
      const reference = torchOpenClipForward(weights, HELD_OUT_CFG, [noEot], [pixelFiles[0]]);
      assert.ok(relativeError(pooled, reference.text) < TOLERANCE, `argmax pooling: ${relativeError(pooled, reference.text)}`);
    } finally {
      await sessions.close();
    }
  });
});

describe('open_clip configs and checkpoints the converter refuses', { skip: skipWithoutReference }, () => {
  const modelCfg = () => JSON.parse(JSON.stringify(parseRaw(fixtureConfig()).model_cfg)) as Record<string, Record<string, unknown>>;

  async function withConfig(label: string, edit: (cfg: Record<string, Record<string, unknown>>) => void, preprocess?: object): Promise<string> {
    const dir = await folderWith(`cfg-${label}`, { 'open_clip_model.safetensors': path.join(fixtureDir, 'open_clip_model.safetensors') });
    const cfg = modelCfg();
    edit(cfg);
    await writeFile(path.join(dir, 'open_clip_config.json'), JSON.stringify({ model_cfg: cfg, ...(preprocess ? { preprocess_cfg: preprocess } : {}) }));
    return dir;
  }

  const refusals: [string, (cfg: Record<string, Record<string, unknown>>) => void, RegExp, object?][] = [
    ['layer scale', (c) => { c.vision_cfg.ls_init_value = 1e-5; }, /model_cfg\.vision_cfg\.ls_init_value is 0\.00001, which pickscore does not implement/],
    ['attentional pooling', (c) => { c.vision_cfg.attentional_pool = true; }, /model_cfg\.vision_cfg\.attentional_pool is true/],
    ['text pooling', (c) => { c.text_cfg.pool_type = 'last'; }, /model_cfg\.text_cfg\.pool_type is "last".*pool_type is "argmax"/],
    ['SigLIP logit bias', (c) => { (c as Record<string, unknown>).init_logit_bias = -10; }, /model_cfg\.init_logit_bias is -10/],
    ['custom text tower', (c) => { (c as Record<string, unknown>).custom_text = true; }, /model_cfg\.custom_text is true/],
    ['timm tower', (c) => { c.vision_cfg.timm_model_name = 'vit_base_patch16_224'; }, /model_cfg\.vision_cfg\.timm_model_name is "vit_base_patch16_224"/],
    ['Hugging Face text tower', (c) => { c.text_cfg.hf_model_name = 'xlm-roberta-base'; }, /model_cfg\.text_cfg\.hf_model_name/],
    ['no causal mask', (c) => { c.text_cfg.no_causal_mask = true; }, /model_cfg\.text_cfg\.no_causal_mask is true/],
    ['SigLIP tokenizer', (c) => { c.text_cfg.tokenizer_kwargs = { clean: 'canonicalize' }; }, /model_cfg\.text_cfg\.tokenizer_kwargs/],
    ['an unknown setting', (c) => { c.vision_cfg.rotary = true; }, /model_cfg\.vision_cfg\.rotary is an open_clip setting pickscore does not know/],
    ['a ResNet image tower', (c) => { c.vision_cfg.layers = [3, 4, 6, 3]; }, /model_cfg\.vision_cfg\.layers is a list, which makes a ModifiedResNet/],
    ['a non-square image', (c) => { c.vision_cfg.image_size = [224, 256]; }, /model_cfg\.vision_cfg\.image_size/],
    ['a text width the tensors disagree with', (c) => { c.text_cfg.width = 48; }, /text_cfg\.width disagrees with tensor token_embedding\.weight .*\[49408, 48\].*\[49408, 32\]/],
    ['one vision layer too few', (c) => { c.vision_cfg.layers = 1; }, /holds tensor visual\.transformer\.resblocks\.1\..* vision_cfg\.layers 1/],
    ['a squashing resize', () => {}, /preprocess_cfg\.resize_mode is "squash"/, { resize_mode: 'squash' }],
    ['another interpolation', () => {}, /preprocess_cfg\.interpolation is "bilinear"/, { interpolation: 'bilinear' }],
  ];
  for (const [label, edit, message, preprocess] of refusals) {
    test(`${label}: a ModelError naming the field`, async () => {
      const src = await withConfig(label.replace(/\W+/g, '-'), edit, preprocess);
      await assert.rejects(convert(src, `refused-${label.replace(/\W+/g, '-')}`), (err: unknown) => {
        assert.ok(err instanceof ModelError, String(err));
        assert.match(err.message, message);
        return true;
      });
    });
  }

  async function safetensorsVariant(label: string, edit: (tensors: RawTensor[]) => RawTensor[]): Promise<string> {
    const opened = await openSafetensorsFile(path.join(fixtureDir, 'open_clip_model.safetensors'));
    const tensors: RawTensor[] = [];
    try {
      for (const t of opened.tensors) tensors.push({ name: t.name, dtype: t.dtype, shape: t.shape, data: await t.read() });
    } finally {
      await opened.file.close();
    }
    const dir = await folderWith(`st-${label}`, { 'open_clip_config.json': fixtureConfig() });
    await writeSafetensors(path.join(dir, 'open_clip_model.safetensors'), edit(tensors));
    return dir;
  }

  const tensorRefusals: [string, (tensors: RawTensor[]) => RawTensor[], RegExp][] = [
    ['an extra logit_bias (SigLIP)', (ts) => [...ts, { name: 'logit_bias', dtype: 'F32', shape: [], data: Buffer.alloc(4) }], /holds tensor logit_bias, which the classic open_clip CLIP layout/],
    ['a missing visual.proj', (ts) => ts.filter((t) => t.name !== 'visual.proj'), /Tensor visual\.proj is missing from .*open_clip_model\.safetensors/],
    ['a module. prefix on all but one key', (ts) => ts.map((t) => (t.name === 'ln_final.bias' ? t : { ...t, name: `module.${t.name}` })),
      /tensor ln_final\.bias lacks the "module\." prefix/],
    ['an integer weight', (ts) => ts.map((t) => (t.name === 'visual.proj' ? { ...t, dtype: 'I32' as const } : t)), /tensor visual\.proj has dtype I32/],
  ];
  for (const [label, edit, message] of tensorRefusals) {
    test(`${label}: a ModelError naming the tensor`, async () => {
      const src = await safetensorsVariant(label.replace(/\W+/g, '-'), edit);
      await assert.rejects(convert(src, `refused-st-${label.replace(/\W+/g, '-')}`), (err: unknown) => {
        assert.ok(err instanceof ModelError, String(err));
        assert.match(err.message, message);
        return true;
      });
    });
  }

  test('a module. prefix on every key is removed, as open_clip does', async () => {
    const src = await safetensorsVariant('ddp', (ts) => ts.map((t) => ({ ...t, name: `module.${t.name}` })));
    const { manifest } = await convert(src, 'ddp');
    assert.equal(manifest.text.embedDim, 16);
  });

  test('open_clip weights without a config: an error that says to name the architecture', async () => {
    const src = await folderWith('no-config', { 'tiny_hps.pt': hpsFile });
    await assert.rejects(convert(src, 'no-config'), /holds open_clip weights \(tiny_hps\.pt\) but no open_clip_config\.json; name the architecture .*ViT-H-14.*--open-clip-model/);
  });

  test('a named architecture is checked against the tensors, in open_clip names', async () => {
    const src = await folderWith('named', { 'tiny_hps.pt': hpsFile });
    await assert.rejects(convert(src, 'named', { openClipArchitecture: 'ViT-B-32' }),
      /open_clip architecture ViT-B-32: text_cfg\.width disagrees with tensor token_embedding\.weight .*\[49408, 512\] but the tensor has \[49408, 32\]/);
  });

  test('a named architecture beside a config that describes another model', async () => {
    const src = await folderWith('named-and-config', { 'tiny_hps.pt': hpsFile, 'open_clip_config.json': fixtureConfig() });
    await assert.rejects(convert(src, 'named-and-config', { openClipArchitecture: 'ViT-H-14' }), /describes another model than the open_clip architecture ViT-H-14: projectionDim \(16 in the file, 1024 in ViT-H-14\)/);
  });

  test('an unknown architecture name is a usage error, before any file is read', async () => {
    await assert.rejects(convertCheckpoint(path.join(scratch, 'nowhere'), { outDir: path.join(scratch, 'x'), precision: 'fp32', openClipArchitecture: 'ViT-Z-99' }),
      (err: unknown) => err instanceof UsageError && /ViT-H-14 \| ViT-L-14 \| ViT-B-32/.test(err.message));
  });

  test('two .pt checkpoints in one folder: refused, naming both', async () => {
    const src = await folderWith('two-pt', { 'a.pt': hpsFile, 'b.pt': hpsFile, 'open_clip_config.json': fixtureConfig() });
    await assert.rejects(convert(src, 'two-pt'), /holds 2 \.pt checkpoints \(a\.pt, b\.pt\)/);
  });

  test('a Hugging Face folder with a stray .pt beside it is still read as Hugging Face CLIP', async () => {
    const src = await folderWith('hf-with-pt', {
      'config.json': path.join(referenceDir, 'tiny-clip', 'config.json'),
      'model.safetensors': path.join(referenceDir, 'tiny-clip', 'model.safetensors'),
      'a.pt': hpsFile, 'b.pt': hpsFile,
    });
    const { manifest } = await convert(src, 'hf-with-pt');
    assert.deepEqual(manifest.source.files.map((f) => f.name), ['config.json', 'model.safetensors']);
  });
});

describe('open_clip named architectures', () => {
  test('the dimensions open_clip\'s model_configs give', () => {
    const h = namedOpenClipModel('ViT-H-14').config;
    assert.deepEqual([h.projectionDim, h.vision.hiddenSize, h.vision.numHeads, h.vision.numLayers, h.vision.intermediateSize, h.vision.patchSize], [1024, 1280, 16, 32, 5120, 14]);
    assert.deepEqual([h.text.hiddenSize, h.text.numHeads, h.text.numLayers, h.text.intermediateSize, h.text.hiddenAct, h.text.pooling], [1024, 16, 24, 4096, 'gelu', 'argmax']);
    const l = namedOpenClipModel('ViT-L-14').config;
    assert.deepEqual([l.projectionDim, l.vision.hiddenSize, l.vision.numHeads, l.text.hiddenSize, l.text.numHeads, l.text.numLayers], [768, 1024, 16, 768, 12, 12]);
    const b = namedOpenClipModel('ViT-B-32-quickgelu').config;
    assert.deepEqual([b.projectionDim, b.vision.hiddenSize, b.vision.numHeads, b.vision.patchSize, b.vision.hiddenAct, b.text.hiddenAct], [512, 768, 12, 32, 'quick_gelu', 'quick_gelu']);
    assert.ok(Object.keys(OPEN_CLIP_ARCHITECTURES).includes('ViT-H-14'));
  });

  test('quick_gelu switches both towers; settings that do not change inference are accepted', () => {
    const { config } = parseOpenClipConfigFile({
      model_cfg: { ...HELD_OUT_CFG, vision_cfg: { ...HELD_OUT_CFG.vision_cfg, patch_dropout: 0.5, timm_pool: 'avg' }, text_cfg: { ...HELD_OUT_CFG.text_cfg, pad_id: 0 } },
    }, 'x.json');
    assert.equal(config.vision.hiddenAct, 'quick_gelu');
    assert.equal(config.text.hiddenAct, 'quick_gelu');
    assert.equal(config.vision.intermediateSize, 120);
    assert.equal(config.text.intermediateSize, 60);
  });
});
