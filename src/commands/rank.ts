/**
 * `rank`: score every image against its prompts and rank the images per prompt. Options in, data out:
 * printing, progress bars and exit codes belong to src/cli.
 */
import { BMP_SKIP_REASON, discoverImages, type DiscoveredImage } from '../io/discover.js';
import type { ImageSource } from '../image/image.js';
import { fileThumbnailer } from '../image/thumbnail.js';
import { DEFAULT_MAX_PIXELS, type ImageReadOptions } from '../image/image.js';
import { THUMBNAIL_MAX_SIDE, recordThumbnails, type ThumbnailFn } from '../io/html-gallery.js';
import { ThumbnailPrefetch } from '../io/thumbnail-prefetch.js';
import { pathFromDisplay } from '../io/path-text.js';
import { combinePrompts, promptForImage, readPromptsFile, sidecarPath, type PerImagePromptSource } from '../io/prompts.js';
import { refuseOutputsNamingInputs, type NamedInput, type NamedOutput } from '../io/same-file.js';
import { softmax } from '../score/similarity.js';
import { compareCodePoints, groupBy, rankDescending } from '../score/rank.js';
import type { RankRecord } from '../io/writers/record.js';
import { digestKeys, selectShard, type RankRunIdentity, type Shard } from '../shard.js';
import { UsageError, expectedMessage } from '../errors.js';
import { Scorer, type Provenance, type ScoreRequest, type ScoredItem, type ScorerOptions, type ScorerStats } from '../pipeline/scorer.js';

export interface RankOptions extends ScorerOptions {
  /** Files, folders and globs, as the user typed them. */
  inputs: string[];
  /** Prompts scored against every image (`--prompt`, repeatable). */
  prompts?: string[];
  promptsFile?: string;
  /** Per-image prompts instead of global ones. */
  promptFrom?: PerImagePromptSource;
  /** Keep the best K images per prompt. */
  top?: number;
  shard?: Shard;
  signal?: AbortSignal;
  onProgress?: (done: number, total: number) => void;
  /** Each item as it is scored, in input order. */
  onScored?: (item: ScoredItem) => void;
  /**
   * The result will be written as an HTML gallery: its thumbnails are made while the images are scored
   * (a thumbnail needs only its image), so the gallery's final write is short.
   */
  galleryThumbnails?: boolean;
  /** An open scorer to use (the library API shares one); otherwise rank opens one and closes it. */
  scorer?: Scorer;
  /**
   * Files the caller will write with the result (the CLI's --out): the run is refused before any model
   * is loaded when one of them is an input (an image, the prompts file, a sidecar).
   */
  outputs?: NamedOutput[];
}

export type { RankRecord } from '../io/writers/record.js';

export interface RankCounts { images: number; prompts: number; rows: number; scored: number; errors: number; notReached: number }

export interface RankResult {
  records: RankRecord[];
  provenance: Provenance;
  /** True when the run was interrupted: records hold what was done. */
  incomplete: boolean;
  counts: RankCounts;
  stats: ScorerStats;
  /** The shard this run covered, when it was one of several. */
  shard?: Shard;
  /** With a shard: what the whole run was given, which merge checks every part against. */
  run?: RankRunIdentity;
  /** The HTML gallery's thumbnails, made from the images as this run read them. */
  thumbnail: ThumbnailFn;
}

type PromptPlan = { kind: 'global'; prompts: string[] } | { kind: 'per-image'; source: PerImagePromptSource };

export async function runRank(options: RankOptions): Promise<RankResult> {
  const top = validateRankOptions(options);
  const plan = await planPrompts(options);
  const discovered = await discoverSummarisingSkips(options);
  const images = options.shard ? selectShard(discovered, options.shard, (image) => image.path) : discovered;
  await refuseOutputsNamingInputs(options.outputs ?? [], rankInputs(options, discovered));
  const run = options.shard ? rankRunIdentity(discovered, plan) : undefined;
  const scorer = options.scorer ?? (await Scorer.open(options));
  try {
    const thumbnails = galleryThumbnails(scorer.provenance(), options.galleryThumbnails === true);
    const promptErrors: RankRecord[] = [];
    const total = plan.kind === 'global' ? images.length * plan.prompts.length : images.length;
    if (plan.kind === 'global') await scorer.embedTexts(plan.prompts);
    const items: ScoredItem[] = [];
    const stream = scorer.scoreStream(requestsFor(images, plan, promptErrors), {
      signal: options.signal,
      onProgress: (done) => options.onProgress?.(done + promptErrors.length, total),
    });
    for await (const item of stream) {
      items.push(item);
      if (item.error === null) thumbnails.prefetch?.add(item.key);
      options.onScored?.(item);
    }
    const incomplete = options.signal?.aborted === true;
    const records = rankRecords(items, top).concat(promptErrors);
    const errors = records.filter((r) => r.error !== null).length;
    return {
      records,
      provenance: scorer.provenance(),
      incomplete,
      counts: {
        images: images.length,
        prompts: plan.kind === 'global' ? plan.prompts.length : new Set(items.map((i) => i.prompt)).size,
        rows: records.length,
        scored: records.length - errors,
        errors,
        notReached: total - items.length - promptErrors.length,
      },
      stats: scorer.stats(),
      shard: options.shard,
      run,
      thumbnail: thumbnails.thumbnail,
    };
  } finally {
    if (!options.scorer) await scorer.close();
  }
}

/**
 * The gallery's thumbnails, of the images as the run read them (`image`: its provenance): made ahead
 * while the run scores when it will be written as HTML, else only when asked for.
 */
export function galleryThumbnails(image: Partial<Pick<ImageReadOptions, 'exif' | 'maxPixels'>>, prefetching = false): { thumbnail: ThumbnailFn; prefetch?: ThumbnailPrefetch } {
  const make = fileThumbnailer({ exif: image.exif ?? 'apply', maxPixels: image.maxPixels ?? DEFAULT_MAX_PIXELS }, THUMBNAIL_MAX_SIDE);
  if (!prefetching) return { thumbnail: recordThumbnails(make) };
  const prefetch = new ThumbnailPrefetch((file) => make(pathFromDisplay(file)));
  return { thumbnail: prefetch.thumbnail, prefetch };
}

/** Every file rank reads: the prompts file, the images (all shards': a shard must not overwrite another's), their sidecars. */
function* rankInputs(options: RankOptions, images: readonly DiscoveredImage[]): Generator<NamedInput> {
  if (options.promptsFile !== undefined) yield { role: `--prompts-file ${options.promptsFile}`, path: options.promptsFile };
  for (const image of images) yield { role: `the input image ${image.path}`, path: image.rawAbsolute ?? image.absolute };
  if (options.promptFrom !== 'sidecar') return;
  // A name that is not UTF-8 cannot be the --out a command line spelled, so only the others are looked at.
  for (const image of images) if (!image.rawAbsolute) yield { role: `the sidecar prompt file ${sidecarPath(image.path)}`, path: sidecarPath(image.absolute) };
}

/**
 * Files that are not images (the sidecar .txt files a shell's `out/*` also names) are passed over with
 * one informational line for all of them; a folder that cannot be read is a warning of its own.
 */
async function discoverSummarisingSkips(options: RankOptions): Promise<DiscoveredImage[]> {
  const notImages: string[] = [];
  const bitmaps: string[] = [];
  const images = await discoverImages(options.inputs, {
    onSkip: (p, reason) => (reason === NOT_AN_IMAGE ? notImages.push(p) : reason === BMP_SKIP_REASON ? bitmaps.push(p) : options.log?.(`warning: skipped ${p}: ${reason}`)),
  });
  const list = (paths: string[]): string => paths.slice(0, 3).join(', ') + (paths.length > 3 ? ', ...' : '');
  if (notImages.length > 0) {
    options.log?.(`skipped ${notImages.length} file${notImages.length === 1 ? '' : 's'} without an image extension: ${list(notImages)}`);
  }
  if (bitmaps.length > 0) {
    options.log?.(`warning: skipped ${bitmaps.length} BMP file${bitmaps.length === 1 ? '' : 's'} (BMP is not supported; convert to PNG to score): ${list(bitmaps)}`);
  }
  return images;
}

/** The reason discoverImages gives for a file it passes over by extension. */
const NOT_AN_IMAGE = 'not an image file extension';

function validateRankOptions(options: RankOptions): number | undefined {
  if (!Array.isArray(options.inputs) || options.inputs.length === 0) {
    throw new UsageError(expectedMessage('at least one image path, folder or glob', 'inputs', options.inputs));
  }
  const hasGlobal = (options.prompts?.length ?? 0) > 0 || options.promptsFile !== undefined;
  if (hasGlobal && options.promptFrom) {
    throw new UsageError('--prompt-from reads one prompt per image; it cannot be combined with --prompt or --prompts-file');
  }
  if (!hasGlobal && !options.promptFrom) {
    throw new UsageError('Expected --prompt, --prompts-file or --prompt-from for the prompts to rank against but received none');
  }
  if (options.promptFrom && options.promptFrom !== 'sidecar' && options.promptFrom !== 'png') {
    throw new UsageError(expectedMessage('sidecar or png', '--prompt-from', options.promptFrom));
  }
  for (const prompt of options.prompts ?? []) {
    if (typeof prompt !== 'string' || prompt.trim() === '') throw new UsageError(expectedMessage('a non-empty prompt', '--prompt', prompt));
  }
  if (options.top !== undefined && !(Number.isInteger(options.top) && options.top > 0)) {
    throw new UsageError(expectedMessage('a positive integer', '--top', options.top));
  }
  // A shard's best K are not the run's best K, and merge needs every row to recompute probabilities.
  if (options.top !== undefined && options.shard) {
    throw new UsageError('--top keeps the best K of the whole run, which a shard cannot know: run the shards without --top and pass --top to merge');
  }
  return options.top;
}

/** The images of the whole run (before sharding) and its prompts. */
function rankRunIdentity(images: DiscoveredImage[], plan: PromptPlan): RankRunIdentity {
  return {
    command: 'rank',
    images: digestKeys(images.map((image) => image.path)),
    prompts: plan.kind === 'global' ? { from: 'list', prompts: plan.prompts } : { from: plan.source },
  };
}

async function planPrompts(options: RankOptions): Promise<PromptPlan> {
  if (options.promptFrom) return { kind: 'per-image', source: options.promptFrom };
  const fromFile = options.promptsFile !== undefined ? await readPromptsFile(options.promptsFile) : [];
  return { kind: 'global', prompts: combinePrompts(options.prompts ?? [], fromFile) };
}

/**
 * Requests image by image, each image's prompts together, so the pipeline decodes and encodes every
 * image once. A per-image prompt that cannot be read becomes an error record instead of a request.
 */
async function* requestsFor(images: DiscoveredImage[], plan: PromptPlan, promptErrors: RankRecord[]): AsyncGenerator<ScoreRequest> {
  for (const image of images) {
    const source = imageSource(image);
    if (plan.kind === 'global') {
      for (const prompt of plan.prompts) yield { prompt, image: source, key: image.path };
      continue;
    }
    const found = await promptForImage(plan.source, image);
    if (found.ok) yield { prompt: found.prompt, image: source, key: image.path };
    else promptErrors.push({ path: image.path, prompt: '', score: null, prob: null, rank: null, width: null, height: null, error: found.error, contentHash: null });
  }
}

/**
 * A file whose name is not valid UTF-8 cannot be opened by its (escaped) text, so the worker opens it by
 * its exact bytes; reading it there also keeps a FIFO or a huge file off the main thread.
 */
function imageSource(image: DiscoveredImage): ImageSource {
  return { path: image.rawAbsolute ?? image.absolute };
}

/**
 * Groups items by prompt (first-seen order), ranks each group by score with ties broken by path, and
 * turns scores into the model card's probabilities. Rows that failed follow their prompt's ranked
 * rows, by path; `top` keeps the best K scored rows of each prompt and every failed one.
 */
export function rankRecords(items: ScoredItem[], top?: number): RankRecord[] {
  const byPrompt = groupBy(items, (item) => item.prompt);
  const records: RankRecord[] = [];
  for (const [prompt, group] of byPrompt) {
    const scored = group.filter((item): item is ScoredItem & { score: number } => item.score !== null);
    const probs = softmax(scored.map((item) => item.score));
    const ranked = rankDescending(scored.map((item, i) => ({ key: item.key, score: item.score, prob: probs[i], item })));
    for (const { rank, prob, item } of ranked.slice(0, top ?? ranked.length)) {
      records.push({ path: item.key, prompt, score: item.score, prob, rank, width: item.width, height: item.height, error: null, contentHash: item.contentHash });
    }
    const failed = group.filter((item) => item.score === null).sort((a, b) => compareCodePoints(a.key, b.key));
    for (const item of failed) {
      records.push({ path: item.key, prompt, score: null, prob: null, rank: null, width: item.width, height: item.height, error: item.error, contentHash: item.contentHash });
    }
  }
  return records;
}
