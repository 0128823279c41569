/**
 * open_clip's model configuration (`model_cfg` of `open_clip_config.json`, or the built-in config of a
 * named architecture such as `ViT-H-14`), read into the ClipConfig the graph builder takes.
 *
 * Only the classic CLIP layout is implemented: a ViT image tower pooled at the class token, a causal
 * text transformer pooled at argmax(input_ids), LayerNorm (eps 1e-5), GELU or QuickGELU, linear
 * projections without bias. open_clip has many switches beyond that (layer scale, attentional pooling,
 * timm or Hugging Face towers, other pooling, SigLIP's logit bias...). A config that sets one of them is
 * refused with the field named, since converting it as a classic CLIP would give wrong embeddings
 * silently. Fields that do not change inference (dropout rates, tokenizer settings used only in
 * training, options of towers the config does not select) are accepted and ignored.
 */
import { ModelError, expectedMessage } from '../errors.js';
import type { ClipConfig } from './clip-config.js';

type Json = Record<string, unknown>;

/** `open_clip_config.json`'s file name on the Hub (open_clip's `HF_CONFIG_NAME`). */
export const OPEN_CLIP_CONFIG_FILE = 'open_clip_config.json';

/** open_clip's `OPENAI_DATASET_MEAN` / `OPENAI_DATASET_STD`, the default of every classic CLIP config. */
export const OPENAI_MEAN: readonly [number, number, number] = [0.48145466, 0.4578275, 0.40821073];
export const OPENAI_STD: readonly [number, number, number] = [0.26862954, 0.26130258, 0.27577711];

/** open_clip's SimpleTokenizer ids: `<start_of_text>`, `<end_of_text>`, and the pad id 0. */
const SOT_ID = 49406;
const EOT_ID = 49407;
const OPEN_CLIP_PAD_ID = 0;
/** open_clip's `init_logit_scale` default, ln(1 / 0.07): only a starting value, the tensor holds the trained one. */
const INIT_LOGIT_SCALE = Math.log(1 / 0.07);
/** nn.LayerNorm's default, which open_clip's LayerNorm keeps everywhere. */
const LAYER_NORM_EPS = 1e-5;

/**
 * `model_cfg` of the named architectures, as `src/open_clip/model_configs/*.json` defines them
 * (identical in HPSv2's vendored copy). `-quickgelu` variants are the OpenAI-trained weights' form.
 */
export const OPEN_CLIP_ARCHITECTURES: Readonly<Record<string, Json>> = Object.freeze({
  'ViT-H-14': {
    embed_dim: 1024,
    vision_cfg: { image_size: 224, layers: 32, width: 1280, head_width: 80, patch_size: 14 },
    text_cfg: { context_length: 77, vocab_size: 49408, width: 1024, heads: 16, layers: 24 },
  },
  'ViT-L-14': {
    embed_dim: 768,
    vision_cfg: { image_size: 224, layers: 24, width: 1024, patch_size: 14 },
    text_cfg: { context_length: 77, vocab_size: 49408, width: 768, heads: 12, layers: 12 },
  },
  'ViT-B-32': {
    embed_dim: 512,
    vision_cfg: { image_size: 224, layers: 12, width: 768, patch_size: 32 },
    text_cfg: { context_length: 77, vocab_size: 49408, width: 512, heads: 8, layers: 12 },
  },
  'ViT-L-14-quickgelu': {
    embed_dim: 768, quick_gelu: true,
    vision_cfg: { image_size: 224, layers: 24, width: 1024, patch_size: 14 },
    text_cfg: { context_length: 77, vocab_size: 49408, width: 768, heads: 12, layers: 12 },
  },
  'ViT-B-32-quickgelu': {
    embed_dim: 512, quick_gelu: true,
    vision_cfg: { image_size: 224, layers: 12, width: 768, patch_size: 32 },
    text_cfg: { context_length: 77, vocab_size: 49408, width: 512, heads: 8, layers: 12 },
  },
});

export function isOpenClipArchitecture(name: string): boolean {
  return Object.hasOwn(OPEN_CLIP_ARCHITECTURES, name);
}

/** What a field may hold: `classic` lists the values the classic layout implements; `ignored` fields may hold anything. */
type Rule = { classic: readonly unknown[] } | 'ignored' | 'read';

const OFF: Rule = { classic: [undefined, null, false] };
const NONE: Rule = { classic: [undefined, null] };

/** Top-level `model_cfg` keys. */
const MODEL_RULES: Readonly<Record<string, Rule>> = {
  embed_dim: 'read', quick_gelu: 'read', vision_cfg: 'read', text_cfg: 'read',
  nonscalar_logit_scale: 'ignored',   // logit_scale saved with shape [1]: read either way
  init_logit_scale: 'ignored',        // a starting value; the trained one is the tensor
  custom_text: OFF,                   // CustomTextCLIP keeps the text tower under `text.`, another layout
  init_logit_bias: NONE,              // SigLIP's logit bias
  multimodal_cfg: NONE,               // CoCa
  cast_dtype: 'ignored',
};

/** `vision_cfg` keys of open_clip's CLIPVisionCfg (current and the version HPSv2 vendors). */
const VISION_RULES: Readonly<Record<string, Rule>> = {
  layers: 'read', width: 'read', head_width: 'read', mlp_ratio: 'read', patch_size: 'read', image_size: 'read',
  image_seq_len: 'ignored', patch_dropout: 'ignored', output_tokens: 'ignored',
  attn_pooler_queries: 'ignored', attn_pooler_heads: 'ignored', n_queries: 'ignored',
  ls_init_value: NONE, attentional_pool: OFF, no_ln_pre: OFF, final_ln_after_pool: OFF,
  input_patchnorm: OFF, global_average_pool: OFF,
  pos_embed_type: { classic: [undefined, 'learnable'] },
  pool_type: { classic: [undefined, 'tok'] },
  act_kwargs: NONE, norm_kwargs: NONE,
  block_type: { classic: [undefined, null, 'default'] },
  qk_norm: OFF, scaled_cosine_attn: OFF, scale_heads: OFF, scale_attn_inner: OFF, scale_attn: OFF, scale_fc: OFF,
  timm_model_name: NONE,
  // Options of a timm tower, which a config without timm_model_name does not build.
  timm_model_pretrained: 'ignored', timm_pool: 'ignored', timm_proj: 'ignored', timm_proj_bias: 'ignored',
  timm_drop: 'ignored', timm_drop_path: 'ignored', timm_model_kwargs: 'ignored',
};

/** `text_cfg` keys of open_clip's CLIPTextCfg (current and the version HPSv2 vendors). */
const TEXT_RULES: Readonly<Record<string, Rule>> = {
  context_length: 'read', vocab_size: 'read', width: 'read', heads: 'read', layers: 'read', mlp_ratio: 'read',
  // Used only for cls-token text towers, EOS pooling or tokenizers pickscore does not build.
  pad_id: 'ignored', bos_id: 'ignored', eos_id: 'ignored', output_tokens: 'ignored', tiktoken_name: 'ignored',
  ls_init_value: NONE, embed_cls: OFF, no_causal_mask: OFF, final_ln_after_pool: OFF, proj_bias: OFF, variable_text: OFF,
  pool_type: { classic: [undefined, 'argmax'] },
  proj_type: { classic: [undefined, 'linear'] },
  text_arch: { classic: [undefined, 'clip'] },
  act_kwargs: NONE, norm_kwargs: NONE,
  block_type: { classic: [undefined, null, 'default'] },
  qk_norm: OFF, scaled_cosine_attn: OFF, scale_heads: OFF, scale_attn_inner: OFF, scale_attn: OFF, scale_fc: OFF,
  // Another tokenizer than CLIP's BPE (SigLIP's canonicalising one, a Hugging Face or tiktoken vocabulary).
  hf_tokenizer_name: NONE, tokenizer_kwargs: NONE, tokenizer_mode: NONE, tokenizer_type: { classic: [undefined, null, ''] },
  hf_model_name: NONE,
  // Options of a Hugging Face text tower or of text_arch "modern", which a classic config does not build.
  hf_model_pretrained: 'ignored', hf_proj_type: 'ignored', hf_pooler_type: 'ignored', hf_model_config: 'ignored',
  proj: 'ignored', pooler_type: 'ignored',
  attention_mode: 'ignored', pos_embed: 'ignored', rope_temperature: 'ignored', mlp_type: 'ignored', norm_type: 'ignored',
  norm_eps: 'ignored', attn_gated: 'ignored', pre_norm: 'ignored', norm_placement: 'ignored', zero_init_residual: 'ignored',
  reg_tokens: 'ignored', value_residual: 'ignored', attention_bias: 'ignored', mlp_bias: 'ignored',
};

/** `preprocess_cfg` keys: the eval transform open_clip builds from them. */
const PREPROCESS_RULES: Readonly<Record<string, Rule>> = {
  mean: 'read', std: 'read', size: 'read',
  mode: { classic: [undefined, 'RGB'] },
  interpolation: { classic: [undefined, 'bicubic'] },
  resize_mode: { classic: [undefined, 'shortest'] },
  fill_color: { classic: [undefined, 0] },
};

export interface OpenClipModel {
  config: ClipConfig;
  /** open_clip's eval normalisation: `preprocess_cfg` mean/std, else OpenAI's. */
  mean: [number, number, number];
  std: [number, number, number];
}

/**
 * Reads `open_clip_config.json` (`{"model_cfg": ..., "preprocess_cfg": ...}`). `file` names it in errors.
 */
export function parseOpenClipConfigFile(json: unknown, file: string): OpenClipModel {
  const root = object(json, 'the top level', file);
  for (const key of Object.keys(root)) {
    if (key !== 'model_cfg' && key !== 'preprocess_cfg') throw new ModelError(`${file}: unknown top-level field "${key}"; an open_clip config holds model_cfg and preprocess_cfg`);
  }
  if (root.model_cfg === undefined) throw new ModelError(`${file}: model_cfg is missing`);
  const config = parseOpenClipModelConfig(root.model_cfg, file, 'model_cfg');
  const preprocess = root.preprocess_cfg === undefined || root.preprocess_cfg === null ? {} : object(root.preprocess_cfg, 'preprocess_cfg', file);
  checkRules(preprocess, PREPROCESS_RULES, file, 'preprocess_cfg');
  if (preprocess.size !== undefined) {
    const size = squareSize(preprocess.size, file, 'preprocess_cfg.size');
    if (size !== config.vision.imageSize) {
      throw new ModelError(`${file}: preprocess_cfg.size (${size}) disagrees with model_cfg.vision_cfg.image_size (${config.vision.imageSize})`);
    }
  }
  return {
    config,
    mean: preprocess.mean === undefined ? [...OPENAI_MEAN] : triple(preprocess.mean, file, 'preprocess_cfg.mean', false),
    std: preprocess.std === undefined ? [...OPENAI_STD] : triple(preprocess.std, file, 'preprocess_cfg.std', true),
  };
}

/** The built-in config of a named architecture, with open_clip's default (OpenAI) mean and std. */
export function namedOpenClipModel(name: string): OpenClipModel {
  const modelCfg = OPEN_CLIP_ARCHITECTURES[name];
  if (!isOpenClipArchitecture(name) || modelCfg === undefined) {
    throw new ModelError(expectedMessage(`one of ${Object.keys(OPEN_CLIP_ARCHITECTURES).join(', ')}`, 'the open_clip architecture', name));
  }
  return { config: parseOpenClipModelConfig(modelCfg, `open_clip architecture ${name}`, 'model_cfg'), mean: [...OPENAI_MEAN], std: [...OPENAI_STD] };
}

/** A `model_cfg` object as ClipConfig. `where` is the dotted path of the object, for messages. */
export function parseOpenClipModelConfig(json: unknown, file: string, where: string): ClipConfig {
  const model = object(json, where, file);
  checkRules(model, MODEL_RULES, file, where);
  const vision = object(model.vision_cfg, `${where}.vision_cfg`, file);
  const text = object(model.text_cfg, `${where}.text_cfg`, file);
  checkRules(vision, VISION_RULES, file, `${where}.vision_cfg`);
  checkRules(text, TEXT_RULES, file, `${where}.text_cfg`);
  const read = reader(file);
  const quickGelu = model.quick_gelu ?? false;
  if (typeof quickGelu !== 'boolean') read.fail('true or false', `${where}.quick_gelu`, quickGelu);
  const hiddenAct = quickGelu ? 'quick_gelu' : 'gelu';

  const v = `${where}.vision_cfg`;
  if (Array.isArray(vision.layers)) {
    throw new ModelError(`${file}: ${v}.layers is a list, which makes a ModifiedResNet image tower; pickscore converts ViT towers only`);
  }
  const visionWidth = read.count(vision, 'width', 768, v);
  const headWidth = read.count(vision, 'head_width', 64, v);
  if (visionWidth % headWidth !== 0) throw new ModelError(`${file}: ${v}.width (${visionWidth}) is not a multiple of ${v}.head_width (${headWidth})`);
  const imageSize = squareSize(vision.image_size ?? 224, file, `${v}.image_size`);
  const patchSize = squareSize(vision.patch_size ?? 16, file, `${v}.patch_size`);
  if (imageSize % patchSize !== 0) throw new ModelError(`${file}: ${v}.image_size (${imageSize}) is not a multiple of ${v}.patch_size (${patchSize})`);

  const t = `${where}.text_cfg`;
  const textWidth = read.count(text, 'width', 512, t);
  const textHeads = read.count(text, 'heads', 8, t);
  if (textWidth % textHeads !== 0) throw new ModelError(`${file}: ${t}.width (${textWidth}) is not divisible by ${t}.heads (${textHeads})`);

  return {
    projectionDim: read.count(model, 'embed_dim', undefined, where),
    logitScaleInit: INIT_LOGIT_SCALE,
    text: {
      hiddenSize: textWidth,
      intermediateSize: mlpWidth(textWidth, read.ratio(text, t), file, t),
      numLayers: read.count(text, 'layers', 12, t),
      numHeads: textHeads,
      layerNormEps: LAYER_NORM_EPS,
      hiddenAct,
      vocabSize: read.count(text, 'vocab_size', 49408, t),
      maxPositionEmbeddings: read.count(text, 'context_length', 77, t),
      eosTokenId: EOT_ID,
      bosTokenId: SOT_ID,
      padTokenId: OPEN_CLIP_PAD_ID,
      pooling: 'argmax',
    },
    vision: {
      hiddenSize: visionWidth,
      intermediateSize: mlpWidth(visionWidth, read.ratio(vision, v), file, v),
      numLayers: read.count(vision, 'layers', 12, v),
      numHeads: visionWidth / headWidth,
      layerNormEps: LAYER_NORM_EPS,
      hiddenAct,
      imageSize,
      patchSize,
      numChannels: 3,
    },
  };
}

/** open_clip's `mlp_width = int(width * mlp_ratio)`. */
function mlpWidth(width: number, ratio: number, file: string, where: string): number {
  const size = Math.trunc(width * ratio);
  if (size < 1) throw new ModelError(`${file}: ${where}.mlp_ratio (${ratio}) gives an MLP of width ${size}`);
  return size;
}

function checkRules(obj: Json, rules: Readonly<Record<string, Rule>>, file: string, where: string): void {
  for (const [key, value] of Object.entries(obj)) {
    if (!Object.hasOwn(rules, key)) {
      throw new ModelError(`${file}: ${where}.${key} is an open_clip setting pickscore does not know; refusing to convert a model it might build wrongly`);
    }
    const rule = rules[key];
    if (rule === 'ignored' || rule === 'read') continue;
    if (!rule.classic.includes(value)) {
      throw new ModelError(
        `${file}: ${where}.${key} is ${JSON.stringify(value)}, which pickscore does not implement (it converts the classic CLIP layout, where ${key} is ${rule.classic.filter((x) => x !== undefined).map((x) => JSON.stringify(x)).join(' or ')})`,
      );
    }
  }
}

/** An int, or a [n, n] pair (open_clip's to_2tuple); non-square sizes are not CLIP's. */
function squareSize(value: unknown, file: string, field: string): number {
  const pair = Array.isArray(value) ? value : [value, value];
  const [a, b] = pair;
  if (pair.length !== 2 || !Number.isSafeInteger(a) || (a as number) < 1 || a !== b) {
    throw new ModelError(`${file}: ${expectedMessage('a positive integer or a square [n, n]', field, value)}`);
  }
  return a as number;
}

function triple(value: unknown, file: string, field: string, positive: boolean): [number, number, number] {
  const ok = Array.isArray(value) && value.length === 3 && value.every((x) => typeof x === 'number' && Number.isFinite(x) && (!positive || x > 0));
  if (!ok) throw new ModelError(`${file}: ${expectedMessage(`an array of 3 ${positive ? 'positive ' : ''}numbers`, field, value)}`);
  return [value[0], value[1], value[2]];
}

function object(value: unknown, subject: string, file: string): Json {
  if (typeof value === 'object' && value !== null && !Array.isArray(value)) return value as Json;
  throw new ModelError(`${file}: ${expectedMessage('an object', subject, value)}`);
}

function reader(file: string) {
  const fail = (expected: string, field: string, value: unknown): never => {
    throw new ModelError(`${file}: ${expectedMessage(expected, field, value)}`);
  };
  return {
    fail,
    count(obj: Json, key: string, fallback: number | undefined, where: string): number {
      const value = obj[key] ?? fallback;
      return Number.isSafeInteger(value) && (value as number) > 0 ? (value as number) : fail('a positive integer', `${where}.${key}`, value);
    },
    ratio(obj: Json, where: string): number {
      const value = obj.mlp_ratio ?? 4.0;
      return typeof value === 'number' && Number.isFinite(value) && value > 0 ? value : fail('a positive number', `${where}.mlp_ratio`, value);
    },
  };
}
