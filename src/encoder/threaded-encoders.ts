/**
 * The encoders on a dedicated worker thread (encoder-thread.ts, speaking protocol.ts). onnxruntime-node's
 * InferenceSession.run blocks the thread that calls it; run there, it leaves the main thread free to
 * receive prepared images, fill the next batch buffer, write the cache and yield results while the
 * encoder runs, so the next batch is ready when the current one ends.
 *
 * onnxruntime-node rejects tensor data backed by a SharedArrayBuffer ("Invalid argument"), so batch
 * pixels travel by transfer: encodeImagesTransferring hands the buffer to the thread and gets it back
 * with the embeddings (ping-pong; the caller keeps two buffers so it fills one while the other is away).
 */
import { Worker } from 'node:worker_threads';
import { InternalError, UsageError, errorMessage } from '../errors.js';
import type { ModelManifest } from '../model-format.js';
import { RUNNING, STOPPING, reviveError, type EncoderCall, type EncoderReply, type EncoderRequest, type EncoderThreadData } from './protocol.js';
import { disableOnnxruntimeTelemetry } from './onnxruntime-telemetry.js';
import type { EncoderSessions, OpenEncodersOptions } from './session.js';

/** One image run as the encoder thread timed it, in epoch milliseconds. */
export interface EncoderRun { startedAt: number; endedAt: number }

export interface TransferredBatch extends EncoderRun {
  embeddings: Float32Array;
  /** The caller's buffer, back from the thread (the array passed in is detached meanwhile). */
  pixels: Float32Array;
}

export interface ThreadedEncoderSessions extends EncoderSessions {
  /**
   * Encodes the first `batch` images of `pixels` without copying them: the buffer moves to the encoder
   * thread and back. Until the promise settles, `pixels` is detached; use the returned `pixels` after.
   */
  encodeImagesTransferring(pixels: Float32Array, batch: number): Promise<TransferredBatch>;
}

/** The longest process exit waits for a running encoder call, rather than abort the process by cutting it. */
const EXIT_WAIT_MS = 60_000;

interface PendingCall { resolve: (reply: Extract<EncoderReply, { type: 'result' }>) => void; reject: (err: Error) => void }

export async function openEncodersInThread(modelDir: string, manifest: ModelManifest, opts: OpenEncodersOptions): Promise<ThreadedEncoderSessions> {
  // Here, on the main thread: the thread opens the sessions, and its own process.env cannot reach onnxruntime.
  disableOnnxruntimeTelemetry();
  const runState = new Int32Array(new SharedArrayBuffer(2 * Int32Array.BYTES_PER_ELEMENT));
  const workerData: EncoderThreadData = { modelDir, manifest, opts, runState };
  const worker = new Worker(new URL('./encoder-thread.js', import.meta.url), { workerData });
  const opened = await new Promise<Extract<EncoderReply, { type: 'opened' }>>((resolve, reject) => {
    const onExit = (code: number): void => reject(new InternalError(`The encoder thread exited with code ${code} while opening the model in ${modelDir}`));
    worker.once('error', reject);
    worker.once('exit', onExit);
    worker.once('message', (reply: EncoderReply) => {
      worker.off('error', reject);
      worker.off('exit', onExit);
      if (reply.type === 'opened') resolve(reply);
      else reject(reply.type === 'failed' ? reviveError(reply.error) : new InternalError(`The encoder thread answered ${reply.type} before opening`));
    });
  }).catch(async (err: unknown) => {
    await worker.terminate();
    throw err;
  });
  return new ThreadedEncoders(worker, runState, opened, 3 * manifest.image.imageSize ** 2);
}

class ThreadedEncoders implements ThreadedEncoderSessions {
  readonly executionProvider: string;
  readonly onnxruntimeVersion: string;
  private readonly pending = new Map<number, PendingCall>();
  private nextId = 0;
  /** Set once the thread is gone: every later call fails with it. */
  private failure: Error | undefined;
  private closing: Promise<void> | undefined;

  /** process.exit() (a second Ctrl-C) lets a running call end before the thread is cut; see encoder-thread.ts. */
  private readonly waitForRunningCall = (): void => {
    Atomics.store(this.runState, STOPPING, 1);
    Atomics.wait(this.runState, RUNNING, 1, EXIT_WAIT_MS);
  };

  constructor(
    private readonly worker: Worker,
    private readonly runState: Int32Array,
    opened: Extract<EncoderReply, { type: 'opened' }>,
    private readonly pixelsPerImage: number,
  ) {
    this.executionProvider = opened.executionProvider;
    this.onnxruntimeVersion = opened.onnxruntimeVersion;
    worker.on('message', (reply: EncoderReply) => this.onReply(reply));
    worker.on('error', (err) => this.fail(new InternalError(`The encoder thread failed: ${err.message}`)));
    worker.on('exit', (code) => this.fail(new InternalError(`The encoder thread exited with code ${code}`)));
    // Idle between calls, the thread must not keep the process alive (an interrupted run exits).
    worker.unref();
    process.on('exit', this.waitForRunningCall);
  }

  async encodeText(inputIds: BigInt64Array, batch: number): Promise<Float32Array> {
    const reply = await this.call({ op: 'text', inputIds, batch }, []);
    return reply.embeddings;
  }

  /** Keeps the EncoderSessions contract (the caller's array stays usable) at the price of one copy. */
  async encodeImages(pixels: Float32Array, batch: number): Promise<Float32Array> {
    return (await this.encodeImagesTransferring(pixels.slice(0, batch * this.pixelsPerImage), batch)).embeddings;
  }

  async encodeImagesTransferring(pixels: Float32Array, batch: number): Promise<TransferredBatch> {
    if (!Number.isInteger(batch) || batch < 1 || pixels.length < batch * this.pixelsPerImage) {
      throw new InternalError(`Expected ${batch} x ${this.pixelsPerImage} pixel values, received ${pixels.length} values`);
    }
    const reply = await this.call({ op: 'images', pixels, batch }, [pixels.buffer as ArrayBuffer]);
    if (!reply.pixels) throw new InternalError('The encoder thread did not return the batch buffer');
    return { embeddings: reply.embeddings, pixels: reply.pixels, startedAt: reply.startedAt, endedAt: reply.endedAt };
  }

  close(): Promise<void> {
    this.closing ??= this.shutDown();
    return this.closing;
  }

  private async shutDown(): Promise<void> {
    if (this.failure) return;
    this.worker.ref();
    const closed = new Promise<void>((resolve) => {
      this.worker.on('message', (reply: EncoderReply) => { if (reply.type === 'closed') resolve(); });
      this.worker.once('exit', () => resolve());
    });
    this.worker.postMessage({ op: 'close' } satisfies EncoderRequest);
    await closed;
    this.fail(new UsageError('The encoders are closed'));
    await this.worker.terminate();
    process.off('exit', this.waitForRunningCall);
  }

  private call(request: EncoderCall, transfer: ArrayBuffer[]): Promise<Extract<EncoderReply, { type: 'result'; ok: true }>> {
    if (this.failure) return Promise.reject(this.failure);
    if (this.closing) return Promise.reject(new UsageError('The encoders are closed'));
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, {
        resolve: (reply) => (reply.ok ? resolve(reply) : reject(reviveError(reply.error))),
        reject,
      });
      try {
        this.worker.postMessage({ ...request, id } satisfies EncoderRequest, transfer);
      } catch (err) {
        // A detached or otherwise uncloneable input never reaches the thread.
        this.pending.delete(id);
        throw new InternalError(`Cannot pass the input to the encoder thread: ${errorMessage(err)}`);
      }
      this.worker.ref();
    });
  }

  private onReply(reply: EncoderReply): void {
    if (reply.type !== 'result') return;
    const call = this.pending.get(reply.id);
    this.pending.delete(reply.id);
    if (this.pending.size === 0 && !this.closing) this.worker.unref();
    call?.resolve(reply);
  }

  /** A crashed or closed thread rejects every call still waiting for it. */
  private fail(error: Error): void {
    this.failure ??= error;
    process.off('exit', this.waitForRunningCall);
    for (const call of this.pending.values()) call.reject(this.failure);
    this.pending.clear();
  }
}
