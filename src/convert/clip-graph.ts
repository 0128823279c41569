/**
 * Builds the ONNX graphs of transformers' CLIPModel towers from a checkpoint:
 *   text:  input_ids int64 [batch, 77]             -> text_embeds  float32 [batch, projection_dim]
 *   image: pixel_values float32 [batch, 3, H, W]    -> image_embeds float32 [batch, projection_dim]
 * Both outputs are projected and not normalised, as get_text_features / get_image_features return them.
 *
 * Precisions: fp32; fp16 (weights and compute in half, float32 at the edges, softmax in float32);
 * int8 (MatMul weights quantised per column at conversion, com.microsoft DynamicQuantizeMatMul).
 * Attention 'plain' is standard ONNX; 'fused' uses onnxruntime's contrib ops (Attention,
 * SkipLayerNormalization, BiasGelu/FastGelu/QuickGelu), which both the CPU and CUDA providers implement;
 * int8's fused attention is MultiHeadAttention over three quantised projections.
 */
import { InternalError, ModelError } from '../errors.js';
import type { Checkpoint, TensorEntry } from './checkpoint.js';
import type { ClipConfig, ClipTowerConfig } from './clip-config.js';
import { GraphBuilder, MS_DOMAIN, float, int, ints } from './onnx-builder.js';
import { writeOnnxModel, type ElementType, type OnnxModel } from './onnx-proto.js';
import { concatColumns, decodeFloatTensor, float32Bytes, scaled, toFloat16Bytes, transpose2d } from './onnx-tensors.js';
import { quantizePerColumn, type QuantizedMatrix } from './quantize.js';
import { IMAGE_INPUT, IMAGE_OUTPUT, TEXT_INPUT, TEXT_OUTPUT, type AttentionImpl, type Precision } from '../model-format.js';

export type ClipTower = 'text' | 'image';

export interface ClipTowerOnnxOptions {
  tower: ClipTower;
  config: ClipConfig;
  checkpoint: Checkpoint;
  precision: Precision;
  attention: AttentionImpl;
  outPath: string;
  /** 'auto' (the default): external data only when the weights exceed protobuf's limit. */
  externalData?: boolean | 'auto';
  /** Image tower only: nodes appended after image_embeds (src/convert/image-head.ts), which add an output of their own. */
  head?: { append(graph: GraphBuilder, imageEmbeds: string, embedDim: number): void };
}

export const ONNX_PRODUCER_VERSION = '0.1.0';

/**
 * The revision of each variant's graph, counted from 1 for the graphs of the first release. A graph
 * change that moves a variant's numbers, however slightly, bumps its revision; convert.ts puts it in
 * the model fingerprint, so embeddings cached from the earlier graph are not served for the new one.
 * Revision 2 of int8/fused: attention in MultiHeadAttention over three quantised projections, where it
 * was one packed DynamicQuantizeMatMul and standard ops.
 */
export function graphRevision(precision: Precision, attention: AttentionImpl): number {
  return precision === 'int8' && attention === 'fused' ? 2 : 1;
}

/** transformers masks future tokens with float32's lowest value rather than -inf; so do we. */
const MASKED_SCORE = -3.4028234663852886e38;
/** transformers' CLIP pools at argmax(input_ids) when eos_token_id is 2 (the configs of 2021-2023). */
const LEGACY_EOS_TOKEN_ID = 2;

export async function writeClipTowerOnnx(opts: ClipTowerOnnxOptions): Promise<{ bytes: number; externalData: boolean }> {
  const model = buildClipTowerModel(opts);
  const { bytes, externalData } = await writeOnnxModel(model, opts.outPath, { externalData: opts.externalData ?? 'auto' });
  return { bytes, externalData };
}

/** Builds the graph; every tensor it needs is checked against the config here, before any byte is written. */
export function buildClipTowerModel(opts: Omit<ClipTowerOnnxOptions, 'outPath' | 'externalData'>): OnnxModel {
  const builder = new TowerBuilder(opts);
  if (opts.tower === 'text' && opts.head) throw new ModelError('A head applies to the image tower only');
  if (opts.tower === 'text') builder.buildText();
  else builder.buildImage();
  return builder.graph.build(ONNX_PRODUCER_VERSION);
}

/** One Linear layer or several side by side (q, k, v packed into one MatMul). */
interface LinearSpec {
  prefixes: string[];
  inFeatures: number;
  outFeatures: number;          // of each prefix
  /** Folded into the weights and bias of the matching prefix (the attention scale of q). */
  scales?: number[];
  bias: boolean;
}

function linearName(spec: LinearSpec): string {
  return spec.prefixes.length === 1 ? spec.prefixes[0] : `${spec.prefixes[0]}+packed`;
}

/** Sharing one computed value between two lazily written initializers (int8 values and their scales). */
function sharedOnce<T>(compute: () => Promise<T>): () => Promise<T> {
  let pending: Promise<T> | undefined;
  let uses = 0;
  return () => {
    pending ??= compute();
    const result = pending;
    if (++uses === 2) pending = undefined;
    return result;
  };
}

class TowerBuilder {
  readonly graph: GraphBuilder;
  private readonly tower: ClipTowerConfig;
  private readonly computeType: ElementType;
  private causalMaskName: string | undefined;
  private readonly scalars = new Map<string, string>();

  constructor(private readonly opts: Omit<ClipTowerOnnxOptions, 'outPath' | 'externalData'>) {
    this.graph = new GraphBuilder(`clip_${opts.tower}`);
    this.tower = opts.tower === 'text' ? opts.config.text : opts.config.vision;
    this.computeType = opts.precision === 'fp16' ? 'float16' : 'float32';
    if (this.tower.hiddenSize % this.tower.numHeads !== 0) {
      throw new ModelError(`${opts.tower} tower: hidden_size ${this.tower.hiddenSize} is not divisible by num_attention_heads ${this.tower.numHeads}`);
    }
  }

  /** The text tower's [seq, seq] additive mask, one initializer shared by every layer. */
  private causalMask(): string {
    const seq = this.opts.config.text.maxPositionEmbeddings;
    this.causalMaskName ??= this.graph.constFloat32('causal_mask', causalMaskValues(seq), [seq, seq]);
    return this.causalMaskName;
  }

  private get fused(): boolean {
    return this.opts.attention === 'fused';
  }

  private get quantized(): boolean {
    return this.opts.precision === 'int8';
  }

  // ---- weights ------------------------------------------------------------------------------------

  private tensor(name: string, shape: number[]): TensorEntry {
    const entry = this.opts.checkpoint.tensors.get(name);
    if (entry === undefined) throw new ModelError(`Missing tensor ${name} in the checkpoint (${this.opts.checkpoint.files.join(', ')})`);
    if (entry.shape.length !== shape.length || entry.shape.some((d, i) => d !== shape[i])) {
      throw new ModelError(`Expected shape [${shape.join(', ')}] (from config.json) for tensor ${name} in ${entry.file} but received [${entry.shape.join(', ')}]`);
    }
    return entry;
  }

  private async readFloat32(entry: TensorEntry): Promise<Float32Array> {
    return decodeFloatTensor(await entry.read(), entry.dtype, entry.name);
  }

  private encodeCompute(values: Float32Array): Uint8Array {
    return this.computeType === 'float16' ? toFloat16Bytes(values) : float32Bytes(values);
  }

  /** A weight stored as-is (after `transform`) in the compute type. */
  private param(name: string, shape: number[], transform: (v: Float32Array) => Float32Array = (v) => v, dims = shape): string {
    const entry = this.tensor(name, shape);
    return this.graph.weight(name, this.computeType, dims, async () => this.encodeCompute(transform(await this.readFloat32(entry))));
  }

  /** Scalar constants in the compute type, one initializer per name however many layers use it. */
  private scalar(name: string, value: number): string {
    let existing = this.scalars.get(name);
    if (existing === undefined) {
      const values = Float32Array.of(value);
      existing = this.graph.weight(name, this.computeType, [], async () => this.encodeCompute(values));
      this.scalars.set(name, existing);
    }
    return existing;
  }

  /** Weight [in, out * n] for MatMul: each Linear's [out, in] transposed, optionally scaled, side by side. */
  private linearWeights(spec: LinearSpec): { weight: () => Promise<Float32Array>; bias: (() => Promise<Float32Array>) | undefined } {
    const { inFeatures: k, outFeatures: n } = spec;
    const weights = spec.prefixes.map((p) => this.tensor(`${p}.weight`, [n, k]));
    const biases = spec.bias ? spec.prefixes.map((p) => this.tensor(`${p}.bias`, [n])) : undefined;
    const factor = (i: number) => spec.scales?.[i] ?? 1;
    const weight = async () => {
      const blocks: Float32Array[] = [];
      for (const [i, entry] of weights.entries()) blocks.push(transpose2d(await this.readFloat32(entry), n, k, factor(i)));
      return blocks.length === 1 ? blocks[0] : concatColumns(blocks, k);
    };
    const bias = biases && (async () => {
      const out = new Float32Array(n * biases.length);
      for (const [i, entry] of biases.entries()) out.set(scaled(await this.readFloat32(entry), factor(i)), i * n);
      return out;
    });
    return { weight, bias };
  }

  /** int8 weights [in, out * n] quantised per column, their float32 scales, and the float32 bias. */
  private quantizedWeights(spec: LinearSpec): { values: string; scales: string; bias: string | undefined } {
    const { weight, bias } = this.linearWeights(spec);
    const name = linearName(spec);
    const cols = spec.outFeatures * spec.prefixes.length;
    const quantized = sharedOnce<QuantizedMatrix>(async () => quantizePerColumn(await weight(), spec.inFeatures, cols));
    const values = this.graph.weight(`${name}.weight_int8`, 'int8', [spec.inFeatures, cols], async () => {
      const q = (await quantized()).values;
      return new Uint8Array(q.buffer, q.byteOffset, q.byteLength);
    });
    const scales = this.graph.weight(`${name}.weight_scale`, 'float32', [cols], async () => float32Bytes((await quantized()).scales));
    return { values, scales, bias: bias && this.graph.weight(`${name}.bias`, 'float32', [cols], async () => float32Bytes(await bias())) };
  }

  /**
   * x @ W (+ b). With `deferBias`, the bias is returned for a fused consumer (SkipLayerNormalization,
   * BiasGelu) instead of being added; int8 always adds it inside DynamicQuantizeMatMul.
   */
  private linear(x: string, spec: LinearSpec, deferBias = false): { out: string; bias?: string } {
    if (this.quantized) {
      const { values, scales, bias } = this.quantizedWeights(spec);
      return { out: this.graph.op('DynamicQuantizeMatMul', [x, values, scales, '', bias ?? ''], { domain: MS_DOMAIN }) };
    }
    const { weight, bias } = this.linearWeights(spec);
    const name = linearName(spec);
    const cols = spec.outFeatures * spec.prefixes.length;
    const dims = [spec.inFeatures, cols];
    const biasName = bias && this.graph.weight(`${name}.bias`, this.computeType, [cols], async () => this.encodeCompute(await bias()));
    const w = this.graph.weight(`${name}.weight`, this.computeType, dims, async () => this.encodeCompute(await weight()));
    const product = this.graph.op('MatMul', [x, w]);
    if (biasName === undefined) return { out: product };
    if (deferBias) return { out: product, bias: biasName };
    return { out: this.graph.op('Add', [product, biasName]) };
  }

  private layerNorm(x: string, prefix: string): string {
    const h = this.tower.hiddenSize;
    const scale = this.param(`${prefix}.weight`, [h]);
    const bias = this.param(`${prefix}.bias`, [h]);
    return this.graph.op('LayerNormalization', [x, scale, bias], { attributes: { axis: int(-1), epsilon: float(this.tower.layerNormEps) } });
  }

  /** LayerNorm(x + skip + bias): returns the normalised value and the sum, which is the next residual. */
  private skipLayerNorm(x: string, skip: string, prefix: string, bias: string | undefined): { normed: string; sum: string } {
    const h = this.tower.hiddenSize;
    const scale = this.param(`${prefix}.weight`, [h]);
    const beta = this.param(`${prefix}.bias`, [h]);
    const [normed, , , sum] = this.graph.opN('SkipLayerNormalization', [x, skip, scale, beta, bias ?? ''], {
      domain: MS_DOMAIN, outputs: 4, attributes: { epsilon: float(this.tower.layerNormEps) },
    });
    return { normed, sum };
  }

  // ---- activations --------------------------------------------------------------------------------

  private activation(x: string): string {
    const g = this.graph;
    switch (this.tower.hiddenAct) {
      case 'gelu': {
        const erf = g.op('Erf', [g.op('Div', [x, this.scalar('sqrt2', Math.SQRT2)])]);
        return g.op('Mul', [g.op('Mul', [x, g.op('Add', [erf, this.scalar('one', 1)])]), this.scalar('half', 0.5)]);
      }
      case 'quick_gelu':
        return g.op('Mul', [x, g.op('Sigmoid', [g.op('Mul', [x, this.scalar('quick_gelu_alpha', 1.702)])])]);
      case 'gelu_new':
      case 'gelu_pytorch_tanh': {
        const cube = g.op('Mul', [g.op('Mul', [x, x]), x]);
        const inner = g.op('Add', [x, g.op('Mul', [cube, this.scalar('gelu_cubic', 0.044715)])]);
        const tanh = g.op('Tanh', [g.op('Mul', [inner, this.scalar('sqrt_2_over_pi', Math.sqrt(2 / Math.PI))])]);
        return g.op('Mul', [g.op('Mul', [x, g.op('Add', [tanh, this.scalar('one', 1)])]), this.scalar('half', 0.5)]);
      }
      default:
        throw new ModelError(`Unsupported hidden_act ${JSON.stringify(this.tower.hiddenAct)} in the ${this.opts.tower} config; supported: gelu, quick_gelu, gelu_new, gelu_pytorch_tanh`);
    }
  }

  /** The activation as one contrib op, with the fc1 bias folded in when there is one to fold. */
  private fusedActivation(x: string, bias: string | undefined): string {
    const g = this.graph;
    const withBias = (op: string) => g.op(op, bias ? [x, bias] : [x], { domain: MS_DOMAIN });
    switch (this.tower.hiddenAct) {
      case 'gelu': return bias ? withBias('BiasGelu') : withBias('Gelu');
      case 'gelu_new':
      case 'gelu_pytorch_tanh': return withBias('FastGelu');
      case 'quick_gelu':
        return g.op('QuickGelu', [bias ? g.op('Add', [x, bias]) : x], { domain: MS_DOMAIN, attributes: { alpha: float(1.702) } });
      default:
        return this.activation(x);   // throws the unsupported-activation error
    }
  }

  // ---- encoder ------------------------------------------------------------------------------------

  private attentionSpec(prefix: string, foldScale: boolean): LinearSpec {
    const h = this.tower.hiddenSize;
    const scale = 1 / Math.sqrt(h / this.tower.numHeads);
    return {
      prefixes: ['q_proj', 'k_proj', 'v_proj'].map((p) => `${prefix}.self_attn.${p}`),
      inFeatures: h, outFeatures: h, bias: true,
      scales: foldScale ? [scale, 1, 1] : undefined,
    };
  }

  /** softmax(q k^T / sqrt(d) + mask) v with standard ops; the scale is folded into the q weights. */
  private plainAttention(x: string, prefix: string, causal: boolean): string {
    const g = this.graph;
    const { hiddenSize: h, numHeads: heads } = this.tower;
    const qkv = this.linear(x, this.attentionSpec(prefix, true)).out;
    const [q, k, v] = g.opN('Split', [qkv, g.constInt64('qkv_split', [h, h, h])], { outputs: 3, attributes: { axis: int(-1) } });
    const headShape = g.constInt64('head_shape', [0, 0, heads, h / heads]);
    const heads4d = (t: string, perm: number[]) => g.op('Transpose', [g.op('Reshape', [t, headShape])], { attributes: { perm: ints(perm) } });
    let scores = g.op('MatMul', [heads4d(q, [0, 2, 1, 3]), heads4d(k, [0, 2, 3, 1])]);
    if (this.computeType === 'float16') scores = g.op('Cast', [scores], { attributes: { to: int(1) } });
    if (causal) scores = g.op('Add', [scores, this.causalMask()]);
    let probs = g.op('Softmax', [scores], { attributes: { axis: int(-1) } });
    if (this.computeType === 'float16') probs = g.op('Cast', [probs], { attributes: { to: int(10) } });
    const context = g.op('MatMul', [probs, heads4d(v, [0, 2, 1, 3])]);
    const merged = g.op('Transpose', [context], { attributes: { perm: ints([0, 2, 1, 3]) } });
    return g.op('Reshape', [merged, g.constInt64('merged_shape', [0, 0, h])]);
  }

  /** com.microsoft Attention: packed QKV projection, scaled dot product and softmax in one kernel. */
  private fusedAttention(x: string, prefix: string, causal: boolean): string {
    const spec = this.attentionSpec(prefix, false);
    const { weight, bias } = this.linearWeights(spec);
    const h = this.tower.hiddenSize;
    const w = this.graph.weight(`${prefix}.self_attn.qkv.weight`, this.computeType, [h, 3 * h], async () => this.encodeCompute(await weight()));
    const b = bias && this.graph.weight(`${prefix}.self_attn.qkv.bias`, this.computeType, [3 * h], async () => this.encodeCompute(await bias()));
    if (b === undefined) throw new InternalError('attention projections always carry a bias in CLIP');
    return this.graph.op('Attention', [x, w, b], {
      domain: MS_DOMAIN,
      attributes: { num_heads: int(this.tower.numHeads), unidirectional: int(causal ? 1 : 0) },
    });
  }

  /**
   * int8's fused attention: the input quantised once (DynamicQuantizeLinear), q, k and v each projected
   * from it by MatMulIntegerToFloat (the attention scale folded into q's weights before they are
   * quantised), then com.microsoft MultiHeadAttention, which splits the heads, applies the causal mask
   * and runs softmax(q k^T) v in one kernel (on the CPU a flash-attention kernel where there is no mask).
   * Three projections rather than one packed one: splitting a packed output copies all of it, which
   * cost more than the three GEMMs' extra overhead; one shared quantisation rather than three
   * DynamicQuantizeMatMuls saves two passes over the input.
   */
  private quantizedAttention(x: string, prefix: string, causal: boolean): string {
    const g = this.graph;
    const spec = this.attentionSpec(prefix, true);
    const [input, inputScale, inputZeroPoint] = g.opN('DynamicQuantizeLinear', [x], { outputs: 3 });
    const [q, k, v] = spec.prefixes.map((p, i) => {
      const { values, scales, bias } = this.quantizedWeights({ ...spec, prefixes: [p], scales: [spec.scales?.[i] ?? 1] });
      return g.op('MatMulIntegerToFloat', [input, values, inputScale, scales, inputZeroPoint, '', bias ?? ''], { domain: MS_DOMAIN });
    });
    return g.op('MultiHeadAttention', [q, k, v], {
      domain: MS_DOMAIN,
      attributes: { num_heads: int(this.tower.numHeads), scale: float(1), unidirectional: int(causal ? 1 : 0) },
    });
  }

  private mlpSpec(prefix: string, layer: 'fc1' | 'fc2'): LinearSpec {
    const { hiddenSize: h, intermediateSize: m } = this.tower;
    return layer === 'fc1'
      ? { prefixes: [`${prefix}.mlp.fc1`], inFeatures: h, outFeatures: m, bias: true }
      : { prefixes: [`${prefix}.mlp.fc2`], inFeatures: m, outFeatures: h, bias: true };
  }

  /** Pre-LN encoder layers with standard ops: x + attn(LN1(x)), then + MLP(LN2(x)). */
  private plainEncoder(x: string, layersPrefix: string, causal: boolean): string {
    const g = this.graph;
    let hidden = x;
    for (let i = 0; i < this.tower.numLayers; i++) {
      const prefix = `${layersPrefix}.${i}`;
      hidden = g.scope(`layer${i}`, () => {
        const attn = this.plainAttention(this.layerNorm(hidden, `${prefix}.layer_norm1`), prefix, causal);
        const afterAttn = g.op('Add', [hidden, this.linear(attn, this.attentionOutSpec(prefix)).out]);
        const up = this.linear(this.layerNorm(afterAttn, `${prefix}.layer_norm2`), this.mlpSpec(prefix, 'fc1')).out;
        const down = this.linear(this.activation(up), this.mlpSpec(prefix, 'fc2')).out;
        return g.op('Add', [afterAttn, down]);
      });
    }
    return hidden;
  }

  private attentionOutSpec(prefix: string): LinearSpec {
    const h = this.tower.hiddenSize;
    return { prefixes: [`${prefix}.self_attn.out_proj`], inFeatures: h, outFeatures: h, bias: true };
  }

  /**
   * The same layers with contrib ops. Each residual add and the LayerNorm after it are one
   * SkipLayerNormalization, whose fourth output (the sum) carries the residual stream on.
   */
  private fusedEncoder(x: string, layersPrefix: string, causal: boolean): string {
    const g = this.graph;
    let residual = x;
    let normed = this.layerNorm(x, `${layersPrefix}.0.layer_norm1`);
    for (let i = 0; i < this.tower.numLayers; i++) {
      const prefix = `${layersPrefix}.${i}`;
      const last = i === this.tower.numLayers - 1;
      [residual, normed] = g.scope(`layer${i}`, () => {
        const attn = this.quantized ? this.quantizedAttention(normed, prefix, causal) : this.fusedAttention(normed, prefix, causal);
        const out = this.linear(attn, this.attentionOutSpec(prefix), true);
        const ln2 = this.skipLayerNorm(out.out, residual, `${prefix}.layer_norm2`, out.bias);
        const up = this.linear(ln2.normed, this.mlpSpec(prefix, 'fc1'), true);
        const down = this.linear(this.fusedActivation(up.out, up.bias), this.mlpSpec(prefix, 'fc2'), true);
        if (last) {
          const withBias = down.bias ? g.op('Add', [down.out, down.bias]) : down.out;
          return [g.op('Add', [ln2.sum, withBias]), ''];
        }
        const next = this.skipLayerNorm(down.out, ln2.sum, `${layersPrefix}.${i + 1}.layer_norm1`, down.bias);
        return [next.sum, next.normed];
      });
    }
    return residual;
  }

  private encoder(x: string, layersPrefix: string, causal: boolean): string {
    return this.fused ? this.fusedEncoder(x, layersPrefix, causal) : this.plainEncoder(x, layersPrefix, causal);
  }

  /** [hidden] @ projection^T, no bias, then float32 at the output edge; returns the output's value. */
  private projectAndOutput(pooled: string, projectionName: string, outputName: string): string {
    const g = this.graph;
    const { hiddenSize: h } = this.tower;
    const d = this.opts.config.projectionDim;
    const w = this.param(projectionName, [d, h], (v) => transpose2d(v, d, h), [h, d]);
    let embeds = g.op('MatMul', [pooled, w]);
    if (this.computeType === 'float16') embeds = g.op('Cast', [embeds], { attributes: { to: int(1) } });
    g.output(embeds, outputName, 'float32', ['batch', d]);
    return embeds;
  }

  // ---- towers -------------------------------------------------------------------------------------

  buildText(): void {
    const g = this.graph;
    const text = this.opts.config.text;
    const seq = text.maxPositionEmbeddings;
    const h = text.hiddenSize;
    const ids = g.input(TEXT_INPUT, 'int64', ['batch', seq]);
    const tokens = g.op('Gather', [this.param('text_model.embeddings.token_embedding.weight', [text.vocabSize, h]), ids], { attributes: { axis: int(0) } });
    const x = g.op('Add', [tokens, this.param('text_model.embeddings.position_embedding.weight', [seq, h])]);
    const hidden = this.encoder(x, 'text_model.encoder.layers', true);
    const pooled = g.op('GatherND', [hidden, this.eosPositions(ids)], { attributes: { batch_dims: int(1) } });
    // LayerNorm acts on each position alone, so normalising the pooled row equals pooling the normalised sequence.
    this.projectAndOutput(this.layerNorm(pooled, 'text_model.final_layer_norm'), 'text_projection.weight', TEXT_OUTPUT);
  }

  /** [batch, 1] int64: argmax(input_ids) for eos_token_id 2 or argmax pooling, else the first position holding eos_token_id. */
  private eosPositions(ids: string): string {
    const g = this.graph;
    const eos = this.opts.config.text.eosTokenId;
    const searched = eos === LEGACY_EOS_TOKEN_ID || this.opts.config.text.pooling === 'argmax'
      ? ids
      : g.op('Equal', [ids, g.constInt64('eos_token_id', [eos], [])]);
    // ArgMax has no int64 or bool kernel on every provider; ids and flags fit int32 exactly.
    const asInt32 = g.op('Cast', [searched], { attributes: { to: int(6) } });
    return g.op('ArgMax', [asInt32], { attributes: { axis: int(1), keepdims: int(1), select_last_index: int(0) } });
  }

  buildImage(): void {
    const g = this.graph;
    const vision = this.opts.config.vision;
    const { hiddenSize: h, patchSize: p, imageSize: size, numChannels: channels } = vision;
    const patches = (size / p) ** 2;
    if (!Number.isInteger(size / p)) throw new ModelError(`vision image_size ${size} is not a multiple of patch_size ${p}`);
    const pixels = g.input(IMAGE_INPUT, 'float32', ['batch', channels, size, size]);
    const input = this.computeType === 'float16' ? g.op('Cast', [pixels], { attributes: { to: int(10) } }) : pixels;
    const conv = g.op('Conv', [input, this.param('vision_model.embeddings.patch_embedding.weight', [h, channels, p, p])], {
      attributes: { kernel_shape: ints([p, p]), strides: ints([p, p]) },
    });
    const grid = g.op('Reshape', [conv, g.constInt64('patch_grid_shape', [0, h, patches])]);
    const tokens = g.op('Transpose', [grid], { attributes: { perm: ints([0, 2, 1]) } });
    const batch = g.op('Shape', [pixels], { attributes: { start: int(0), end: int(1) } });
    const classShape = g.op('Concat', [batch, g.constInt64('class_token_dims', [1, h])], { attributes: { axis: int(0) } });
    const classEmbedding = this.param('vision_model.embeddings.class_embedding', [h], (v) => v, [1, 1, h]);
    const classTokens = g.op('Expand', [classEmbedding, classShape]);
    const sequence = g.op('Concat', [classTokens, tokens], { attributes: { axis: int(1) } });
    const x = g.op('Add', [sequence, this.param('vision_model.embeddings.position_embedding.weight', [patches + 1, h])]);
    const hidden = this.encoder(this.layerNorm(x, 'vision_model.pre_layrnorm'), 'vision_model.encoder.layers', false);
    const pooled = g.op('Gather', [hidden, g.constInt64('class_position', [0], [])], { attributes: { axis: int(1) } });
    const embeds = this.projectAndOutput(this.layerNorm(pooled, 'vision_model.post_layernorm'), 'visual_projection.weight', IMAGE_OUTPUT);
    this.opts.head?.append(g, embeds, this.opts.config.projectionDim);
  }
}

/** [seq, seq]: 0 where a token may attend (itself and earlier), the lowest float32 elsewhere. */
export function causalMaskValues(seq: number): Float32Array {
  const mask = new Float32Array(seq * seq);
  for (let row = 0; row < seq; row++) mask.fill(MASKED_SCORE, row * seq + row + 1, (row + 1) * seq);
  return mask;
}
