/**
 * IO figures: rows/s of the streamed writers and how flat their memory stays (live heap after a full
 * GC, at 20k rows and at 200k), and files/s of discovery over a generated tree of 10,000 image files.
 */
import { mkdir, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import v8 from 'node:v8';
import vm from 'node:vm';
import type { BenchContext } from './run.js';
import { discoverImages } from '../src/io/discover.js';
import { openRankWriter, type OutputFormat, type RankRecord } from '../src/io/writers/index.js';

export const name = 'io';

const ROWS = 200_000;
const FILES = 10_000;

v8.setFlagsFromString('--expose-gc');
const collectGarbage = vm.runInNewContext('gc') as () => void;

/** Heap still in use after a full collection: what the writer really holds. */
function liveHeapBytes(): number {
  collectGarbage();
  return process.memoryUsage().heapUsed;
}

function syntheticRecord(i: number): RankRecord {
  return { path: `imgs/batch-${i % 97}/image, "${i}".png`, prompt: 'a photograph of an astronaut riding a horse', score: 18 + (i % 1000) / 137, prob: 1 / ROWS, rank: i + 1, width: 512, height: 512, error: null };
}

async function writerFigures(format: OutputFormat, dir: string): Promise<Record<string, number>> {
  const target = path.join(dir, `rows.${format}`);
  const writer = await openRankWriter(format, { path: target }, { provenance: { model: 'bench' } });
  let writeMs = 0;
  let heapAt20k = 0;
  let heapAtEnd = 0;
  for (let i = 0; i < ROWS; i++) {
    const started = performance.now();
    await writer.write(syntheticRecord(i));
    writeMs += performance.now() - started;
    if (i + 1 === 20_000) heapAt20k = liveHeapBytes();
    if (i + 1 === ROWS) heapAtEnd = liveHeapBytes();
  }
  const started = performance.now();
  await writer.finish({ incomplete: false });
  writeMs += performance.now() - started;
  const mib = (bytes: number): number => Math.round((bytes / 2 ** 20) * 100) / 100;
  return { rows_per_s: Math.round(ROWS / (writeMs / 1000)), live_heap_at_20k_mib: mib(heapAt20k), live_heap_at_200k_mib: mib(heapAtEnd) };
}

async function discoveryFigures(dir: string): Promise<Record<string, number>> {
  const root = path.join(dir, 'tree');
  await rm(root, { recursive: true, force: true });
  for (let folder = 0; folder < 100; folder++) {
    const sub = path.join(root, `f${folder}`, 'nested');
    await mkdir(sub, { recursive: true });
    await Promise.all(Array.from({ length: FILES / 100 }, (_, i) => writeFile(path.join(sub, `img-${i}.${i % 2 ? 'png' : 'JPG'}`), '')));
    await writeFile(path.join(sub, 'notes.txt'), '');
  }
  const started = performance.now();
  const found = await discoverImages([root]);
  const seconds = (performance.now() - started) / 1000;
  if (found.length !== FILES) throw new Error(`discovery found ${found.length} of ${FILES} files`);
  return { files: FILES, files_per_s: Math.round(FILES / seconds) };
}

export async function run(ctx: BenchContext): Promise<Record<string, unknown>> {
  const dir = path.join(ctx.workDir, 'io');
  await mkdir(dir, { recursive: true });
  const writers: Record<string, unknown> = {};
  for (const format of ['csv', 'jsonl', 'json'] as const) {
    ctx.log(`io: ${ROWS} rows to ${format}`);
    writers[format] = await writerFigures(format, dir);
  }
  ctx.log(`io: discovery over ${FILES} files`);
  const discovery = await discoveryFigures(dir);
  return { rows: ROWS, writers, discovery };
}
