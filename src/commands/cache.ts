/** `pickscore cache info | clear`: options in, data out. */
import { stat } from 'node:fs/promises';
import { EmbeddingCache, embeddingCachePath, type EmbeddingCacheInfo } from '../io/embedding-cache.js';
import { embeddingsHome } from '../model/registry.js';
import { InputError } from '../errors.js';

export interface CacheCommandOptions { cacheDir?: string; onWarning?: (message: string) => void }
export interface CacheInfoResult extends EmbeddingCacheInfo { exists: boolean }

/**
 * Whether there is a cache file to report on. A cache folder that is something else (a file, a
 * device) is an error: "no cache yet" there would send a user looking in the wrong place.
 */
async function cacheExists(dir: string): Promise<boolean> {
  const folder = await stat(dir).catch(() => undefined);
  if (folder && !folder.isDirectory()) throw new InputError(`The cache folder ${dir} is not a folder; pass --cache-dir a folder`);
  return stat(embeddingCachePath(dir)).then(() => true, () => false);
}

/** Reports on the cache without creating one where there is none. */
export async function cacheInfo(opts: CacheCommandOptions = {}): Promise<CacheInfoResult> {
  const dir = opts.cacheDir ?? embeddingsHome();
  if (!(await cacheExists(dir))) return { exists: false, path: embeddingCachePath(dir), bytes: 0, textRows: 0, imageRows: 0, models: [] };
  const cache = EmbeddingCache.open(dir, { onWarning: opts.onWarning });
  try {
    return { exists: true, ...cache.info() };
  } finally {
    cache.close();
  }
}

export interface CacheClearResult { path: string; textRows: number; imageRows: number; bytesBefore: number; bytesAfter: number }

/** Deletes every cached embedding; other processes using the cache at the time keep working. */
export async function cacheClear(opts: CacheCommandOptions = {}): Promise<CacheClearResult> {
  const dir = opts.cacheDir ?? embeddingsHome();
  if (!(await cacheExists(dir))) return { path: embeddingCachePath(dir), textRows: 0, imageRows: 0, bytesBefore: 0, bytesAfter: 0 };
  const cache = EmbeddingCache.open(dir, { onWarning: opts.onWarning });
  try {
    const bytesBefore = cache.info().bytes;
    const removed = cache.clear();
    return { path: cache.path, ...removed, bytesBefore, bytesAfter: cache.info().bytes };
  } finally {
    cache.close();
  }
}
