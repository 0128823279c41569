/**
 * The one thumbnail helper of the HTML outputs (rank's gallery, eval's report): an image file, read as
 * the run read it (EXIF orientation applied or ignored, the same pixel limit), shrunk to a WebP data
 * URI. The decoder (sharp) is loaded on the first thumbnail, so that no other output pays for it.
 *
 * A thumbnail shows the whole image as a person sees it, so `--resize` (how the model's input crop is
 * resampled) has nothing to choose here.
 */
import { READ_LIMITS, readRegularFile, type FilePath } from '../io/regular-file.js';
import type * as Codec from './codec.js';
import type { ImageReadOptions } from './image.js';

/** Makes the thumbnail of the image file at a path; rejects when it cannot be read or decoded. */
export type FileThumbnailer = (file: FilePath) => Promise<string>;

let codecLoading: Promise<typeof Codec> | undefined;

export function fileThumbnailer(image: Pick<ImageReadOptions, 'exif' | 'maxPixels'>, maxSide: number): FileThumbnailer {
  const decode = { exif: image.exif, maxPixels: image.maxPixels };
  return async (file) => {
    const bytes = await readRegularFile(file, READ_LIMITS.image, 'an image');
    codecLoading ??= import('./codec.js');
    return (await codecLoading).thumbnailDataUri(bytes, maxSide, decode);
  };
}
