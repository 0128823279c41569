/**
 * PyTorch checkpoint reader (`pytorch_model.bin`), without Python.
 *
 * `torch.save` writes a zip archive: `<name>/data.pkl` is a pickle of the state dict, in which each
 * tensor is a call to `torch._utils._rebuild_tensor_v2` on a storage that the pickle names by a
 * persistent id; the storage's bytes are the stored entry `<name>/data/<key>`. This module runs a
 * pickle machine that knows only that subset: a handful of opcodes and an allow-list of globals, each
 * mapped to a plain record. There is nothing to execute, and anything else is refused with an error.
 */
import { ModelError } from '../errors.js';
import { DTYPE_BYTES, elementCount, isCount, type DType, type TensorEntry, type TensorFile } from './tensor-file.js';
import { RandomAccessFile, ZipArchive } from './zip.js';

/** A storage as the persistent id names it: `('storage', torch.FloatStorage, key, location, numel)`. */
export interface StorageRecord {
  key: string;
  dtype: DType;
  numel: number;
}

/** The arguments of `_rebuild_tensor_v2(storage, storage_offset, size, stride, ...)`. */
export interface TensorRecord {
  storage: StorageRecord;
  offset: number;
  shape: number[];
  stride: number[];
}

/** A reference to a Python global, resolved only against the allow-list below. */
class GlobalRef {
  constructor(
    readonly module: string,
    readonly name: string,
  ) {}
  get qualifiedName(): string {
    return `${this.module}.${this.name}`;
  }
}

/** A Python dict or OrderedDict; keys are the strings or numbers the pickle gives. */
class PickleDict {
  readonly entries = new Map<unknown, unknown>();
}

class Tensor {
  constructor(readonly record: TensorRecord) {}
}

class Storage {
  constructor(readonly record: StorageRecord) {}
}

const STORAGE_DTYPES: Readonly<Record<string, DType>> = {
  'torch.FloatStorage': 'F32',
  'torch.HalfStorage': 'F16',
  'torch.BFloat16Storage': 'BF16',
  'torch.DoubleStorage': 'F64',
  'torch.LongStorage': 'I64',
  'torch.IntStorage': 'I32',
  'torch.ShortStorage': 'I16',
  'torch.CharStorage': 'I8',
  'torch.ByteStorage': 'U8',
  'torch.BoolStorage': 'BOOL',
  // Raw bytes: the tensor is typed by its storage, so an untyped one reads as uint8.
  'torch.UntypedStorage': 'U8',
  'torch.storage.UntypedStorage': 'U8',
};

type Callable = (args: unknown[], fail: (message: string) => never) => unknown;

const CALLABLES: Readonly<Record<string, Callable>> = {
  'collections.OrderedDict': () => new PickleDict(),
  'torch._utils._rebuild_tensor_v2': (args, fail) => new Tensor(tensorRecordFromArgs(args, fail)),
  // nn.Parameter wraps a tensor; the wrapper carries nothing a state dict needs.
  'torch._utils._rebuild_parameter': (args, fail) => (args[0] instanceof Tensor ? args[0] : fail('_rebuild_parameter of a non-tensor')),
};

function tensorRecordFromArgs(args: unknown[], fail: (message: string) => never): TensorRecord {
  const [storage, offset, shape, stride] = args;
  if (!(storage instanceof Storage)) fail('_rebuild_tensor_v2 called without a storage');
  if (!isCount(offset)) fail(`_rebuild_tensor_v2 called with storage offset ${String(offset)}`);
  if (!isCountTuple(shape) || !isCountTuple(stride) || shape.length !== stride.length) {
    fail('_rebuild_tensor_v2 called with a malformed size or stride');
  }
  return { storage: storage.record, offset, shape, stride };
}

function isCountTuple(value: unknown): value is number[] {
  return Array.isArray(value) && value.every(isCount);
}

/** Pickle opcodes of protocols 0-5 that `torch.save` emits for a state dict. */
const OP = {
  MARK: 0x28, STOP: 0x2e, PROTO: 0x80, FRAME: 0x95,
  GLOBAL: 0x63, STACK_GLOBAL: 0x93, REDUCE: 0x52, BUILD: 0x62, BINPERSID: 0x51,
  BINPUT: 0x71, LONG_BINPUT: 0x72, MEMOIZE: 0x94, BINGET: 0x68, LONG_BINGET: 0x6a,
  NONE: 0x4e, NEWTRUE: 0x88, NEWFALSE: 0x89,
  BININT: 0x4a, BININT1: 0x4b, BININT2: 0x4d, LONG1: 0x8a, BINFLOAT: 0x47,
  BINUNICODE: 0x58, SHORT_BINUNICODE: 0x8c, BINUNICODE8: 0x8d, SHORT_BINSTRING: 0x55, BINSTRING: 0x54,
  EMPTY_TUPLE: 0x29, TUPLE: 0x74, TUPLE1: 0x85, TUPLE2: 0x86, TUPLE3: 0x87,
  EMPTY_LIST: 0x5d, LIST: 0x6c, APPEND: 0x61, APPENDS: 0x65,
  EMPTY_DICT: 0x7d, DICT: 0x64, SETITEM: 0x73, SETITEMS: 0x75,
} as const;

export interface TorchFileOptions {
  /**
   * Read the state dict from this key of the saved dict when it holds one, as open_clip does with a
   * training checkpoint (`torch.save({'state_dict': ..., 'epoch': ...})`); a plain state dict is read as it is.
   */
  nestedStateDictKey?: string;
}

/**
 * Runs the pickle of a state dict and returns its tensors in order. `source` names the pickle in
 * error messages. Values that are not tensors (rare extras in a state dict) are left out.
 */
export function unpickleStateDict(bytes: Uint8Array, source: string, opts: TorchFileOptions = {}): Map<string, TensorRecord> {
  const saved = new StateDictUnpickler(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength), source).run();
  const nested = opts.nestedStateDictKey !== undefined && saved instanceof PickleDict ? saved.entries.get(opts.nestedStateDictKey) : undefined;
  const root = nested instanceof PickleDict ? nested : saved;
  if (!(root instanceof PickleDict)) throw new ModelError(`${source}: the pickle does not hold a state dict (a dict of tensors)`);
  const tensors = new Map<string, TensorRecord>();
  for (const [key, value] of root.entries) {
    if (typeof key === 'string' && value instanceof Tensor) tensors.set(key, value.record);
  }
  return tensors;
}

class StateDictUnpickler {
  private pos = 0;
  private stack: unknown[] = [];
  private readonly marks: unknown[][] = [];
  private readonly memo = new Map<number, unknown>();

  constructor(
    private readonly bytes: Buffer,
    private readonly source: string,
  ) {}

  run(): unknown {
    while (this.pos < this.bytes.length) {
      const at = this.pos;
      const op = this.u8();
      if (op === OP.STOP) return this.pop();
      this.step(op, at);
    }
    return this.fail('the pickle ends without a STOP opcode (truncated?)');
  }

  private step(op: number, at: number): void {
    switch (op) {
      case OP.PROTO: this.u8(); return;
      case OP.FRAME: this.take(8); return;
      case OP.MARK: this.marks.push(this.stack); this.stack = []; return;
      case OP.GLOBAL: this.stack.push(this.global(this.line(), this.line())); return;
      case OP.STACK_GLOBAL: { const name = this.pop(); const module = this.pop(); this.stack.push(this.global(module, name)); return; }
      case OP.REDUCE: { const args = this.pop(); this.stack.push(this.call(this.pop(), args)); return; }
      case OP.BUILD: this.build(this.pop()); return;
      case OP.BINPERSID: this.stack.push(this.persistentLoad(this.pop())); return;
      case OP.BINPUT: this.memo.set(this.u8(), this.top()); return;
      case OP.LONG_BINPUT: this.memo.set(this.u32(), this.top()); return;
      case OP.MEMOIZE: this.memo.set(this.memo.size, this.top()); return;
      case OP.BINGET: this.stack.push(this.memoGet(this.u8())); return;
      case OP.LONG_BINGET: this.stack.push(this.memoGet(this.u32())); return;
      case OP.NONE: this.stack.push(null); return;
      case OP.NEWTRUE: this.stack.push(true); return;
      case OP.NEWFALSE: this.stack.push(false); return;
      case OP.BININT: this.stack.push(this.take(4).readInt32LE(0)); return;
      case OP.BININT1: this.stack.push(this.u8()); return;
      case OP.BININT2: this.stack.push(this.take(2).readUInt16LE(0)); return;
      case OP.LONG1: this.stack.push(this.long(this.u8())); return;
      case OP.BINFLOAT: this.stack.push(this.take(8).readDoubleBE(0)); return;
      case OP.BINUNICODE: this.stack.push(this.take(this.u32()).toString('utf8')); return;
      case OP.SHORT_BINUNICODE: this.stack.push(this.take(this.u8()).toString('utf8')); return;
      case OP.BINUNICODE8: this.stack.push(this.take(this.u64()).toString('utf8')); return;
      case OP.SHORT_BINSTRING: this.stack.push(this.take(this.u8()).toString('latin1')); return;
      case OP.BINSTRING: this.stack.push(this.take(this.u32()).toString('latin1')); return;
      case OP.EMPTY_TUPLE: this.stack.push([]); return;
      case OP.TUPLE: case OP.LIST: { const items = this.popMark(); this.stack.push(items); return; }
      case OP.TUPLE1: this.stack.push(this.stack.splice(-1)); return;
      case OP.TUPLE2: this.stack.push(this.stack.splice(-2)); return;
      case OP.TUPLE3: this.stack.push(this.stack.splice(-3)); return;
      case OP.EMPTY_LIST: this.stack.push([]); return;
      case OP.APPEND: { const item = this.pop(); this.list(this.top()).push(item); return; }
      case OP.APPENDS: { const items = this.popMark(); this.list(this.top()).push(...items); return; }
      case OP.EMPTY_DICT: this.stack.push(new PickleDict()); return;
      case OP.DICT: { const items = this.popMark(); const dict = new PickleDict(); this.setItems(dict, items); this.stack.push(dict); return; }
      case OP.SETITEM: { const value = this.pop(); const key = this.pop(); this.dict(this.top()).entries.set(key, value); return; }
      case OP.SETITEMS: { const items = this.popMark(); this.setItems(this.dict(this.top()), items); return; }
      default:
        this.fail(`unsupported pickle opcode 0x${op.toString(16).padStart(2, '0')} at byte ${at}; a state dict saved by torch.save does not use it`);
    }
  }

  private global(module: unknown, name: unknown): GlobalRef {
    const ref = new GlobalRef(String(module), String(name));
    if (!(ref.qualifiedName in CALLABLES) && !(ref.qualifiedName in STORAGE_DTYPES)) {
      this.fail(`the pickle refers to ${ref.qualifiedName}, which is not part of a state dict; refusing to load it`);
    }
    return ref;
  }

  private call(callable: unknown, args: unknown): unknown {
    if (!(callable instanceof GlobalRef) || !Array.isArray(args)) return this.fail('REDUCE on something that is not a call');
    const fn = CALLABLES[callable.qualifiedName];
    if (!fn) return this.fail(`the pickle calls ${callable.qualifiedName}, which is not part of a state dict`);
    return fn(args, (message) => this.fail(message));
  }

  /** torch attaches `_metadata` (module versions) to the state dict; it is not needed to read tensors. */
  private build(state: unknown): void {
    const target = this.top();
    if (!(target instanceof PickleDict) || !(state instanceof PickleDict || state === null)) {
      this.fail('BUILD on something other than a state dict');
    }
  }

  private persistentLoad(pid: unknown): Storage {
    if (!Array.isArray(pid) || pid[0] !== 'storage' || pid.length < 5) return this.fail('a persistent id that is not a storage record');
    const [, type, key, , numel] = pid as [unknown, unknown, unknown, unknown, unknown];
    const dtype = type instanceof GlobalRef ? STORAGE_DTYPES[type.qualifiedName] : undefined;
    if (!dtype) return this.fail(`a storage of unsupported type ${type instanceof GlobalRef ? type.qualifiedName : String(type)}`);
    if (typeof key !== 'string' || !isCount(numel)) return this.fail('a storage record with a malformed key or size');
    return new Storage({ key, dtype, numel });
  }

  private setItems(dict: PickleDict, items: unknown[]): void {
    if (items.length % 2 !== 0) this.fail('SETITEMS with an odd number of items');
    for (let i = 0; i < items.length; i += 2) dict.entries.set(items[i], items[i + 1]);
  }

  /** Callers must pop before they touch `this.stack`, which this replaces with the stack under the mark. */
  private popMark(): unknown[] {
    const items = this.stack;
    const outer = this.marks.pop();
    if (!outer) return this.fail('a pickle opcode needs a MARK that is not there');
    this.stack = outer;
    return items;
  }

  private pop(): unknown {
    if (this.stack.length === 0) return this.fail('the pickle stack is empty where a value is needed');
    return this.stack.pop();
  }

  private top(): unknown {
    if (this.stack.length === 0) return this.fail('the pickle stack is empty where a value is needed');
    return this.stack[this.stack.length - 1];
  }

  private memoGet(index: number): unknown {
    if (!this.memo.has(index)) this.fail(`the pickle reads memo slot ${index}, which was never written`);
    return this.memo.get(index);
  }

  private list(value: unknown): unknown[] {
    return Array.isArray(value) ? value : this.fail('APPEND to something that is not a list');
  }

  private dict(value: unknown): PickleDict {
    return value instanceof PickleDict ? value : this.fail('SETITEM on something that is not a dict');
  }

  private take(length: number): Buffer {
    if (this.pos + length > this.bytes.length) this.fail('the pickle is cut short (truncated or corrupt)');
    const out = this.bytes.subarray(this.pos, this.pos + length);
    this.pos += length;
    return out;
  }

  private u8(): number {
    return this.take(1)[0];
  }

  private u32(): number {
    return this.take(4).readUInt32LE(0);
  }

  private u64(): number {
    const value = this.take(8).readBigUInt64LE(0);
    return value > BigInt(this.bytes.length) ? this.fail('a string length past the end of the pickle') : Number(value);
  }

  /** LONG1: little-endian two's complement of the given byte count. */
  private long(length: number): number {
    const bytes = this.take(length);
    let value = 0n;
    for (let i = length - 1; i >= 0; i--) value = (value << 8n) | BigInt(bytes[i]);
    if (length > 0 && bytes[length - 1] & 0x80) value -= 1n << BigInt(8 * length);
    if (value > BigInt(Number.MAX_SAFE_INTEGER) || value < BigInt(Number.MIN_SAFE_INTEGER)) return this.fail(`integer ${value} is out of range`);
    return Number(value);
  }

  private line(): string {
    const end = this.bytes.indexOf(0x0a, this.pos);
    if (end < 0) return this.fail('GLOBAL without a newline (truncated or corrupt)');
    const text = this.bytes.toString('utf8', this.pos, end);
    this.pos = end + 1;
    return text;
  }

  private fail(message: string): never {
    throw new ModelError(`${this.source}: ${message}`);
  }
}

/** `<archive name>/data.pkl`: torch.save names the top folder after the file it saved to. */
const PICKLE_ENTRY = /^[^/]+\/data\.pkl$/;

export async function openTorchFile(filePath: string, opts: TorchFileOptions = {}): Promise<TensorFile> {
  const file = await RandomAccessFile.open(filePath);
  try {
    return { file, tensors: await readTorchEntries(file, opts) };
  } catch (err) {
    await file.close();
    throw err;
  }
}

async function readTorchEntries(file: RandomAccessFile, opts: TorchFileOptions): Promise<TensorEntry[]> {
  const magic = await file.read(0, Math.min(2, file.size), 'the file signature');
  if (magic[0] === 0x80) {
    throw new ModelError(`${file.path} uses the legacy (before PyTorch 1.6) torch.save format, which is not supported; save it again with a newer PyTorch or as safetensors`);
  }
  const zip = await ZipArchive.open(file);
  const pickleNames = [...zip.entries.keys()].filter((name) => PICKLE_ENTRY.test(name));
  if (pickleNames.length !== 1) {
    throw new ModelError(`${file.path} is not a torch.save checkpoint: expected one <name>/data.pkl entry but found ${pickleNames.length}`);
  }
  const prefix = pickleNames[0].slice(0, -'data.pkl'.length);
  await checkByteOrder(zip, prefix);
  const pickleEntry = zip.entry(pickleNames[0]);
  const pickle = await zip.readEntry(pickleEntry.name, 0, pickleEntry.size, 'the state dict pickle');
  const records = unpickleStateDict(pickle, `${file.path} (${pickleEntry.name})`, opts);
  return [...records].map(([name, record]) => toEntry(zip, prefix, name, record));
}

/** Written by PyTorch 1.10 and later; older files are little-endian, as every platform they ran on. */
async function checkByteOrder(zip: ZipArchive, prefix: string): Promise<void> {
  const entry = zip.entries.get(`${prefix}byteorder`);
  if (!entry) return;
  const order = (await zip.readEntry(entry.name, 0, entry.size, 'the byte order record')).toString('utf8').trim();
  if (order !== 'little') throw new ModelError(`${zip.file.path} was saved with ${order}-endian tensors; only little-endian is supported`);
}

function toEntry(zip: ZipArchive, prefix: string, name: string, record: TensorRecord): TensorEntry {
  const { storage, offset, shape, stride } = record;
  const itemSize = DTYPE_BYTES[storage.dtype];
  const storageEntry = zip.entries.get(`${prefix}data/${storage.key}`);
  if (!storageEntry) {
    throw new ModelError(`${zip.file.path}: tensor ${name} uses storage ${storage.key}, but the archive has no entry ${prefix}data/${storage.key}`);
  }
  const numel = elementCount(shape);
  const span = numel === 0 ? 0 : 1 + shape.reduce((sum, d, i) => sum + (d - 1) * stride[i], 0);
  const needed = (offset + span) * itemSize;
  if (needed > storageEntry.size) {
    throw new ModelError(
      `${zip.file.path}: tensor ${name} needs ${needed} bytes of storage ${storage.key}, but its entry holds ${storageEntry.size} (truncated or corrupt)`,
    );
  }
  const what = `tensor ${name}`;
  const read = isContiguous(shape, stride)
    ? () => zip.readEntry(storageEntry.name, offset * itemSize, numel * itemSize, what)
    : async () => gatherStrided(await zip.readEntry(storageEntry.name, offset * itemSize, span * itemSize, what), shape, stride, itemSize);
  return { name, dtype: storage.dtype, shape: [...shape], byteLength: numel * itemSize, file: zip.file.path, read };
}

/** Row-major with no gaps; a dimension of size 1 may have any stride. */
export function isContiguous(shape: readonly number[], stride: readonly number[]): boolean {
  let expected = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    if (shape[i] !== 1 && stride[i] !== expected) return false;
    expected *= shape[i];
  }
  return true;
}

/**
 * Copies a strided view (e.g. a transposed tensor saved without `.contiguous()`) into row-major order.
 * `span` starts at the view's first element.
 */
export function gatherStrided(span: Buffer, shape: readonly number[], stride: readonly number[], itemSize: number): Buffer {
  const numel = elementCount(shape);
  const out = Buffer.allocUnsafe(numel * itemSize);
  const index = new Array<number>(shape.length).fill(0);
  for (let element = 0; element < numel; element++) {
    let source = 0;
    for (let d = 0; d < shape.length; d++) source += index[d] * stride[d];
    span.copy(out, element * itemSize, source * itemSize, (source + 1) * itemSize);
    for (let d = shape.length - 1; d >= 0; d--) {
      if (++index[d] < shape[d]) break;
      index[d] = 0;
    }
  }
  return out;
}
