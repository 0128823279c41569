/**
 * ImagePool: reads, decodes, resizes and normalises images on worker threads. Workers are started on
 * demand up to `threads` and reused. Each worker holds up to `queueDepth` images (2 by default): it
 * starts the next as soon as it answers one, without waiting for the main thread, which may be busy
 * between batches. Waiting work is held as sources (a path or the caller's bytes), never as pixels, and
 * callers bound it by how many prepare() calls they leave outstanding (the pipeline keeps a fixed
 * read-ahead window, which also bounds the images held in workers). A worker that dies fails only its
 * own images and is replaced.
 */
import { Worker } from 'node:worker_threads';
import { UsageError, expectedMessage, errorMessage } from '../errors.js';
import type { PreprocessConfig } from './preprocess.js';
import type { ImageSource, PreparedImage } from './prepare-image.js';

export type { ImageSource, PreparedImage } from './prepare-image.js';

export interface ImagePoolOptions {
  threads: number; preprocess: PreprocessConfig; exif: 'apply' | 'ignore'; resize: 'exact' | 'fast'; maxPixels: number;
  /** Images handed to one worker at a time (default 2): its next image is already there when it finishes one. */
  queueDepth?: number;
}

export const DEFAULT_QUEUE_DEPTH = 2;

/** What the pool sends a worker: an image to prepare, or a pixel buffer to prepare the next one into. */
export type PoolWorkerMessage = { op: 'prepare'; source: ImageSource } | { op: 'recycle'; buffer: ArrayBuffer };

interface Pending { source: ImageSource; resolve: (result: PreparedImage) => void }

/** A worker and its images in the order it answers them (it prepares them one after another). */
interface Slot { worker: Worker; queue: Pending[]; outstanding: number; onIdle?: () => void }

function checkOptions(opts: ImagePoolOptions): void {
  if (!Number.isInteger(opts.threads) || opts.threads < 1) throw new UsageError(expectedMessage('a positive integer', 'threads', opts.threads));
  if (opts.exif !== 'apply' && opts.exif !== 'ignore') throw new UsageError(expectedMessage('"apply" or "ignore"', 'exif', opts.exif));
  if (opts.resize !== 'exact' && opts.resize !== 'fast') throw new UsageError(expectedMessage('"exact" or "fast"', 'resize', opts.resize));
  if (!Number.isInteger(opts.maxPixels) || opts.maxPixels < 1) throw new UsageError(expectedMessage('a positive integer', 'maxPixels', opts.maxPixels));
  if (opts.queueDepth !== undefined && !(Number.isInteger(opts.queueDepth) && opts.queueDepth >= 1)) {
    throw new UsageError(expectedMessage('a positive integer', 'queueDepth', opts.queueDepth));
  }
  const { shortestEdge, cropWidth, cropHeight } = opts.preprocess;
  if (opts.resize === 'fast' && (cropWidth !== shortestEdge || cropHeight !== shortestEdge)) {
    throw new UsageError(`--resize fast needs a square crop equal to the resize size, but this model crops ${cropWidth}x${cropHeight} after resizing to ${shortestEdge}`);
  }
}

export class ImagePool {
  private readonly opts: ImagePoolOptions;
  private readonly queueDepth: number;
  private readonly slots: Slot[] = [];
  private readonly waiting: Pending[] = [];
  /** The worker each pixel buffer came from, so that recycle() hands it back there. */
  private readonly producers = new WeakMap<ArrayBuffer, Slot>();
  private closed = false;

  constructor(opts: ImagePoolOptions) {
    checkOptions(opts);
    this.opts = { ...opts, preprocess: { ...opts.preprocess } };
    this.queueDepth = opts.queueDepth ?? DEFAULT_QUEUE_DEPTH;
  }

  /** Resolves with the prepared pixels, or ok:false and the reason; never rejects for a bad image. */
  prepare(source: ImageSource): Promise<PreparedImage> {
    if (this.closed) return Promise.resolve({ ok: false, error: 'image pool is closed' });
    return new Promise((resolve) => {
      this.waiting.push({ source, resolve });
      this.dispatch();
    });
  }

  /**
   * Hands the pixels of a prepared image back to the worker that made them, to be written again for a
   * later image: the caller must not read them afterwards (the array is left detached, length 0). Without
   * this, every image is a new 0.6 MB buffer on the main thread, and collecting them doubled the main
   * thread's CPU time per image (`npm run bench -- feed`). Pixels the pool did not make are left alone.
   */
  recycle(pixels: Float32Array): void {
    const buffer = pixels.buffer as ArrayBuffer;
    const slot = this.producers.get(buffer);
    if (!slot || this.closed || !this.slots.includes(slot)) return;
    this.producers.delete(buffer);
    slot.worker.postMessage({ op: 'recycle', buffer } satisfies PoolWorkerMessage, [buffer]);
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const pending of this.waiting.splice(0)) pending.resolve({ ok: false, error: 'image pool is closed' });
    const slots = this.slots.splice(0);
    for (const slot of slots) for (const pending of slot.queue.splice(0)) pending.resolve({ ok: false, error: 'image pool is closed' });
    // A worker terminated in the middle of an image could leave terminate() unsettled with nothing else
    // keeping the event loop alive: an interrupted `eval` then ended with exit 13 and wrote no report.
    // So a busy worker finishes the images it holds (their answers are dropped) before it is terminated.
    await Promise.all(slots.map(async (slot) => {
      if (slot.outstanding > 0) await new Promise<void>((settled) => { slot.onIdle = settled; slot.worker.once('exit', () => settled()); });
      await slot.worker.terminate();
    }));
  }

  /** An idle worker first, then a new one while under `threads`, then the least loaded one with room. */
  private pickSlot(): Slot | undefined {
    const idle = this.slots.find((s) => s.outstanding === 0);
    if (idle) return idle;
    if (this.slots.length < this.opts.threads) return this.startWorker();
    const withRoom = this.slots.filter((s) => s.outstanding < this.queueDepth);
    return withRoom.reduce<Slot | undefined>((best, s) => (best && best.outstanding <= s.outstanding ? best : s), undefined);
  }

  private dispatch(): void {
    while (this.waiting.length > 0) {
      const slot = this.pickSlot();
      if (!slot) return;
      const pending = this.waiting.shift() as Pending;
      try {
        slot.worker.postMessage({ op: 'prepare', source: pending.source } satisfies PoolWorkerMessage);
      } catch (err) {
        // A source that cannot be copied to a thread (a library caller's odd object) fails alone.
        pending.resolve({ ok: false, error: `cannot pass the image to a worker thread: ${errorMessage(err)}` });
        continue;
      }
      slot.queue.push(pending);
      slot.outstanding++;
      slot.worker.ref();
    }
  }

  private startWorker(): Slot {
    const { preprocess, exif, resize, maxPixels } = this.opts;
    const worker = new Worker(new URL('./pool-worker.js', import.meta.url), { workerData: { preprocess, exif, resize, maxPixels } });
    const slot: Slot = { worker, queue: [], outstanding: 0 };
    // The worker answers its images in the order it received them, so a reply answers the oldest.
    worker.on('message', (result: PreparedImage) => {
      if (result.ok) this.producers.set(result.pixels.buffer as ArrayBuffer, slot);
      slot.outstanding--;
      const pending = slot.queue.shift();
      if (slot.outstanding === 0) {
        // An idle worker must not keep the process alive if a caller forgets close().
        worker.unref();
        slot.onIdle?.();
      }
      pending?.resolve(result);
      this.dispatch();
    });
    const fail = (reason: string): void => {
      const index = this.slots.indexOf(slot);
      if (index < 0) return;
      this.slots.splice(index, 1);
      for (const pending of slot.queue.splice(0)) pending.resolve({ ok: false, error: `internal error: image worker ${reason}` });
      void worker.terminate();
      if (!this.closed) this.dispatch();
    };
    worker.on('error', (err) => fail(`failed (${err.message})`));
    worker.on('exit', (code) => fail(`exited with code ${code}`));
    this.slots.push(slot);
    return slot;
  }
}
