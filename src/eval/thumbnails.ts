/** Thumbnails for the HTML report, read from disk and shrunk by the image codec. */
import { readFile } from 'node:fs/promises';
import { thumbnailDataUri } from '../image/codec.js';
import type { ThumbnailLoader } from './render-html.js';

export const THUMBNAIL_SIDE = 160;

/** A loader that gives null for an image it cannot read or decode: the page then shows the path alone. */
export function fileThumbnails(exif: 'apply' | 'ignore'): ThumbnailLoader {
  return async (path) => {
    try {
      return await thumbnailDataUri(await readFile(path), THUMBNAIL_SIDE, exif);
    } catch {
      return null;
    }
  };
}
