/** Thumbnails for the HTML report: the image files read as the run read them, shrunk by the one thumbnail helper. */
import { fileThumbnailer } from '../image/thumbnail.js';
import type { ImageReadOptions } from '../image/image.js';
import type { ThumbnailLoader } from './render-html.js';

export const THUMBNAIL_SIDE = 160;

/**
 * A loader that gives null for an image it cannot read or decode: the page then says "no preview".
 * EXIF orientation and the pixel limit apply as the run applied them, so a thumbnail shows what was scored.
 */
export function fileThumbnails(image: Pick<ImageReadOptions, 'exif' | 'maxPixels'>): ThumbnailLoader {
  const make = fileThumbnailer(image, THUMBNAIL_SIDE);
  const load = async (path: string): Promise<string | null> => {
    try {
      return await make(path);
    } catch {
      return null;
    }
  };
  return Object.assign(load, { maxSide: THUMBNAIL_SIDE });
}
