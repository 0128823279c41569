/**
 * One image pool for several scorers that prepare images alike (the same transform and preprocessing):
 * each image is read once and decoded at most once for all of them. Each scorer takes a view, which it
 * uses as its own pool; the views must be asked for the same images in the same order (the scorers run
 * over the same requests side by side), and each view gets its own copy of the pixels, since a scorer
 * copies them into its batch and may hand its array back. The pool's own buffer goes back to its worker
 * once every view has had the image.
 */
import type { ImageSource } from './image.js';
import type { ImagePool, PreparedImage, ReadResult } from './pool.js';
import type { PreprocessConfig } from './preprocess.js';

/** What a scorer asks of its image pool. */
export interface ImageSupply {
  readonly preprocess: PreprocessConfig;
  prepare(source: ImageSource): Promise<PreparedImage>;
  read(source: ImageSource): Promise<ReadResult>;
  recycle(pixels: Float32Array): void;
  warm(): void;
  close(): Promise<void>;
}

/** One image as the views share it: the views still to take it, and the one decode they share. */
interface SharedImage {
  waiting: number;
  /** The read (cache path) or the prepared pixels (no cache), started by the first view that asked. */
  read?: Promise<ReadResult>;
  prepared?: Promise<PreparedImage>;
  /** The decode of the shared read, started by the first view that asked for pixels. */
  decoded?: Promise<PreparedImage>;
  /** Views that settled the shared read (decoded or dropped), and whether any decoded. */
  settled: number;
}

export class SharedImagePool {
  private readonly images = new Map<unknown, SharedImage>();
  private closing: Promise<void> | undefined;
  /** Images the workers decoded for all the views together: at most one per image. */
  decodes = 0;

  constructor(private readonly pool: ImagePool, private readonly views: number) {}

  /** A view for one scorer. */
  view(): ImageSupply {
    return {
      preprocess: this.pool.preprocess,
      prepare: (source) => this.prepare(source),
      read: (source) => this.read(source),
      // Every view's pixels are its own copy; the pool's buffer is recycled when all views have copied it.
      recycle: () => undefined,
      warm: () => this.pool.warm(),
      close: () => this.close(),
    };
  }

  close(): Promise<void> {
    this.closing ??= this.pool.close();
    return this.closing;
  }

  /** The shared entry of `source`, made by the first view that asks; dropped from the map when the last has. */
  private take(source: ImageSource): SharedImage {
    const key = keyOf(source);
    let image = this.images.get(key);
    if (!image) {
      image = { waiting: this.views, settled: 0 };
      this.images.set(key, image);
    }
    image.waiting--;
    if (image.waiting === 0) this.images.delete(key);
    return image;
  }

  private prepare(source: ImageSource): Promise<PreparedImage> {
    const image = this.take(source);
    if (!image.prepared) {
      this.decodes++;
      image.prepared = this.pool.prepare(source);
    }
    const last = image.waiting === 0;
    return image.prepared.then((prepared) => this.copyFor(prepared, last));
  }

  private read(source: ImageSource): Promise<ReadResult> {
    const image = this.take(source);
    image.read ??= this.pool.read(source);
    return image.read.then((read) => {
      if (!read.ok) return read;
      let done = false;
      const settle = (): boolean => {
        if (done) throw new Error(`image ${read.contentHash} was decoded or dropped already by this view`);
        done = true;
        image.settled++;
        return image.settled === this.views;
      };
      return {
        ok: true,
        contentHash: read.contentHash,
        decode: () => {
          const last = settle();
          if (!image.decoded) {
            this.decodes++;
            image.decoded = read.decode();
          }
          return image.decoded.then((prepared) => this.copyFor(prepared, last));
        },
        drop: () => {
          const last = settle();
          // The worker holds the bytes until one view decodes or every view has dropped them.
          if (last && !image.decoded) read.drop();
          if (last && image.decoded) void image.decoded.then((prepared) => this.recycleShared(prepared));
        },
      };
    });
  }

  /** A view's own copy of the pixels; the last view to take them lets the pool have its buffer back. */
  private copyFor(prepared: PreparedImage, last: boolean): PreparedImage {
    if (!prepared.ok) return prepared;
    const copy = { ...prepared, pixels: new Float32Array(prepared.pixels) };
    if (last) this.recycleShared(prepared);
    return copy;
  }

  private recycleShared(prepared: PreparedImage): void {
    if (prepared.ok && prepared.pixels.length > 0) this.pool.recycle(prepared.pixels);
  }
}

/** A path's text (the same file asked for by each view's own request), else the source object itself. */
function keyOf(source: ImageSource): unknown {
  if ('path' in source) return typeof source.path === 'string' ? `path:${source.path}` : source.path;
  if ('bytes' in source) return source.bytes;
  return source.rgb;
}
