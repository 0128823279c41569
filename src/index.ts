/**
 * pickscore's library API. The CLI runs on the same engine (src/pipeline/scorer.ts) and the same
 * commands (src/commands/), so a score from `PickScore#score` equals the one `pickscore rank` prints for
 * the same image, model and options, and `runEval`, `runMerge` or `runRank` with `device: 'cuda:all'`
 * return what `pickscore eval`, `merge` and `rank --device cuda:all` write.
 *
 *   import { PickScore } from 'pickscore';
 *   const scorer = await PickScore.load({ device: 'auto' });
 *   const scores = await scorer.score('a watercolor fox', ['a.png', 'b.png']);
 *   const probs = await scorer.probs('a watercolor fox', ['a.png', 'b.png']);   // the model card's calc_probs
 *   for await (const row of scorer.rank(['./outputs'], { prompts: ['a watercolor fox'] })) console.log(row);
 *   await scorer.close();
 */
import path from 'node:path';
import { Scorer, type ImageSource, type Provenance, type ScorerOptions, type ScorerStats } from './pipeline/scorer.js';
import { runRank, type RankOptions, type RankRecord } from './commands/rank.js';
import { softmax } from './score/similarity.js';
import { InputError, UsageError, describeValue, expectedMessage } from './errors.js';
import type { ScorerName } from './scorers/scorers.js';

export { PickScoreError, UsageError, InputError, ModelError, InternalError, InterruptedError, expectedMessage, type ErrorKind } from './errors.js';
export { Scorer } from './pipeline/scorer.js';
export type {
  ScorerOptions, ScoreRequest, ScoredItem, Provenance, ScorerStats, ImageSource, Precision,
} from './pipeline/scorer.js';
export type { ResolvedScorerOptions, RunDevice } from './pipeline/options.js';
export type { PrecisionChoice, AttentionImpl, ModelManifest } from './model-format.js';
export type { DeviceRequest } from './encoder/device.js';
export { SCORER_NAMES, type ScorerName } from './scorers/scorers.js';
export type { ExifMode, ResizeMode, RgbImage } from './image/image.js';

// Commands: options in, data out, as the CLI runs them.
export { runRank, type RankOptions, type RankResult, type RankRecord, type RankCounts } from './commands/rank.js';
export { writeRankOutput, type RankOutput } from './commands/rank-output.js';
export { runEval, runEvalPart, type EvalOptions, type EvalQuery, type EvalResult, type EvalPartResult, type EvalCounts } from './commands/eval.js';
export { runMerge, type MergeOptions, type MergeResult, type MergedRank, type MergedEval } from './commands/merge.js';
export { listDevices, type WorkerOutcome } from './commands/all-devices.js';
export {
  modelPull, modelList, modelInfo, modelVerify, modelConvert,
  type ModelPullOptions, type ModelPullResult, type ModelListEntry, type ModelInfoResult, type ModelVerifyResult, type ModelConvertOptions, type ConvertedModel,
} from './commands/model.js';
export { cacheInfo, cacheClear, type CacheCommandOptions, type CacheInfoResult, type CacheClearResult } from './commands/cache.js';
export type { EvalReport, GateDecision } from './eval/report.js';
export { renderMarkdown } from './eval/render-markdown.js';
export type { OutputFormat } from './io/writers/formats.js';
export type { Shard } from './shard.js';

// Every type the signatures above name, so that a caller can name it too (test/index-types.test.ts).
export type { Device, PlacedDevice } from './encoder/device.js';
export type { RunScorerOptions } from './pipeline/options.js';
export type { StreamOptions, ImageJob, EmbeddedImage, PipelineLayout } from './pipeline/scorer.js';
export type { ImageReadOptions } from './image/image.js';
export type { PreprocessConfig } from './image/preprocess.js';
export type { FilePath } from './io/regular-file.js';
export type { HubProgress, HubRetry } from './model/hub.js';
export type { KnownModel } from './model/registry.js';
export type { VerifyCheck } from './commands/model.js';
export type { RankQuery as RankRunQuery } from './commands/rank.js';
export type { EvalScorer } from './commands/eval.js';
export type { ScorerDescription } from './scorers/scorers.js';
export type { TokenizerMode } from './model-format.js';
export type { ImageTransform } from './image/image.js';
export type { ScoreFormula } from './score/scorer-formula.js';
export type { ImageSupply } from './image/shared-pool.js';
export type { PreparedImage, ReadResult, HeldImage } from './image/pool.js';
export type { EvalPart, EvalPartSettings, Located } from './commands/merge.js';
export type { WorkerCounts } from './commands/device-protocol.js';
export type { PerImagePromptSource } from './io/prompts.js';
export type { NamedOutput, OutputClash } from './io/same-file.js';
export type { ThumbnailFn } from './io/html-gallery.js';
export type { WriterTarget } from './io/writers/sink.js';
export type { AtomicFs, AtomicFileHandle } from './io/atomic.js';
export type { EmbeddingCacheInfo, CacheModelRows } from './io/embedding-cache.js';
export type { RankRunIdentity, EvalRunIdentity, RankPromptIdentity, KeySetDigest } from './shard.js';
export type {
  ModelSummary, Interval95, PromptSummary, ImageScore, Example, Histogram, Comparison, SideBySide, PairwiseSummary, PairMistake, PointScore, PairScore,
} from './eval/report.js';
export type { PairLabel } from './score/pairwise.js';
export type { ItemRecord } from './eval/scores-file.js';

/** An image as a library caller holds it: a file path, the encoded file's bytes, or raw interleaved RGB. */
export type ImageLike = string | Uint8Array | { data: Uint8Array | Uint8ClampedArray; width: number; height: number };

export type PickScoreOptions = ScorerOptions;

export interface RankQuery {
  /** Prompts scored against every image. */
  prompts?: string[];
  promptsFile?: string;
  /** Each image's own prompt instead: a sidecar .txt or the PNG's generator metadata. */
  promptFrom?: 'sidecar' | 'png';
  top?: number;
  signal?: AbortSignal;
}

export class PickScore {
  private constructor(private readonly scorer: Scorer) {}

  /**
   * Resolves the model (converting it on first use), opens the encoders, tokenizer and worker pool.
   * `scorer` picks another score than PickScore (hpsv2.1, clipscore, clipscore-l14, aesthetic; see
   * docs/scorers.md), with its own model; `score` and `rank` then give that scorer's values.
   */
  static async load(options: PickScoreOptions = {}): Promise<PickScore> {
    return new PickScore(await Scorer.open(options));
  }

  /** The scorer this instance runs (pickscore unless `load` was given another). */
  get scorerName(): ScorerName {
    return this.scorer.description.name;
  }

  get logitScale(): number {
    return this.scorer.logitScale;
  }

  provenance(): Provenance {
    return this.scorer.provenance();
  }

  stats(): ScorerStats {
    return this.scorer.stats();
  }

  /** PickScore of each image for the prompt (`logit_scale * cos`), in input order. A bad image throws an InputError naming it. */
  async score(prompt: string, images: ImageLike[]): Promise<number[]> {
    const inputs = toInputs(images);
    const scores: number[] = [];
    const requests = inputs.map((image, i) => ({ prompt, image, key: String(i) }));
    for await (const item of this.scorer.scoreStream(requests)) {
      if (item.score === null) throw new InputError(`Cannot score ${labelOf(inputs[Number(item.key)])}: ${item.error}`);
      scores.push(item.score);
    }
    return scores;
  }

  /** The model card's calc_probs: softmax of the scores over these images. PickScore only: of another score the softmax means nothing. */
  async probs(prompt: string, images: ImageLike[]): Promise<number[]> {
    if (this.scorer.description.name !== 'pickscore') throw new UsageError(`probs() is PickScore's softmax over logit-scaled scores; the ${this.scorer.description.name} scorer has none: use score()`);
    return softmax(await this.score(prompt, images));
  }

  /** L2-normalised text embeddings, one Float32Array per prompt. */
  async embedTexts(prompts: string[]): Promise<Float32Array[]> {
    if (!Array.isArray(prompts)) throw new UsageError(expectedMessage('an array of strings', 'prompts', prompts));
    return splitRows(await this.scorer.embedTexts(prompts), this.scorer.dimension);
  }

  /**
   * L2-normalised image embeddings, one Float32Array per image, in input order (for the aesthetic
   * scorer, each image's head output instead). A bad image throws an InputError naming it.
   */
  async embedImages(images: ImageLike[]): Promise<Float32Array[]> {
    const inputs = toInputs(images);
    const out: Float32Array[] = [];
    for await (const embedded of this.scorer.embedImageStream(inputs.map((source) => ({ source, payload: source })))) {
      if (!embedded.embedding) throw new InputError(`Cannot embed ${labelOf(embedded.payload)}: ${embedded.error}`);
      out.push(embedded.embedding);
    }
    return out;
  }

  /**
   * Ranks the images found in files, folders or globs against the prompts, as `pickscore rank` does:
   * rows per prompt in rank order, failed images as rows with an `error`.
   */
  async *rank(inputs: string[], query: RankQuery): AsyncGenerator<RankRecord> {
    const options: RankOptions = { inputs, ...query, scorer: this.scorer };
    const result = await runRank(options);
    yield* result.records;
  }

  async close(): Promise<void> {
    await this.scorer.close();
  }
}

function toInputs(images: ImageLike[]): ImageSource[] {
  if (!Array.isArray(images)) throw new UsageError(expectedMessage('an array of images (paths, Buffers or {data, width, height})', 'images', images));
  return images.map((image, i) => toInput(image, i));
}

function toInput(image: ImageLike, index: number): ImageSource {
  if (typeof image === 'string') return { path: path.resolve(image) };
  if (image instanceof Uint8Array) return { bytes: image, label: `images[${index}]` };
  if (typeof image === 'object' && image !== null && 'data' in image && 'width' in image && 'height' in image) {
    // Canvas and ImageData hand out Uint8ClampedArray: the same bytes, viewed without a copy.
    const data = image.data instanceof Uint8ClampedArray ? new Uint8Array(image.data.buffer, image.data.byteOffset, image.data.length) : image.data;
    return { rgb: { data, width: image.width, height: image.height }, label: `images[${index}]` };
  }
  throw new UsageError(`Expected a path, a Buffer or {data, width, height} for images[${index}] but received ${describeValue(image)}`);
}

function labelOf(input: ImageSource): string {
  if (!('path' in input)) return input.label;
  return typeof input.path === 'string' ? input.path : Buffer.from(input.path).toString('utf8');
}

function splitRows(matrix: Float32Array, dim: number): Float32Array[] {
  return Array.from({ length: matrix.length / dim }, (_, i) => matrix.slice(i * dim, (i + 1) * dim));
}
