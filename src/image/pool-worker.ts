/**
 * Worker thread of ImagePool: prepares the images it is sent one after another, in arrival order, and
 * transfers the pixels back. The pool sends the next image before this one is done (its queue depth),
 * so the worker never waits for the main thread; one at a time keeps it to one core, as the pool sizes it.
 * Pixel buffers the pool hands back are written again, so that no image allocates a new one.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { limitDecoderThreads } from './codec.js';
import { prepareImage, type PreparedImage, type PrepareOptions } from './prepare-image.js';
import type { PoolWorkerMessage } from './pool.js';

const options = workerData as PrepareOptions;
// The pool runs one worker per core; a second level of decoder threads would only oversubscribe them.
limitDecoderThreads(1);

/** More than the images a worker holds at once; a buffer beyond this is left to the garbage collector. */
const MAX_SPARE_BUFFERS = 8;
const spare: Float32Array[] = [];

let previous: Promise<void> = Promise.resolve();

parentPort?.on('message', (message: PoolWorkerMessage) => {
  if (message.op === 'recycle') {
    if (spare.length < MAX_SPARE_BUFFERS) spare.push(new Float32Array(message.buffer));
    return;
  }
  previous = previous.then(async () => {
    // prepareImage reports bad images itself; the catch is for bugs, so that the pool never waits forever.
    const result = await prepareImage(message.source, options, spare.pop())
      .catch((err: unknown): PreparedImage => ({ ok: false, error: `internal error while preparing the image: ${String(err)}` }));
    parentPort?.postMessage(result, result.ok ? [result.pixels.buffer as ArrayBuffer] : []);
  });
});
