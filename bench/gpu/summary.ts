/**
 * Gathers what bench/gpu/device-check.sh left in its OUT folder into one JSON document (stdout): the
 * GPU, each step's exit status and time, the PyTorch baseline, our encoder's speed and parity, and
 * rank end to end with the encoder's idle gaps. Exits 1 when a step failed or `--device auto` did not
 * pick the expected provider, after printing the document anyway.
 *
 *   node build/bench/gpu/summary.js OUT_DIR EXPECTED_AUTO_PROVIDER
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { InputError } from '../../src/errors.js';

/** The model card's pipeline end to end on one H100 (../shared/reference/README.md), the yardstick of the GPU goals. */
const MODEL_CARD_IMAGES_PER_S = 248;
const GOALS = { encoderImagesPerS: 1400, endToEndImagesPerS: 1200 };

interface Step { step: string; rc: number; seconds: number }
interface RankStats { imagesEncoded: number; encoderBusyMs: number; waitingForImagesMs: number; encoderIdleGaps: number; encoderIdleGapMs: number; encoderIdleGapMaxMs: number }
interface RankCounts { images: number; scored: number; errors: number }

async function readJson<T>(file: string): Promise<T | null> {
  try {
    return JSON.parse(await readFile(file, 'utf8')) as T;
  } catch {
    return null;     // the step that writes it failed; steps.tsv says which and why
  }
}

export function parseSteps(tsv: string): Step[] {
  return tsv.trim().split('\n').slice(1).map((line) => {
    const [step, rc, seconds] = line.split('\t');
    return { step, rc: Number(rc), seconds: Number(seconds) };
  });
}

/** The `--stats` line rank prints last on stderr: `{"stats": ..., "counts": ...}`. */
export function statsLine(stderr: string): { stats: RankStats; counts: RankCounts } | null {
  const line = stderr.split('\n').reverse().find((l) => l.startsWith('{"stats"'));
  return line ? JSON.parse(line) as { stats: RankStats; counts: RankCounts } : null;
}

/** Throughput over the whole command (process start, model load, discovery) and over the image stream alone. */
export function endToEnd(run: { stats: RankStats; counts: RankCounts }, wallSeconds: number) {
  const { stats, counts } = run;
  const streamMs = stats.encoderBusyMs + stats.waitingForImagesMs;
  return {
    images: counts.images, scored: counts.scored, errors: counts.errors, wall_s: wallSeconds,
    images_per_s_wall: counts.scored / wallSeconds,
    stream_s: streamMs / 1000, images_per_s_stream: stats.imagesEncoded / (streamMs / 1000),
    startup_s: wallSeconds - streamMs / 1000,
    encoder_busy_share: stats.encoderBusyMs / streamMs,
    encoder_idle_gaps: stats.encoderIdleGaps, encoder_idle_gap_ms_total: stats.encoderIdleGapMs, encoder_idle_gap_ms_max: stats.encoderIdleGapMaxMs,
    encoder_idle_gap_ms_mean: stats.encoderIdleGaps > 0 ? stats.encoderIdleGapMs / stats.encoderIdleGaps : 0,
    speedup_vs_model_card_stream: stats.imagesEncoded / (streamMs / 1000) / MODEL_CARD_IMAGES_PER_S,
  };
}

/**
 * nvidia-smi's samples (`utilization %, memory MiB` per line, every 100 ms) during rank. The process
 * start and the CUDA session load come first, with the GPU idle, so the mean is taken over the span from
 * the first to the last sample with any utilisation: the image stream, in which a low figure means the
 * GPU waited for images.
 */
export function gpuUtilization(csv: string): { samples: number; active_samples: number; mean_pct_while_active: number; peak_memory_mib: number } | null {
  const samples = csv.trim().split('\n').map((line) => line.split(',').map((v) => Number(v.trim())))
    .filter((v) => v.length >= 2 && v.every(Number.isFinite));
  if (samples.length === 0) return null;
  const first = samples.findIndex(([pct]) => pct > 0);
  const last = samples.length - 1 - [...samples].reverse().findIndex(([pct]) => pct > 0);
  const active = first < 0 ? [] : samples.slice(first, last + 1);
  return {
    samples: samples.length,
    active_samples: active.length,
    mean_pct_while_active: active.length > 0 ? active.reduce((sum, [pct]) => sum + pct, 0) / active.length : 0,
    peak_memory_mib: Math.max(...samples.map(([, mib]) => mib)),
  };
}

export async function summarize(outDir: string, expectedAutoProvider: string): Promise<{ ok: boolean; document: Record<string, unknown> }> {
  const read = (file: string) => readFile(path.join(outDir, file), 'utf8').catch(() => '');
  const steps = parseSteps(await read('steps.tsv'));
  const seconds = (name: string) => steps.find((s) => s.step === name)?.seconds ?? NaN;
  const torch = await readJson<{ image_fp16_sdpa: { images_per_s: number } }>(path.join(outDir, 'torch.json'));
  const encoder = await readJson<{ image_encoder: { images_per_s: number } }>(path.join(outDir, 'encoder.json'));
  const rank = statsLine(await read('rank.log'));
  const autoRun = await readJson<{ provenance: { executionProvider: string; device: string } }>(path.join(outDir, 'rank-auto.json'));
  const endToEndResult = rank ? endToEnd(rank, seconds('rank')) : null;
  const autoProvider = autoRun?.provenance.executionProvider ?? null;
  const encoderSpeed = encoder?.image_encoder.images_per_s;
  const document = {
    gpu: (await read('gpu.txt')).trim(),
    steps,
    pytorch: torch,
    convert: { seconds: seconds('convert'), result: await readJson(path.join(outDir, 'convert.json')) },
    encoder,
    encoder_vs_pytorch_fp16_sdpa: encoderSpeed !== undefined && torch ? encoderSpeed / torch.image_fp16_sdpa.images_per_s : null,
    jpegs: await readJson(path.join(outDir, 'jpegs.json')),
    rank_end_to_end: endToEndResult,
    rank_gpu_utilization: gpuUtilization(await read('gpu-util.csv')),
    nsys: steps.some((s) => s.step === 'nsys') ? 'see nsys.txt' : (await read('nsys.txt')).trim() || null,
    device_auto: { executionProvider: autoProvider, device: autoRun?.provenance.device ?? null, expected: expectedAutoProvider, ok: autoProvider === expectedAutoProvider },
    goals: {
      encoder_at_least_1400: encoderSpeed !== undefined ? encoderSpeed >= GOALS.encoderImagesPerS : null,
      encoder_above_pytorch: encoderSpeed !== undefined && torch ? encoderSpeed > torch.image_fp16_sdpa.images_per_s : null,
      end_to_end_stream_at_least_1200: endToEndResult ? endToEndResult.images_per_s_stream >= GOALS.endToEndImagesPerS : null,
      end_to_end_wall_at_least_1200: endToEndResult ? endToEndResult.images_per_s_wall >= GOALS.endToEndImagesPerS : null,
    },
  };
  // The profile is for reading, not a check: a failed nsys run does not fail the summary.
  const ok = steps.length > 0 && steps.every((s) => s.rc === 0 || s.step === 'nsys') && autoProvider === expectedAutoProvider;
  return { ok, document };
}

if (process.argv[1] && path.resolve(process.argv[1]) === new URL(import.meta.url).pathname) {
  const [outDir, expected] = process.argv.slice(2);
  (async () => {
    if (!outDir || !expected) throw new InputError('Usage: summary.js OUT_DIR EXPECTED_AUTO_PROVIDER');
    const { ok, document } = await summarize(outDir, expected);
    process.stdout.write(`${JSON.stringify({ ok, ...document }, null, 2)}\n`);
    if (!ok) process.exitCode = 1;
  })().catch((err: unknown) => {
    process.stderr.write(`summary: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = 1;
  });
}
