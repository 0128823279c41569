/**
 * ImagePool: reads, decodes, resizes and normalises images on worker threads, one image per worker at a
 * time. Workers are started on demand up to `threads` and reused. Waiting work is held as sources (a path
 * or the caller's bytes), never as pixels, and callers bound it by how many prepare() calls they leave
 * outstanding (the pipeline keeps a fixed read-ahead window). A worker that dies fails only its own
 * image and is replaced.
 */
import { Worker } from 'node:worker_threads';
import { UsageError, expectedMessage } from '../errors.js';
import type { PreprocessConfig } from './preprocess.js';
import type { ImageSource, PreparedImage } from './prepare-image.js';

export type { ImageSource, PreparedImage } from './prepare-image.js';

export interface ImagePoolOptions { threads: number; preprocess: PreprocessConfig; exif: 'apply' | 'ignore'; resize: 'exact' | 'fast'; maxPixels: number }

interface Pending { source: ImageSource; resolve: (result: PreparedImage) => void }

interface Slot { worker: Worker; current?: Pending }

function checkOptions(opts: ImagePoolOptions): void {
  if (!Number.isInteger(opts.threads) || opts.threads < 1) throw new UsageError(expectedMessage('a positive integer', 'threads', opts.threads));
  if (opts.exif !== 'apply' && opts.exif !== 'ignore') throw new UsageError(expectedMessage('"apply" or "ignore"', 'exif', opts.exif));
  if (opts.resize !== 'exact' && opts.resize !== 'fast') throw new UsageError(expectedMessage('"exact" or "fast"', 'resize', opts.resize));
  if (!Number.isInteger(opts.maxPixels) || opts.maxPixels < 1) throw new UsageError(expectedMessage('a positive integer', 'maxPixels', opts.maxPixels));
  const { shortestEdge, cropWidth, cropHeight } = opts.preprocess;
  if (opts.resize === 'fast' && (cropWidth !== shortestEdge || cropHeight !== shortestEdge)) {
    throw new UsageError(`--resize fast needs a square crop equal to the resize size, but this model crops ${cropWidth}x${cropHeight} after resizing to ${shortestEdge}`);
  }
}

export class ImagePool {
  private readonly opts: ImagePoolOptions;
  private readonly slots: Slot[] = [];
  private readonly waiting: Pending[] = [];
  private closed = false;

  constructor(opts: ImagePoolOptions) {
    checkOptions(opts);
    this.opts = { ...opts, preprocess: { ...opts.preprocess } };
  }

  /** Resolves with the prepared pixels, or ok:false and the reason; never rejects for a bad image. */
  prepare(source: ImageSource): Promise<PreparedImage> {
    if (this.closed) return Promise.resolve({ ok: false, error: 'image pool is closed' });
    return new Promise((resolve) => {
      this.waiting.push({ source, resolve });
      this.dispatch();
    });
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const pending of this.waiting.splice(0)) pending.resolve({ ok: false, error: 'image pool is closed' });
    const slots = this.slots.splice(0);
    for (const slot of slots) slot.current?.resolve({ ok: false, error: 'image pool is closed' });
    // A worker terminated in the middle of an image could leave terminate() unsettled with nothing else
    // keeping the event loop alive: an interrupted `eval` then ended with exit 13 and wrote no report.
    // So a busy worker finishes its image (its answer is dropped) before it is terminated.
    await Promise.all(slots.map(async (slot) => {
      if (slot.current) await new Promise((settled) => { slot.worker.once('message', settled); slot.worker.once('exit', settled); });
      await slot.worker.terminate();
    }));
  }

  private dispatch(): void {
    while (this.waiting.length > 0) {
      const slot = this.slots.find((s) => !s.current) ?? (this.slots.length < this.opts.threads ? this.startWorker() : undefined);
      if (!slot) return;
      const pending = this.waiting.shift() as Pending;
      try {
        slot.worker.postMessage(pending.source);
      } catch (err) {
        // A source that cannot be copied to a thread (a library caller's odd object) fails alone.
        pending.resolve({ ok: false, error: `cannot pass the image to a worker thread: ${err instanceof Error ? err.message : String(err)}` });
        continue;
      }
      slot.current = pending;
      slot.worker.ref();
    }
  }

  private startWorker(): Slot {
    const { preprocess, exif, resize, maxPixels } = this.opts;
    const worker = new Worker(new URL('./pool-worker.js', import.meta.url), { workerData: { preprocess, exif, resize, maxPixels } });
    const slot: Slot = { worker };
    // One image per worker at a time, so a reply always answers the slot's current image.
    worker.on('message', (result: PreparedImage) => {
      const pending = slot.current;
      slot.current = undefined;
      // An idle worker must not keep the process alive if a caller forgets close().
      worker.unref();
      pending?.resolve(result);
      this.dispatch();
    });
    const fail = (reason: string): void => {
      const index = this.slots.indexOf(slot);
      if (index < 0) return;
      this.slots.splice(index, 1);
      slot.current?.resolve({ ok: false, error: `internal error: image worker ${reason}` });
      slot.current = undefined;
      void worker.terminate();
      if (!this.closed) this.dispatch();
    };
    worker.on('error', (err) => fail(`failed (${err.message})`));
    worker.on('exit', (code) => fail(`exited with code ${code}`));
    this.slots.push(slot);
    return slot;
  }
}
