/**
 * CLIP `config.json`, read as transformers' `CLIPConfig` reads it, and checked against the tensors.
 *
 * Missing keys take the defaults of transformers' `CLIPTextConfig` / `CLIPVisionConfig`. Checkpoints
 * saved in 2022-2023 (PickScore v1 among them) also carry `text_config_dict` / `vision_config_dict`;
 * transformers builds a full sub-config from such a dict, defaults included, and lets every one of its
 * keys replace the key of `text_config` / `vision_config`. The same rule is applied here.
 */

import path from 'node:path';
import { ModelError, expectedMessage } from '../errors.js';
import type { Checkpoint } from './checkpoint.js';
import { elementCount } from './tensor-file.js';
import { readJsonFile } from '../io/json-file.js';
import { READ_LIMITS } from '../io/regular-file.js';

export interface ClipTowerConfig {
  hiddenSize: number;
  intermediateSize: number;
  numLayers: number;
  numHeads: number;
  layerNormEps: number;
  hiddenAct: 'gelu' | 'quick_gelu' | 'gelu_new' | 'gelu_pytorch_tanh';
}

export interface ClipConfig {
  projectionDim: number;
  logitScaleInit: number;
  text: ClipTowerConfig & {
    vocabSize: number; maxPositionEmbeddings: number; eosTokenId: number; bosTokenId: number; padTokenId: number;
    /** 'argmax': pool at argmax(input_ids) whatever eos_token_id is (open_clip). Absent: transformers' rule, from eos_token_id. */
    pooling?: 'argmax';
  };
  vision: ClipTowerConfig & { imageSize: number; patchSize: number; numChannels: number };
}

type Json = Record<string, unknown>;

/** transformers' CLIPTextConfig.__init__ defaults. */
const TEXT_DEFAULTS: Json = {
  vocab_size: 49408, hidden_size: 512, intermediate_size: 2048, num_hidden_layers: 12, num_attention_heads: 8,
  max_position_embeddings: 77, hidden_act: 'quick_gelu', layer_norm_eps: 1e-5,
  pad_token_id: 1, bos_token_id: 49406, eos_token_id: 49407,
};

/** transformers' CLIPVisionConfig.__init__ defaults. */
const VISION_DEFAULTS: Json = {
  hidden_size: 768, intermediate_size: 3072, num_hidden_layers: 12, num_attention_heads: 12, num_channels: 3,
  image_size: 224, patch_size: 32, hidden_act: 'quick_gelu', layer_norm_eps: 1e-5,
};

/** transformers' CLIPConfig.__init__ defaults. */
const CLIP_DEFAULTS = { projection_dim: 512, logit_scale_init_value: 2.6592 };

const ACTIVATIONS: readonly ClipTowerConfig['hiddenAct'][] = ['gelu', 'quick_gelu', 'gelu_new', 'gelu_pytorch_tanh'];

export async function readClipConfig(dir: string): Promise<ClipConfig> {
  const file = path.join(path.resolve(dir), 'config.json');
  return parseClipConfig(await readJsonFile(file, { what: 'a config file', maxBytes: READ_LIMITS.config, error: ModelError }), file);
}

/** `file` names the source in error messages. */
export function parseClipConfig(json: unknown, file: string): ClipConfig {
  const root = asObject(json, 'the top level', file);
  checkArchitecture(root, file);
  const text = subConfig(root, 'text_config', TEXT_DEFAULTS, file);
  const vision = subConfig(root, 'vision_config', VISION_DEFAULTS, file);
  const read = reader(file);
  return {
    projectionDim: read.count(root, 'projection_dim', CLIP_DEFAULTS.projection_dim),
    logitScaleInit: read.number(root, 'logit_scale_init_value', CLIP_DEFAULTS.logit_scale_init_value),
    text: {
      ...towerConfig(text, 'text_config', read),
      vocabSize: read.count(text, 'vocab_size', undefined, 'text_config'),
      maxPositionEmbeddings: read.count(text, 'max_position_embeddings', undefined, 'text_config'),
      eosTokenId: read.integer(text, 'eos_token_id', 'text_config'),
      bosTokenId: read.integer(text, 'bos_token_id', 'text_config'),
      padTokenId: read.integer(text, 'pad_token_id', 'text_config'),
    },
    vision: {
      ...towerConfig(vision, 'vision_config', read),
      imageSize: read.count(vision, 'image_size', undefined, 'vision_config'),
      patchSize: read.count(vision, 'patch_size', undefined, 'vision_config'),
      numChannels: read.count(vision, 'num_channels', undefined, 'vision_config'),
    },
  };
}

function checkArchitecture(root: Json, file: string): void {
  const modelType = root.model_type;
  const architectures = Array.isArray(root.architectures) ? root.architectures : [];
  if (modelType === 'clip' || (modelType === undefined && architectures.includes('CLIPModel'))) return;
  throw new ModelError(
    `${file}: unsupported architecture (model_type ${JSON.stringify(modelType)}, architectures ${JSON.stringify(architectures)}); only CLIPModel checkpoints (model_type "clip") can be converted`,
  );
}

/** `text_config` with `text_config_dict` applied as transformers does, over the class defaults. */
function subConfig(root: Json, key: 'text_config' | 'vision_config', defaults: Json, file: string): Json {
  const base = { ...defaults, ...(root[key] === undefined || root[key] === null ? {} : asObject(root[key], key, file)) };
  const legacy = root[`${key}_dict`];
  if (legacy === undefined || legacy === null) return base;
  return { ...base, ...defaults, ...asObject(legacy, `${key}_dict`, file) };
}

function towerConfig(tower: Json, key: string, read: ReturnType<typeof reader>): ClipTowerConfig {
  const hiddenSize = read.count(tower, 'hidden_size', undefined, key);
  const numHeads = read.count(tower, 'num_attention_heads', undefined, key);
  if (hiddenSize % numHeads !== 0) {
    throw new ModelError(`${read.file}: ${key}.hidden_size (${hiddenSize}) is not divisible by ${key}.num_attention_heads (${numHeads})`);
  }
  const hiddenAct = tower.hidden_act;
  if (!ACTIVATIONS.includes(hiddenAct as ClipTowerConfig['hiddenAct'])) {
    throw new ModelError(`${read.file}: ${expectedMessage(`one of ${ACTIVATIONS.join(', ')}`, `${key}.hidden_act`, hiddenAct)}; that activation is not supported`);
  }
  return {
    hiddenSize,
    intermediateSize: read.count(tower, 'intermediate_size', undefined, key),
    numLayers: read.count(tower, 'num_hidden_layers', undefined, key),
    numHeads,
    layerNormEps: read.number(tower, 'layer_norm_eps', undefined, key),
    hiddenAct: hiddenAct as ClipTowerConfig['hiddenAct'],
  };
}

/** Field readers that name the file and the dotted field in their errors. */
function reader(file: string) {
  const field = (prefix: string | undefined, key: string): string => (prefix ? `${prefix}.${key}` : key);
  const fail = (expected: string, prefix: string | undefined, key: string, value: unknown): never => {
    throw new ModelError(`${file}: ${expectedMessage(expected, field(prefix, key), value)}`);
  };
  return {
    file,
    number(obj: Json, key: string, fallback?: number, prefix?: string): number {
      const value = obj[key] ?? fallback;
      return typeof value === 'number' && Number.isFinite(value) ? value : fail('a finite number', prefix, key, value);
    },
    count(obj: Json, key: string, fallback?: number, prefix?: string): number {
      const value = obj[key] ?? fallback;
      return Number.isSafeInteger(value) && (value as number) > 0 ? (value as number) : fail('a positive integer', prefix, key, value);
    },
    integer(obj: Json, key: string, prefix?: string): number {
      const value = obj[key];
      return Number.isSafeInteger(value) ? (value as number) : fail('an integer', prefix, key, value);
    },
  };
}

function asObject(value: unknown, subject: string, file: string): Json {
  if (typeof value === 'object' && value !== null && !Array.isArray(value)) return value as Json;
  throw new ModelError(`${file}: ${expectedMessage('an object', subject, value)}`);
}

/** One dimension of an expected tensor shape, with the config field it comes from. */
interface Dim {
  size: number;
  field: string;
}

export interface ExpectedTensor {
  name: string;
  dims: Dim[];
}

/** Every tensor a CLIPModel's towers and projections need, with the shape the config implies. */
export function expectedClipTensors(config: ClipConfig): ExpectedTensor[] {
  const t = config.text;
  const v = config.vision;
  const tH: Dim = { size: t.hiddenSize, field: 'text_config.hidden_size' };
  const vH: Dim = { size: v.hiddenSize, field: 'vision_config.hidden_size' };
  const proj: Dim = { size: config.projectionDim, field: 'projection_dim' };
  const patches = (v.imageSize / v.patchSize) ** 2;
  const patch: Dim = { size: v.patchSize, field: 'vision_config.patch_size' };
  return [
    { name: 'logit_scale', dims: [] },
    { name: 'text_model.embeddings.token_embedding.weight', dims: [{ size: t.vocabSize, field: 'text_config.vocab_size' }, tH] },
    { name: 'text_model.embeddings.position_embedding.weight', dims: [{ size: t.maxPositionEmbeddings, field: 'text_config.max_position_embeddings' }, tH] },
    ...encoderTensors('text_model', t.numLayers, tH, { size: t.intermediateSize, field: 'text_config.intermediate_size' }),
    ...layerNorm('text_model.final_layer_norm', tH),
    { name: 'text_projection.weight', dims: [proj, tH] },
    { name: 'vision_model.embeddings.class_embedding', dims: [vH] },
    { name: 'vision_model.embeddings.patch_embedding.weight', dims: [vH, { size: v.numChannels, field: 'vision_config.num_channels' }, patch, patch] },
    { name: 'vision_model.embeddings.position_embedding.weight', dims: [{ size: patches + 1, field: 'vision_config.image_size / patch_size' }, vH] },
    ...layerNorm('vision_model.pre_layrnorm', vH),
    ...encoderTensors('vision_model', v.numLayers, vH, { size: v.intermediateSize, field: 'vision_config.intermediate_size' }),
    ...layerNorm('vision_model.post_layernorm', vH),
    { name: 'visual_projection.weight', dims: [proj, vH] },
  ];
}

function encoderTensors(prefix: string, layers: number, hidden: Dim, intermediate: Dim): ExpectedTensor[] {
  const out: ExpectedTensor[] = [];
  for (let i = 0; i < layers; i++) {
    const layer = `${prefix}.encoder.layers.${i}`;
    for (const p of ['q_proj', 'k_proj', 'v_proj', 'out_proj']) out.push(...linear(`${layer}.self_attn.${p}`, hidden, hidden));
    out.push(...layerNorm(`${layer}.layer_norm1`, hidden));
    out.push(...linear(`${layer}.mlp.fc1`, intermediate, hidden));
    out.push(...linear(`${layer}.mlp.fc2`, hidden, intermediate));
    out.push(...layerNorm(`${layer}.layer_norm2`, hidden));
  }
  return out;
}

function linear(name: string, outDim: Dim, inDim: Dim): ExpectedTensor[] {
  return [{ name: `${name}.weight`, dims: [outDim, inDim] }, { name: `${name}.bias`, dims: [outDim] }];
}

function layerNorm(name: string, hidden: Dim): ExpectedTensor[] {
  return [{ name: `${name}.weight`, dims: [hidden] }, { name: `${name}.bias`, dims: [hidden] }];
}

/**
 * Checks that the checkpoint holds every tensor the config calls for, with matching shapes, and no
 * encoder layer beyond the configured count. `configFile` names the config in errors.
 */
export function validateClipCheckpoint(config: ClipConfig, checkpoint: Checkpoint, configFile: string): void {
  const source = checkpoint.files.join(', ');
  if (config.vision.imageSize % config.vision.patchSize !== 0) {
    throw new ModelError(`${configFile}: vision_config.image_size (${config.vision.imageSize}) is not a multiple of vision_config.patch_size (${config.vision.patchSize})`);
  }
  for (const expected of expectedClipTensors(config)) {
    const entry = checkpoint.tensors.get(expected.name);
    if (!entry) throw new ModelError(`Tensor ${expected.name} is missing from ${source}; ${configFile} describes a CLIP model that needs it`);
    const shape = expected.dims.map((d) => d.size);
    // logit_scale is a 0-d tensor in transformers; some exporters save it with shape [1].
    const scalarOk = expected.dims.length === 0 && elementCount(entry.shape) === 1;
    if (scalarOk) continue;
    const mismatch = expected.dims.findIndex((d, i) => entry.shape[i] !== d.size);
    if (mismatch >= 0 || entry.shape.length !== shape.length) {
      const field = expected.dims[mismatch]?.field ?? 'the tensor rank';
      throw new ModelError(
        `${configFile}: ${field} disagrees with tensor ${expected.name} in ${entry.file}: the config implies shape [${shape.join(', ')}] but the tensor has [${entry.shape.join(', ')}]`,
      );
    }
  }
  for (const [tower, key, layers] of [['text_model', 'text_config', config.text.numLayers], ['vision_model', 'vision_config', config.vision.numLayers]] as const) {
    if (checkpoint.tensors.has(`${tower}.encoder.layers.${layers}.layer_norm1.weight`)) {
      throw new ModelError(`${configFile}: ${key}.num_hidden_layers is ${layers} but ${source} holds more ${tower} encoder layers`);
    }
  }
}
