/**
 * The messages between ImagePool (pool.ts) and its worker entry (pool-worker.ts). Both sides import
 * this module; neither imports the other.
 *
 * The pool sends 'prepare', 'read' and 'decode', each answered once, in the order sent; 'drop' and
 * 'recycle' are not answered. A worker prepares one image at a time, so answers come back in order.
 */
import type { ImageReadOptions, ImageSource, ImageTransform } from './image.js';
import type { PreprocessConfig } from './preprocess.js';

/** What a worker is started with: how to read, decode and resize, and the model's input preprocessing. */
export interface PrepareOptions {
  preprocess: PreprocessConfig;
  image: ImageReadOptions;
  /** The scorer's transform; absent: transformers' CLIPImageProcessor, as `preprocess` describes it. */
  transform?: ImageTransform;
}

export type PreparedImage =
  | { ok: true; pixels: Float32Array; width: number; height: number; contentHash: string }
  | { ok: false; error: string; contentHash?: string };

export type PoolWorkerMessage =
  | { op: 'prepare'; source: ImageSource }               // read, hash, decode: answered with the pixels
  | { op: 'read'; source: ImageSource; ticket: number }  // read and hash, hold the bytes: answered with the hash
  | { op: 'decode'; ticket: number }                     // decode the bytes held: answered with the pixels
  | { op: 'drop'; ticket: number }                       // forget the bytes held
  | { op: 'recycle'; buffer: ArrayBuffer };              // a pixel buffer to prepare a later image into

/** A worker's answer: a prepared image, or the hash of an image it read and now holds. */
export type PoolWorkerReply = PreparedImage | { ok: true; contentHash: string };
