/**
 * The scorers `--scorer` names: for each, the model it runs (a models/*.json entry), how prompts are
 * tokenized, how images are prepared, the score formula and where it comes from. Descriptions only;
 * the engine (src/pipeline/) follows them, and docs/scorers.md explains each. Pure.
 */
import { UsageError, expectedMessage } from '../errors.js';
import { HPSV2_TRANSFORM } from '../image/hps-transform.js';
import type { ImageTransform } from '../image/image.js';
import { tokenizerModeOf, type ModelManifest, type TokenizerMode } from '../model-format.js';
import type { ScoreFormula } from '../score/scorer-formula.js';

export const SCORER_NAMES = ['pickscore', 'hpsv2.1', 'clipscore', 'clipscore-l14', 'aesthetic'] as const;
export type ScorerName = (typeof SCORER_NAMES)[number];
export const DEFAULT_SCORER: ScorerName = 'pickscore';

export interface ScorerDescription {
  name: ScorerName;
  /** The models/*.json entry run when no model is named (undefined: the registry's default, PickScore v1). */
  model: string | undefined;
  tokenizer: TokenizerMode;
  /** Put before every prompt (CLIPScore's "A photo depicts "). */
  textPrefix: string;
  transform: ImageTransform;
  formula: ScoreFormula;
  citation: string;
}

const SCORERS: Readonly<Record<ScorerName, ScorerDescription>> = {
  pickscore: {
    name: 'pickscore', model: undefined, tokenizer: 'transformers', textPrefix: '', transform: { kind: 'clip-processor' },
    formula: { kind: 'scaled-cosine' }, citation: 'Kirstain et al. 2023, Pick-a-Pic (yuvalkirstain/PickScore_v1 model card)',
  },
  'hpsv2.1': {
    name: 'hpsv2.1', model: 'hpsv2.1', tokenizer: 'open_clip', textPrefix: '',
    transform: { kind: 'hps', antialias: HPSV2_TRANSFORM.antialias }, formula: { kind: 'cosine' },
    citation: 'Wu et al. 2023, Human Preference Score v2 (tgxs002/HPSv2, hpsv2/img_score.py)',
  },
  clipscore: {
    name: 'clipscore', model: 'openai-clip-vit-b32', tokenizer: 'transformers', textPrefix: 'A photo depicts ',
    transform: { kind: 'openai-clip' }, formula: { kind: 'clamped-cosine', weight: 2.5 },
    citation: 'Hessel et al. 2021, CLIPScore (jmhessel/clipscore)',
  },
  'clipscore-l14': {
    name: 'clipscore-l14', model: 'openai-clip-vit-l14', tokenizer: 'transformers', textPrefix: '',
    transform: { kind: 'clip-processor' }, formula: { kind: 'clamped-cosine', weight: 100 },
    citation: 'torchmetrics CLIPScore (Lightning-AI/torchmetrics, functional/multimodal/clip_score.py)',
  },
  aesthetic: {
    name: 'aesthetic', model: 'laion-aesthetic-l14', tokenizer: 'transformers', textPrefix: '',
    transform: { kind: 'openai-clip' }, formula: { kind: 'image-score' },
    citation: 'Schuhmann, LAION improved aesthetic predictor (christophschuhmann/improved-aesthetic-predictor)',
  },
};

export function scorerDescription(name: ScorerName): ScorerDescription {
  return SCORERS[name];
}

/**
 * The one check of `--scorer` / `scorer`: a name, a comma list or an array of names, each known and
 * none twice. The order is kept: the first is the one a run ranks by and gates on by default.
 */
export function parseScorers(value: unknown): ScorerDescription[] {
  const names = typeof value === 'string' ? value.split(',').map((n) => n.trim()) : Array.isArray(value) ? value : [value];
  if (names.length === 0) throw new UsageError(expectedMessage(`one or more of ${SCORER_NAMES.join(', ')}`, 'the scorers', value));
  const seen = new Set<string>();
  return names.map((name) => {
    if (!(SCORER_NAMES as readonly unknown[]).includes(name)) throw new UsageError(expectedMessage(`one of ${SCORER_NAMES.join(', ')}`, 'the scorer', name));
    if (seen.has(name as string)) throw new UsageError(`The scorer ${String(name)} is named twice`);
    seen.add(name as string);
    return SCORERS[name as ScorerName];
  });
}

/** Whether a scorer reads the prompt (the aesthetic score does not). */
export function usesPrompt(scorer: ScorerDescription): boolean {
  return scorer.formula.kind !== 'image-score';
}

/**
 * Why a converted folder cannot serve a scorer (undefined when it can): its manifest says how its
 * prompts are tokenized and whether its image graph ends in a head, and a scorer needs one of each.
 * Running it anyway would give numbers that look like scores and are not.
 */
export function scorerModelProblem(scorer: ScorerDescription, manifest: ModelManifest): string | undefined {
  const mode = tokenizerModeOf(manifest);
  if (mode !== scorer.tokenizer) {
    return `its prompts are tokenized as ${mode} does (${mode === 'open_clip' ? 'it was converted from open_clip weights' : 'it was converted from a transformers CLIPModel'}), `
      + `but ${scorer.name} tokenizes as ${scorer.tokenizer} does`;
  }
  if (scorer.formula.kind === 'image-score' && !manifest.imageScore) {
    return `its image graph has no head (no ${'image_score'} output), which ${scorer.name} reads; convert it with \`pickscore model convert <checkpoint> --head <head.pth>\``;
  }
  if (scorer.formula.kind === 'image-score' && manifest.imageScore && manifest.imageScore.outFeatures !== 1) {
    return `its head gives ${manifest.imageScore.outFeatures} values per image, but ${scorer.name} reads one`;
  }
  return undefined;
}

/**
 * What an image's embedding for this scorer depends on beyond the model's fingerprint: the transform,
 * the output read, and for prompts the tokenizer and prefix. Part of every cache key but PickScore's,
 * whose keys stay as they were.
 */
export function scorerCacheTag(scorer: ScorerDescription): string {
  if (scorer.name === DEFAULT_SCORER) return '';
  const transform = scorer.transform.kind === 'hps' ? `hps${scorer.transform.antialias ? '-antialias' : ''}` : scorer.transform.kind;
  const output = scorer.formula.kind === 'image-score' ? 'image_score' : 'image_embeds';
  return `;scorer=${scorer.name};tokenizer=${scorer.tokenizer};prefix=${JSON.stringify(scorer.textPrefix)};transform=${transform};output=${output}`;
}
