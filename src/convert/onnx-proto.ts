/**
 * A streaming writer for ONNX ModelProto files, hand-written on protobuf's wire format.
 *
 * Field numbers follow onnx/onnx.proto. The graph's nodes, inputs and outputs are small and encoded in
 * memory; initializers are described by their byte length up front and their bytes are produced one
 * tensor at a time, so that every length prefix is known before the first byte is written and the
 * weights are never all in memory. Initializer bytes go either inline (raw_data) or to an external
 * data file beside the graph, which protobuf's 2 GB message limit makes mandatory for large models.
 */
import { open, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { InternalError } from '../errors.js';

/** ONNX TensorProto.DataType numbers for the element types the CLIP graphs use. */
export const OnnxDataType = {
  float32: 1,
  uint8: 2,
  int8: 3,
  int32: 6,
  int64: 7,
  bool: 9,
  float16: 10,
} as const;
export type ElementType = keyof typeof OnnxDataType;

export const BYTES_PER_ELEMENT: Record<ElementType, number> = {
  float32: 4, uint8: 1, int8: 1, int32: 4, int64: 8, bool: 1, float16: 2,
};

export type AttributeValue =
  | { kind: 'int'; value: number }
  | { kind: 'float'; value: number }
  | { kind: 'string'; value: string }
  | { kind: 'ints'; value: number[] };

export interface OnnxNode {
  opType: string;
  inputs: string[];   // '' marks an omitted optional input
  outputs: string[];
  name: string;
  domain?: string;    // '' (default ONNX domain) or 'com.microsoft'
  attributes?: Record<string, AttributeValue>;
}

/** A dimension is a fixed size or a symbolic name such as "batch". */
export type Dim = number | string;

export interface OnnxValueInfo { name: string; elementType: ElementType; shape: Dim[] }

/** An initializer whose bytes are produced on demand, once, while the file is written. */
export interface OnnxInitializer {
  name: string;
  elementType: ElementType;
  dims: number[];
  bytes(): Promise<Uint8Array>;
}

export interface OnnxModel {
  graphName: string;
  nodes: OnnxNode[];
  inputs: OnnxValueInfo[];
  outputs: OnnxValueInfo[];
  initializers: OnnxInitializer[];
  opsets: { domain: string; version: number }[];
  producerName: string;
  producerVersion: string;
}

/** IR version 8 is the one that ONNX 1.12 pairs with opset 17. */
const IR_VERSION = 8;
/** Stay clear of protobuf's 2 GiB limit: above this many weight bytes, they go to external data. */
export const EXTERNAL_DATA_THRESHOLD = 1_800_000_000;
/** External tensors start on page boundaries, which lets onnxruntime map them instead of copying. */
const EXTERNAL_ALIGNMENT = 4096;
/**
 * Smaller initializers stay inline even with external data: shape inference reads constants such as
 * Reshape's target shape from the graph file and cannot follow them into the data file.
 * 1024 bytes is the threshold the onnx package's own external-data conversion uses.
 */
export const EXTERNAL_MIN_BYTES = 1024;

const WIRE_VARINT = 0;
const WIRE_LENGTH_DELIMITED = 2;
const WIRE_FIXED32 = 5;

// ---- protobuf wire encoding -------------------------------------------------------------------

/** Encodes an int64 as a varint; negative values take ten bytes (two's complement), as protobuf does. */
export function encodeVarint(value: number | bigint): Uint8Array {
  let v = BigInt.asUintN(64, BigInt(value));
  const out: number[] = [];
  while (v >= 0x80n) {
    out.push(Number(v & 0x7fn) | 0x80);
    v >>= 7n;
  }
  out.push(Number(v));
  return Uint8Array.from(out);
}

function tag(field: number, wireType: number): Uint8Array {
  return encodeVarint((field << 3) | wireType);
}

/** Accumulates one protobuf message in memory. Used for everything but initializer payloads. */
export class ProtoMessage {
  private readonly parts: Uint8Array[] = [];
  private size = 0;

  get byteLength(): number {
    return this.size;
  }

  private push(bytes: Uint8Array): this {
    this.parts.push(bytes);
    this.size += bytes.length;
    return this;
  }

  varint(field: number, value: number | bigint): this {
    return this.push(tag(field, WIRE_VARINT)).push(encodeVarint(value));
  }

  float(field: number, value: number): this {
    const bytes = new Uint8Array(4);
    new DataView(bytes.buffer).setFloat32(0, value, true);
    return this.push(tag(field, WIRE_FIXED32)).push(bytes);
  }

  bytes(field: number, value: Uint8Array): this {
    return this.push(tag(field, WIRE_LENGTH_DELIMITED)).push(encodeVarint(value.length)).push(value);
  }

  string(field: number, value: string): this {
    return this.bytes(field, Buffer.from(value, 'utf8'));
  }

  message(field: number, value: ProtoMessage): this {
    return this.bytes(field, value.toBytes());
  }

  /** Writes only the tag and length of a length-delimited field whose payload the caller appends. */
  lengthPrefix(field: number, payloadLength: number): this {
    return this.push(tag(field, WIRE_LENGTH_DELIMITED)).push(encodeVarint(payloadLength));
  }

  packedInt64(field: number, values: number[]): this {
    const body = new ProtoMessage();
    for (const v of values) body.push(encodeVarint(v));
    return this.bytes(field, body.toBytes());
  }

  toBytes(): Uint8Array {
    return Buffer.concat(this.parts, this.size);
  }
}

/** Bytes taken by a length-delimited field holding `payloadLength` bytes. */
function fieldSize(field: number, payloadLength: number): number {
  return tag(field, WIRE_LENGTH_DELIMITED).length + encodeVarint(payloadLength).length + payloadLength;
}

// ---- ONNX messages ----------------------------------------------------------------------------

const AttributeType = { float: 1, int: 2, string: 3, ints: 7 } as const;

function attributeProto(name: string, attr: AttributeValue): ProtoMessage {
  const m = new ProtoMessage().string(1, name).varint(20, AttributeType[attr.kind]);
  switch (attr.kind) {
    case 'float': return m.float(2, attr.value);
    case 'int': return m.varint(3, attr.value);
    case 'string': return m.string(4, attr.value);
    case 'ints': return m.packedInt64(8, attr.value);
  }
}

function nodeProto(node: OnnxNode): ProtoMessage {
  const m = new ProtoMessage();
  for (const input of node.inputs) m.string(1, input);
  for (const output of node.outputs) m.string(2, output);
  m.string(3, node.name).string(4, node.opType);
  for (const [name, attr] of Object.entries(node.attributes ?? {})) m.message(5, attributeProto(name, attr));
  if (node.domain) m.string(7, node.domain);
  return m;
}

function valueInfoProto(info: OnnxValueInfo): ProtoMessage {
  const shape = new ProtoMessage();
  for (const dim of info.shape) {
    const d = new ProtoMessage();
    if (typeof dim === 'number') d.varint(1, dim);
    else d.string(2, dim);
    shape.message(1, d);
  }
  const tensorType = new ProtoMessage().varint(1, OnnxDataType[info.elementType]).message(2, shape);
  const type = new ProtoMessage().message(1, tensorType);
  return new ProtoMessage().string(1, info.name).message(2, type);
}

export function initializerByteLength(init: Pick<OnnxInitializer, 'elementType' | 'dims'>): number {
  return init.dims.reduce((a, b) => a * b, 1) * BYTES_PER_ELEMENT[init.elementType];
}

/**
 * The TensorProto of an initializer, minus its payload. Inline tensors end with the raw_data tag and
 * length, so the payload bytes follow directly; external ones name their place in the data file.
 */
function tensorHeader(init: OnnxInitializer, external: { location: string; offset: number } | undefined): ProtoMessage {
  const m = new ProtoMessage().packedInt64(1, init.dims).varint(2, OnnxDataType[init.elementType]).string(8, init.name);
  const length = initializerByteLength(init);
  if (external === undefined) return m.lengthPrefix(9, length);
  const entry = (key: string, value: string) => new ProtoMessage().string(1, key).string(2, value);
  return m
    .message(13, entry('location', external.location))
    .message(13, entry('offset', String(external.offset)))
    .message(13, entry('length', String(length)))
    .varint(14, 1);
}

// ---- streaming file output --------------------------------------------------------------------

/** Sequential writes through a small buffer, so thousands of tiny protobuf pieces cost few syscalls. */
class BufferedFile {
  private pending: Uint8Array[] = [];
  private pendingBytes = 0;
  position = 0;

  private constructor(private readonly handle: FileHandle) {}

  static async create(file: string): Promise<BufferedFile> {
    return new BufferedFile(await open(file, 'w'));
  }

  async write(bytes: Uint8Array): Promise<void> {
    this.position += bytes.length;
    if (bytes.length >= 1 << 20) {
      await this.flush();
      await this.writeFully(bytes);
      return;
    }
    this.pending.push(bytes);
    this.pendingBytes += bytes.length;
    if (this.pendingBytes >= 1 << 20) await this.flush();
  }

  private async writeFully(bytes: Uint8Array): Promise<void> {
    let offset = 0;
    while (offset < bytes.length) {
      const { bytesWritten } = await this.handle.write(bytes, offset, bytes.length - offset);
      offset += bytesWritten;
    }
  }

  async flush(): Promise<void> {
    if (this.pendingBytes === 0) return;
    const joined = Buffer.concat(this.pending, this.pendingBytes);
    this.pending = [];
    this.pendingBytes = 0;
    await this.writeFully(joined);
  }

  async close(): Promise<void> {
    try {
      await this.flush();
      await this.handle.sync();
    } finally {
      await this.handle.close();
    }
  }
}

async function initializerPayload(init: OnnxInitializer): Promise<Uint8Array> {
  const bytes = await init.bytes();
  const expected = initializerByteLength(init);
  if (bytes.length !== expected) {
    throw new InternalError(`Initializer ${init.name} produced ${bytes.length} bytes, expected ${expected} for dims [${init.dims.join(', ')}] ${init.elementType}`);
  }
  return bytes;
}

/**
 * Produces the items' results in order, starting item i + 1 as soon as item i is taken, so that the
 * next tensor's transform runs while the previous one is written; at most two are held at once.
 * A prefetched result that is never taken (the write failed) is not reported as an unhandled rejection.
 */
function prefetchedOneAhead<T, R>(items: readonly T[], produce: (item: T) => Promise<R>): { next(): Promise<R> } {
  let index = 0;
  let ahead: Promise<R> | undefined;
  const start = (): Promise<R> | undefined => {
    if (index >= items.length) return undefined;
    const pending = produce(items[index++]);
    pending.catch(() => undefined);
    return pending;
  };
  return {
    next() {
      const current = ahead ?? start();
      if (current === undefined) throw new InternalError('prefetchedOneAhead: no items left');
      ahead = start();
      return current;
    },
  };
}

export interface WriteOnnxResult { bytes: number; externalData: boolean; externalDataFile?: string }

/**
 * Writes `model` to `outPath`. With `externalData` 'auto', the weights stay inside the file unless they
 * exceed EXTERNAL_DATA_THRESHOLD; then those of EXTERNAL_MIN_BYTES or more stream to `<outPath>.data`
 * (named relative to the graph).
 * `bytes` counts the graph file and its data file together.
 */
export async function writeOnnxModel(model: OnnxModel, outPath: string, opts: { externalData?: boolean | 'auto' } = {}): Promise<WriteOnnxResult> {
  const weightBytes = model.initializers.reduce((sum, init) => sum + initializerByteLength(init), 0);
  const external = opts.externalData === true || ((opts.externalData ?? 'auto') === 'auto' && weightBytes > EXTERNAL_DATA_THRESHOLD);
  const dataFile = `${outPath}.data`;
  const location = path.basename(dataFile);

  const graphHead = new ProtoMessage().string(2, model.graphName);
  for (const node of model.nodes) graphHead.message(1, nodeProto(node));
  for (const input of model.inputs) graphHead.message(11, valueInfoProto(input));
  for (const output of model.outputs) graphHead.message(12, valueInfoProto(output));

  const isExternal = model.initializers.map((init) => external && initializerByteLength(init) >= EXTERNAL_MIN_BYTES);
  // Headers first: their sizes, and with external data the offsets, fix every length prefix.
  let dataOffset = 0;
  const headers = model.initializers.map((init, i) => {
    if (!isExternal[i]) return tensorHeader(init, undefined);
    dataOffset = Math.ceil(dataOffset / EXTERNAL_ALIGNMENT) * EXTERNAL_ALIGNMENT;
    const header = tensorHeader(init, { location, offset: dataOffset });
    dataOffset += initializerByteLength(init);
    return header;
  });
  let graphLength = graphHead.byteLength;
  model.initializers.forEach((init, i) => {
    const inline = isExternal[i] ? 0 : initializerByteLength(init);
    graphLength += fieldSize(5, headers[i].byteLength + inline);
  });

  const modelHead = new ProtoMessage()
    .varint(1, IR_VERSION)
    .string(2, model.producerName)
    .string(3, model.producerVersion);
  for (const opset of model.opsets) modelHead.message(8, new ProtoMessage().string(1, opset.domain).varint(2, opset.version));
  modelHead.lengthPrefix(7, graphLength);

  const graphOut = await BufferedFile.create(outPath);
  const dataOut = external ? await BufferedFile.create(dataFile) : undefined;
  try {
    await graphOut.write(modelHead.toBytes());
    await graphOut.write(graphHead.toBytes());
    const payloads = prefetchedOneAhead(model.initializers, initializerPayload);
    for (const [i, init] of model.initializers.entries()) {
      const header = headers[i];
      const inline = isExternal[i] ? 0 : initializerByteLength(init);
      await graphOut.write(new ProtoMessage().lengthPrefix(5, header.byteLength + inline).toBytes());
      await graphOut.write(header.toBytes());
      const payload = await payloads.next();
      if (dataOut === undefined || !isExternal[i]) {
        await graphOut.write(payload);
      } else {
        const aligned = Math.ceil(dataOut.position / EXTERNAL_ALIGNMENT) * EXTERNAL_ALIGNMENT;
        if (aligned > dataOut.position) await dataOut.write(new Uint8Array(aligned - dataOut.position));
        await dataOut.write(payload);
      }
    }
  } finally {
    await graphOut.close();
    await dataOut?.close();
  }
  const total = graphOut.position + (dataOut?.position ?? 0);
  return external ? { bytes: total, externalData: true, externalDataFile: dataFile } : { bytes: total, externalData: false };
}
