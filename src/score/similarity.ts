/** Embedding similarity and the model card's probabilities. Pure. */
import { UsageError, expectedMessage } from '../errors.js';

function checkRows(v: ArrayLike<number>, dim: number, subject: string): number {
  if (!Number.isInteger(dim) || dim <= 0) throw new UsageError(expectedMessage('a positive integer', 'the embedding dimension', dim));
  if (v.length % dim !== 0) throw new UsageError(expectedMessage(`a length that is a multiple of ${dim}`, subject, v.length));
  return v.length / dim;
}

/** Scales each row of a row-major [n, dim] matrix to unit length, in place, and returns it. An all-zero row stays zero. */
export function l2normalize(v: Float32Array, dim: number): Float32Array {
  const rows = checkRows(v, dim, 'the embeddings');
  for (let r = 0; r < rows; r++) {
    let sum = 0;
    for (let k = r * dim; k < (r + 1) * dim; k++) sum += v[k] * v[k];
    if (sum === 0) continue;
    const inv = 1 / Math.sqrt(sum);
    for (let k = r * dim; k < (r + 1) * dim; k++) v[k] *= inv;
  }
  return v;
}

/** How far from 1 a stored embedding's length may be: float32 rounding over thousands of values stays far below. */
const UNIT_NORM_TOLERANCE = 1e-3;

/**
 * Why `v` cannot be an L2-normalised embedding of width `dim` (undefined when it can): the wrong number
 * of floats, a value that is not finite, or a length other than 1. A zero vector (no direction) fails too.
 */
export function unitEmbeddingProblem(v: Float32Array, dim: number): string | undefined {
  if (v.length !== dim) return `${v.length} value${v.length === 1 ? '' : 's'} where the model gives ${dim}`;
  let sum = 0;
  for (let k = 0; k < dim; k++) {
    if (!Number.isFinite(v[k])) return `value ${k} is ${v[k]}`;
    sum += v[k] * v[k];
  }
  const norm = Math.sqrt(sum);
  if (!(Math.abs(norm - 1) <= UNIT_NORM_TOLERANCE)) return `its length is ${norm.toPrecision(4)}, not 1`;
  return undefined;
}

/**
 * `logitScale * cos(text[p], images[i])` for every pair, as a row-major [prompts, images] matrix: the
 * model card's score. Cosines are taken in float64 from the raw rows, so inputs need not be normalised.
 * A zero row has no direction, and its scores are NaN.
 */
export function scoreMatrix(text: Float32Array, images: Float32Array, dim: number, logitScale: number): Float64Array {
  const prompts = checkRows(text, dim, 'the text embeddings');
  const count = checkRows(images, dim, 'the image embeddings');
  const norm = (m: Float32Array, r: number): number => {
    let s = 0;
    for (let k = r * dim; k < (r + 1) * dim; k++) s += m[k] * m[k];
    return Math.sqrt(s);
  };
  const imageNorms = Array.from({ length: count }, (_, i) => norm(images, i));
  const out = new Float64Array(prompts * count);
  for (let p = 0; p < prompts; p++) {
    const textNorm = norm(text, p);
    for (let i = 0; i < count; i++) {
      let dot = 0;
      for (let k = 0; k < dim; k++) dot += text[p * dim + k] * images[i * dim + k];
      out[p * count + i] = (logitScale * dot) / (textNorm * imageNorms[i]);
    }
  }
  return out;
}

/**
 * The model card's `calc_probs`: softmax over one prompt's images of their scores, which already include
 * logit_scale (so no further temperature). The maximum is subtracted first so that exp cannot overflow.
 */
export function softmax(scores: ArrayLike<number>): number[] {
  const values = Array.from(scores);
  if (values.length === 0) return [];
  // A loop, not Math.max(...values): spreading one prompt's scores over 150,000 or more images overflows the call stack.
  const max = values.reduce((m, s) => (s > m ? s : m), -Infinity);
  const exps = values.map((s) => Math.exp(s - max));
  const total = exps.reduce((a, b) => a + b, 0);
  return exps.map((e) => e / total);
}
