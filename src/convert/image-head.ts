/**
 * A small head on the image embedding, read from a PyTorch state dict and appended to the image graph,
 * so that one ONNX file gives the score: the LAION improved aesthetic predictor
 * (christophschuhmann/improved-aesthetic-predictor, `sac+logos+ava1-l14-linearMSE.pth`) and heads of
 * the same kind.
 *
 * That predictor is `nn.Sequential(Linear(768, 1024), Dropout(0.2), Linear(1024, 128), Dropout(0.2),
 * Linear(128, 64), Dropout(0.1), Linear(64, 16), Linear(16, 1))` under the attribute `layers`, run on the
 * L2-normalised image embedding (a zero norm counted as 1, as its `normalized()` does). Its ReLUs are
 * commented out, so there are no activations; Dropout does nothing at inference. A module without
 * parameters leaves no trace in the state dict, so the file alone cannot tell a Dropout from a ReLU:
 * the sequence of module kinds is part of the head's description, and the state dict must hold exactly
 * the Linear layers it places (the repository's `reluMSE` variant, with ReLUs, has its Linears at other
 * indices and is refused under the linear layout). The layer sizes are read from the file.
 */
import { ModelError } from '../errors.js';
import type { TensorEntry } from './checkpoint.js';
import { GraphBuilder, int, ints } from './onnx-builder.js';
import { decodeFloatTensor, float32Bytes, transpose2d } from './onnx-tensors.js';
import { openTorchFile } from './torch-pickle.js';

/** The modules of an `nn.Sequential`, in order; only Linear has parameters. */
export type HeadModule = 'linear' | 'dropout' | 'relu';

/** `sac+logos+ava1-l14-linearMSE.pth` (and `ava+logos-l14-linearMSE.pth`): five Linears, three Dropouts, no activation. */
export const LAION_AESTHETIC_LAYOUT: readonly HeadModule[] = Object.freeze(['linear', 'dropout', 'linear', 'dropout', 'linear', 'dropout', 'linear', 'linear']);

/** The graph output a head adds beside `image_embeds`: [batch, out_features of the last Linear]. */
import { IMAGE_SCORE_OUTPUT } from '../model-format.js';
export { IMAGE_SCORE_OUTPUT };

export interface HeadDescription {
  /** Module kinds of the Sequential, in order (default: the LAION aesthetic predictor's). */
  layout?: readonly HeadModule[];
  /** The Sequential's attribute name in the state dict (default `layers`). */
  prefix?: string;
}

interface LinearLayer { index: number; inFeatures: number; outFeatures: number; weight: TensorEntry; bias: TensorEntry }

/** A head read from its file: what clip-graph's image tower calls to append it. */
export interface ImageHead {
  file: string;
  inFeatures: number;
  outFeatures: number;
  /** Appends L2 normalisation and the layers after `embeds` ([batch, embedDim] float32) and adds the IMAGE_SCORE_OUTPUT output. */
  append(graph: GraphBuilder, embeds: string, embedDim: number): void;
  close(): Promise<void>;
}

/** Reads a head's Linear layers from a `torch.save` state dict; storages saved on a GPU are read the same. */
export async function readImageHead(file: string, description: HeadDescription = {}): Promise<ImageHead> {
  const layout = description.layout ?? LAION_AESTHETIC_LAYOUT;
  const prefix = description.prefix ?? 'layers';
  const opened = await openTorchFile(file);
  try {
    const layers = linearLayers(new Map(opened.tensors.map((t) => [t.name, t])), layout, prefix, file);
    return {
      file,
      inFeatures: layers[0].inFeatures,
      outFeatures: layers[layers.length - 1].outFeatures,
      append: (graph, embeds, embedDim) => appendHead(graph, embeds, embedDim, layers, layout, file),
      close: () => opened.file.close(),
    };
  } catch (err) {
    await opened.file.close();
    throw err;
  }
}

function linearLayers(tensors: Map<string, TensorEntry>, layout: readonly HeadModule[], prefix: string, file: string): LinearLayer[] {
  const described = `the layout ${layout.join(', ')}`;
  if (!layout.includes('linear')) throw new ModelError(`${described} has no Linear layer`);
  const parameter = new RegExp(`^${prefix.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}\\.(\\d+)\\.(weight|bias)$`);
  for (const name of tensors.keys()) {
    const match = parameter.exec(name);
    const index = match ? Number(match[1]) : -1;
    if (!match) throw new ModelError(`${file} holds tensor ${name}, which is not a parameter of ${prefix}.<index>; it is not a head of ${described}`);
    if (layout[index] !== 'linear') {
      throw new ModelError(`${file} holds tensor ${name}, but module ${index} of ${described} is ${layout[index] === undefined ? 'absent' : `a ${layout[index]} (no parameters)`}; this file is another head`);
    }
  }
  const layers: LinearLayer[] = [];
  layout.forEach((kind, index) => {
    if (kind !== 'linear') return;
    const weight = tensors.get(`${prefix}.${index}.weight`);
    const bias = tensors.get(`${prefix}.${index}.bias`);
    if (!weight || !bias) throw new ModelError(`${file} lacks ${prefix}.${index}.${weight ? 'bias' : 'weight'}, the parameters of Linear ${index} of ${described}`);
    if (weight.shape.length !== 2 || bias.shape.length !== 1 || bias.shape[0] !== weight.shape[0]) {
      throw new ModelError(`${file}: ${prefix}.${index} is not a Linear layer: weight [${weight.shape.join(', ')}], bias [${bias.shape.join(', ')}]`);
    }
    const [outFeatures, inFeatures] = weight.shape;
    const previous = layers[layers.length - 1];
    if (previous && previous.outFeatures !== inFeatures) {
      throw new ModelError(`${file}: ${prefix}.${index}.weight takes ${inFeatures} inputs but ${prefix}.${previous.index} gives ${previous.outFeatures}`);
    }
    layers.push({ index, inFeatures, outFeatures, weight, bias });
  });
  return layers;
}

function appendHead(graph: GraphBuilder, embeds: string, embedDim: number, layers: LinearLayer[], layout: readonly HeadModule[], file: string): void {
  if (layers[0].inFeatures !== embedDim) {
    throw new ModelError(`${file} is a head for ${layers[0].inFeatures}-dimensional image embeddings, but this model's are ${embedDim}-dimensional`);
  }
  graph.scope('head', () => {
    // x / ||x||, with a zero norm counted as 1 (the predictor's normalized()); float32 whatever the tower's precision.
    const norm = graph.op('ReduceL2', [embeds], { attributes: { axes: ints([-1]), keepdims: int(1) } });
    const zero = graph.constFloat32('zero', Float32Array.of(0), []);
    const one = graph.constFloat32('one', Float32Array.of(1), []);
    const divisor = graph.op('Where', [graph.op('Equal', [norm, zero]), one, norm]);
    let x = graph.op('Div', [embeds, divisor]);
    const byIndex = new Map(layers.map((l) => [l.index, l]));
    layout.forEach((kind, index) => {
      if (kind === 'relu') x = graph.op('Relu', [x]);
      if (kind !== 'linear') return;   // dropout: nothing at inference
      const layer = byIndex.get(index)!;
      const w = graph.weight(`head.${index}.weight`, 'float32', [layer.inFeatures, layer.outFeatures], async () =>
        float32Bytes(transpose2d(decodeFloatTensor(await layer.weight.read(), layer.weight.dtype, layer.weight.name), layer.outFeatures, layer.inFeatures)));
      const b = graph.weight(`head.${index}.bias`, 'float32', [layer.outFeatures], async () =>
        float32Bytes(decodeFloatTensor(await layer.bias.read(), layer.bias.dtype, layer.bias.name)));
      x = graph.op('Add', [graph.op('MatMul', [x, w]), b]);
    });
    graph.output(x, IMAGE_SCORE_OUTPUT, 'float32', ['batch', layers[layers.length - 1].outFeatures]);
  });
}
