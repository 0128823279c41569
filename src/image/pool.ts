/**
 * ImagePool: reads, decodes, resizes and normalises images on worker threads. Workers are started on
 * demand up to `threads` and reused. Each worker holds up to `queueDepth` images (2 by default): it
 * starts the next as soon as it answers one, without waiting for the main thread, which may be busy
 * between batches. Waiting work is held as sources (a path or the caller's bytes), never as pixels, and
 * callers bound it by how many prepare() calls they leave outstanding (the pipeline keeps a fixed
 * read-ahead window, which also bounds the images held in workers). A worker that dies fails only its
 * own images and is replaced.
 *
 * An image can also be prepared in two steps, so that a cached one is never decoded: read() has a worker
 * read and hash it and hold its bytes; the caller looks the hash up, then asks that worker to decode()
 * the bytes (a miss) or to drop() them (a hit). The bytes never leave the worker.
 */
import { Worker } from 'node:worker_threads';
import { InternalError, UsageError, errorMessage } from '../errors.js';
import type { ImageReadOptions, ImageSource, ImageTransform } from './image.js';
import type { PoolWorkerMessage, PoolWorkerReply, PreparedImage, PrepareOptions } from './pool-protocol.js';
import type { PreprocessConfig } from './preprocess.js';

export type { PreparedImage } from './pool-protocol.js';

/** Typed and checked where the options were resolved (src/pipeline/options.ts): nothing here checks them again. */
export interface ImagePoolOptions {
  threads: number;
  preprocess: PreprocessConfig;
  image: ImageReadOptions;
  /** The scorer's transform (absent: transformers' CLIPImageProcessor). */
  transform?: ImageTransform;
  /** Images handed to one worker at a time (default 2): its next image is already there when it finishes one. */
  queueDepth?: number;
}

export const DEFAULT_QUEUE_DEPTH = 2;

/**
 * An image a worker has read and hashed and whose bytes it holds: call exactly one of decode() (the
 * pixels, as prepare() gives them) or drop() (the bytes are let go, nothing is decoded).
 */
export interface HeldImage { ok: true; contentHash: string; decode(): Promise<PreparedImage>; drop(): void }
export type ReadResult = HeldImage | { ok: false; error: string };

type AnsweredMessage = Extract<PoolWorkerMessage, { op: 'prepare' | 'read' | 'decode' }>;
/** A request waiting for its answer; `slot` is the worker that answered (none when the pool closed before sending it). */
interface Pending { message: AnsweredMessage; resolve: (reply: PoolWorkerReply, slot?: Slot) => void }

/** A worker and its images in the order it answers them (it prepares them one after another). */
interface Slot { worker: Worker; queue: Pending[]; outstanding: number; onIdle?: () => void }

/** The fast resize crops a square of the resize size; a model whose processor crops otherwise cannot use it. */
function checkModelFitsResize(opts: ImagePoolOptions): void {
  const { shortestEdge, cropWidth, cropHeight } = opts.preprocess;
  if (opts.image.resize === 'fast' && (cropWidth !== shortestEdge || cropHeight !== shortestEdge)) {
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
  private nextTicket = 0;
  private closed = false;

  /** The preprocessing the workers prepare images for. */
  get preprocess(): PreprocessConfig {
    return this.opts.preprocess;
  }

  constructor(opts: ImagePoolOptions) {
    checkModelFitsResize(opts);
    this.opts = { ...opts, preprocess: { ...opts.preprocess }, image: { ...opts.image } };
    this.queueDepth = opts.queueDepth ?? DEFAULT_QUEUE_DEPTH;
  }

  /** Resolves with the prepared pixels, or ok:false and the reason; never rejects for a bad image. */
  prepare(source: ImageSource): Promise<PreparedImage> {
    if (this.closed) return Promise.resolve({ ok: false, error: 'image pool is closed' });
    return new Promise((resolve) => {
      this.waiting.push({ message: { op: 'prepare', source }, resolve: (reply) => resolve(asPrepared(reply)) });
      this.dispatch();
    });
  }

  /**
   * Reads and hashes the image on a worker, which keeps the bytes for decode() or drop(); never
   * rejects for a bad image (ok:false with the reason, as prepare() gives it).
   */
  read(source: ImageSource): Promise<ReadResult> {
    if (this.closed) return Promise.resolve({ ok: false, error: 'image pool is closed' });
    const ticket = this.nextTicket++;
    return new Promise((resolve) => {
      this.waiting.push({ message: { op: 'read', source, ticket }, resolve: (reply, slot) => resolve(this.held(reply, slot, ticket)) });
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
    const slots = this.slots.splice(0);
    for (const pending of this.waiting.splice(0)) pending.resolve({ ok: false, error: 'image pool is closed' });
    for (const slot of slots) for (const pending of slot.queue.splice(0)) pending.resolve({ ok: false, error: 'image pool is closed' }, slot);
    // A worker terminated in the middle of an image could leave terminate() unsettled with nothing else
    // keeping the event loop alive: an interrupted `eval` then ended with exit 13 and wrote no report.
    // So a busy worker finishes the images it holds (their answers are dropped) before it is terminated.
    await Promise.all(slots.map(async (slot) => {
      if (slot.outstanding > 0) await new Promise<void>((settled) => { slot.onIdle = settled; slot.worker.once('exit', () => settled()); });
      await slot.worker.terminate();
    }));
  }

  /**
   * Starts every worker now rather than with the first images, so that their start-up (a thread, its
   * modules) overlaps whatever the caller does next, such as opening the encoders. Idle, they keep
   * nothing alive.
   */
  warm(): void {
    while (!this.closed && this.slots.length < this.opts.threads) this.startWorker().worker.unref();
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
        slot.worker.postMessage(pending.message);
      } catch (err) {
        // A source that cannot be copied to a thread (a library caller's odd object) fails alone.
        pending.resolve({ ok: false, error: `cannot pass the image to a worker thread: ${errorMessage(err)}` }, slot);
        continue;
      }
      this.assign(slot, pending);
    }
  }

  private assign(slot: Slot, pending: Pending): void {
    slot.queue.push(pending);
    slot.outstanding++;
    slot.worker.ref();
  }

  /** The handle on an image `slot` read and holds under `ticket`; its decode goes to that worker, which has the bytes. */
  private held(reply: PoolWorkerReply, slot: Slot | undefined, ticket: number): ReadResult {
    if (!reply.ok) return reply;
    if ('pixels' in reply || !slot) return { ok: false, error: 'internal error: an image worker answered a read with pixels' };
    let settled = false;
    const settle = (): void => {
      if (settled) throw new InternalError(`image ticket ${ticket} was decoded or dropped already`);
      settled = true;
    };
    return {
      ok: true,
      contentHash: reply.contentHash,
      decode: () => {
        settle();
        if (this.closed) return Promise.resolve({ ok: false, error: 'image pool is closed' });
        // A worker that died took the bytes with it; its other images failed the same way.
        if (!this.slots.includes(slot)) return Promise.resolve({ ok: false, error: 'internal error: image worker stopped before decoding the image' });
        return new Promise((resolve) => {
          const pending: Pending = { message: { op: 'decode', ticket }, resolve: (answer) => resolve(asPrepared(answer)) };
          slot.worker.postMessage(pending.message);
          this.assign(slot, pending);
        });
      },
      drop: () => {
        settle();
        if (!this.closed && this.slots.includes(slot)) slot.worker.postMessage({ op: 'drop', ticket } satisfies PoolWorkerMessage);
      },
    };
  }

  private startWorker(): Slot {
    const { preprocess, image, transform } = this.opts;
    const worker = new Worker(new URL('./pool-worker.js', import.meta.url), { workerData: { preprocess, image, ...(transform ? { transform } : {}) } satisfies PrepareOptions });
    const slot: Slot = { worker, queue: [], outstanding: 0 };
    // The worker answers its images in the order it received them, so a reply answers the oldest.
    worker.on('message', (result: PoolWorkerReply) => {
      if (result.ok && 'pixels' in result) this.producers.set(result.pixels.buffer as ArrayBuffer, slot);
      slot.outstanding--;
      const pending = slot.queue.shift();
      if (slot.outstanding === 0) {
        // An idle worker must not keep the process alive if a caller forgets close().
        worker.unref();
        slot.onIdle?.();
      }
      pending?.resolve(result, slot);
      this.dispatch();
    });
    const fail = (reason: string): void => {
      const index = this.slots.indexOf(slot);
      if (index < 0) return;
      this.slots.splice(index, 1);
      for (const pending of slot.queue.splice(0)) pending.resolve({ ok: false, error: `internal error: image worker ${reason}` }, slot);
      void worker.terminate();
      if (!this.closed) this.dispatch();
    };
    worker.on('error', (err) => fail(`failed (${err.message})`));
    worker.on('exit', (code) => fail(`exited with code ${code}`));
    this.slots.push(slot);
    return slot;
  }
}

function asPrepared(reply: PoolWorkerReply): PreparedImage {
  if (reply.ok && !('pixels' in reply)) return { ok: false, error: 'internal error: an image worker answered a prepare with a hash only' };
  return reply;
}
