/**
 * open_clip checkpoints (`open_clip_model.safetensors`, `open_clip_pytorch_model.bin`, and the `.pt`
 * training checkpoints HPSv2 publishes, `{'state_dict': ...}`), presented as the Hugging Face CLIPModel
 * checkpoint the graph builder reads: the same tensors under transformers' names and shapes.
 *
 * The mapping is transformers' own (`convert_clip_original_pytorch_to_hf.py`):
 * - `attn.in_proj_weight` [3w, w] and `attn.in_proj_bias` [3w] hold q, k and v stacked: split in three;
 * - `text_projection` and `visual.proj` are [width, embed] matrices used as `x @ W`: transposed to
 *   transformers' [embed, width] `*.weight`;
 * - `ln_1`/`ln_2` are `layer_norm1`/`layer_norm2`, `mlp.c_fc`/`mlp.c_proj` are `mlp.fc1`/`mlp.fc2`,
 *   `visual.ln_pre`/`ln_post` are `pre_layrnorm`/`post_layernorm`, `ln_final` is `final_layer_norm`;
 * - `visual.conv1` has no bias, as transformers' patch embedding.
 * There is no `attn_mask` in the file (open_clip builds the causal mask, not persistent) and no
 * `position_ids`. Every tensor is checked against the config, in open_clip's names, before any is
 * converted, and a tensor the classic layout does not have is refused: it would mean a model this
 * converter does not build.
 */
import path from 'node:path';
import { readdir } from 'node:fs/promises';
import { ModelError, expectedMessage } from '../errors.js';
import { isFile, type Checkpoint } from './checkpoint.js';
import { DTYPE_BYTES, elementCount, type DType, type TensorEntry, type TensorFile } from './tensor-file.js';
import type { ClipConfig } from './clip-config.js';
import {
  OPEN_CLIP_CONFIG_FILE, OPEN_CLIP_ARCHITECTURES, namedOpenClipModel, parseOpenClipConfigFile, type OpenClipModel,
} from './open-clip-config.js';
import { openSafetensorsFile } from './safetensors.js';
import { openTorchFile } from './torch-pickle.js';
import { READ_LIMITS, readFailureText, readRegularTextFile } from '../io/regular-file.js';

/** open_clip's `HF_SAFE_WEIGHTS_NAME` and `HF_WEIGHTS_NAME`, tried in that order as open_clip does. */
export const OPEN_CLIP_WEIGHT_FILES = ['open_clip_model.safetensors', 'open_clip_pytorch_model.bin'] as const;
/** A training checkpoint such as HPSv2's `HPS_v2.1_compressed.pt`. */
const TRAINING_CHECKPOINT_EXTENSION = '.pt';
/** The weights of a Hugging Face CLIPModel folder: when present beside config.json, that layout is read. */
const HF_WEIGHT_FILES = ['model.safetensors', 'model.safetensors.index.json', 'pytorch_model.bin', 'pytorch_model.bin.index.json'];
/** open_clip's `load_state_dict`: a checkpoint saved from DistributedDataParallel prefixes every key. */
const DDP_PREFIX = 'module.';

export interface OpenClipSource {
  config: ClipConfig;
  checkpoint: Checkpoint;
  /** The config the model was read from: open_clip_config.json, or the named architecture. */
  configFile: string;
  /** Source files besides the weights that the converted model depends on (hashed into the manifest). */
  configFiles: string[];
  mean: [number, number, number];
  std: [number, number, number];
}

/**
 * The open_clip checkpoint in `dir`, or undefined when `dir` is to be read as a Hugging Face CLIPModel
 * folder: that is the case when no architecture is named and the folder has config.json and
 * transformers' weights, or has no open_clip weights at all (the existing errors then apply).
 * `architecture` names an open_clip model (ViT-H-14, ViT-L-14, ViT-B-32...) for a folder without
 * open_clip_config.json, such as HPSv2's release.
 */
export async function openOpenClipSource(dir: string, architecture?: string): Promise<OpenClipSource | undefined> {
  const root = path.resolve(dir);
  if (architecture === undefined && await isFile(path.join(root, 'config.json')) && await anyFile(root, HF_WEIGHT_FILES)) return undefined;
  const weights = await findOpenClipWeights(root);
  const configPath = path.join(root, OPEN_CLIP_CONFIG_FILE);
  const hasConfig = await isFile(configPath);
  if (architecture === undefined) {
    if (weights === undefined) return undefined;
    if (!hasConfig) {
      throw new ModelError(
        `${root} holds open_clip weights (${path.basename(weights)}) but no ${OPEN_CLIP_CONFIG_FILE}; name the architecture `
          + `(one of ${Object.keys(OPEN_CLIP_ARCHITECTURES).join(', ')}; HPSv2 is ViT-H-14) with --open-clip-model (openClipArchitecture in the API)`,
      );
    }
  } else if (weights === undefined) {
    throw new ModelError(`No open_clip weights found in ${root}: expected ${OPEN_CLIP_WEIGHT_FILES.join(' or ')}, or one ${TRAINING_CHECKPOINT_EXTENSION} checkpoint`);
  }
  const model = hasConfig ? await readOpenClipConfig(configPath) : namedOpenClipModel(architecture!);
  if (hasConfig && architecture !== undefined) checkSameModel(model, namedOpenClipModel(architecture), configPath, architecture);
  const configFile = hasConfig ? configPath : `open_clip architecture ${architecture}`;
  const checkpoint = await openOpenClipCheckpoint(weights!, model.config, configFile);
  return { config: model.config, checkpoint, configFile, configFiles: hasConfig ? [configPath] : [], mean: model.mean, std: model.std };
}

async function anyFile(root: string, names: readonly string[]): Promise<boolean> {
  for (const name of names) if (await isFile(path.join(root, name))) return true;
  return false;
}

/** open_clip's safetensors, else its .bin, else the folder's one `.pt` file. */
async function findOpenClipWeights(root: string): Promise<string | undefined> {
  for (const name of OPEN_CLIP_WEIGHT_FILES) if (await isFile(path.join(root, name))) return path.join(root, name);
  let names: string[];
  try {
    names = await readdir(root);
  } catch {
    return undefined;   // a folder that cannot be listed fails later with the existing, clearer errors
  }
  const candidates: string[] = [];
  for (const name of names.filter((n) => n.endsWith(TRAINING_CHECKPOINT_EXTENSION)).sort()) {
    if (await isFile(path.join(root, name))) candidates.push(name);
  }
  if (candidates.length > 1) {
    throw new ModelError(`${root} holds ${candidates.length} ${TRAINING_CHECKPOINT_EXTENSION} checkpoints (${candidates.join(', ')}); keep the one to convert in a folder of its own`);
  }
  return candidates.length === 1 ? path.join(root, candidates[0]) : undefined;
}

async function readOpenClipConfig(file: string): Promise<OpenClipModel> {
  let text: string;
  try {
    text = await readRegularTextFile(file, READ_LIMITS.config, 'a config file');
  } catch (err) {
    throw new ModelError(`Cannot read ${file}: ${readFailureText(err)}`, { cause: err });
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new ModelError(`${file} is not valid JSON: ${(err as Error).message}`, { cause: err });
  }
  return parseOpenClipConfigFile(json, file);
}

/** A named architecture given beside a config file must describe the same model. */
function checkSameModel(fromFile: OpenClipModel, named: OpenClipModel, file: string, architecture: string): void {
  const differs = (a: unknown, b: unknown, at: string): string | undefined => {
    if (typeof a === 'object' && a !== null && typeof b === 'object' && b !== null) {
      for (const key of Object.keys(a)) {
        const found = differs((a as Record<string, unknown>)[key], (b as Record<string, unknown>)[key], at ? `${at}.${key}` : key);
        if (found) return found;
      }
      return undefined;
    }
    return a === b ? undefined : `${at} (${String(a)} in the file, ${String(b)} in ${architecture})`;
  };
  const field = differs(fromFile.config, named.config, '');
  if (field) throw new ModelError(`${file} describes another model than the open_clip architecture ${architecture}: ${field}`);
}

/** One expected open_clip tensor: its shape, each dimension with the config field it comes from. */
interface OpenClipTensor {
  name: string;
  dims: { size: number; field: string }[];
  /** How transformers' tensor(s) come from it. */
  target: { kind: 'same'; name: string } | { kind: 'transpose'; name: string } | { kind: 'split3'; names: [string, string, string] };
}

/** Every tensor of the classic open_clip CLIP, with the transformers tensor(s) each one becomes. */
export function expectedOpenClipTensors(config: ClipConfig): OpenClipTensor[] {
  const t = config.text;
  const v = config.vision;
  const tw = { size: t.hiddenSize, field: 'text_cfg.width' };
  const vw = { size: v.hiddenSize, field: 'vision_cfg.width' };
  const embed = { size: config.projectionDim, field: 'embed_dim' };
  const patch = { size: v.patchSize, field: 'vision_cfg.patch_size' };
  const same = (name: string) => ({ kind: 'same' as const, name });
  const out: OpenClipTensor[] = [
    { name: 'token_embedding.weight', dims: [{ size: t.vocabSize, field: 'text_cfg.vocab_size' }, tw], target: same('text_model.embeddings.token_embedding.weight') },
    { name: 'positional_embedding', dims: [{ size: t.maxPositionEmbeddings, field: 'text_cfg.context_length' }, tw], target: same('text_model.embeddings.position_embedding.weight') },
    ...blocks('transformer.resblocks', 'text_model.encoder.layers', t.numLayers, tw, { size: t.intermediateSize, field: 'text_cfg.width * text_cfg.mlp_ratio' }),
    ...norm('ln_final', 'text_model.final_layer_norm', tw),
    { name: 'text_projection', dims: [tw, embed], target: { kind: 'transpose', name: 'text_projection.weight' } },
    { name: 'visual.conv1.weight', dims: [vw, { size: v.numChannels, field: 'image channels' }, patch, patch], target: same('vision_model.embeddings.patch_embedding.weight') },
    { name: 'visual.class_embedding', dims: [vw], target: same('vision_model.embeddings.class_embedding') },
    {
      name: 'visual.positional_embedding',
      dims: [{ size: (v.imageSize / v.patchSize) ** 2 + 1, field: '(vision_cfg.image_size / vision_cfg.patch_size)^2 + 1' }, vw],
      target: same('vision_model.embeddings.position_embedding.weight'),
    },
    ...norm('visual.ln_pre', 'vision_model.pre_layrnorm', vw),
    ...blocks('visual.transformer.resblocks', 'vision_model.encoder.layers', v.numLayers, vw, { size: v.intermediateSize, field: 'vision_cfg.width * vision_cfg.mlp_ratio' }),
    ...norm('visual.ln_post', 'vision_model.post_layernorm', vw),
    { name: 'visual.proj', dims: [vw, embed], target: { kind: 'transpose', name: 'visual_projection.weight' } },
  ];
  return out;
}

function norm(from: string, to: string, width: { size: number; field: string }): OpenClipTensor[] {
  return ['weight', 'bias'].map((p) => ({ name: `${from}.${p}`, dims: [width], target: { kind: 'same' as const, name: `${to}.${p}` } }));
}

function blocks(from: string, to: string, layers: number, w: { size: number; field: string }, mlp: { size: number; field: string }): OpenClipTensor[] {
  const out: OpenClipTensor[] = [];
  const three = { size: 3 * w.size, field: `3 * ${w.field}` };
  for (let i = 0; i < layers; i++) {
    const a = `${from}.${i}`;
    const b = `${to}.${i}`;
    const qkv = (p: string): [string, string, string] => [`${b}.self_attn.q_proj.${p}`, `${b}.self_attn.k_proj.${p}`, `${b}.self_attn.v_proj.${p}`];
    out.push(
      ...norm(`${a}.ln_1`, `${b}.layer_norm1`, w),
      { name: `${a}.attn.in_proj_weight`, dims: [three, w], target: { kind: 'split3', names: qkv('weight') } },
      { name: `${a}.attn.in_proj_bias`, dims: [three], target: { kind: 'split3', names: qkv('bias') } },
      { name: `${a}.attn.out_proj.weight`, dims: [w, w], target: { kind: 'same', name: `${b}.self_attn.out_proj.weight` } },
      { name: `${a}.attn.out_proj.bias`, dims: [w], target: { kind: 'same', name: `${b}.self_attn.out_proj.bias` } },
      ...norm(`${a}.ln_2`, `${b}.layer_norm2`, w),
      { name: `${a}.mlp.c_fc.weight`, dims: [mlp, w], target: { kind: 'same', name: `${b}.mlp.fc1.weight` } },
      { name: `${a}.mlp.c_fc.bias`, dims: [mlp], target: { kind: 'same', name: `${b}.mlp.fc1.bias` } },
      { name: `${a}.mlp.c_proj.weight`, dims: [w, mlp], target: { kind: 'same', name: `${b}.mlp.fc2.weight` } },
      { name: `${a}.mlp.c_proj.bias`, dims: [w], target: { kind: 'same', name: `${b}.mlp.fc2.bias` } },
    );
  }
  return out;
}

const FLOAT_DTYPES: readonly DType[] = ['F32', 'F16', 'BF16', 'F64'];

/**
 * Opens an open_clip weights file and presents it under transformers' names. `configFile` names the
 * config the shapes come from, in errors.
 */
export async function openOpenClipCheckpoint(weightsFile: string, config: ClipConfig, configFile: string): Promise<Checkpoint> {
  const opened: TensorFile = weightsFile.endsWith('.safetensors')
    ? await openSafetensorsFile(weightsFile)
    : await openTorchFile(weightsFile, { nestedStateDictKey: 'state_dict' });
  try {
    const source = withoutDdpPrefix(opened.tensors, weightsFile);
    const tensors = adapt(source, config, weightsFile, configFile);
    return {
      format: weightsFile.endsWith('.safetensors') ? 'safetensors' : 'pytorch',
      files: [weightsFile],
      tensors,
      close: () => opened.file.close(),
    };
  } catch (err) {
    await opened.file.close();
    throw err;
  }
}

/**
 * open_clip strips `module.` from every key when the first key has it. Here a prefix on any key means
 * every key must have it: a mixed state dict is not one model's, whichever key comes first.
 */
function withoutDdpPrefix(entries: TensorEntry[], file: string): Map<string, TensorEntry> {
  if (entries.length === 0) throw new ModelError(`${file} holds no tensors; an open_clip checkpoint holds a state dict (for a .pt, under the key 'state_dict')`);
  const example = entries.find((e) => e.name.startsWith(DDP_PREFIX));
  const prefixed = example !== undefined;
  const map = new Map<string, TensorEntry>();
  for (const entry of entries) {
    if (prefixed && !entry.name.startsWith(DDP_PREFIX)) {
      throw new ModelError(`${file}: tensor ${entry.name} lacks the "${DDP_PREFIX}" prefix that ${example.name} has; a checkpoint saved from DistributedDataParallel prefixes every key`);
    }
    const name = prefixed ? entry.name.slice(DDP_PREFIX.length) : entry.name;
    map.set(name, entry);
  }
  return map;
}

function adapt(source: Map<string, TensorEntry>, config: ClipConfig, file: string, configFile: string): Map<string, TensorEntry> {
  const expected = expectedOpenClipTensors(config);
  const known = new Set(expected.map((e) => e.name));
  known.add('logit_scale');
  for (const [name, entry] of source) {
    if (known.has(name)) continue;
    // A causal mask saved by an old open_clip: the graph builds its own.
    if (name === 'attn_mask' && entry.shape.length === 2 && entry.shape.every((d) => d === config.text.maxPositionEmbeddings)) continue;
    const layer = /resblocks\.(\d+)\./.exec(name);
    const hint = layer ? ` (${configFile} gives ${name.startsWith('visual.') ? 'vision_cfg' : 'text_cfg'}.layers ${name.startsWith('visual.') ? config.vision.numLayers : config.text.numLayers})` : '';
    throw new ModelError(`${file} holds tensor ${name}, which the classic open_clip CLIP layout described by ${configFile} does not have${hint}; refusing to convert a model it cannot reproduce`);
  }
  const out = new Map<string, TensorEntry>();
  const logitScale = source.get('logit_scale');
  if (!logitScale) throw new ModelError(`Tensor logit_scale is missing from ${file}`);
  if (elementCount(logitScale.shape) !== 1 || logitScale.shape.length > 1) {
    throw new ModelError(`${file}: ${expectedMessage('a scalar or shape [1]', 'tensor logit_scale', `shape [${logitScale.shape.join(', ')}]`)}`);
  }
  out.set('logit_scale', renamed(logitScale, 'logit_scale'));
  for (const tensor of expected) {
    const entry = source.get(tensor.name);
    if (!entry) throw new ModelError(`Tensor ${tensor.name} is missing from ${file}; ${configFile} describes an open_clip model that needs it`);
    const mismatch = tensor.dims.findIndex((d, i) => entry.shape[i] !== d.size);
    if (mismatch >= 0 || entry.shape.length !== tensor.dims.length) {
      const fieldName = tensor.dims[mismatch]?.field ?? 'the tensor rank';
      throw new ModelError(
        `${configFile}: ${fieldName} disagrees with tensor ${tensor.name} in ${file}: the config implies shape [${tensor.dims.map((d) => d.size).join(', ')}] but the tensor has [${entry.shape.join(', ')}]`,
      );
    }
    if (!FLOAT_DTYPES.includes(entry.dtype)) {
      throw new ModelError(`${file}: tensor ${tensor.name} has dtype ${entry.dtype}; a floating-point weight (${FLOAT_DTYPES.join(', ')}) was expected`);
    }
    const target = tensor.target;
    if (target.kind === 'same') out.set(target.name, renamed(entry, target.name));
    else if (target.kind === 'transpose') out.set(target.name, transposed(entry, target.name));
    else {
      const shared = splitter(entry);
      target.names.forEach((name, part) => out.set(name, splitPart(entry, name, part, shared)));
    }
  }
  return out;
}

function renamed(entry: TensorEntry, name: string): TensorEntry {
  return { name, dtype: entry.dtype, shape: [...entry.shape], byteLength: entry.byteLength, file: entry.file, read: () => entry.read() };
}

/** [rows, cols] to [cols, rows], element by element in the stored dtype. */
function transposed(entry: TensorEntry, name: string): TensorEntry {
  const [rows, cols] = entry.shape;
  const size = DTYPE_BYTES[entry.dtype];
  return {
    name, dtype: entry.dtype, shape: [cols, rows], byteLength: entry.byteLength, file: entry.file,
    read: async () => transposeElements(await entry.read(), rows, cols, size),
  };
}

/** Transposes [rows, cols] elements of `size` bytes (2, 4 or 8), bit for bit. */
function transposeElements(bytes: Buffer, rows: number, cols: number, size: number): Buffer {
  const out = Buffer.alloc(bytes.length);   // Buffer.alloc never comes from the pool: offset 0, aligned
  if (size === 8) {
    const from = new BigUint64Array(new Uint8Array(bytes).buffer);   // a fresh, aligned copy
    const to = new BigUint64Array(out.buffer, out.byteOffset, rows * cols);
    for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) to[c * rows + r] = from[r * cols + c];
    return out;
  }
  const Elements = size === 2 ? Uint16Array : Uint32Array;
  const from = new Elements(new Uint8Array(bytes).buffer);
  const to = new Elements(out.buffer, out.byteOffset, rows * cols);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) to[c * rows + r] = from[r * cols + c];
  return out;
}

/**
 * One read of a stacked q/k/v tensor shared by its three parts: the graph builder asks for q, k and v
 * one after another, and reading the whole tensor three times would triple the biggest reads. The bytes
 * are dropped once the three parts have been served; a later request reads again.
 */
function splitter(entry: TensorEntry): () => Promise<Buffer> {
  let pending: Promise<Buffer> | undefined;
  let served = 0;
  return () => {
    pending ??= entry.read();
    const bytes = pending;
    if (++served % 3 === 0) pending = undefined;
    return bytes;
  };
}

/** Part `part` (0 = q, 1 = k, 2 = v) of a tensor whose first dimension stacks the three. */
function splitPart(entry: TensorEntry, name: string, part: number, read: () => Promise<Buffer>): TensorEntry {
  const shape = [entry.shape[0] / 3, ...entry.shape.slice(1)];
  const byteLength = entry.byteLength / 3;
  return {
    name, dtype: entry.dtype, shape, byteLength, file: entry.file,
    read: async () => (await read()).subarray(part * byteLength, (part + 1) * byteLength),
  };
}
