/**
 * Weight quantisation for the int8 CPU graphs, done once at conversion time.
 *
 * Each MatMul weight [K, N] is quantised symmetrically per output column: scale[n] = max|W[:, n]| / 127,
 * q = round(W / scale) in [-127, 127], zero point 0. onnxruntime's com.microsoft DynamicQuantizeMatMul
 * takes exactly this (B int8, b_scale of length N) and quantises the activations itself, per call.
 * Per-column scales keep one large column from crushing the resolution of all the others.
 */

export interface QuantizedMatrix {
  values: Int8Array;      // [K, N] row-major
  scales: Float32Array;   // [N]
}

const INT8_LIMIT = 127;

export function quantizePerColumn(weights: Float32Array, rows: number, cols: number): QuantizedMatrix {
  const scales = new Float32Array(cols);
  for (let r = 0; r < rows; r++) {
    const row = r * cols;
    for (let c = 0; c < cols; c++) scales[c] = Math.max(scales[c], Math.abs(weights[row + c]));
  }
  // An all-zero column gets scale 1: any scale reproduces it, and 0 would divide by zero.
  for (let c = 0; c < cols; c++) scales[c] = scales[c] > 0 ? scales[c] / INT8_LIMIT : 1;
  const values = new Int8Array(rows * cols);
  for (let r = 0; r < rows; r++) {
    const row = r * cols;
    for (let c = 0; c < cols; c++) {
      const q = Math.round(weights[row + c] / scales[c]);
      values[row + c] = Math.max(-INT8_LIMIT, Math.min(INT8_LIMIT, q));
    }
  }
  return { values, scales };
}

export function dequantize(q: QuantizedMatrix, rows: number, cols: number): Float32Array {
  const out = new Float32Array(rows * cols);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[r * cols + c] = q.values[r * cols + c] * q.scales[c];
  return out;
}
