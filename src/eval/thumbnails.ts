/** Thumbnails for the HTML report, read from disk and shrunk by the image codec. */
import { thumbnailDataUri } from '../image/codec.js';
import { READ_LIMITS, readRegularFile } from '../io/regular-file.js';
import type { ThumbnailLoader } from './render-html.js';

export const THUMBNAIL_SIDE = 160;

/**
 * A loader that gives null for an image it cannot read or decode: the page then says "no preview".
 * EXIF orientation is applied as the run applied it (--exif), so a thumbnail shows what was scored.
 */
export function fileThumbnails(exif: 'apply' | 'ignore'): ThumbnailLoader {
  const load = async (path: string): Promise<string | null> => {
    try {
      return await thumbnailDataUri(await readRegularFile(path, READ_LIMITS.image, 'an image'), THUMBNAIL_SIDE, exif);
    } catch {
      return null;
    }
  };
  return Object.assign(load, { maxSide: THUMBNAIL_SIDE });
}
