import assert from 'node:assert/strict';
import path from 'node:path';
import { describe, test } from 'node:test';
import { ModelError } from '../src/errors.js';
import { openCheckpoint, type Checkpoint, type TensorEntry } from '../src/convert/checkpoint.js';
import { expectedClipTensors, parseClipConfig, readClipConfig, validateClipCheckpoint, type ClipConfig } from '../src/convert/clip-config.js';
import { referenceDir, skipWithoutReference } from './helpers/paths.js';

const TINY_TEXT = { hidden_size: 32, intermediate_size: 64, num_attention_heads: 4, num_hidden_layers: 2, hidden_act: 'gelu' };
const TINY_VISION = { hidden_size: 48, intermediate_size: 96, num_attention_heads: 4, num_hidden_layers: 2, hidden_act: 'gelu', patch_size: 14 };

function parse(json: unknown): ClipConfig {
  return parseClipConfig(json, 'config.json');
}

/** A checkpoint with the given shapes and no data, for shape validation. */
function shapesOnly(shapes: Map<string, number[]>): Checkpoint {
  const tensors = new Map<string, TensorEntry>();
  for (const [name, shape] of shapes) {
    tensors.set(name, { name, dtype: 'F32', shape, byteLength: shape.reduce((n, d) => n * d, 4), file: 'model.safetensors', read: () => Promise.reject(new Error('not read')) });
  }
  return { format: 'safetensors', files: ['model.safetensors'], tensors, close: async () => {} };
}

function shapesFor(config: ClipConfig): Map<string, number[]> {
  return new Map(expectedClipTensors(config).map((t) => [t.name, t.dims.map((d) => d.size)]));
}

function modelError(pattern: RegExp) {
  return (err: unknown): boolean => {
    assert.ok(err instanceof ModelError, `expected a ModelError, got ${String(err)}`);
    assert.match(err.message, pattern);
    return true;
  };
}

describe('reading config.json', () => {
  test('missing keys take the defaults of transformers CLIPTextConfig / CLIPVisionConfig / CLIPConfig', () => {
    const config = parse({ model_type: 'clip' });
    assert.deepEqual(config, {
      projectionDim: 512,
      logitScaleInit: 2.6592,
      text: {
        hiddenSize: 512, intermediateSize: 2048, numLayers: 12, numHeads: 8, layerNormEps: 1e-5, hiddenAct: 'quick_gelu',
        vocabSize: 49408, maxPositionEmbeddings: 77, eosTokenId: 49407, bosTokenId: 49406, padTokenId: 1,
      },
      vision: {
        hiddenSize: 768, intermediateSize: 3072, numLayers: 12, numHeads: 12, layerNormEps: 1e-5, hiddenAct: 'quick_gelu',
        imageSize: 224, patchSize: 32, numChannels: 3,
      },
    });
  });

  test('*_config_dict builds a full sub-config, defaults included, whose keys replace those of *_config', () => {
    const config = parse({
      model_type: 'clip',
      text_config: { hidden_size: 512, layer_norm_eps: 1e-6, eos_token_id: 2, hidden_act: 'quick_gelu' },
      text_config_dict: { hidden_size: 64, num_attention_heads: 4, hidden_act: 'gelu' },
      vision_config: { patch_size: 32, image_size: 336 },
      vision_config_dict: { patch_size: 14 },
    });
    assert.equal(config.text.hiddenSize, 64);
    assert.equal(config.text.hiddenAct, 'gelu');
    // Not in text_config_dict, so CLIPTextConfig's defaults replace text_config's values.
    assert.equal(config.text.layerNormEps, 1e-5);
    assert.equal(config.text.eosTokenId, 49407);
    assert.equal(config.vision.patchSize, 14);
    assert.equal(config.vision.imageSize, 224);
  });

  test('without *_config_dict, *_config values stand', () => {
    const config = parse({ model_type: 'clip', text_config: { layer_norm_eps: 1e-6, eos_token_id: 2 }, projection_dim: 1024, logit_scale_init_value: 4.6 });
    assert.deepEqual([config.text.layerNormEps, config.text.eosTokenId, config.projectionDim, config.logitScaleInit], [1e-6, 2, 1024, 4.6]);
  });

  test('an unsupported activation names the field', () => {
    assert.throws(
      () => parse({ model_type: 'clip', vision_config: { hidden_act: 'relu' } }),
      modelError(/config\.json: Expected one of gelu, quick_gelu, gelu_new, gelu_pytorch_tanh for vision_config\.hidden_act but received "relu"; that activation is not supported/),
    );
  });

  test('an unsupported architecture is refused', () => {
    assert.throws(() => parse({ model_type: 'siglip', architectures: ['SiglipModel'] }), modelError(/unsupported architecture \(model_type "siglip", architectures \["SiglipModel"\]\)/));
    assert.equal(parse({ architectures: ['CLIPModel'] }).projectionDim, 512);
  });

  test('heads must divide the width', () => {
    assert.throws(() => parse({ model_type: 'clip', text_config: { hidden_size: 30, num_attention_heads: 4 } }), modelError(/text_config\.hidden_size \(30\) is not divisible by text_config\.num_attention_heads \(4\)/));
  });

  test('a field of the wrong type is named with what was expected', () => {
    assert.throws(() => parse({ model_type: 'clip', text_config: { hidden_size: '32' } }), modelError(/Expected a positive integer for text_config\.hidden_size but received "32"/));
    assert.throws(() => parse({ model_type: 'clip', text_config: [] }), modelError(/Expected an object for text_config but received array of length 0/));
  });

  test('a missing or malformed file is a ModelError naming it', async () => {
    await assert.rejects(readClipConfig('/nonexistent-pickscore-dir'), modelError(/Cannot read \/nonexistent-pickscore-dir\/config\.json/));
  });
});

describe('reference configs', { skip: skipWithoutReference }, () => {
  test('tiny-clip and tiny-clip-legacy describe the same model', async () => {
    const tiny = await readClipConfig(path.join(referenceDir, 'tiny-clip'));
    const legacy = await readClipConfig(path.join(referenceDir, 'tiny-clip-legacy'));
    assert.deepEqual(tiny.text, { ...TINY_TEXT_EXPECTED, eosTokenId: 2 });
    // The legacy dict leaves the token ids to CLIPTextConfig's defaults, as transformers does.
    assert.deepEqual(legacy.text, { ...TINY_TEXT_EXPECTED, eosTokenId: 49407 });
    assert.deepEqual(legacy.vision, tiny.vision);
    assert.deepEqual([tiny.projectionDim, legacy.projectionDim], [16, 16]);
    assert.deepEqual([tiny.logitScaleInit, legacy.logitScaleInit], [4.605170185988092, 2.6592]);
  });

  test('the reference checkpoints agree with their configs', async () => {
    for (const name of ['tiny-clip', 'tiny-clip-legacy']) {
      const dir = path.join(referenceDir, name);
      const checkpoint = await openCheckpoint(dir);
      try {
        validateClipCheckpoint(await readClipConfig(dir), checkpoint, path.join(dir, 'config.json'));
      } finally {
        await checkpoint.close();
      }
    }
  });

  test('a config that disagrees with the tensors names the field, the tensor and both shapes', async () => {
    const dir = path.join(referenceDir, 'tiny-clip');
    const config = parse({ model_type: 'clip', projection_dim: 16, text_config: { ...TINY_TEXT, intermediate_size: 65 }, vision_config: TINY_VISION });
    const checkpoint = await openCheckpoint(dir);
    try {
      assert.throws(
        () => validateClipCheckpoint(config, checkpoint, 'config.json'),
        modelError(/^config\.json: text_config\.intermediate_size disagrees with tensor text_model\.encoder\.layers\.0\.mlp\.fc1\.weight in .*model\.safetensors: the config implies shape \[65, 32\] but the tensor has \[64, 32\]$/),
      );
    } finally {
      await checkpoint.close();
    }
  });
});

const TINY_TEXT_EXPECTED = {
  hiddenSize: 32, intermediateSize: 64, numLayers: 2, numHeads: 4, layerNormEps: 1e-5, hiddenAct: 'gelu',
  vocabSize: 49408, maxPositionEmbeddings: 77, bosTokenId: 49406, padTokenId: 1,
};

describe('checking a config against tensor shapes', () => {
  const config = parse({ model_type: 'clip', projection_dim: 16, text_config: TINY_TEXT, vision_config: TINY_VISION });

  test('the expected tensors cover both towers, projections and logit_scale', () => {
    const shapes = shapesFor(config);
    assert.equal(shapes.size, 78);
    assert.deepEqual(shapes.get('vision_model.embeddings.position_embedding.weight'), [257, 48]);
    assert.deepEqual(shapes.get('vision_model.embeddings.patch_embedding.weight'), [48, 3, 14, 14]);
    assert.deepEqual(shapes.get('text_projection.weight'), [16, 32]);
    validateClipCheckpoint(config, shapesOnly(shapes), 'config.json');
  });

  test('a missing tensor is named', () => {
    const shapes = shapesFor(config);
    shapes.delete('visual_projection.weight');
    assert.throws(() => validateClipCheckpoint(config, shapesOnly(shapes), 'config.json'), modelError(/^Tensor visual_projection\.weight is missing from model\.safetensors/));
  });

  test('the projection width is checked against projection_dim', () => {
    const shapes = shapesFor(config);
    shapes.set('visual_projection.weight', [32, 48]);
    assert.throws(() => validateClipCheckpoint(config, shapesOnly(shapes), 'config.json'), modelError(/projection_dim disagrees with tensor visual_projection\.weight .*\[16, 48\] but the tensor has \[32, 48\]/));
  });

  test('positions are checked against image_size / patch_size', () => {
    const shapes = shapesFor(config);
    shapes.set('vision_model.embeddings.position_embedding.weight', [50, 48]);
    assert.throws(() => validateClipCheckpoint(config, shapesOnly(shapes), 'config.json'), modelError(/vision_config\.image_size \/ patch_size disagrees/));
  });

  test('more encoder layers than num_hidden_layers is a mismatch', () => {
    const shapes = shapesFor(parse({ model_type: 'clip', projection_dim: 16, text_config: { ...TINY_TEXT, num_hidden_layers: 3 }, vision_config: TINY_VISION }));
    assert.throws(() => validateClipCheckpoint(config, shapesOnly(shapes), 'config.json'), modelError(/text_config\.num_hidden_layers is 2 but model\.safetensors holds more text_model encoder layers/));
  });

  test('a logit_scale saved with shape [1] is accepted', () => {
    const shapes = shapesFor(config);
    shapes.set('logit_scale', [1]);
    validateClipCheckpoint(config, shapesOnly(shapes), 'config.json');
    shapes.set('logit_scale', [2]);
    assert.throws(() => validateClipCheckpoint(config, shapesOnly(shapes), 'config.json'), modelError(/logit_scale/));
  });

  test('an image size that patches do not tile is refused', () => {
    const odd = parse({ model_type: 'clip', vision_config: { image_size: 225, patch_size: 14 } });
    assert.throws(() => validateClipCheckpoint(odd, shapesOnly(new Map()), 'config.json'), modelError(/image_size \(225\) is not a multiple of vision_config\.patch_size \(14\)/));
  });
});
