/**
 * Child process for the concurrency test: writes `count` text and image embeddings to the cache in
 * `dir`, one small transaction each, so that two of these interleave their writes.
 * Usage: node cache-writer.js <dir> <writer-name> <count>
 */
import { EmbeddingCache } from '../../src/io/embedding-cache.js';

const [dir, writer, countArg] = process.argv.slice(2);
const cache = EmbeddingCache.open(dir);
for (let i = 0; i < Number(countArg); i++) {
  const embedding = Float32Array.from({ length: 8 }, (_, k) => i + k / 10);
  cache.putText('fp-shared', `${writer} prompt ${i}`, embedding);
  cache.putImage('fp-shared', `${writer}-hash-${i}`, 'exif=apply,resize=exact', embedding);
  // Both writers also write the same keys: the last write wins, and nothing fails.
  cache.putText('fp-shared', `common prompt ${i % 10}`, embedding);
}
cache.close();
