/**
 * The messages between openEncodersInThread (threaded-encoders.ts) and its worker entry
 * (encoder-thread.ts). Both sides import this module; neither imports the other, so importing the
 * library never runs the entry.
 *
 * - workerData (EncoderThreadData) opens the encoders; the thread's first message is `opened` or `failed`.
 * - { id, op: 'text', inputIds, batch } and { id, op: 'images', pixels, batch } answer
 *   { id, ok: true, embeddings, pixels?, startedAt, endedAt } or { id, ok: false, error }. Image pixels
 *   arrive transferred and go back transferred, so the caller reuses its buffer without a copy.
 * - { op: 'close' } releases the sessions and answers `closed`.
 * Times are epoch milliseconds (timeOrigin + now), comparable across threads. Requests are served in
 * arrival order; replies carry the request id.
 *
 * A thread terminated in the middle of InferenceSession.run aborts the whole process (onnxruntime-node
 * throws a C++ Napi::Error into a dying environment: "terminate called", SIGABRT). process.exit()
 * terminates every thread, so the owner waits for a running call to end first; `runState` is how the two
 * threads agree: RUNNING is set around each call, STOPPING refuses calls that have not started.
 */
import { InputError, InternalError, ModelError, UsageError } from '../errors.js';
import type { ModelManifest } from '../model-format.js';
import { CudaUnavailableError } from './cuda-provider.js';
import type { OpenEncodersOptions } from './session.js';

export interface EncoderThreadData { modelDir: string; manifest: ModelManifest; opts: OpenEncodersOptions; runState: Int32Array }

/** Indexes into runState (an Int32Array over a SharedArrayBuffer). */
export const RUNNING = 0;
export const STOPPING = 1;

export type EncoderCall = { op: 'text'; inputIds: BigInt64Array; batch: number } | { op: 'images'; pixels: Float32Array; batch: number };
export type EncoderRequest = (EncoderCall & { id: number }) | { op: 'close' };

/** A typed error as it crosses the thread boundary: its class name and message (and a CUDA failure's reason). */
export interface SerializedError { name: string; message: string; reason?: string }

export type EncoderReply =
  | { type: 'opened'; executionProvider: string; onnxruntimeVersion: string }
  | { type: 'failed'; error: SerializedError }
  | { type: 'result'; id: number; ok: true; embeddings: Float32Array; pixels?: Float32Array; startedAt: number; endedAt: number }
  | { type: 'result'; id: number; ok: false; error: SerializedError; pixels?: Float32Array }
  | { type: 'closed' };

export function serializeError(err: unknown): SerializedError {
  if (err instanceof CudaUnavailableError) return { name: err.name, message: err.message, reason: err.reason };
  return err instanceof Error ? { name: err.name, message: err.message } : { name: 'Error', message: String(err) };
}

const ERROR_CLASSES: Record<string, new (message: string) => Error> = { UsageError, InputError, ModelError, InternalError };

/** The same typed error the sessions threw in the thread, with its message. */
export function reviveError(error: SerializedError): Error {
  if (error.name === 'CudaUnavailableError' && error.reason !== undefined) return new CudaUnavailableError(error.reason);
  const ErrorClass = ERROR_CLASSES[error.name] ?? Error;
  return new ErrorClass(error.message);
}
