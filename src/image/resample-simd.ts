/**
 * The two resampling passes of resample.ts as WebAssembly SIMD kernels: the same integer arithmetic
 * (int32 products of uint8 samples and 22-bit taps, a rounding half, an arithmetic shift by 22 and
 * saturation to 0..255), three or sixteen samples per instruction instead of one. The module is small
 * enough to assemble here from opcodes, which keeps the build free of a WebAssembly toolchain.
 *
 * rows(src, srcRowBytes, rows, out, outWidth, starts, counts, taps, tapsPerOutput)
 *   For each row and output pixel xx: the sum over counts[xx] taps of the RGB pixel at
 *   src + row * srcRowBytes + starts[xx] + 3t times taps[xx * tapsPerOutput + t]. Reads one byte past
 *   each pixel (lane 3 is ignored) and writes one byte past each output pixel, so both buffers carry
 *   padding. starts[] are byte offsets.
 * columns(src, rowBytes, out, outRows, starts, counts, taps, tapsPerOutput)
 *   For each output row yy and each byte x of a row: the sum over counts[yy] taps of
 *   src[starts[yy] + t * rowBytes + x] times taps[yy * tapsPerOutput + t], sixteen bytes at a time, so
 *   rows are read and written up to 15 bytes past their end; buffers carry padding.
 */

const I32 = 0x7f;
const V128 = 0x7b;

function uleb(value: number): number[] {
  const out: number[] = [];
  do {
    let byte = value & 0x7f;
    value >>>= 7;
    if (value !== 0) byte |= 0x80;
    out.push(byte);
  } while (value !== 0);
  return out;
}

function sleb(value: number): number[] {
  const out: number[] = [];
  for (;;) {
    const byte = value & 0x7f;
    value >>= 7;
    if ((value === 0 && (byte & 0x40) === 0) || (value === -1 && (byte & 0x40) !== 0)) return [...out, byte];
    out.push(byte | 0x80);
  }
}

const vector = (items: number[][]): number[] => [...uleb(items.length), ...items.flat()];
const section = (id: number, body: number[]): number[] => [id, ...uleb(body.length), ...body];
const name = (text: string): number[] => [...uleb(text.length), ...Buffer.from(text, 'utf8')];

// Scalar instructions.
const get = (local: number) => [0x20, ...uleb(local)];
const set = (local: number) => [0x21, ...uleb(local)];
const i32 = (value: number) => [0x41, ...sleb(value)];
const add = [0x6a];
const mul = [0x6c];
const geU = [0x4f];
const load32 = [0x28, 0x02, 0x00];
// SIMD instructions (prefix 0xfd).
const simd = (op: number, ...immediates: number[]) => [0xfd, ...uleb(op), ...immediates];
const v128Load = simd(0x00, 0x00, 0x00);
const v128Store = simd(0x0b, 0x00, 0x00);
const load8x8U = simd(0x02, 0x00, 0x00);
const store32Lane0 = simd(0x5a, 0x00, 0x00, 0x00);
const i32x4Splat = simd(0x11);
const narrowI16ToU8 = simd(0x66);
const narrowI32ToI16 = simd(0x85);
const extendLowU8 = simd(0x89);
const extendHighU8 = simd(0x8a);
const extendLowU16 = simd(0xa9);
const extendHighU16 = simd(0xaa);
const shrS = simd(0xac);
const i32x4Add = simd(0xae);
const i32x4Mul = simd(0xb5);

/** `while (!(exitCondition)) body`; exitCondition leaves an i32 on the stack. */
const whileNot = (exitCondition: number[], body: number[]) => [0x02, 0x40, 0x03, 0x40, ...exitCondition, 0x0d, 0x01, ...body, 0x0c, 0x00, 0x0b, 0x0b];
const increment = (local: number, by: number[]) => [...get(local), ...by, ...add, ...set(local)];

const ROUNDING_HALF = 1 << 21;
const PRECISION_BITS = 22;
/** The clamp to 0..255: shift, then two saturating narrowings (negative to 0, over 255 to 255). */
const shiftedToBytes = (a: number[], b: number[], c: number[], d: number[]) => [
  ...a, ...i32(PRECISION_BITS), ...shrS, ...b, ...i32(PRECISION_BITS), ...shrS, ...narrowI32ToI16,
  ...c, ...i32(PRECISION_BITS), ...shrS, ...d, ...i32(PRECISION_BITS), ...shrS, ...narrowI32ToI16,
  ...narrowI16ToU8,
];

function rowsFunction(): number[] {
  const [src, srcRowBytes, rows, out, outWidth, starts, counts, taps, tapsPerOutput] = [0, 1, 2, 3, 4, 5, 6, 7, 8];
  const [y, xx, p, k, kEnd, rowPtr] = [9, 10, 11, 12, 13, 14];
  const acc = 15;
  const perTap = [
    ...get(acc), ...get(p), ...load8x8U, ...extendLowU16, ...get(k), ...load32, ...i32x4Splat, ...i32x4Mul, ...i32x4Add, ...set(acc),
    ...increment(p, i32(3)), ...increment(k, i32(4)),
  ];
  const perPixel = [
    ...i32(ROUNDING_HALF), ...i32x4Splat, ...set(acc),
    ...get(rowPtr), ...get(starts), ...get(xx), ...i32(4), ...mul, ...add, ...load32, ...add, ...set(p),
    ...get(taps), ...get(xx), ...get(tapsPerOutput), ...mul, ...i32(4), ...mul, ...add, ...set(k),
    ...get(k), ...get(counts), ...get(xx), ...i32(4), ...mul, ...add, ...load32, ...i32(4), ...mul, ...add, ...set(kEnd),
    ...whileNot([...get(k), ...get(kEnd), ...geU], perTap),
    ...get(out), ...shiftedToBytes(get(acc), get(acc), get(acc), get(acc)), ...store32Lane0,
    ...increment(out, i32(3)), ...increment(xx, i32(1)),
  ];
  const perRow = [
    ...get(src), ...get(y), ...get(srcRowBytes), ...mul, ...add, ...set(rowPtr),
    ...i32(0), ...set(xx),
    ...whileNot([...get(xx), ...get(outWidth), ...geU], perPixel),
    ...increment(y, i32(1)),
  ];
  const locals = vector([[...uleb(6), I32], [...uleb(1), V128]]);
  return [...locals, ...i32(0), ...set(y), ...whileNot([...get(y), ...get(rows), ...geU], perRow), 0x0b];
}

function columnsFunction(): number[] {
  const [src, rowBytes, out, outRows, starts, counts, taps, tapsPerOutput] = [0, 1, 2, 3, 4, 5, 6, 7];
  const [yy, x, t, n, base, kBase, p, outRow] = [8, 9, 10, 11, 12, 13, 14, 15];
  const [a0, a1, a2, a3, w, lo, hi] = [16, 17, 18, 19, 20, 21, 22];
  const accumulate = (a: number, half: number, extend: number[]) => [...get(a), ...get(half), ...extend, ...get(w), ...i32x4Mul, ...i32x4Add, ...set(a)];
  const perTap = [
    ...get(kBase), ...get(t), ...i32(4), ...mul, ...add, ...load32, ...i32x4Splat, ...set(w),
    ...get(p), ...v128Load, 0x22, ...uleb(lo), ...extendHighU8, ...set(hi),
    ...get(lo), ...extendLowU8, ...set(lo),
    ...accumulate(a0, lo, extendLowU16), ...accumulate(a1, lo, extendHighU16),
    ...accumulate(a2, hi, extendLowU16), ...accumulate(a3, hi, extendHighU16),
    ...increment(p, get(rowBytes)), ...increment(t, i32(1)),
  ];
  const perChunk = [
    ...i32(ROUNDING_HALF), ...i32x4Splat, 0x22, ...uleb(a0), 0x22, ...uleb(a1), 0x22, ...uleb(a2), ...set(a3),
    ...get(base), ...get(x), ...add, ...set(p),
    ...i32(0), ...set(t),
    ...whileNot([...get(t), ...get(n), ...geU], perTap),
    ...get(outRow), ...get(x), ...add, ...shiftedToBytes(get(a0), get(a1), get(a2), get(a3)), ...v128Store,
    ...increment(x, i32(16)),
  ];
  const perRow = [
    ...get(src), ...get(starts), ...get(yy), ...i32(4), ...mul, ...add, ...load32, ...add, ...set(base),
    ...get(counts), ...get(yy), ...i32(4), ...mul, ...add, ...load32, ...set(n),
    ...get(taps), ...get(yy), ...get(tapsPerOutput), ...mul, ...i32(4), ...mul, ...add, ...set(kBase),
    ...get(out), ...get(yy), ...get(rowBytes), ...mul, ...add, ...set(outRow),
    ...i32(0), ...set(x),
    ...whileNot([...get(x), ...get(rowBytes), ...geU], perChunk),
    ...increment(yy, i32(1)),
  ];
  const locals = vector([[...uleb(8), I32], [...uleb(7), V128]]);
  return [...locals, ...i32(0), ...set(yy), ...whileNot([...get(yy), ...get(outRows), ...geU], perRow), 0x0b];
}

function assemble(): Uint8Array {
  const funcType = (params: number) => [0x60, ...vector(Array.from({ length: params }, () => [I32])), 0x00];
  const bodies = [rowsFunction(), columnsFunction()].map((body) => [...uleb(body.length), ...body]);
  return new Uint8Array([
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
    ...section(1, vector([funcType(9), funcType(8)])),
    ...section(2, vector([[...name('env'), ...name('memory'), 0x02, 0x00, 0x01]])),
    ...section(3, vector([[0x00], [0x01]])),
    ...section(7, vector([[...name('rows'), 0x00, 0x00], [...name('columns'), 0x00, 0x01]])),
    ...section(10, vector(bodies)),
  ]);
}

/** The subset of the WebAssembly API used here (the project's TypeScript lib has no WebAssembly types). */
interface WasmMemory { readonly buffer: ArrayBuffer; grow(pages: number): number }
interface WasmApi {
  validate(bytes: Uint8Array): boolean;
  Memory: new (descriptor: { initial: number }) => WasmMemory;
  Module: new (bytes: Uint8Array) => object;
  Instance: new (module: object, imports: object) => { exports: Record<string, unknown> };
}

export interface SimdKernels {
  memory: WasmMemory;
  rows(src: number, srcRowBytes: number, rows: number, out: number, outWidth: number, starts: number, counts: number, taps: number, tapsPerOutput: number): void;
  columns(src: number, rowBytes: number, out: number, outRows: number, starts: number, counts: number, taps: number, tapsPerOutput: number): void;
}

let kernels: SimdKernels | null | undefined;

/** The kernels, compiled once per thread; null where WebAssembly SIMD is unavailable (e.g. node --jitless). */
export function simdKernels(): SimdKernels | null {
  if (kernels !== undefined) return kernels;
  const wasm = (globalThis as { WebAssembly?: WasmApi }).WebAssembly;
  const bytes = assemble();
  if (!wasm || !wasm.validate(bytes)) {
    kernels = null;
    return kernels;
  }
  const memory = new wasm.Memory({ initial: 1 });
  const { exports } = new wasm.Instance(new wasm.Module(bytes), { env: { memory } });
  kernels = { memory, rows: exports.rows as SimdKernels['rows'], columns: exports.columns as SimdKernels['columns'] };
  return kernels;
}

/** Filter taps for one axis, as resample.ts computes them. */
export interface Taps { starts: Int32Array; counts: Int32Array; taps: Int32Array; tapsPerOutput: number }

/** Kernel reads and writes run up to 15 bytes past a buffer; every buffer placed in memory gets this much slack. */
const SLACK = 16;

/** Places buffers one after another in the kernels' memory (16-byte aligned), growing it as needed. */
class Arena {
  private end = 0;
  private readonly placed: { at: number; bytes: Uint8Array }[] = [];
  constructor(private readonly k: SimdKernels) {}
  reserve(byteLength: number): number {
    const at = this.end;
    this.end = Math.ceil((at + byteLength + SLACK) / 16) * 16;
    return at;
  }
  put(bytes: Uint8Array): number {
    const at = this.reserve(bytes.length);
    this.placed.push({ at, bytes });
    return at;
  }
  /** Grows the memory to fit everything reserved, then copies the placed buffers in. */
  commit(): Uint8Array {
    const missing = this.end - this.k.memory.buffer.byteLength;
    if (missing > 0) this.k.memory.grow(Math.ceil(missing / 65536));
    const heap = new Uint8Array(this.k.memory.buffer);
    for (const { at, bytes } of this.placed) heap.set(bytes, at);
    return heap;
  }
}

const asBytes = (a: Int32Array) => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);

/**
 * Source rows are copied into the kernels' memory in bands of about this many bytes, so a worker's
 * WebAssembly memory (which never shrinks) stays small however large the image.
 */
const BAND_BYTES = 4 << 20;

/** The horizontal pass over `rows` rows of `src` (starting at byte `srcOffset`), as resample.ts's script version. */
export function simdRows(k: SimdKernels, src: Uint8Array, srcOffset: number, srcWidth: number, rows: number, c: Taps): Uint8Array {
  const rowBytes = srcWidth * 3;
  const outRowBytes = c.starts.length * 3;
  const out = new Uint8Array(outRowBytes * rows);
  const bandRows = Math.max(1, Math.floor(BAND_BYTES / rowBytes));
  const starts = asBytes(c.starts.map((x) => x * 3));
  for (let first = 0; first < rows; first += bandRows) {
    const count = Math.min(bandRows, rows - first);
    const arena = new Arena(k);
    const bandStart = srcOffset + first * rowBytes;
    const srcAt = arena.put(src.subarray(bandStart, bandStart + count * rowBytes));
    const startsAt = arena.put(starts);
    const countsAt = arena.put(asBytes(c.counts));
    const tapsAt = arena.put(asBytes(c.taps));
    const outAt = arena.reserve(outRowBytes * count);
    const heap = arena.commit();
    k.rows(srcAt, rowBytes, count, outAt, c.starts.length, startsAt, countsAt, tapsAt, c.tapsPerOutput);
    out.set(heap.subarray(outAt, outAt + outRowBytes * count), first * outRowBytes);
  }
  return out;
}

/** The vertical pass; row r of the taps is row r - rowOffset of `data`. */
export function simdColumns(k: SimdKernels, data: Uint8Array, width: number, rowOffset: number, c: Taps): Uint8Array {
  const rowBytes = width * 3;
  const outRows = c.starts.length;
  const arena = new Arena(k);
  const srcAt = arena.put(data);
  const startsAt = arena.put(asBytes(c.starts.map((row) => (row - rowOffset) * rowBytes)));
  const countsAt = arena.put(asBytes(c.counts));
  const tapsAt = arena.put(asBytes(c.taps));
  const outLength = outRows * rowBytes;
  const outAt = arena.reserve(outLength);
  const heap = arena.commit();
  k.columns(srcAt, rowBytes, outAt, outRows, startsAt, countsAt, tapsAt, c.tapsPerOutput);
  return heap.slice(outAt, outAt + outLength);
}
