/**
 * Scale-out on one machine: the same rank run as one process, and as N=2 shard processes running at
 * once (`--shard 0/2`, `--shard 1/2`) followed by `pickscore merge`. The ratio says what splitting
 * buys where the cores are already shared (a 2-core machine: each process's decode pool defaults to
 * every core, so the shards compete). Each variant runs REPEATS times, alternating, and the fastest
 * run of each counts, because the machine is shared and noisy. Tiny reference model, generated
 * 512x512 PNGs, no embedding cache, through the real CLI (dist/, built by `npm run bench`).
 *
 *   npm run bench -- shard
 */
import { spawn } from 'node:child_process';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { encodePng, gradientRgb } from '../test/helpers/pipe-images.js';
import { pickscoreBin } from '../test/helpers/shard-cli.js';
import { tinyModel } from '../test/helpers/tiny-model.js';
import type { BenchContext } from './run.js';

export const name = 'shard';

const IMAGES = 300;
const SIDE = 512;
const SHARDS = 2;
const REPEATS = 3;

function cli(args: string[], cwd: string, home: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [pickscoreBin, ...args], { cwd, env: { ...process.env, PICKSCORE_HOME: home }, stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve() : reject(new Error(`pickscore ${args.join(' ')} exited ${code}: ${stderr}`))));
  });
}

async function timed(run: () => Promise<unknown>): Promise<number> {
  const started = process.hrtime.bigint();
  await run();
  return Number(process.hrtime.bigint() - started) / 1e9;
}

export async function run(ctx: BenchContext): Promise<Record<string, unknown>> {
  const dir = path.join(ctx.workDir, 'shard');
  await rm(dir, { recursive: true, force: true });
  await mkdir(path.join(dir, 'imgs'), { recursive: true });
  ctx.log(`shard: writing ${IMAGES} ${SIDE}x${SIDE} PNGs`);
  for (let i = 0; i < IMAGES; i++) {
    await writeFile(path.join(dir, 'imgs', `img-${String(i).padStart(4, '0')}.png`), encodePng(gradientRgb(SIDE, SIDE, i), SIDE, SIDE));
  }
  const home = path.join(dir, 'home');
  const common = ['rank', 'imgs', '--prompt', 'a gradient', '--model', await tinyModel(), '--device', 'cpu', '--no-cache', '--quiet'];
  const single = (): Promise<void> => cli([...common, '--format', 'csv', '--out', 'single.csv'], dir, home);
  const shards = (): Promise<void[]> => Promise.all(Array.from({ length: SHARDS }, (_, i) =>
    cli([...common, '--shard', `${i}/${SHARDS}`, '--format', 'json', '--out', `part-${i}.json`], dir, home)));
  const merge = (): Promise<void> => cli(['merge', ...Array.from({ length: SHARDS }, (_, i) => `part-${i}.json`), '--out', 'merged.csv', '--quiet'], dir, home);

  const singleTimes: number[] = [];
  const shardTimes: number[] = [];
  const mergeTimes: number[] = [];
  for (let r = 0; r < REPEATS; r++) {
    ctx.log(`shard: repeat ${r + 1}/${REPEATS}`);
    singleTimes.push(await timed(single));
    shardTimes.push(await timed(shards));
    mergeTimes.push(await timed(merge));
  }
  const best = (xs: number[]): number => Math.min(...xs);
  const singleRate = IMAGES / best(singleTimes);
  const shardedRate = IMAGES / best(shardTimes);
  const withMergeRate = IMAGES / (best(shardTimes) + best(mergeTimes));
  await rm(path.join(dir, 'imgs'), { recursive: true, force: true });
  return {
    images: IMAGES,
    image_side: SIDE,
    shards: SHARDS,
    repeats: REPEATS,
    single_process_s: singleTimes,
    two_shards_at_once_s: shardTimes,
    merge_s: mergeTimes,
    single_images_per_s: singleRate,
    two_shards_images_per_s: shardedRate,
    two_shards_with_merge_images_per_s: withMergeRate,
    ratio_two_shards_vs_single: shardedRate / singleRate,
    ratio_two_shards_with_merge_vs_single: withMergeRate / singleRate,
  };
}
