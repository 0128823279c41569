/** The rank gallery's thumbnails, for a run or a merge of runs. */
import { fileThumbnailer } from '../image/thumbnail.js';
import { DEFAULT_MAX_PIXELS, type ImageReadOptions } from '../image/image.js';
import { THUMBNAIL_MAX_SIDE, recordThumbnails, type ThumbnailFn } from '../io/html-gallery.js';
import { ThumbnailPrefetch } from '../io/thumbnail-prefetch.js';
import { pathFromDisplay } from '../io/path-text.js';

/**
 * The gallery's thumbnails, of the images as the run read them (`image`: its provenance): made ahead
 * while the run scores when it will be written as HTML, else only when asked for.
 */
export function galleryThumbnails(image: Partial<Pick<ImageReadOptions, 'exif' | 'maxPixels'>>, prefetching = false): { thumbnail: ThumbnailFn; prefetch?: ThumbnailPrefetch } {
  const make = fileThumbnailer({ exif: image.exif ?? 'apply', maxPixels: image.maxPixels ?? DEFAULT_MAX_PIXELS }, THUMBNAIL_MAX_SIDE);
  if (!prefetching) return { thumbnail: recordThumbnails(make) };
  const prefetch = new ThumbnailPrefetch((file) => make(pathFromDisplay(file)));
  return { thumbnail: prefetch.thumbnail, prefetch };
}
