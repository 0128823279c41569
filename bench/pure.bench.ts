/**
 * The pure layers at the sizes a large eval meets: the tokenizer on 20,000 distinct prompts (cold,
 * then again with every word memoised), and the eval report on 100,000 scores in 2 models x 10,000
 * prompts, whose cost is the seeded bootstrap (10,000 resamples of each model and of the paired
 * differences). Needs ../shared/reference for the CLIP vocabulary.
 */
import path from 'node:path';
import { ClipTokenizer } from '../src/tokenizer/clip-tokenizer.js';
import { buildReport, type PointScore } from '../src/eval/report.js';
import { mulberry32 } from '../src/score/stats.js';
import type { BenchContext } from './run.js';

export const name = 'pure';

const PROMPTS = 20_000;
const PROMPTS_PER_MODEL = 10_000;
const IMAGES_PER_PROMPT = 5;

function seconds(start: bigint): number {
  return Number(process.hrtime.bigint() - start) / 1e9;
}

export async function run(ctx: BenchContext): Promise<Record<string, unknown>> {
  const tokenizerDir = path.resolve(process.cwd(), '..', 'shared', 'reference', 'clip-tokenizer');
  let start = process.hrtime.bigint();
  const tokenizer = await ClipTokenizer.fromDir(tokenizerDir);
  const loadSeconds = seconds(start);
  const words = ['a', 'photo', 'of', 'cyberpunk', 'samurai', 'neon', 'lights', 'watercolor', 'fox', 'snowy', 'forest', 'highly', 'detailed', 'octane', 'render'];
  const rng = mulberry32(1);
  const prompts = Array.from({ length: PROMPTS }, (_, i) =>
    `${Array.from({ length: 12 }, () => words[Math.floor(rng() * words.length)]).join(' ')}, seed${i}, trending on artstation`);
  start = process.hrtime.bigint();
  for (const prompt of prompts) tokenizer.encode(prompt);
  const coldSeconds = seconds(start);
  start = process.hrtime.bigint();
  for (const prompt of prompts) tokenizer.encode(prompt);
  const warmSeconds = seconds(start);
  ctx.log(`tokenizer: load ${loadSeconds.toFixed(2)} s, ${(PROMPTS / coldSeconds).toFixed(0)} prompts/s cold, ${(PROMPTS / warmSeconds).toFixed(0)} warm`);

  const points: PointScore[] = [];
  for (const model of ['base', 'cand']) {
    for (let p = 0; p < PROMPTS_PER_MODEL; p++) {
      for (let i = 0; i < IMAGES_PER_PROMPT; i++) {
        points.push({ model, prompt: `prompt ${p}`, image: `${model}/${p}-${i}.png`, path: `/x/${model}/${p}-${i}.png`, score: 20 + rng() * 4, error: null });
      }
    }
  }
  start = process.hrtime.bigint();
  const report = buildReport({ points, pairs: [], provenance: null, incomplete: false, manifests: [], skippedLines: 0, notReached: 0, options: { baseline: 'base', candidate: 'cand' } });
  const reportSeconds = seconds(start);
  ctx.log(`report: ${points.length} scores in ${reportSeconds.toFixed(2)} s (gate ${report.gate?.worse ? 'fail' : 'pass'})`);
  return {
    tokenizer_load_s: loadSeconds,
    tokenizer_prompts: PROMPTS,
    tokenizer_cold_prompts_per_s: PROMPTS / coldSeconds,
    tokenizer_warm_prompts_per_s: PROMPTS / warmSeconds,
    report_scores: points.length,
    report_s: reportSeconds,
  };
}
