/**
 * Writers of small checkpoints for the checkpoint tests: safetensors, and torch.save's zip+pickle
 * layout (with zip64 records on request), built byte by byte from the formats' specifications so that
 * the readers are tested against files they did not produce.
 */
import { writeFile } from 'node:fs/promises';
import { crc32 } from 'node:zlib';
import type { DType } from '../../src/convert/tensor-file.js';

export interface RawTensor {
  name: string;
  dtype: DType;
  shape: number[];
  data: Buffer;
}

export function f32(values: number[]): Buffer {
  return Buffer.from(new Float32Array(values).buffer);
}

/**
 * A safetensors file's start: the 8-byte little-endian header length, then the JSON header with each
 * tensor's data offsets, the tensors laid out in the order given. Their bytes follow, written by the caller.
 */
export function safetensorsHeader(tensors: readonly { name: string; dtype: string; shape: readonly number[]; byteLength: number }[],
  metadata?: Record<string, string>): Buffer {
  const header: Record<string, unknown> = metadata ? { __metadata__: metadata } : {};
  let offset = 0;
  for (const t of tensors) {
    header[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + t.byteLength] };
    offset += t.byteLength;
  }
  const json = Buffer.from(JSON.stringify(header));
  const length = Buffer.alloc(8);
  length.writeBigUInt64LE(BigInt(json.length));
  return Buffer.concat([length, json]);
}

export async function writeSafetensors(filePath: string, tensors: RawTensor[]): Promise<void> {
  const header = safetensorsHeader(tensors.map((t) => ({ ...t, byteLength: t.data.length })), { format: 'pt' });
  await writeFile(filePath, Buffer.concat([header, ...tensors.map((t) => t.data)]));
}

/** A tensor as a view of a storage, as `_rebuild_tensor_v2` receives it. */
export interface TorchTensor {
  name: string;
  storageKey: string;
  storageClass: string;
  storageNumel: number;
  offset: number;
  shape: number[];
  stride: number[];
}

/** Pickle protocol 2 of an OrderedDict of tensors, with the opcodes torch.save emits. */
export function stateDictPickle(tensors: TorchTensor[]): Buffer {
  const parts: Buffer[] = [Buffer.from([0x80, 0x02])];
  const op = (...bytes: number[]): void => void parts.push(Buffer.from(bytes));
  const global = (module: string, name: string): void => void parts.push(Buffer.from(`c${module}\n${name}\n`, 'utf8'));
  const str = (s: string): void => {
    const bytes = Buffer.from(s, 'utf8');
    const len = Buffer.alloc(4);
    len.writeUInt32LE(bytes.length);
    parts.push(Buffer.from([0x58]), len, bytes);
  };
  const int = (n: number): void => {
    const b = Buffer.alloc(5);
    b[0] = 0x4a;
    b.writeInt32LE(n, 1);
    parts.push(b);
  };
  const tuple = (items: number[]): void => {
    op(0x28);
    items.forEach(int);
    op(0x74);
  };
  global('collections', 'OrderedDict');
  op(0x29, 0x52, 0x28); // () REDUCE, MARK
  for (const t of tensors) {
    str(t.name);
    global('torch._utils', '_rebuild_tensor_v2');
    op(0x28, 0x28); // MARK (args), MARK (persistent id)
    str('storage');
    const [module, name] = splitQualified(t.storageClass);
    global(module, name);
    str(t.storageKey);
    str('cpu');
    int(t.storageNumel);
    op(0x74, 0x51); // TUPLE, BINPERSID
    int(t.offset);
    tuple(t.shape);
    tuple(t.stride);
    op(0x89); // requires_grad False
    global('collections', 'OrderedDict');
    op(0x29, 0x52, 0x74, 0x52); // backward hooks OrderedDict(), TUPLE, REDUCE
  }
  op(0x75, 0x2e); // SETITEMS, STOP
  return Buffer.concat(parts);
}

function splitQualified(qualified: string): [string, string] {
  const dot = qualified.lastIndexOf('.');
  return [qualified.slice(0, dot), qualified.slice(dot + 1)];
}

export interface ZipFileEntry {
  name: string;
  data: Buffer;
}

/**
 * A zip archive of stored entries. With `zip64`, every size and offset goes to zip64 extra fields and
 * the archive ends with zip64 end records, as in a checkpoint over 4 GB.
 */
export function storedZip(entries: ZipFileEntry[], opts: { zip64?: boolean; extraPadding?: number } = {}): Buffer {
  const zip64 = opts.zip64 ?? false;
  const locals: Buffer[] = [];
  const centrals: Buffer[] = [];
  let offset = 0;
  for (const entry of entries) {
    const name = Buffer.from(entry.name, 'utf8');
    const crc = crc32(entry.data);
    // torch.save pads local headers so that data is 64-byte aligned; a padding extra field mimics that.
    const padding = Buffer.alloc(opts.extraPadding ?? 0);
    const local = Buffer.alloc(30);
    local.writeUInt32LE(0x04034b50, 0);
    local.writeUInt16LE(zip64 ? 45 : 20, 4);
    local.writeUInt32LE(crc, 14);
    local.writeUInt32LE(entry.data.length, 18);
    local.writeUInt32LE(entry.data.length, 22);
    local.writeUInt16LE(name.length, 26);
    local.writeUInt16LE(padding.length, 28);
    locals.push(local, name, padding, entry.data);

    const extra = zip64 ? zip64Extra([entry.data.length, entry.data.length, offset]) : Buffer.alloc(0);
    const central = Buffer.alloc(46);
    central.writeUInt32LE(0x02014b50, 0);
    central.writeUInt16LE(zip64 ? 45 : 20, 4);
    central.writeUInt16LE(zip64 ? 45 : 20, 6);
    central.writeUInt32LE(crc, 16);
    central.writeUInt32LE(zip64 ? 0xffffffff : entry.data.length, 20);
    central.writeUInt32LE(zip64 ? 0xffffffff : entry.data.length, 24);
    central.writeUInt16LE(name.length, 28);
    central.writeUInt16LE(extra.length, 30);
    central.writeUInt32LE(zip64 ? 0xffffffff : offset, 42);
    centrals.push(central, name, extra);
    offset += 30 + name.length + padding.length + entry.data.length;
  }
  const directory = Buffer.concat(centrals);
  const tail: Buffer[] = [];
  if (zip64) {
    const record = Buffer.alloc(56);
    record.writeUInt32LE(0x06064b50, 0);
    record.writeBigUInt64LE(44n, 4);
    record.writeUInt16LE(45, 12);
    record.writeUInt16LE(45, 14);
    record.writeBigUInt64LE(BigInt(entries.length), 24);
    record.writeBigUInt64LE(BigInt(entries.length), 32);
    record.writeBigUInt64LE(BigInt(directory.length), 40);
    record.writeBigUInt64LE(BigInt(offset), 48);
    const locator = Buffer.alloc(20);
    locator.writeUInt32LE(0x07064b50, 0);
    locator.writeBigUInt64LE(BigInt(offset + directory.length), 8);
    locator.writeUInt32LE(1, 16);
    tail.push(record, locator);
  }
  const end = Buffer.alloc(22);
  end.writeUInt32LE(0x06054b50, 0);
  end.writeUInt16LE(zip64 ? 0xffff : entries.length, 8);
  end.writeUInt16LE(zip64 ? 0xffff : entries.length, 10);
  end.writeUInt32LE(zip64 ? 0xffffffff : directory.length, 12);
  end.writeUInt32LE(zip64 ? 0xffffffff : offset, 16);
  return Buffer.concat([...locals, directory, ...tail, end]);
}

function zip64Extra(values: number[]): Buffer {
  const extra = Buffer.alloc(4 + 8 * values.length);
  extra.writeUInt16LE(0x0001, 0);
  extra.writeUInt16LE(8 * values.length, 2);
  values.forEach((v, i) => extra.writeBigUInt64LE(BigInt(v), 4 + 8 * i));
  return extra;
}

/** A torch.save-style archive `<archive>/data.pkl` + `<archive>/data/<key>`. */
export async function writeTorchCheckpoint(
  filePath: string,
  tensors: TorchTensor[],
  storages: Record<string, Buffer>,
  opts: { zip64?: boolean; archive?: string; pickle?: Buffer } = {},
): Promise<void> {
  const archive = opts.archive ?? 'archive';
  const entries: ZipFileEntry[] = [
    { name: `${archive}/data.pkl`, data: opts.pickle ?? stateDictPickle(tensors) },
    { name: `${archive}/byteorder`, data: Buffer.from('little') },
    ...Object.entries(storages).map(([key, data]) => ({ name: `${archive}/data/${key}`, data })),
    { name: `${archive}/version`, data: Buffer.from('3\n') },
  ];
  await writeFile(filePath, storedZip(entries, { zip64: opts.zip64, extraPadding: 12 }));
}
