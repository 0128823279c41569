/**
 * The scoring engine shared by `rank`, `eval` and the library API.
 *
 * Images stream through the worker pool inside a bounded read-ahead window while the encoder runs the
 * previous batch on its own thread (openEncodersInThread: onnxruntime's run blocks the thread that calls
 * it, so on the main thread it would stall the pool's replies and the next batch). Pixels are copied
 * into one of two preallocated batch buffers, which travel to the encoder thread and back without a
 * copy, so memory stays flat for any number of images. Batch k+1 is launched as soon as batch k ends,
 * before k's cache writes and results. Embeddings already in the SQLite cache skip the decoder and the
 * encoder: a worker reads and hashes each file, the hash is looked up, and only a miss is decoded (by
 * the worker that holds its bytes). Records carry numbers only. The cache is only ever a saving: when
 * it cannot be used (a full disk, a read-only folder, a lock held too long) the run warns once and
 * goes on without it.
 */
import type { EncoderSessions } from '../encoder/session.js';
import { openEncodersInThread, type EncoderRun, type ThreadedEncoderSessions } from '../encoder/threaded-encoders.js';
import type { AttentionImpl, ModelManifest, Precision } from '../model-format.js';
import type { TokenizedPrompt } from '../tokenizer/clip-tokenizer.js';
import { OpenClipTokenizer } from '../tokenizer/open-clip-tokenizer.js';
import { scorerCacheTag, type ScorerDescription, type ScorerName } from '../scorers/scorers.js';
import { scoreFromCosine } from '../score/scorer-formula.js';
import { DEFAULT_QUEUE_DEPTH, ImagePool, type PreparedImage, type ReadResult } from '../image/pool.js';
import type { ImageSupply } from '../image/shared-pool.js';
import type { ExifMode, ImageSource, ResizeMode } from '../image/image.js';
import { EmbeddingCache, EmbeddingCacheUnavailable } from '../io/embedding-cache.js';
import { l2normalize, scoreMatrix, unitEmbeddingProblem } from '../score/similarity.js';
import { InternalError, UsageError, expectedMessage, errorMessage } from '../errors.js';
import { batchSizeFor, resolveScorerOptions, type ResolvedScorerOptions, type ScorerOptions } from './options.js';
import { openModel, type OpenEncoders, type Placement } from './open-model.js';
import { ReadAheadWindow, groupConsecutive } from './window.js';
import { PICKSCORE_VERSION } from '../version.js';

export type { ScorerOptions, Precision } from './options.js';

/** A high surrogate not followed by a low one, or a low one not preceded by a high one. */
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

export type { ImageSource } from '../image/image.js';

export interface ScoreRequest { prompt: string; image: ImageSource; key: string }
export interface ScoredItem {
  key: string; prompt: string; score: number | null; width: number | null; height: number | null;
  contentHash: string | null; error: string | null;
  /** With several scorers: each one's score, by scorer name, the first's included. */
  scores?: Record<string, number | null>;
}
/** The tokenizer a scorer reads prompts with: transformers' (ClipTokenizer) or open_clip's (OpenClipTokenizer). */
export interface PromptTokenizer {
  readonly contextLength: number;
  encode(text: string): TokenizedPrompt;
  encodeBatch(texts: string[]): { inputIds: BigInt64Array; prompts: TokenizedPrompt[] };
}

/** What ran: the encoders that were opened (not what was asked for), where, and how images were read. */
export interface Provenance {
  /** The scorer, present only when it is not pickscore (the default), so PickScore's outputs stay as they were. */
  scorer?: ScorerName;
  model: string; fingerprint: string; sourceFiles: { name: string; sha256: string }[]; precision: Precision;
  /** plain ONNX attention, or onnxruntime's fused contrib kernels. */
  attention: AttentionImpl;
  executionProvider: string; device: string; onnxruntimeVersion: string; pickscoreVersion: string;
  exif: ExifMode; resize: ResizeMode;
  /** Images with more pixels were refused (error rows), so the limit decides which rows are scored. */
  maxPixels: number;
}

/** Counters the benchmark and the rerun tests read: what was encoded, what the cache saved, where time went. */
export interface ScorerStats {
  imagesPrepared: number;
  /** Images handed to decoding and resizing: the cache's misses, or every image without a cache. A cache hit is only read and hashed. */
  imagesDecoded: number;
  imagesEncoded: number;
  imageEncoderCalls: number;
  imageCacheHits: number;
  textsEncoded: number;
  textCacheHits: number;
  encoderBusyMs: number;
  /** Wall time of the image streams in which the image encoder was not running: time spent waiting for decoded images. */
  waitingForImagesMs: number;
  /**
   * How long the image encoder sat idle between consecutive runs of one stream (end of run k to start
   * of run k+1, as the encoder thread timed them): what a GPU waits for its next batch. Count, sum, largest.
   */
  encoderIdleGaps: number;
  encoderIdleGapMs: number;
  encoderIdleGapMaxMs: number;
}

/**
 * How the pipeline is laid out; the benchmark compares layouts in one run. The defaults are the fast
 * ones: encoders on their own thread, two images queued per pool worker, and each image's pixel buffer
 * handed back to its worker once copied into a batch (`recyclePixels`).
 */
export interface PipelineLayout { encoderThread: boolean; queueDepth: number; recyclePixels?: boolean }
const DEFAULT_LAYOUT: PipelineLayout = { encoderThread: true, queueDepth: DEFAULT_QUEUE_DEPTH, recyclePixels: true };

/** One image to embed, with whatever the caller needs back beside its embedding. */
export interface ImageJob<T> { source: ImageSource; payload: T }
export interface EmbeddedImage<T> {
  payload: T; embedding: Float32Array | null; width: number | null; height: number | null;
  contentHash: string | null; error: string | null;
}

export interface StreamOptions { signal?: AbortSignal; onProgress?: (done: number) => void }

/** An image whose embedding the cache held: it was read and hashed, never decoded; its size is the cache row's. */
interface CacheHit { ok: true; embedding: Float32Array; width: number; height: number; contentHash: string }
type Prepared = PreparedImage | CacheHit;
interface Started<T> { job: ImageJob<T>; prepared: Promise<Prepared> }
interface BatchEntry<T> { job: ImageJob<T>; prepared: Prepared; slot: number | null; embedding: Float32Array | null }
interface FreshImage { embedding: Float32Array; width: number; height: number; mode: string }
/** An encoded batch whose fresh embeddings are still to be written to the cache. */
interface EncodedBatch<T> { entries: BatchEntry<T>[]; fresh: Map<string, FreshImage> }
/** A stream's two batch buffers (one filled while the other is with the encoder) and the end of its last run. */
interface StreamBuffers { pair: [Float32Array, Float32Array]; lastRunEnd: number | null }

const TEXT_BATCH = 64;
/** Prompt embeddings kept in memory; the SQLite cache holds the rest, so per-image prompts stay bounded. */
const TEXT_MEMO_LIMIT = 4096;
/** A batch of cache hits is closed at this many batches' worth of entries so records keep flowing. */
const MAX_ENTRIES_PER_BATCH_FACTOR = 8;

function sourceIdentity(source: ImageSource): unknown {
  if ('path' in source) return source.path;
  if ('bytes' in source) return source.bytes;
  return source.rgb;
}


export class Scorer {
  readonly logitScale: number;
  readonly description: ScorerDescription;
  private readonly pixelsPerImage: number;
  private readonly embedDim: number;
  /** Values per image the encoder gives: embedDim, or the head's outputs for an image-score scorer. */
  private readonly imageDim: number;
  /** The model's fingerprint, and for scorers other than pickscore what else their embeddings depend on. */
  private readonly cacheKey: string;
  private readonly imageScores: boolean;
  /** Idle batch-buffer pairs. Each running stream takes its own pair, so concurrent streams never share pixels. */
  private readonly idleBuffers: [Float32Array, Float32Array][] = [];
  private readonly textMemo = new Map<string, Float32Array>();
  private readonly warnedPrompts = new Set<string>();
  private warnedInvalidCacheRow = false;
  private readonly counters: ScorerStats = {
    imagesPrepared: 0, imagesDecoded: 0, imagesEncoded: 0, imageEncoderCalls: 0, imageCacheHits: 0,
    textsEncoded: 0, textCacheHits: 0, encoderBusyMs: 0, waitingForImagesMs: 0,
    encoderIdleGaps: 0, encoderIdleGapMs: 0, encoderIdleGapMaxMs: 0,
  };
  private closed = false;

  /** Images per encoder call: as given, else a size that suits the device the encoders run on. */
  private readonly batchSize: number;

  private constructor(
    private readonly opts: ResolvedScorerOptions,
    private readonly manifest: ModelManifest,
    private readonly sessions: EncoderSessions | ThreadedEncoderSessions,
    private readonly placement: Placement,
    private readonly tokenizer: PromptTokenizer,
    private pool: ImageSupply,
    /** Null with --no-cache, or once the cache failed: the run then goes on without it. */
    private cache: EmbeddingCache | null,
    private readonly recyclePixels: boolean,
  ) {
    this.logitScale = manifest.logitScale;
    this.description = opts.scorerDescription;
    this.embedDim = manifest.image.embedDim;
    this.imageScores = opts.scorerDescription.formula.kind === 'image-score';
    this.imageDim = this.imageScores ? manifest.imageScore!.outFeatures : this.embedDim;
    this.cacheKey = manifest.fingerprint + scorerCacheTag(opts.scorerDescription);
    const { cropHeight, cropWidth } = manifest.preprocess;
    this.pixelsPerImage = 3 * cropHeight * cropWidth;
    this.batchSize = batchSizeFor(opts.batchSize, placement.device.kind === 'cuda');
  }

  static async open(options: ScorerOptions | ResolvedScorerOptions = {}, layout: PipelineLayout = DEFAULT_LAYOUT): Promise<Scorer> {
    const opts = resolveScorerOptions(options);
    const open: OpenEncoders<EncoderSessions | ThreadedEncoderSessions> = layout.encoderThread ? openEncodersInThread : onThisThread;
    const transform = opts.scorerDescription.transform.kind === 'clip-processor' ? {} : { transform: opts.scorerDescription.transform };
    const newPool = (manifest: ModelManifest) => new ImagePool({
      threads: opts.threads, preprocess: manifest.preprocess, image: opts.image, queueDepth: layout.queueDepth, ...transform,
    });
    // The image workers start, and the cache opens, while the encoders open: together they are most of
    // a cached rerun's start-up.
    let pool: ImagePool | undefined;
    let cache: EmbeddingCache | null = null;
    const opened: { close(): unknown }[] = [];
    try {
      const { manifest, sessions, placement, tokenizer: tokenizing } = await openModel(opts, open, undefined, (resolved) => {
        pool = newPool(resolved);
        opened.push(pool);
        pool.warm();
        cache = opts.cacheDir === false ? null : openCache(opts.cacheDir, opts.log);
        if (cache) opened.push(cache);
      });
      opened.push(sessions);
      const clipTokenizer = await tokenizing;
      const tokenizer: PromptTokenizer = opts.scorerDescription.tokenizer === 'open_clip' ? new OpenClipTokenizer(clipTokenizer) : clipTokenizer;
      // A fallback to the CPU may run another variant of the model, whose images are prepared alike in practice.
      if (!pool || !samePreprocess(pool.preprocess, manifest.preprocess)) {
        await pool?.close();
        pool = newPool(manifest);
        opened.push(pool);
      }
      return new Scorer(opts, manifest, sessions, placement, tokenizer, pool, cache, layout.recyclePixels ?? true);
    } catch (err) {
      await Promise.allSettled(opened.map(async (resource) => resource.close()));
      throw err;
    }
  }

  provenance(): Provenance {
    const p = this.placement;
    return {
      ...(this.description.name === 'pickscore' ? {} : { scorer: this.description.name }),
      model: this.manifest.name,
      fingerprint: this.manifest.fingerprint,
      sourceFiles: this.manifest.source.files.map(({ name, sha256 }) => ({ name, sha256 })),
      precision: this.manifest.precision,
      attention: this.manifest.attention,
      executionProvider: p.executionProvider,
      device: p.name,
      onnxruntimeVersion: p.onnxruntimeVersion,
      pickscoreVersion: PICKSCORE_VERSION,
      exif: this.opts.image.exif,
      resize: this.opts.image.resize,
      maxPixels: this.opts.image.maxPixels,
    };
  }

  stats(): ScorerStats {
    return { ...this.counters };
  }

  get dimension(): number {
    return this.embedDim;
  }

  /**
   * How this scorer prepares an image (transform, preprocessing, how files are read): scorers that give
   * the same string prepare every image alike and can share one decode (src/image/shared-pool.ts).
   */
  get imagePreparation(): string {
    return JSON.stringify({ transform: this.description.transform, preprocess: this.pool.preprocess, image: this.opts.image });
  }

  /** The pool this scorer's images come from, to share with scorers whose imagePreparation is the same. */
  get imagePool(): ImageSupply {
    return this.pool;
  }

  /**
   * Takes images from `supply` from now on (a view of a pool shared with other scorers); this scorer's
   * own pool is closed unless the shared one is built on it.
   */
  async useImages(supply: ImageSupply, opts: { closeOwn: boolean }): Promise<void> {
    const own = this.pool;
    this.pool = supply;
    if (opts.closeOwn) await own.close();
  }

  /** Whether this scorer's images give a score of their own (the aesthetic head), so the prompt is not read. */
  get scoresImagesAlone(): boolean {
    return this.imageScores;
  }

  /** L2-normalised text embeddings, [prompts.length, dim]; each prompt is encoded once across calls and runs. */
  async embedTexts(prompts: string[]): Promise<Float32Array> {
    this.assertOpen();
    // Held here, not only in the bounded memo, which may evict some of a long list before it is read back.
    const found = new Map<string, Float32Array>();
    const missing: string[] = [];
    for (const prompt of new Set(prompts)) {
      if (typeof prompt !== 'string') throw new UsageError(expectedMessage('a string', 'prompt', prompt));
      this.warnIfTruncated(prompt);
      const known = this.textMemo.get(prompt) ?? this.cachedText(prompt);
      if (known) found.set(prompt, known);
      else missing.push(prompt);
    }
    for (let i = 0; i < missing.length; i += TEXT_BATCH) {
      for (const { prompt, embedding } of await this.encodeTextChunk(missing.slice(i, i + TEXT_BATCH))) found.set(prompt, embedding);
    }
    const out = new Float32Array(prompts.length * this.embedDim);
    prompts.forEach((prompt, i) => out.set(found.get(prompt) as Float32Array, i * this.embedDim));
    return out;
  }

  /**
   * Scores every request (one prompt against one image), in input order. Consecutive requests for the
   * same image share one decode and one encoder slot. Per-image failures become items with an error.
   */
  async *scoreStream(
    requests: AsyncIterable<ScoreRequest> | Iterable<ScoreRequest>,
    opts: StreamOptions = {},
  ): AsyncGenerator<ScoredItem> {
    const groups = groupConsecutive(requests, (request) => sourceIdentity(request.image));
    const jobs = mapAsync(groups, (group): ImageJob<ScoreRequest[]> => ({ source: group.items[0].image, payload: group.items }));
    let done = 0;
    for await (const embedded of this.embedImageStream(jobs, { signal: opts.signal })) {
      for (const request of embedded.payload) {
        yield await this.scoreOne(request, embedded);
        done++;
      }
      opts.onProgress?.(done);
    }
  }

  /**
   * L2-normalised image embeddings, in input order, through the bounded pipeline: the pool prepares the
   * next batch while the encoder runs this one. An aborted signal stops after the batch being encoded.
   */
  async *embedImageStream<T>(
    jobs: AsyncIterable<ImageJob<T>> | Iterable<ImageJob<T>>,
    opts: { signal?: AbortSignal } = {},
  ): AsyncGenerator<EmbeddedImage<T>> {
    this.assertOpen();
    const source = toAsyncIterator(jobs);
    const window = new ReadAheadWindow<ImageJob<T>, Started<T>>(
      source, (job) => ({ job, prepared: this.prepare(job.source) }), 2 * this.batchSize,
    );
    const started = performance.now();
    const busyBefore = this.counters.encoderBusyMs;
    const buffers: StreamBuffers = { pair: this.takeBuffers(), lastRunEnd: null };
    let inFlight: Promise<EncodedBatch<T>> | null = null;
    let bufferIndex = 0;
    try {
      for (;;) {
        // An abort while the consumer read batch k drops batch k+1, already running: the consumer gets
        // exactly the batches it had asked for when it stopped.
        if (opts.signal?.aborted) break;
        // Batch k+1 is assembled while batch k runs on the encoder thread.
        const batch = await this.assembleBatch(window, buffers.pair[bufferIndex]);
        const finished = inFlight ? await inFlight : null;
        inFlight = null;
        // Launched before k's cache writes and results, so the encoder does not wait for them.
        if (batch.length > 0 && !opts.signal?.aborted) {
          inFlight = this.encodeBatch(batch, buffers, bufferIndex);
          bufferIndex = 1 - bufferIndex;
        }
        if (finished) yield* this.finishBatch(finished);
        if (!inFlight) break;
      }
    } finally {
      if (inFlight) await inFlight.catch(() => undefined);
      await window.stop();
      // A batch that failed on the encoder thread may not have brought its buffer back.
      if (buffers.pair.every((buffer) => buffer.length > 0)) this.idleBuffers.push(buffers.pair);
      const busy = this.counters.encoderBusyMs - busyBefore;
      this.counters.waitingForImagesMs += Math.max(0, performance.now() - started - busy);
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const results = await Promise.allSettled([this.pool.close(), this.sessions.close(), Promise.resolve().then(() => this.cache?.close())]);
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) throw failed.reason;
  }

  /** A pair of batch buffers: one being filled while the encoder reads the other. Reused across streams. */
  private takeBuffers(): [Float32Array, Float32Array] {
    const idle = this.idleBuffers.pop();
    if (idle) return idle;
    const floats = this.batchSize * this.pixelsPerImage;
    return [new Float32Array(floats), new Float32Array(floats)];
  }

  private assertOpen(): void {
    if (this.closed) throw new UsageError('This scorer is closed; open a new one with Scorer.open()');
  }

  /**
   * How an image's embedding was made, part of its cache key. Pixels handed over decoded have no EXIF
   * orientation to apply, and were resized on another path before the one preparation path took them
   * too, so their rows are kept apart from files' rows.
   */
  private imageMode(source: ImageSource): string {
    const { exif, resize } = this.opts.image;
    return 'rgb' in source ? `rgb;resize=${resize}` : `exif=${exif};resize=${resize}`;
  }

  /**
   * Starts an image on its way to the batch, every kind of source the same way. With a cache, a worker
   * first only reads and hashes it, and decoding is asked for only when the hash misses; without one,
   * the worker does it all in one step.
   */
  private prepare(source: ImageSource): Promise<Prepared> {
    let prepared: Promise<Prepared>;
    if (this.cache) {
      const mode = this.imageMode(source);
      prepared = this.pool.read(source).then((read) => this.decodeMiss(read, mode));
    } else {
      this.counters.imagesDecoded++;
      prepared = this.pool.prepare(source);
    }
    return prepared.catch((err: unknown) => ({ ok: false as const, error: errorMessage(err) }));
  }

  /** A hit lets the worker drop the bytes it holds; a miss has that worker decode them. */
  private decodeMiss(read: ReadResult, mode: string): Prepared | Promise<Prepared> {
    if (!read.ok) return read;
    let hit: CacheHit | undefined;
    try {
      hit = this.cachedImage(read.contentHash, mode);
    } catch (err) {
      read.drop();
      throw err;
    }
    if (hit) {
      read.drop();
      return hit;
    }
    this.counters.imagesDecoded++;
    return read.decode();
  }

  /** The cache's row for an image, if it holds a usable one with the image's size. */
  private cachedImage(contentHash: string, mode: string): CacheHit | undefined {
    const entry = this.withCache(undefined, (cache) => cache.getImageEntry(this.cacheKey, contentHash, mode));
    const embedding = this.checkedCacheRow('image', entry?.embedding);
    return entry && embedding && { ok: true, embedding, width: entry.width, height: entry.height, contentHash };
  }

  /**
   * Takes prepared images in order until the batch holds batchSize images to encode. Cache hits and
   * failures ride along without taking an encoder slot, and identical content is encoded once.
   */
  private async assembleBatch<T>(window: ReadAheadWindow<ImageJob<T>, Started<T>>, buffer: Float32Array): Promise<BatchEntry<T>[]> {
    const entries: BatchEntry<T>[] = [];
    const slotByHash = new Map<string, number>();
    const maxEntries = MAX_ENTRIES_PER_BATCH_FACTOR * this.batchSize;
    while (slotByHash.size < this.batchSize && entries.length < maxEntries) {
      const started = await window.next();
      if (!started) break;
      const prepared = await started.prepared;
      this.counters.imagesPrepared++;
      const entry: BatchEntry<T> = { job: started.job, prepared, slot: null, embedding: null };
      entries.push(entry);
      if (!prepared.ok) continue;
      const placed = this.placeInBatch(prepared, buffer, slotByHash);
      entry.slot = placed.slot;
      entry.embedding = placed.embedding;
    }
    return entries;
  }

  /**
   * The batch slot an image's embedding will come from: none for a cache hit, the slot of an identical
   * image already in the batch, or a new slot its pixels are copied into. Its pixel buffer then goes back
   * to the pool, whose worker writes the next image into it.
   */
  private placeInBatch(prepared: Extract<Prepared, { ok: true }>, buffer: Float32Array, slotByHash: Map<string, number>): Pick<BatchEntry<unknown>, 'slot' | 'embedding'> {
    if ('embedding' in prepared) {
      this.counters.imageCacheHits++;
      return { slot: null, embedding: prepared.embedding };
    }
    try {
      let slot = slotByHash.get(prepared.contentHash);
      if (slot === undefined) {
        slot = slotByHash.size;
        slotByHash.set(prepared.contentHash, slot);
        buffer.set(prepared.pixels, slot * this.pixelsPerImage);
      }
      return { slot, embedding: null };
    } finally {
      if (this.recyclePixels) this.pool.recycle(prepared.pixels);
    }
  }

  /** Runs the batch's encoder slots; the buffer comes back into `buffers.pair[index]` when it was transferred. */
  private async encodeBatch<T>(entries: BatchEntry<T>[], buffers: StreamBuffers, index: number): Promise<EncodedBatch<T>> {
    const fresh = new Map<string, FreshImage>();
    const count = new Set(entries.map((e) => e.slot).filter((s) => s !== null)).size;
    if (count === 0) return { entries, fresh };
    const { embeddings: raw, ...run } = await this.runImageEncoder(buffers, index, count);
    this.countRun(run, buffers);
    this.counters.imageEncoderCalls++;
    this.counters.imagesEncoded += count;
    const dim = this.imageDim;
    if (raw.length !== count * dim) {
      throw new InternalError(expectedMessage(`${count * dim} floats`, 'the image encoder output', raw.length));
    }
    // A head's score is a value, not a direction: it is kept as it came.
    if (!this.imageScores) l2normalize(raw, dim);
    for (const entry of entries) {
      const { prepared, slot } = entry;
      if (slot === null || !prepared.ok) continue;
      const embedding = raw.slice(slot * dim, (slot + 1) * dim);
      entry.embedding = embedding;
      fresh.set(prepared.contentHash, { embedding, width: prepared.width, height: prepared.height, mode: this.imageMode(entry.job.source) });
    }
    return { entries, fresh };
  }

  private async runImageEncoder(buffers: StreamBuffers, index: number, count: number): Promise<EncoderRun & { embeddings: Float32Array }> {
    const buffer = buffers.pair[index];
    if ('encodeImagesTransferring' in this.sessions) {
      const done = await this.sessions.encodeImagesTransferring(buffer, count);
      buffers.pair[index] = done.pixels;
      return done;
    }
    const startedAt = epochNow();
    const embeddings = await this.sessions.encodeImages(buffer.subarray(0, count * this.pixelsPerImage), count);
    return { embeddings, startedAt, endedAt: epochNow() };
  }

  private countRun(run: EncoderRun, buffers: StreamBuffers): void {
    this.counters.encoderBusyMs += run.endedAt - run.startedAt;
    if (buffers.lastRunEnd !== null) {
      const gap = Math.max(0, run.startedAt - buffers.lastRunEnd);
      this.counters.encoderIdleGaps++;
      this.counters.encoderIdleGapMs += gap;
      this.counters.encoderIdleGapMaxMs = Math.max(this.counters.encoderIdleGapMaxMs, gap);
    }
    buffers.lastRunEnd = run.endedAt;
  }

  /** Writes the batch's fresh embeddings to the cache and turns its entries into results. */
  private finishBatch<T>({ entries, fresh }: EncodedBatch<T>): EmbeddedImage<T>[] {
    const byMode = new Map<string, { contentHash: string; embedding: Float32Array; width: number; height: number }[]>();
    for (const [contentHash, { mode, ...image }] of fresh) byMode.set(mode, [...(byMode.get(mode) ?? []), { contentHash, ...image }]);
    for (const [mode, images] of byMode) this.withCache(undefined, (cache) => cache.putImages(this.cacheKey, mode, images));
    return entries.map(({ job, prepared, embedding }) => prepared.ok
      ? { payload: job.payload, embedding, width: prepared.width, height: prepared.height, contentHash: prepared.contentHash, error: null }
      : { payload: job.payload, embedding: null, width: null, height: null, contentHash: prepared.contentHash ?? null, error: prepared.error });
  }

  private async scoreOne(request: ScoreRequest, image: EmbeddedImage<unknown>): Promise<ScoredItem> {
    const base = { key: request.key, prompt: request.prompt, width: image.width, height: image.height, contentHash: image.contentHash };
    if (!image.embedding) return { ...base, score: null, error: image.error ?? 'image was not embedded' };
    if (this.imageScores) return { ...base, score: image.embedding[0], error: null };
    const text = this.textMemo.get(request.prompt) ?? (await this.embedTexts([request.prompt]));
    if (this.description.formula.kind === 'scaled-cosine') {
      return { ...base, score: scoreMatrix(text, image.embedding, this.embedDim, this.logitScale)[0], error: null };
    }
    return { ...base, score: scoreFromCosine(this.description.formula, scoreMatrix(text, image.embedding, this.embedDim, 1)[0], this.logitScale), error: null };
  }

  private cachedText(prompt: string): Float32Array | undefined {
    const cached = this.checkedCacheRow('text', this.withCache(undefined, (cache) => cache.getText(this.cacheKey, prompt)));
    if (!cached) return undefined;
    this.counters.textCacheHits++;
    this.remember(prompt, cached);
    return cached;
  }

  private async encodeTextChunk(prompts: string[]): Promise<{ prompt: string; embedding: Float32Array }[]> {
    const { inputIds } = this.tokenizer.encodeBatch(prompts.map((prompt) => this.description.textPrefix + prompt));
    const t0 = performance.now();
    const raw = await this.sessions.encodeText(inputIds, prompts.length);
    this.counters.encoderBusyMs += performance.now() - t0;
    this.counters.textsEncoded += prompts.length;
    l2normalize(raw, this.embedDim);
    const entries = prompts.map((prompt, i) => ({ prompt, embedding: raw.slice(i * this.embedDim, (i + 1) * this.embedDim) }));
    for (const { prompt, embedding } of entries) this.remember(prompt, embedding);
    this.withCache(undefined, (cache) => cache.putTexts(this.cacheKey, entries));
    return entries;
  }

  /**
   * Runs one cache operation, or gives `fallback` without a cache. A cache that fails (full disk,
   * read-only, locked past the timeout) is dropped with one warning, and the run goes on: its scores do
   * not depend on the cache. A damaged file never gets here: the cache moves it aside itself.
   */
  private withCache<T>(fallback: T, operation: (cache: EmbeddingCache) => T): T {
    const cache = this.cache;
    if (!cache) return fallback;
    try {
      return operation(cache);
    } catch (err) {
      if (!(err instanceof EmbeddingCacheUnavailable)) throw err;
      this.cache = null;
      cache.close();
      this.opts.log(`warning: ${withoutCache(err)}`);
      return fallback;
    }
  }

  /**
   * A row read from the cache, if it is an embedding this model could have written: of its width, finite,
   * of unit length. Anything else (a damaged or foreign row) would give a wrong score or none, so it is
   * a miss: recomputed, and replaced by the write that follows. Warned once per run.
   */
  private checkedCacheRow(kind: 'text' | 'image', embedding: Float32Array | undefined): Float32Array | undefined {
    if (!embedding) return undefined;
    const problem = kind === 'image' && this.imageScores ? headScoreProblem(embedding, this.imageDim) : unitEmbeddingProblem(embedding, this.embedDim);
    if (!problem) return embedding;
    if (!this.warnedInvalidCacheRow) {
      this.warnedInvalidCacheRow = true;
      this.opts.log(`warning: the embedding cache ${this.cache?.path ?? ''} holds an invalid ${kind} embedding (${problem}); it is recomputed and replaced, as is every other invalid row met in this run`);
    }
    return undefined;
  }

  private warnIfTruncated(prompt: string): void {
    if (this.warnedPrompts.has(prompt)) return;
    const { truncated, tokenCount } = this.tokenizer.encode(this.description.textPrefix + prompt);
    // UTF-8 has no lone surrogates: the tokenizer's encoding turns one into U+FFFD, so "\ud800", "\udbff"
    // and "\ufffd" score the same, and a CSV shows them the same. Said, so that equal rows are explained.
    const surrogate = LONE_SURROGATE.exec(prompt)?.[0];
    if (!truncated && surrogate === undefined) return;
    this.warnedPrompts.add(prompt);
    const shown = prompt.length > 50 ? `${prompt.slice(0, 47)}...` : prompt;
    if (surrogate !== undefined) {
      const code = `U+${surrogate.charCodeAt(0).toString(16).toUpperCase()}`;
      this.opts.log(`warning: prompt ${JSON.stringify(shown)} holds a lone surrogate (${code}), which is not a character; it was replaced by U+FFFD, so the prompt scores as if it held U+FFFD there`);
    }
    if (truncated) this.opts.log(`warning: prompt ${JSON.stringify(shown)} has ${tokenCount} tokens; the model reads the first ${this.tokenizer.contextLength}, so the rest is ignored`);
  }

  private remember(prompt: string, embedding: Float32Array): void {
    this.textMemo.delete(prompt);
    this.textMemo.set(prompt, embedding);
    if (this.textMemo.size > TEXT_MEMO_LIMIT) this.textMemo.delete(this.textMemo.keys().next().value as string);
  }
}

/** Why a cached head score cannot be one (undefined when it can): the wrong count, or a value that is not finite. */
function headScoreProblem(v: Float32Array, dim: number): string | undefined {
  if (v.length !== dim) return `${v.length} values where the head gives ${dim}`;
  const bad = v.findIndex((x) => !Number.isFinite(x));
  return bad < 0 ? undefined : `value ${bad} is ${v[bad]}`;
}

function withoutCache(err: EmbeddingCacheUnavailable): string {
  return `${err.message}; going on without the cache (scores are the same, but this run saves nothing for the next)`;
}

/** The embedding cache, or null (with one warning) when it cannot be opened: a run never fails for its cache. */
function openCache(dir: string, log: (line: string) => void): EmbeddingCache | null {
  try {
    return EmbeddingCache.open(dir, { onWarning: (message) => log(`warning: ${message}`) });
  } catch (err) {
    if (!(err instanceof EmbeddingCacheUnavailable)) throw err;
    log(`warning: ${withoutCache(err)}`);
    return null;
  }
}

function samePreprocess(a: ModelManifest['preprocess'], b: ModelManifest['preprocess']): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

/** The encoders on the calling thread (a benchmark's layout): onnxruntime is loaded only when they are asked for. */
async function onThisThread(modelDir: string, manifest: ModelManifest, opts: Parameters<OpenEncoders>[2]): Promise<EncoderSessions> {
  const { openEncoders } = await import('../encoder/session.js');
  return openEncoders(modelDir, manifest, opts);
}

/** Epoch milliseconds, comparable with the encoder thread's timestamps. */
function epochNow(): number {
  return performance.timeOrigin + performance.now();
}

async function* mapAsync<A, B>(items: AsyncIterable<A>, fn: (item: A) => B): AsyncGenerator<B> {
  for await (const item of items) yield fn(item);
}

function toAsyncIterator<T>(items: AsyncIterable<T> | Iterable<T>): AsyncIterator<T> {
  if (Symbol.asyncIterator in items) return items[Symbol.asyncIterator]();
  const iterator = items[Symbol.iterator]();
  return {
    next: async () => iterator.next(),
    return: async () => iterator.return?.() ?? { done: true, value: undefined },
  };
}
