/**
 * The SQLite embedding cache on its own: how fast PickScore-sized (1024-float) embeddings go in and
 * come out, batched as the pipeline does, against the file in the bench work folder. The end-to-end
 * reuse ratio (encoder calls saved on a rerun) is measured by the pipeline's benchmark.
 */
import { rm } from 'node:fs/promises';
import path from 'node:path';
import { EmbeddingCache } from '../src/io/embedding-cache.js';
import type { BenchContext } from './run.js';

export const name = 'cache';

const DIM = 1024;
const ROWS = 20_000;
const BATCH = 64;

function seconds(start: bigint): number {
  return Number(process.hrtime.bigint() - start) / 1e9;
}

export async function run(ctx: BenchContext): Promise<Record<string, unknown>> {
  const dir = path.join(ctx.workDir, 'embedding-cache');
  await rm(dir, { recursive: true, force: true });
  const cache = EmbeddingCache.open(dir);
  const embedding = Float32Array.from({ length: DIM }, (_, i) => Math.sin(i));
  const hashes = Array.from({ length: ROWS }, (_, i) => i.toString(16).padStart(64, '0'));
  try {
    let start = process.hrtime.bigint();
    for (let i = 0; i < ROWS; i += BATCH) {
      cache.putImages('bench-fingerprint', 'exif=apply,resize=exact', hashes.slice(i, i + BATCH).map((contentHash) => ({ contentHash, embedding })));
    }
    const putSeconds = seconds(start);
    start = process.hrtime.bigint();
    let hits = 0;
    for (let i = 0; i < ROWS; i += BATCH) hits += cache.getImages('bench-fingerprint', 'exif=apply,resize=exact', hashes.slice(i, i + BATCH)).filter(Boolean).length;
    const getSeconds = seconds(start);
    const info = cache.info();
    ctx.log(`cache: ${ROWS} puts in ${putSeconds.toFixed(2)} s, ${hits} hits in ${getSeconds.toFixed(2)} s`);
    return {
      rows: ROWS, dim: DIM, batch: BATCH,
      put_rows_per_s: Math.round(ROWS / putSeconds),
      get_rows_per_s: Math.round(ROWS / getSeconds),
      hits,
      file_bytes: info.bytes,
      bytes_per_row: Math.round(info.bytes / ROWS),
    };
  } finally {
    cache.close();
  }
}
