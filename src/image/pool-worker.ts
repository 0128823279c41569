/**
 * Worker entry of ImagePool (entry code only: the messages are in pool-protocol.ts): prepares the images it is sent one after another, in arrival order, and
 * transfers the pixels back. The pool sends the next image before this one is done (its queue depth),
 * so the worker never waits for the main thread; one at a time keeps it to one core, as the pool sizes it.
 * Pixel buffers the pool hands back are written again, so that no image allocates a new one.
 * A 'read' reads and hashes an image and keeps its bytes under the pool's ticket until the pool, having
 * looked the hash up in the cache, asks to 'decode' it or to 'drop' it (a hit is never decoded).
 */
import { parentPort, workerData } from 'node:worker_threads';
import { decodeRead, prepareImage, readImage, type HashedImage, type ReadImage } from './prepare-image.js';
import type { PoolWorkerMessage, PoolWorkerReply, PreparedImage, PrepareOptions } from './pool-protocol.js';

const options = workerData as PrepareOptions;

/** More than the images a worker holds at once; a buffer beyond this is left to the garbage collector. */
const MAX_SPARE_BUFFERS = 8;
const spare: Float32Array[] = [];

/** Images read and hashed, by ticket, waiting for the pool to say 'decode' or 'drop'. */
const held = new Map<number, HashedImage>();

let previous: Promise<void> = Promise.resolve();

function internalError(err: unknown): PreparedImage {
  return { ok: false, error: `internal error while preparing the image: ${String(err)}` };
}

function answer(reply: PoolWorkerReply): void {
  parentPort?.postMessage(reply, 'pixels' in reply ? [reply.pixels.buffer as ArrayBuffer] : []);
}

parentPort?.on('message', (message: PoolWorkerMessage) => {
  if (message.op === 'recycle') {
    if (spare.length < MAX_SPARE_BUFFERS) spare.push(new Float32Array(message.buffer));
    return;
  }
  if (message.op === 'drop') {
    // The pool drops a ticket only after this worker's 'read' answer for it, so it is already held.
    held.delete(message.ticket);
    return;
  }
  // One image at a time, in arrival order: the pool matches each answer to the oldest request.
  // prepareImage and readImage report bad images themselves; the catches are for bugs, so that the pool never waits forever.
  previous = previous.then(async () => {
    if (message.op === 'prepare') {
      answer(await prepareImage(message.source, options, spare.pop()).catch(internalError));
    } else if (message.op === 'read') {
      const read = await readImage(message.source).catch((err: unknown): ReadImage => internalError(err) as ReadImage);
      if (read.ok) held.set(message.ticket, read);
      answer(read.ok ? { ok: true, contentHash: read.contentHash } : read);
    } else {
      const read = held.get(message.ticket);
      held.delete(message.ticket);
      answer(read ? await decodeRead(read, options, spare.pop()).catch(internalError) : internalError(`no image held under ticket ${message.ticket}`));
    }
  });
});
