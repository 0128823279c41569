/**
 * How far one encoder's outputs are from another's: a reduced precision (fp16, int8) against fp32, or
 * pickscore against PyTorch. Embeddings are compared value by value; scores by how each prompt ranks
 * the images, which is what a user of `rank` sees. Pure.
 */
import { UsageError, expectedMessage } from '../errors.js';
import { kendallTau } from './rank.js';

export interface EmbeddingDrift {
  /** max |a - b| over every value. */
  maxAbsError: number;
  /** max |a - b| / max |b|: the error relative to the baseline's scale. */
  relError: number;
  /** The smallest cosine between matching rows: 1 when every embedding points the same way. */
  minCosine: number;
}

export interface RankingAgreement {
  /** max |score - baseline score| over every (prompt, image). */
  maxScoreDrift: number;
  /** max - min of the baseline's scores, the scale the drift is read against. */
  scoreSpread: number;
  /** Kendall's tau-b of each prompt's scores against the baseline's, averaged and at its lowest. */
  kendallTauMean: number;
  kendallTauMin: number;
  /** The share of prompts whose best image is the baseline's best image. */
  top1Agreement: number;
  /**
   * What a wrong pick costs, in baseline score: the baseline's best score minus the baseline's score of
   * the image ranked first, per prompt (0 when they agree). The mean and the worst over prompts.
   */
  top1RegretMean: number;
  top1RegretMax: number;
}

/** max |a - b| / max |b| */
export function relativeError(actual: ArrayLike<number>, expected: ArrayLike<number>): number {
  checkSameLength(actual, expected, 'relativeError');
  let maxDiff = 0;
  let maxAbs = 0;
  for (let i = 0; i < expected.length; i++) {
    maxDiff = Math.max(maxDiff, Math.abs(actual[i] - expected[i]));
    maxAbs = Math.max(maxAbs, Math.abs(expected[i]));
  }
  return maxDiff / maxAbs;
}

/** Compares two row-major [rows, dim] embedding matrices. */
export function embeddingDrift(actual: ArrayLike<number>, expected: ArrayLike<number>, dim: number): EmbeddingDrift {
  checkSameLength(actual, expected, 'embeddingDrift');
  let maxAbsError = 0;
  let minCosine = 1;
  for (let row = 0; row < expected.length / dim; row++) {
    let dot = 0;
    let normA = 0;
    let normB = 0;
    for (let k = row * dim; k < (row + 1) * dim; k++) {
      maxAbsError = Math.max(maxAbsError, Math.abs(actual[k] - expected[k]));
      dot += actual[k] * expected[k];
      normA += actual[k] * actual[k];
      normB += expected[k] * expected[k];
    }
    minCosine = Math.min(minCosine, dot / Math.sqrt(normA * normB));
  }
  return { maxAbsError, relError: relativeError(actual, expected), minCosine };
}

/** `scores` and `baseline` are [prompt][image] score tables over the same prompts and images. */
export function rankingAgreement(scores: readonly (readonly number[])[], baseline: readonly (readonly number[])[]): RankingAgreement {
  if (scores.length !== baseline.length || scores.length === 0) {
    throw new UsageError(expectedMessage(`two non-empty score tables with the same prompts (${baseline.length})`, 'rankingAgreement', scores.length));
  }
  const argmax = (row: readonly number[]) => row.indexOf(largest(row));
  let maxScoreDrift = 0;
  let top1 = 0;
  const taus: number[] = [];
  const regrets: number[] = [];
  for (const [p, row] of scores.entries()) {
    const base = baseline[p];
    checkSameLength(row, base, `rankingAgreement, prompt ${p}`);
    for (const [i, score] of row.entries()) maxScoreDrift = Math.max(maxScoreDrift, Math.abs(score - base[i]));
    taus.push(kendallTau(row, base));
    const [picked, best] = [argmax(row), argmax(base)];
    if (picked === best) top1++;
    regrets.push(base[best] - base[picked]);
  }
  const all = baseline.flat();
  return {
    maxScoreDrift,
    scoreSpread: largest(all) + largest(all.map((s) => -s)),
    kendallTauMean: taus.reduce((a, b) => a + b, 0) / taus.length,
    kendallTauMin: -largest(taus.map((t) => -t)),
    top1Agreement: top1 / scores.length,
    top1RegretMean: regrets.reduce((a, b) => a + b, 0) / regrets.length,
    top1RegretMax: largest(regrets),
  };
}

/** By a loop: Math.max(...values) overflows the call stack on long lists. */
function largest(values: readonly number[]): number {
  return values.reduce((m, v) => (v > m ? v : m), -Infinity);
}

function checkSameLength(a: ArrayLike<number>, b: ArrayLike<number>, where: string): void {
  if (a.length !== b.length) throw new UsageError(expectedMessage(`two lists of equal length (${b.length})`, where, a.length));
}
