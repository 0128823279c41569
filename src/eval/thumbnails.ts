/** Thumbnails for the HTML report: the image files read as the run read them, shrunk by the one thumbnail helper. */
import { fileThumbnailer } from '../image/thumbnail.js';
import type { ImageReadOptions } from '../image/image.js';
import type { ThumbnailLoader } from './render-html.js';

export const THUMBNAIL_SIDE = 160;

/** A loader that gives null for an image it cannot read or decode: the page then shows the path alone. */
export function fileThumbnails(image: Pick<ImageReadOptions, 'exif' | 'maxPixels'>): ThumbnailLoader {
  const make = fileThumbnailer(image, THUMBNAIL_SIDE);
  return async (path) => {
    try {
      return await make(path);
    } catch {
      return null;
    }
  };
}
