import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { decodeFloatTensor, float16BitsToFloat32, float32ToFloat16Bits, toFloat16Bytes, transpose2d } from '../src/convert/onnx-tensors.js';

/**
 * An independent reference for float32 -> binary16: the finite halves 0x0000..0x7bff increase with
 * their bits, and 0x7c00 (infinity) sits where the next one would be, at 65536. The nearest of these,
 * with ties going to the even bit pattern, is round-to-nearest-even with overflow to infinity.
 */
const HALF_VALUES = Array.from({ length: 0x7c01 }, (_, bits) => (bits === 0x7c00 ? 65536 : float16BitsToFloat32(bits)));

function referenceHalfBits(value: number): number {
  if (Number.isNaN(value)) return 0x7e00;
  const sign = value < 0 || Object.is(value, -0) ? 0x8000 : 0;
  const magnitude = Math.abs(value);
  if (magnitude >= 65536) return sign | 0x7c00;
  let lo = 0;
  let hi = 0x7c00;
  while (hi - lo > 1) {                      // HALF_VALUES[lo] <= magnitude < HALF_VALUES[hi]
    const mid = (lo + hi) >>> 1;
    if (HALF_VALUES[mid] <= magnitude) lo = mid;
    else hi = mid;
  }
  const below = magnitude - HALF_VALUES[lo];
  const above = HALF_VALUES[hi] - magnitude;
  const nearest = below < above ? lo : above < below ? hi : (lo & 1 ? hi : lo);
  return sign | nearest;
}

function float32FromBits(bits: number): number {
  return new Float32Array(Uint32Array.of(bits).buffer)[0];
}

/** Bit patterns where rounding decides: every sign and exponent with the mantissas around each tie. */
function edgeCaseBits(): number[] {
  const mantissas = [0, 1, 0xfff, 0x1000, 0x1001, 0x1fff, 0x2000, 0x2fff, 0x3000, 0x3001, 0x400000, 0x7fe000, 0x7fefff, 0x7ff000, 0x7ff001, 0x7fffff];
  const out: number[] = [];
  for (let signExponent = 0; signExponent < 512; signExponent++) {
    for (const m of mantissas) out.push(((signExponent << 23) | m) >>> 0);
  }
  return out;
}

/** Exact midpoints between neighbouring halves (the ties) and the float32 just either side of each. */
function midpointValues(): number[] {
  const out: number[] = [];
  const f32 = new Float32Array(1);
  const bits = new Uint32Array(f32.buffer);
  for (let h = 0; h < 0x7c00; h++) {
    f32[0] = (HALF_VALUES[h] + HALF_VALUES[h + 1]) / 2;
    assert.equal(f32[0], (HALF_VALUES[h] + HALF_VALUES[h + 1]) / 2, 'a midpoint between halves fits float32 exactly');
    const tie = bits[0];
    for (const b of [tie - 1, tie, tie + 1]) out.push(float32FromBits(b), -float32FromBits(b));
  }
  return out;
}

function randomFloat32Values(count: number, seed: number): number[] {
  let state = seed;
  const next = () => {
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    return state >>> 0;
  };
  const out: number[] = [];
  for (let i = 0; i < count; i++) {
    out.push(float32FromBits(next()));                                  // any bit pattern: all exponents, NaNs included
    out.push(Math.fround(((next() / 2 ** 32) - 0.5) * 0.08));            // the range weights live in
  }
  return out;
}

function halfBitsOfArray(values: number[]): Uint16Array {
  const bytes = toFloat16Bytes(Float32Array.from(values));
  return new Uint16Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 2);
}

describe('float32 -> float16', () => {
  const cases: [string, number[]][] = [
    ['edge-case bit patterns', edgeCaseBits().map(float32FromBits)],
    ['ties between halves and their neighbours', midpointValues()],
    ['random float32 bit patterns and weight-sized values', randomFloat32Values(100_000, 0x2545f491)],
  ];
  for (const [label, values] of cases) {
    it(`toFloat16Bytes and float32ToFloat16Bits round to nearest even: ${label}`, () => {
      const arrayBits = halfBitsOfArray(values);
      values.forEach((value, i) => {
        const expected = referenceHalfBits(value);
        const isNaN = Number.isNaN(value);
        // NaN keeps being NaN (exponent all ones, mantissa non-zero); its payload is not specified.
        const check = (actual: number, what: string) => {
          if (isNaN) assert.ok((actual & 0x7c00) === 0x7c00 && (actual & 0x3ff) !== 0, `${what}: NaN became 0x${actual.toString(16)}`);
          else assert.equal(actual, expected, `${what} of ${value} (bits 0x${new Uint32Array(Float32Array.of(value).buffer)[0].toString(16)})`);
        };
        check(float32ToFloat16Bits(value), 'float32ToFloat16Bits');
        check(arrayBits[i], 'toFloat16Bytes');
      });
    });
  }

  it('toFloat16Bytes agrees with float32ToFloat16Bits bit for bit, NaN payloads included', () => {
    const values = [...edgeCaseBits().map(float32FromBits), ...randomFloat32Values(20_000, 0x9e3779b9)];
    const arrayBits = halfBitsOfArray(values);
    values.forEach((value, i) => assert.equal(arrayBits[i], float32ToFloat16Bits(value), `value ${value}`));
  });

  it('converts a subarray from its own offset', () => {
    const whole = Float32Array.of(7, 1, -2, 65504, 1e-7);
    const bytes = toFloat16Bytes(whole.subarray(1));
    assert.deepEqual([...new Uint16Array(bytes.buffer)], [0x3c00, 0xc000, 0x7bff, 0x0002]);
  });
});

describe('transpose2d', () => {
  function naiveTranspose(values: Float32Array, rows: number, cols: number, factor: number): Float32Array {
    const out = new Float32Array(values.length);
    for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[c * rows + r] = values[r * cols + c] * factor;
    return out;
  }

  // Shapes around the tile size, so that partial tiles on either edge are covered.
  for (const [rows, cols] of [[1, 1], [1, 7], [7, 1], [64, 64], [65, 63], [130, 67], [3, 200], [200, 3]]) {
    it(`matches the element-by-element definition for [${rows}, ${cols}]`, () => {
      const values = Float32Array.from({ length: rows * cols }, (_, i) => Math.fround(Math.sin(i) * 3));
      assert.deepEqual(transpose2d(values, rows, cols), naiveTranspose(values, rows, cols, 1));
      const factor = 0.125 * Math.SQRT1_2;
      assert.deepEqual(transpose2d(values, rows, cols, factor), naiveTranspose(values, rows, cols, factor));
    });
  }

  it('rounds a scaled element to float32 once', () => {
    const value = Math.fround(1.1);
    const factor = 1 / Math.sqrt(80);
    assert.equal(transpose2d(Float32Array.of(value), 1, 1, factor)[0], Math.fround(value * factor));
  });
});

describe('decodeFloatTensor F32', () => {
  const expected = [1.5, -2, 3.25];
  const bytesOf = (offset: number) => {
    const backing = new Uint8Array(offset + 12);
    backing.set(new Uint8Array(Float32Array.from(expected).buffer), offset);
    return backing.subarray(offset);
  };

  it('views 4-byte aligned bytes without copying them', () => {
    const bytes = bytesOf(8);
    const decoded = decodeFloatTensor(bytes, 'F32', 'w');
    assert.deepEqual([...decoded], expected);
    assert.equal(decoded.buffer, bytes.buffer);
    assert.equal(decoded.byteOffset, 8);
  });

  for (const offset of [1, 2, 3]) {
    it(`copies bytes that start at offset ${offset} (not 4-byte aligned)`, () => {
      const bytes = bytesOf(offset);
      const decoded = decodeFloatTensor(bytes, 'F32', 'w');
      assert.deepEqual([...decoded], expected);
      assert.notEqual(decoded.buffer, bytes.buffer);
    });
  }
});
