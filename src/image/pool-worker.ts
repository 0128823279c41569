/** Worker thread of ImagePool: prepares one image per message and transfers the pixels back. */
import { parentPort, workerData } from 'node:worker_threads';
import { limitDecoderThreads } from './codec.js';
import { prepareImage, type ImageSource, type PreparedImage, type PrepareOptions } from './prepare-image.js';

const options = workerData as PrepareOptions;
// The pool runs one worker per core; a second level of decoder threads would only oversubscribe them.
limitDecoderThreads(1);

parentPort?.on('message', (source: ImageSource) => {
  // prepareImage reports bad images itself; the catch is for bugs, so that the pool never waits forever.
  void prepareImage(source, options)
    .catch((err: unknown): PreparedImage => ({ ok: false, error: `internal error while preparing the image: ${String(err)}` }))
    .then((result) => {
      parentPort?.postMessage(result, result.ok ? [result.pixels.buffer as ArrayBuffer] : []);
    });
});
