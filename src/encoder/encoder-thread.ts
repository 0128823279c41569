/**
 * Worker entry of openEncodersInThread: owns the onnxruntime sessions, so that a blocking
 * InferenceSession.run stalls this thread and not the main one, which meanwhile prepares the next batch.
 * Entry code only: the messages are in protocol.ts.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { openEncoders, type EncoderSessions } from './session.js';
import { RUNNING, STOPPING, serializeError, type EncoderReply, type EncoderRequest, type EncoderThreadData } from './protocol.js';

type Port = NonNullable<typeof parentPort>;

function epochNow(): number {
  return performance.timeOrigin + performance.now();
}

async function serve(port: Port, sessions: EncoderSessions, perImage: number, request: Exclude<EncoderRequest, { op: 'close' }>): Promise<void> {
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
    const reply: EncoderReply = { type: 'result', id: request.id, ok: false, error: serializeError(err), pixels };
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

async function main(port: Port): Promise<void> {
  const { modelDir, manifest, opts } = workerData as EncoderThreadData;
  let sessions: EncoderSessions;
  try {
    sessions = await openEncoders(modelDir, manifest, opts);
  } catch (err) {
    port.postMessage({ type: 'failed', error: serializeError(err) } satisfies EncoderReply);
    return;
  }
  const perImage = 3 * manifest.image.imageSize ** 2;
  const { executionProvider, onnxruntimeVersion } = sessions;
  port.postMessage({ type: 'opened', executionProvider, onnxruntimeVersion } satisfies EncoderReply);
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
