/**
 * Pure conversions between checkpoint tensor bytes and the element types the ONNX graphs hold:
 * decoding F32/F16/BF16/F64 to float32, float32 to IEEE half (round to nearest even), and the
 * layout changes the graph needs (a Linear's [out, in] weight becomes MatMul's [in, out]).
 */
import { endianness } from 'node:os';
import { ModelError } from '../errors.js';

const LITTLE_ENDIAN_HOST = endianness() === 'LE';

const scratch = new DataView(new ArrayBuffer(4));

/** IEEE 754 binary16 bits of a float32, rounding to nearest even, with overflow to infinity. */
export function float32ToFloat16Bits(value: number): number {
  scratch.setFloat32(0, value, true);
  const bits = scratch.getUint32(0, true);
  const sign = (bits >>> 16) & 0x8000;
  const exponent = (bits >>> 23) & 0xff;
  let mantissa = bits & 0x7fffff;
  if (exponent === 0xff) return sign | 0x7c00 | (mantissa ? 0x200 : 0);   // NaN stays NaN, inf stays inf
  let e = exponent - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;                                             // below half the smallest subnormal
    mantissa |= 0x800000;
    const shift = 14 - e;
    const half = 1 << (shift - 1);
    const rest = mantissa & ((1 << shift) - 1);
    let result = mantissa >>> shift;
    if (rest > half || (rest === half && (result & 1))) result += 1;
    return sign | result;
  }
  const rest = mantissa & 0x1fff;
  let result = (e << 10) | (mantissa >>> 13);
  if (rest > 0x1000 || (rest === 0x1000 && (result & 1))) result += 1;  // a carry into the exponent is still correct
  return sign | result;
}

export function float16BitsToFloat32(bits: number): number {
  const sign = bits & 0x8000 ? -1 : 1;
  const exponent = (bits >>> 10) & 0x1f;
  const mantissa = bits & 0x3ff;
  if (exponent === 0) return sign * mantissa * 2 ** -24;
  if (exponent === 0x1f) return mantissa ? NaN : sign * Infinity;
  return sign * (1 + mantissa / 1024) * 2 ** (exponent - 15);
}

/** float32 magnitudes whose exponent is one of half's normal exponents (1..30): bits [113 << 23, 143 << 23). */
const HALF_NORMAL_MIN_BITS = 113 << 23;
const HALF_NORMAL_SPAN_BITS = 30 << 23;

/**
 * float32ToFloat16Bits over a whole array, bit for bit: the float32 bits are read through an integer
 * view rather than a DataView per element, and half's normal range (the common case for weights) is
 * converted inline; zeros, subnormals, overflow, infinities and NaN take the general path.
 */
export function toFloat16Bytes(values: Float32Array): Uint8Array {
  const bits = new Uint32Array(values.buffer, values.byteOffset, values.length);
  const out = new Uint16Array(values.length);
  for (let i = 0; i < bits.length; i++) {
    const b = bits[i];
    const magnitude = b & 0x7fffffff;
    if (((magnitude - HALF_NORMAL_MIN_BITS) >>> 0) < HALF_NORMAL_SPAN_BITS) {            // unsigned: below the range wraps high
      // Rebias the exponent in place (127 - 15 = 112 steps), then round to nearest even: the 13 dropped
      // bits plus 0xfff plus the kept lowest bit carry into bit 13 exactly when they exceed half an ulp,
      // or equal it with an odd result. A carry into the exponent is still correct, up to infinity.
      out[i] = ((b >>> 16) & 0x8000) | ((magnitude - (112 << 23) + 0xfff + ((b >>> 13) & 1)) >>> 13);
    } else {
      out[i] = float32ToFloat16Bits(values[i]);
    }
  }
  return new Uint8Array(out.buffer);
}

export function float32Bytes(values: Float32Array): Uint8Array {
  return new Uint8Array(values.buffer, values.byteOffset, values.byteLength);
}

/** Decodes a little-endian checkpoint tensor into float32; integer and bool tensors are not weights. */
export function decodeFloatTensor(bytes: Uint8Array, dtype: string, tensorName: string): Float32Array {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  switch (dtype) {
    case 'F32': {
      // On little-endian hosts (every platform Node ships for) the bytes are the array: a view where
      // they sit on a 4-byte boundary (a Buffer from Node's pool may not), else one copy.
      if (LITTLE_ENDIAN_HOST && bytes.byteOffset % 4 === 0) return new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4);
      if (LITTLE_ENDIAN_HOST) return new Float32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength));
      const out = new Float32Array(bytes.byteLength / 4);
      for (let i = 0; i < out.length; i++) out[i] = view.getFloat32(i * 4, true);
      return out;
    }
    case 'F16': {
      const out = new Float32Array(bytes.byteLength / 2);
      for (let i = 0; i < out.length; i++) out[i] = float16BitsToFloat32(view.getUint16(i * 2, true));
      return out;
    }
    case 'BF16': {
      const out = new Float32Array(bytes.byteLength / 2);
      const asBits = new Uint32Array(out.buffer);
      for (let i = 0; i < out.length; i++) asBits[i] = view.getUint16(i * 2, true) << 16;
      return out;
    }
    case 'F64': {
      const out = new Float32Array(bytes.byteLength / 8);
      for (let i = 0; i < out.length; i++) out[i] = view.getFloat64(i * 8, true);
      return out;
    }
    default:
      throw new ModelError(`Tensor ${tensorName} has dtype ${dtype}; a floating-point weight (F32, F16, BF16 or F64) was expected`);
  }
}

/** Square tiles small enough that a tile of the source and one of the output stay in cache together. */
const TRANSPOSE_TILE = 64;

/**
 * [rows, cols] row-major to [cols, rows]: a Linear weight [out, in] becomes MatMul's right operand.
 * `factor` scales every element on the way (the attention scale folded into q), rounded to float32
 * once, as a separate multiplication would. Walking tile by tile keeps both sides' cache lines in use
 * (a plain row-by-row walk touches a new line of the output for every element), and within a tile the
 * writes run along the output's rows: sequential stores measured about twice as fast as sequential loads.
 */
export function transpose2d(values: Float32Array, rows: number, cols: number, factor = 1): Float32Array {
  const out = new Float32Array(values.length);
  for (let r0 = 0; r0 < rows; r0 += TRANSPOSE_TILE) {
    const rEnd = Math.min(r0 + TRANSPOSE_TILE, rows);
    for (let c0 = 0; c0 < cols; c0 += TRANSPOSE_TILE) {
      const cEnd = Math.min(c0 + TRANSPOSE_TILE, cols);
      for (let c = c0; c < cEnd; c++) {
        const outStart = c * rows;
        for (let r = r0; r < rEnd; r++) out[outStart + r] = values[r * cols + c] * factor;
      }
    }
  }
  return out;
}

/** Places [rows, colsEach] blocks side by side: [rows, colsEach * blocks.length]. */
export function concatColumns(blocks: Float32Array[], rows: number): Float32Array {
  const colsEach = blocks[0].length / rows;
  const width = colsEach * blocks.length;
  const out = new Float32Array(rows * width);
  blocks.forEach((block, b) => {
    for (let r = 0; r < rows; r++) out.set(block.subarray(r * colsEach, (r + 1) * colsEach), r * width + b * colsEach);
  });
  return out;
}

export function scaled(values: Float32Array, factor: number): Float32Array {
  return values.map((v) => v * factor);
}
