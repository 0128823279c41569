/**
 * Writes the GPU check's end-to-end input: `count` distinct square JPEGs (quality 90) of `size` px,
 * a gradient under seeded noise, so that the decoder sees photo-like entropy rather than flat colour.
 *
 *   node build/bench/gpu/make-jpegs.js OUT_DIR [count=2000] [size=512]
 */
import { mkdir } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import { expectedMessage, InputError } from '../../src/errors.js';

/** A gradient whose offsets depend on `seed`, plus xorshift noise of +-32 levels. */
export function noisyGradient(size: number, seed: number): Buffer {
  const rgb = Buffer.alloc(size * size * 3);
  let state = (seed * 2654435761) >>> 0 || 1;
  for (let y = 0; y < size; y++) {
    for (let x = 0; x < size; x++) {
      state ^= state << 13; state ^= state >>> 17; state ^= state << 5;
      const noise = (state & 63) - 32;
      const i = (y * size + x) * 3;
      rgb[i] = Math.max(0, Math.min(255, ((x + seed * 37) & 255) + noise));
      rgb[i + 1] = Math.max(0, Math.min(255, ((y + seed * 11) & 255) + noise));
      rgb[i + 2] = Math.max(0, Math.min(255, (((x ^ y) + seed * 5) & 255) + noise));
    }
  }
  return rgb;
}

export async function writeJpegs(outDir: string, count: number, size: number): Promise<string[]> {
  await mkdir(outDir, { recursive: true });
  const names = Array.from({ length: count }, (_, i) => `img-${String(i).padStart(5, '0')}.jpg`);
  let next = 0;
  const worker = async () => {
    for (let i = next++; i < count; i = next++) {
      await sharp(noisyGradient(size, i), { raw: { width: size, height: size, channels: 3 } }).jpeg({ quality: 90 }).toFile(path.join(outDir, names[i]));
    }
  };
  await Promise.all(Array.from({ length: os.availableParallelism() }, worker));
  return names;
}

function countArg(value: string | undefined, fallback: number, what: string): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new InputError(expectedMessage('a positive integer', what, value));
  return n;
}

if (process.argv[1] && path.resolve(process.argv[1]) === new URL(import.meta.url).pathname) {
  const [outDir, count, size] = process.argv.slice(2);
  const started = performance.now();
  (async () => {
    if (!outDir) throw new InputError('Usage: make-jpegs.js OUT_DIR [count=2000] [size=512]');
    const names = await writeJpegs(outDir, countArg(count, 2000, 'the count'), countArg(size, 512, 'the size'));
    process.stdout.write(`${JSON.stringify({ images: names.length, seconds: (performance.now() - started) / 1000 })}\n`);
  })().catch((err: unknown) => {
    process.stderr.write(`make-jpegs: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = 1;
  });
}
