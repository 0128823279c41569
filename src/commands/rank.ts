/**
 * `rank`: score every image against its prompts and rank the images per prompt. Options in, data out:
 * printing, progress bars and exit codes belong to src/cli. With `device: 'cuda:all'` the run is split
 * over every GPU (all-devices.ts) and merged; the result is the same.
 */
import { BMP_SKIP_REASON, discoverImages, type DiscoveredImage } from '../io/discover.js';
import type { ImageSource } from '../image/image.js';
import type { ThumbnailFn } from '../io/html-gallery.js';
import { combinePrompts, promptForImage, readPromptsFile, sidecarPath, type PerImagePromptSource } from '../io/prompts.js';
import { refuseOutputsNamingInputs, type NamedInput, type NamedOutput } from '../io/same-file.js';
import type { RankRecord } from '../io/writers/record.js';
import { digestKeys, selectShard, type RankRunIdentity, type Shard } from '../shard.js';
import { UsageError, expectedMessage } from '../errors.js';
import { resolveRunOptions, type ResolvedScorerOptions, type RunScorerOptions } from '../pipeline/options.js';
import type { Scorer, Provenance, ScoreRequest, ScoredItem, ScorerStats } from '../pipeline/scorer.js';
import { openScorerSet, scoreWithEach, setProvenance, sumStats } from './scorer-set.js';
import { allDevicesWithShardError, runOnAllDevices, type WorkerOutcome } from './all-devices.js';
import { galleryThumbnails } from './gallery.js';
import { rankRecords } from './rank-records.js';

export { rankRecords } from './rank-records.js';

/** What to rank; with the scoring options (RankOptions), a rank run. */
export interface RankQuery {
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
  /** Aborting stops the scoring after its current batch (the result is marked incomplete) and a model download at once. */
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

/** A rank run: what to rank, and how to score (the scoring options, or options already resolved). */
export type RankOptions = RankQuery & (RunScorerOptions | ResolvedScorerOptions);

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
  /** With `cuda:all`: what each worker did. */
  workers?: WorkerOutcome[];
}

type PromptPlan = { kind: 'global'; prompts: string[] } | { kind: 'per-image'; source: PerImagePromptSource };

export async function runRank(options: RankOptions): Promise<RankResult> {
  const top = validateRankOptions(options);
  const { scoring, scorings, allDevices } = resolveRunOptions(options);
  if (allDevices) return rankOnAllDevices(options, scoring, top);
  const plan = await planPrompts(options);
  const discovered = await discoverSummarisingSkips(options, scoring.log);
  const images = options.shard ? selectShard(discovered, options.shard, (image) => image.path) : discovered;
  await refuseOutputsNamingInputs(options.outputs ?? [], rankInputs(options, discovered));
  const scorerNames = scorings.map((s) => s.scorerDescription.name);
  const run = options.shard ? rankRunIdentity(discovered, plan, scorerNames) : undefined;
  const set = options.scorer ? null : await openScorerSet(scorings);
  const scorers = set?.scorers ?? [options.scorer!];
  const scorer = scorers[0];
  try {
    const thumbnails = galleryThumbnails(scorer.provenance(), options.galleryThumbnails === true);
    const promptErrors: RankRecord[] = [];
    const rows = plan.kind === 'global' ? images.length * plan.prompts.length : images.length;
    const total = rows * scorers.length;
    if (plan.kind === 'global') for (const each of scorers) if (!each.scoresImagesAlone) await each.embedTexts(plan.prompts);
    const items: ScoredItem[] = [];
    // Each scorer reads the prompts anew; the per-image prompt errors are kept from the first scorer's reading.
    let readings = 0;
    const stream = scoreWithEach(scorers, () => requestsFor(images, plan, readings++ === 0 ? promptErrors : []), {
      signal: options.signal,
      onProgress: (done) => options.onProgress?.(Math.min(total, done + promptErrors.length), total),
    });
    for await (const item of stream) {
      items.push(item);
      if (item.error === null) thumbnails.prefetch?.add(item.key);
      options.onScored?.(item);
    }
    const incomplete = options.signal?.aborted === true;
    const records = rankRecords(items, top, { probabilities: scorer.description.name === 'pickscore' }).concat(promptErrors);
    const errors = records.filter((r) => r.error !== null).length;
    return {
      records,
      provenance: setProvenance(scorers),
      incomplete,
      counts: {
        images: images.length,
        prompts: plan.kind === 'global' ? plan.prompts.length : new Set(items.map((i) => i.prompt)).size,
        rows: records.length,
        scored: records.length - errors,
        errors,
        notReached: rows - items.length - promptErrors.length,
      },
      stats: set ? set.stats() : scorer.stats(),
      shard: options.shard,
      run,
      thumbnail: thumbnails.thumbnail,
    };
  } finally {
    await set?.close();
  }
}

/**
 * `cuda:all`: the run's shards on every device, merged. What each worker did comes back beside the
 * merged rows; its counters are summed.
 */
async function rankOnAllDevices(options: RankQuery, scoring: ResolvedScorerOptions, top: number | undefined): Promise<RankResult> {
  if (options.shard) throw allDevicesWithShardError();
  const { inputs, prompts, promptsFile, promptFrom } = options;
  const { merged, workers } = await runOnAllDevices({ command: 'rank', options: { inputs, prompts, promptsFile, promptFrom } }, scoring,
    { outputs: options.outputs, signal: options.signal, top });
  const errors = merged.records.filter((record) => record.error !== null).length;
  const sum = (key: keyof RankCounts) => workers.reduce((total, worker) => total + (worker.counts[key] ?? 0), 0);
  return {
    records: merged.records,
    provenance: merged.provenance,
    incomplete: merged.incomplete,
    counts: {
      images: sum('images'), prompts: Math.max(0, ...workers.map((worker) => worker.counts.prompts ?? 0)),
      rows: merged.records.length, scored: merged.records.length - errors, errors, notReached: sum('notReached'),
    },
    stats: sumStats(workers.map((worker) => worker.stats)),
    thumbnail: merged.thumbnail,
    workers,
  };
}


/** Every file rank reads: the prompts file, the images (all shards': a shard must not overwrite another's), their sidecars. */
function* rankInputs(options: RankQuery, images: readonly DiscoveredImage[]): Generator<NamedInput> {
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
async function discoverSummarisingSkips(options: RankQuery, log: (line: string) => void): Promise<DiscoveredImage[]> {
  const notImages: string[] = [];
  const bitmaps: string[] = [];
  const images = await discoverImages(options.inputs, {
    onSkip: (p, reason) => (reason === NOT_AN_IMAGE ? notImages.push(p) : reason === BMP_SKIP_REASON ? bitmaps.push(p) : log(`warning: skipped ${p}: ${reason}`)),
  });
  const list = (paths: string[]): string => paths.slice(0, 3).join(', ') + (paths.length > 3 ? ', ...' : '');
  if (notImages.length > 0) {
    log(`skipped ${notImages.length} file${notImages.length === 1 ? '' : 's'} without an image extension: ${list(notImages)}`);
  }
  if (bitmaps.length > 0) {
    log(`warning: skipped ${bitmaps.length} BMP file${bitmaps.length === 1 ? '' : 's'} (BMP is not supported; convert to PNG to score): ${list(bitmaps)}`);
  }
  return images;
}

/** The reason discoverImages gives for a file it passes over by extension. */
const NOT_AN_IMAGE = 'not an image file extension';

function validateRankOptions(options: RankQuery): number | undefined {
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
function rankRunIdentity(images: DiscoveredImage[], plan: PromptPlan, scorers: string[]): RankRunIdentity {
  return {
    command: 'rank',
    images: digestKeys(images.map((image) => image.path)),
    prompts: plan.kind === 'global' ? { from: 'list', prompts: plan.prompts } : { from: plan.source },
    // PickScore alone leaves the identity as it was, so its parts merge as before.
    ...(scorers.length === 1 && scorers[0] === 'pickscore' ? {} : { scorers }),
  };
}

async function planPrompts(options: RankQuery): Promise<PromptPlan> {
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
