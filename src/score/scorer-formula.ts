/**
 * The score formulas of the scorers (src/scorers/): what a cosine of L2-normalised embeddings, or a head's
 * output, becomes. Pure.
 */
import { InternalError } from '../errors.js';

export type ScoreFormula =
  /** PickScore's model card: exp(logit_scale) * cos. */
  | { kind: 'scaled-cosine' }
  /** HPSv2's `img_score.py`: the cosine itself (its benchmark tables multiply by 100). */
  | { kind: 'cosine' }
  /** CLIPScore: weight * max(cos, 0); Hessel et al. use 2.5, torchmetrics 100 (and clamps the mean, the same for one pair). */
  | { kind: 'clamped-cosine'; weight: number }
  /** A head appended to the image graph (the LAION aesthetic predictor): its output, the prompt unused. */
  | { kind: 'image-score' };

/** The score of one pair from its cosine (float64) and the model's exp(logit_scale). */
export function scoreFromCosine(formula: ScoreFormula, cosine: number, logitScale: number): number {
  switch (formula.kind) {
    case 'scaled-cosine': return logitScale * cosine;
    case 'cosine': return cosine;
    case 'clamped-cosine': return formula.weight * Math.max(cosine, 0);
    case 'image-score': throw new InternalError('An image-score scorer has no cosine: its score is the head output');
  }
}
