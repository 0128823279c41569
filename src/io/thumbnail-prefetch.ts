/**
 * Gallery thumbnails made while the run is still scoring. The gallery needs every score before it can
 * order its cards, but a thumbnail depends only on its image, so each can be made as soon as its image
 * is scored. The final write then mostly copies thumbnails that are ready, instead of making them all
 * after the scoring (about 1.5 ms of CPU each even for a small image: 15 s for 10,000 images).
 *
 * A couple at a time, so the scoring keeps most of the threads; and no more than KEPT_BYTES of finished
 * thumbnails, so memory stays bounded: past that, the gallery makes the rest itself when it writes.
 */
import type { ThumbnailFn } from './html-gallery.js';

/** Thumbnails being made at once while the run scores. */
const IN_FLIGHT = 2;
const KEPT_BYTES = 64 * 1024 * 1024;

export class ThumbnailPrefetch {
  private readonly waiting = new Set<string>();
  private readonly made = new Map<string, Promise<string>>();
  private readonly sizes = new Map<string, number>();
  private inFlight = 0;
  private keptBytes = 0;
  private writing = false;

  /** `make`: the thumbnail of the image at a record's path (the path as rank records show it). */
  constructor(private readonly make: (file: string) => Promise<string>) {}

  /** An image that was scored: its thumbnail is made soon, unless the budget is spent or the write has begun. */
  add(file: string): void {
    if (this.writing || this.keptBytes >= KEPT_BYTES || this.made.has(file)) return;
    this.waiting.add(file);
    this.pump();
  }

  /**
   * The gallery's thumbnail function: a thumbnail made ahead is handed over (once: the gallery keeps
   * what it needs again), any other is made now. The first call ends the prefetching; the gallery's own
   * queue, in the order of its cards, makes the rest.
   */
  readonly thumbnail: ThumbnailFn = (rec) => {
    this.writing = true;
    this.waiting.clear();
    const ready = this.made.get(rec.path);
    if (!ready) return this.make(rec.path);
    this.made.delete(rec.path);
    this.keptBytes -= this.sizes.get(rec.path) ?? 0;
    this.sizes.delete(rec.path);
    return ready;
  };

  private pump(): void {
    while (this.inFlight < IN_FLIGHT && this.waiting.size > 0 && this.keptBytes < KEPT_BYTES) {
      const file: string = this.waiting.values().next().value!;
      this.waiting.delete(file);
      this.inFlight++;
      const uri = this.make(file);
      this.made.set(file, uri);
      uri.then((text) => {
        if (this.made.get(file) !== uri) return;
        this.sizes.set(file, text.length);
        this.keptBytes += text.length;
      }, () => undefined).finally(() => {
        this.inFlight--;
        this.pump();
      });
    }
  }
}
