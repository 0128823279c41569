/** Worker thread of ImagePool: prepares one image per message and transfers the pixels back. */
import { parentPort, workerData } from 'node:worker_threads';
import { limitDecoderThreads } from './codec.js';
import { prepareImage, type ImageSource, type PrepareOptions } from './prepare-image.js';

export interface WorkerTask { id: number; source: ImageSource }

const options = workerData as PrepareOptions;
// The pool runs one worker per core; a second level of decoder threads would only oversubscribe them.
limitDecoderThreads(1);

parentPort?.on('message', (task: WorkerTask) => {
  void prepareImage(task.source, options).then((result) => {
    parentPort?.postMessage({ id: task.id, result }, result.ok ? [result.pixels.buffer as ArrayBuffer] : []);
  });
});
