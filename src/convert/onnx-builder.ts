/**
 * A small builder for ONNX graphs: it names nodes and values uniquely within scopes, keeps small
 * constants in memory and large weights as lazy byte producers, and hands an OnnxModel to the writer.
 */
import type { AttributeValue, Dim, ElementType, OnnxInitializer, OnnxModel, OnnxNode, OnnxValueInfo } from './onnx-proto.js';

export const int = (value: number): AttributeValue => ({ kind: 'int', value });
export const float = (value: number): AttributeValue => ({ kind: 'float', value });
export const ints = (value: number[]): AttributeValue => ({ kind: 'ints', value });

export const MS_DOMAIN = 'com.microsoft';
export const ONNX_OPSET = 17;

export interface OpOptions {
  attributes?: Record<string, AttributeValue>;
  domain?: string;
  /** Number of outputs to create names for; '' entries in inputs mark omitted optional inputs. */
  outputs?: number;
}

export class GraphBuilder {
  private readonly nodes: OnnxNode[] = [];
  private readonly initializers: OnnxInitializer[] = [];
  private readonly inputs: OnnxValueInfo[] = [];
  private readonly outputs: OnnxValueInfo[] = [];
  private readonly usedNames = new Set<string>();
  private readonly domains = new Set<string>();
  private readonly int64Constants = new Map<string, string>();
  private readonly scopePath: string[] = [];

  constructor(private readonly graphName: string) {}

  /** Runs `body` with node and value names prefixed by `name/`, which keeps profiles readable. */
  scope<T>(name: string, body: () => T): T {
    this.scopePath.push(name);
    try {
      return body();
    } finally {
      this.scopePath.pop();
    }
  }

  private uniqueName(base: string, scoped = true): string {
    const full = scoped ? [...this.scopePath, base].join('/') : base;
    let name = full;
    for (let i = 1; this.usedNames.has(name); i++) name = `${full}_${i}`;
    this.usedNames.add(name);
    return name;
  }

  input(name: string, elementType: ElementType, shape: Dim[]): string {
    this.inputs.push({ name, elementType, shape });
    this.usedNames.add(name);
    return name;
  }

  /** Marks `value` as a graph output called `name`, through an Identity when the names differ. */
  output(value: string, name: string, elementType: ElementType, shape: Dim[]): void {
    if (value !== name) this.nodes.push({ opType: 'Identity', inputs: [value], outputs: [name], name: this.uniqueName(`${name}_identity`) });
    this.outputs.push({ name, elementType, shape });
  }

  /** Adds a node and returns the names of its outputs. */
  opN(opType: string, inputs: string[], opts: OpOptions = {}): string[] {
    const name = this.uniqueName(opType);
    const outputs = Array.from({ length: opts.outputs ?? 1 }, (_, i) => `${name}:${i}`);
    const node: OnnxNode = { opType, inputs, outputs, name };
    if (opts.attributes) node.attributes = opts.attributes;
    if (opts.domain) {
      node.domain = opts.domain;
      this.domains.add(opts.domain);
    }
    this.nodes.push(node);
    return outputs;
  }

  op(opType: string, inputs: string[], opts: OpOptions = {}): string {
    return this.opN(opType, inputs, opts)[0];
  }

  /** A weight produced lazily while the file is written. */
  weight(baseName: string, elementType: ElementType, dims: number[], bytes: () => Promise<Uint8Array>): string {
    const name = this.uniqueName(baseName, false);
    this.initializers.push({ name, elementType, dims, bytes });
    return name;
  }

  /** Small int64 constants (shapes, indices); equal ones are shared. */
  constInt64(baseName: string, values: number[], dims: number[] = [values.length]): string {
    const key = `${baseName}|${values.join(',')}|${dims.join(',')}`;
    let name = this.int64Constants.get(key);
    if (name === undefined) {
      const data = BigInt64Array.from(values.map((v) => BigInt(v)));
      name = this.weight(baseName, 'int64', dims, async () => new Uint8Array(data.buffer));
      this.int64Constants.set(key, name);
    }
    return name;
  }

  constFloat32(baseName: string, values: Float32Array, dims: number[]): string {
    return this.weight(baseName, 'float32', dims, async () => new Uint8Array(values.buffer, values.byteOffset, values.byteLength));
  }

  build(producerVersion: string): OnnxModel {
    const opsets = [{ domain: '', version: ONNX_OPSET }, ...[...this.domains].map((domain) => ({ domain, version: 1 }))];
    return {
      graphName: this.graphName,
      nodes: this.nodes,
      inputs: this.inputs,
      outputs: this.outputs,
      initializers: this.initializers,
      opsets,
      producerName: 'pickscore',
      producerVersion,
    };
  }
}
