/**
 * Pillow's `Image.MAX_IMAGE_PIXELS`, its decompression-bomb limit, and the default ceiling on decoded
 * pixels (`--max-pixels`). Its own module so that option parsing can read it without loading sharp.
 */
export const DEFAULT_MAX_PIXELS = 178_956_970;
