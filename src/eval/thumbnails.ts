/** Thumbnails for the HTML report, read from disk and shrunk by the image codec. */
import { thumbnailDataUri } from '../image/codec.js';
import { READ_LIMITS, readRegularFile } from '../io/regular-file.js';
import type { ThumbnailLoader } from './render-html.js';
import type { ExifMode } from '../image/image.js';

export const THUMBNAIL_SIDE = 160;

/** A loader that gives null for an image it cannot read or decode: the page then shows the path alone. */
export function fileThumbnails(exif: ExifMode): ThumbnailLoader {
  return async (path) => {
    try {
      return await thumbnailDataUri(await readRegularFile(path, READ_LIMITS.image, 'an image'), THUMBNAIL_SIDE, exif);
    } catch {
      return null;
    }
  };
}
