/**
 * Pairwise preference accuracy, under the protocol of PickScore's own evaluation script
 * (yuvalkirstain/PickScore, trainer/scripts/eval_preference_predictor.py):
 * - label: label_0 = 1 prefers image 0, 0 prefers image 1, 0.5 is a tie;
 * - prediction: a tie when |prob_1 - prob_0| <= threshold (inclusive, as the script's `<=`), else the
 *   image with the higher probability; probabilities are the softmax of the two scores;
 * - points: 1 when prediction equals label (a predicted tie on a tie label included), 0.5 when exactly one
 *   of them is a tie, 0 otherwise; accuracy = points / pairs;
 * - the threshold is the first best of 0, 0.1, ..., 1 on a validation set (the script's argmax).
 * The ties-excluded figure drops tie labels and predicts no ties: a pair is right when the labelled image
 * has the strictly higher probability (equal probabilities count wrong, as in the training code's
 * validation, trainer/tasks/clip_task.py).
 */
import { UsageError, expectedMessage } from '../errors.js';
import { softmax } from './similarity.js';

export type PairLabel = 0 | 0.5 | 1;
export interface ScoredPair { score0: number; score1: number; label0: PairLabel }
type Outcome = 'image0' | 'image1' | 'tie';

export interface PairwiseAccuracy {
  threshold: number;
  /** The paper's protocol: points / n. */
  accuracy: number;
  points: number;
  n: number;
  tieLabels: number;
  predictedTies: number;
  /** Tie labels dropped, no predicted ties. */
  tiesExcluded: { accuracy: number; correct: number; n: number };
}

export const PAPER_THRESHOLDS: readonly number[] = [0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1];

function labelOutcome(label0: PairLabel): Outcome {
  if (label0 === 0.5) return 'tie';
  return label0 === 1 ? 'image0' : 'image1';
}

function predictedOutcome(prob0: number, prob1: number, threshold: number): Outcome {
  if (Math.abs(prob1 - prob0) <= threshold) return 'tie';
  return prob0 > prob1 ? 'image0' : 'image1';
}

function points(label: Outcome, predicted: Outcome): number {
  if (label === predicted) return 1;
  return label === 'tie' || predicted === 'tie' ? 0.5 : 0;
}

/** One pair under the paper's protocol: its probabilities, the prediction and the points it earns. */
export interface PairJudgement { prob0: number; prob1: number; predicted: PairLabel; points: number }

const OUTCOME_LABEL: Record<Outcome, PairLabel> = { image0: 1, image1: 0, tie: 0.5 };

export function judgePair(pair: ScoredPair, threshold: number): PairJudgement {
  const [prob0, prob1] = softmax([pair.score0, pair.score1]);
  const predicted = predictedOutcome(prob0, prob1, threshold);
  return { prob0, prob1, predicted: OUTCOME_LABEL[predicted], points: points(labelOutcome(pair.label0), predicted) };
}

export function pairwiseAccuracy(pairs: readonly ScoredPair[], threshold: number): PairwiseAccuracy {
  if (!(threshold >= 0 && threshold <= 1)) throw new UsageError(expectedMessage('a number from 0 to 1', 'the tie threshold', threshold));
  let total = 0;
  let tieLabels = 0;
  let predictedTies = 0;
  let strictCorrect = 0;
  for (const pair of pairs) {
    const { prob0, prob1, predicted, points: earned } = judgePair(pair, threshold);
    const label = labelOutcome(pair.label0);
    total += earned;
    if (label === 'tie') tieLabels++;
    else if (label === 'image0' ? prob0 > prob1 : prob1 > prob0) strictCorrect++;
    if (predicted === 0.5) predictedTies++;
  }
  const strictN = pairs.length - tieLabels;
  return {
    threshold,
    accuracy: pairs.length === 0 ? NaN : total / pairs.length,
    points: total,
    n: pairs.length,
    tieLabels,
    predictedTies,
    tiesExcluded: { accuracy: strictN === 0 ? NaN : strictCorrect / strictN, correct: strictCorrect, n: strictN },
  };
}

/** The paper's threshold search: accuracy at each candidate on the validation pairs, first maximum wins. */
export function chooseTieThreshold(validation: readonly ScoredPair[], candidates: readonly number[] = PAPER_THRESHOLDS):
  { threshold: number; accuracy: number; table: { threshold: number; accuracy: number }[] } {
  if (validation.length === 0) throw new UsageError('The validation manifest has no scored pairs to choose a tie threshold from');
  const table = candidates.map((threshold) => ({ threshold, accuracy: pairwiseAccuracy(validation, threshold).accuracy }));
  const best = table.reduce((a, b) => (b.accuracy > a.accuracy ? b : a));
  return { ...best, table };
}
