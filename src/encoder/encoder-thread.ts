/**
 * Worker entry of openEncodersInThread: owns the onnxruntime sessions, so that a blocking
 * InferenceSession.run stalls this thread and not the main one, which meanwhile prepares the next batch.
 *
 * Protocol (replies carry the request id; requests are served in arrival order):
 * - workerData { modelDir, manifest, opts } opens the encoders; the first message is `opened` or `failed`.
 * - { id, op: 'text', inputIds, batch } and { id, op: 'images', pixels, batch } answer
 *   { id, ok: true, embeddings, pixels?, startedAt, endedAt } or { id, ok: false, error }. Image pixels
 *   arrive transferred and go back transferred, so the caller reuses its buffer without a copy.
 * - { op: 'close' } releases the sessions and answers `closed`.
 * Times are epoch milliseconds (timeOrigin + now), comparable across threads.
 *
 * A thread terminated in the middle of InferenceSession.run aborts the whole process (onnxruntime-node
 * throws a C++ Napi::Error into a dying environment: "terminate called", SIGABRT). process.exit()
 * terminates every thread, so the owner waits for a running call to end first; `runState` is how the two
 * threads agree: RUNNING is set around each call, STOPPING refuses calls that have not started.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { openEncoders, type EncoderSessions, type OpenEncodersOptions } from './session.js';
import type { ModelManifest } from '../model-format.js';

export interface EncoderThreadData { modelDir: string; manifest: ModelManifest; opts: OpenEncodersOptions; runState: Int32Array }

/** Indexes into runState (an Int32Array over a SharedArrayBuffer). */
export const RUNNING = 0;
export const STOPPING = 1;

export type EncoderCall = { op: 'text'; inputIds: BigInt64Array; batch: number } | { op: 'images'; pixels: Float32Array; batch: number };
export type EncoderRequest = (EncoderCall & { id: number }) | { op: 'close' };

/** A typed error as it crosses the thread boundary: its class name and message. */
export interface SerializedError { name: string; message: string }

export type EncoderReply =
  | { type: 'opened'; device: 'cpu' | 'cuda'; deviceId: number; executionProvider: string; onnxruntimeVersion: string; fallbackReason?: string }
  | { type: 'failed'; error: SerializedError }
  | { type: 'result'; id: number; ok: true; embeddings: Float32Array; pixels?: Float32Array; startedAt: number; endedAt: number }
  | { type: 'result'; id: number; ok: false; error: SerializedError; pixels?: Float32Array }
  | { type: 'closed' };

function serialize(err: unknown): SerializedError {
  return err instanceof Error ? { name: err.name, message: err.message } : { name: 'Error', message: String(err) };
}

function epochNow(): number {
  return performance.timeOrigin + performance.now();
}

async function serve(port: NonNullable<typeof parentPort>, sessions: EncoderSessions, perImage: number, request: Exclude<EncoderRequest, { op: 'close' }>): Promise<void> {
  const pixels = request.op === 'images' ? request.pixels : undefined;
  const transfer = pixels ? [pixels.buffer as ArrayBuffer] : [];
  const { runState } = workerData as EncoderThreadData;
  // Set before STOPPING is read: the owner sets STOPPING before it reads RUNNING, so one of them sees the other.
  Atomics.store(runState, RUNNING, 1);
  try {
    if (Atomics.load(runState, STOPPING) === 1) throw new Error('the process is exiting');
    const startedAt = epochNow();
    const embeddings = request.op === 'text'
      ? await sessions.encodeText(request.inputIds, request.batch)
      : await sessions.encodeImages(imagePixels(request.pixels, request.batch, perImage), request.batch);
    const endedAt = epochNow();
    const reply: EncoderReply = { type: 'result', id: request.id, ok: true, embeddings, pixels, startedAt, endedAt };
    // The embeddings are small and onnxruntime owns their buffer, so they are copied, not transferred.
    port.postMessage(reply, transfer);
  } catch (err) {
    const reply: EncoderReply = { type: 'result', id: request.id, ok: false, error: serialize(err), pixels };
    port.postMessage(reply, transfer);
  } finally {
    Atomics.store(runState, RUNNING, 0);
    Atomics.notify(runState, RUNNING);
  }
}

/** The batch's leading floats: the caller transfers its whole buffer, of which a short batch uses a prefix. */
function imagePixels(pixels: Float32Array, batch: number, perImage: number): Float32Array {
  return pixels.length > batch * perImage ? pixels.subarray(0, batch * perImage) : pixels;
}

async function main(port: NonNullable<typeof parentPort>): Promise<void> {
  const { modelDir, manifest, opts } = workerData as EncoderThreadData;
  let sessions: EncoderSessions;
  try {
    sessions = await openEncoders(modelDir, manifest, opts);
  } catch (err) {
    port.postMessage({ type: 'failed', error: serialize(err) } satisfies EncoderReply);
    return;
  }
  const perImage = 3 * manifest.image.imageSize ** 2;
  const { device, deviceId, executionProvider, onnxruntimeVersion, fallbackReason } = sessions;
  port.postMessage({ type: 'opened', device, deviceId, executionProvider, onnxruntimeVersion, fallbackReason } satisfies EncoderReply);
  // Requests run one after another: onnxruntime's run blocks this thread anyway, and order keeps the
  // idle gap between consecutive image runs meaningful.
  let queue = Promise.resolve();
  port.on('message', (request: EncoderRequest) => {
    queue = queue.then(async () => {
      if (request.op !== 'close') return serve(port, sessions, perImage, request);
      await sessions.close();
      port.postMessage({ type: 'closed' } satisfies EncoderReply);
      port.close();
    });
  });
}

if (parentPort) void main(parentPort);
