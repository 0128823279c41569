/**
 * Converting a checkpoint with PickScore v1's exact dimensions (CLIP-ViT-H/14: 986M parameters, 3.9 GB
 * of float32) and random weights, to fp32 and to fp16. Each conversion runs in a child process so that
 * its peak RSS and CPU time are its own. The baseline, measured on the same disk just before and just
 * after each conversion, reads the checkpoint's bytes and writes them once (a streamed copy). Both the baseline and
 * the converter flush their output to disk before they count as done. Goals: peak RSS under 1.5 GB,
 * time within 2x of the baseline. The generated data is deleted afterwards.
 */
import { execFile } from 'node:child_process';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, open, rm, stat, writeFile, readdir } from 'node:fs/promises';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import { expectedClipTensors, parseClipConfig } from '../src/convert/clip-config.js';
import { elementCount } from '../src/convert/tensor-file.js';
import { safetensorsHeader } from '../test/helpers/checkpoint-writers.js';
import type { BenchContext } from './run.js';

export const name = 'convert';

/** PickScore_v1's config.json, the dimensions of CLIP-ViT-H/14. */
const PICKSCORE_CONFIG = {
  architectures: ['CLIPModel'],
  model_type: 'clip',
  projection_dim: 1024,
  logit_scale_init_value: 2.6592,
  text_config: {
    hidden_size: 1024, intermediate_size: 4096, num_attention_heads: 16, num_hidden_layers: 24,
    vocab_size: 49408, max_position_embeddings: 77, hidden_act: 'gelu', eos_token_id: 2, bos_token_id: 0, pad_token_id: 1,
  },
  vision_config: {
    hidden_size: 1280, intermediate_size: 5120, num_attention_heads: 16, num_hidden_layers: 32,
    image_size: 224, patch_size: 14, hidden_act: 'gelu',
  },
};

const CHUNK_FLOATS = 4 << 20;
const GiB = 2 ** 30;

export async function run(ctx: BenchContext): Promise<Record<string, unknown>> {
  const root = path.join(ctx.workDir, 'convert');
  await rm(root, { recursive: true, force: true });
  const src = path.join(root, 'pickscore-random');
  await mkdir(src, { recursive: true });
  try {
    ctx.log('convert: generating a PickScore-sized checkpoint with random weights');
    const generated = await timed(() => writeRandomCheckpoint(src));
    const checkpointBytes = (await stat(path.join(src, 'model.safetensors'))).size;

    const results: Record<string, unknown> = {};
    for (const precision of ['fp32', 'fp16'] as const) {
      // The machine and its disk are shared and their load drifts (a copy's time varies 3x from one minute
      // to the next): each conversion is compared with the mean of a baseline taken just before and just after it.
      const copy = () => measureBaseline(path.join(src, 'model.safetensors'), path.join(root, 'copy.bin'));
      ctx.log(`convert: baseline before ${precision}, reading and writing the same bytes once, flushed to disk as the converter does`);
      const before = await copy();
      ctx.log(`convert: ${precision} in a child process`);
      const outDir = path.join(root, `out-${precision}`);
      const child = await convertInChild(src, outDir, precision);
      const outputBytes = await folderBytes(outDir);
      await rm(outDir, { recursive: true, force: true });
      ctx.log(`convert: baseline after ${precision}`);
      const after = await copy();
      const baselineSeconds = (before.seconds + after.seconds) / 2;
      const peakRssGiB = child.maxRssKiB / 2 ** 20;
      results[precision] = {
        seconds: child.seconds,
        cpu_seconds: child.cpuSeconds,
        peak_rss_gib: peakRssGiB,
        output_bytes: outputBytes,
        baseline_seconds: baselineSeconds,
        baseline_seconds_before_after: [before.seconds, after.seconds],
        baseline_cpu_seconds: (before.cpuSeconds + after.cpuSeconds) / 2,
        baseline_gib_per_s: checkpointBytes / GiB / baselineSeconds,
        time_vs_baseline: child.seconds / baselineSeconds,
        goals_met: { rss_under_1_5_gib: peakRssGiB < 1.5, time_within_2x: child.seconds / baselineSeconds <= 2 },
      };
    }
    return { checkpoint_gib: checkpointBytes / GiB, generate_seconds: generated, ...results };
  } finally {
    await rm(root, { recursive: true, force: true });
  }
}

async function measureBaseline(from: string, to: string): Promise<{ seconds: number; cpuSeconds: number }> {
  const cpu = process.cpuUsage();
  const seconds = await timed(() => copyAndSync(from, to));
  const used = process.cpuUsage(cpu);
  await rm(to);
  return { seconds, cpuSeconds: (used.user + used.system) / 1e6 };
}

async function copyAndSync(from: string, to: string): Promise<void> {
  await pipeline(createReadStream(from, { highWaterMark: 16 << 20 }), createWriteStream(to));
  const handle = await open(to, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

async function timed(work: () => Promise<unknown>): Promise<number> {
  const started = performance.now();
  await work();
  return (performance.now() - started) / 1000;
}

/** safetensors written tensor by tensor, in chunks: the 3.9 GB never sit in memory. */
export async function writeRandomCheckpoint(dir: string): Promise<void> {
  const config = parseClipConfig(PICKSCORE_CONFIG, 'PickScore config');
  const tensors = expectedClipTensors(config).map((t) => ({ name: t.name, shape: t.dims.map((d) => d.size) }));
  const header = safetensorsHeader(tensors.map((t) => ({ ...t, dtype: 'F32', byteLength: elementCount(t.shape) * 4 })));

  const file = await open(path.join(dir, 'model.safetensors'), 'w');
  try {
    await file.write(header);
    const random = xorshift32(0x9e3779b9);
    const chunk = new Float32Array(CHUNK_FLOATS);
    for (const t of tensors) {
      let remaining = elementCount(t.shape);
      while (remaining > 0) {
        const n = Math.min(remaining, CHUNK_FLOATS);
        if (t.name === 'logit_scale') chunk[0] = Math.log(100);
        else for (let i = 0; i < n; i++) chunk[i] = (random() - 0.5) * 0.04;
        await file.write(new Uint8Array(chunk.buffer, 0, n * 4));
        remaining -= n;
      }
    }
  } finally {
    await file.close();
  }
  await writeFile(path.join(dir, 'config.json'), JSON.stringify(PICKSCORE_CONFIG, null, 2));
  // The converter copies tokenizer files; their content does not matter to the conversion's cost.
  await writeFile(path.join(dir, 'vocab.json'), '{}');
  await writeFile(path.join(dir, 'merges.txt'), '#version: 0.2\n');
}

/** xorshift32, uniform in [0, 1): fast enough to fill gigabytes. */
function xorshift32(seed: number): () => number {
  let state = seed >>> 0 || 1;
  return () => {
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    return (state >>> 0) / 4294967296;
  };
}

interface ChildFigures {
  seconds: number;
  /** User + system time: on a shared machine, steadier than wall time. */
  cpuSeconds: number;
  maxRssKiB: number;
}

/** Runs convertCheckpoint in a fresh Node process and returns its wall time, CPU time and peak RSS. */
async function convertInChild(src: string, outDir: string, precision: 'fp32' | 'fp16'): Promise<ChildFigures> {
  const convertModule = pathToFileURL(path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'src', 'model', 'convert.js')).href;
  const script = `
    const { convertCheckpoint } = await import(${JSON.stringify(convertModule)});
    const started = performance.now();
    await convertCheckpoint(${JSON.stringify(src)}, { outDir: ${JSON.stringify(outDir)}, precision: ${JSON.stringify(precision)} });
    const seconds = (performance.now() - started) / 1000;
    const usage = process.resourceUsage();
    process.stdout.write(JSON.stringify({ seconds, cpuSeconds: (usage.userCPUTime + usage.systemCPUTime) / 1e6, maxRssKiB: usage.maxRSS }));
  `;
  const { stdout } = await promisify(execFile)(process.execPath, ['--input-type=module', '-e', script], { maxBuffer: 1 << 20 });
  return JSON.parse(stdout) as ChildFigures;
}

async function folderBytes(dir: string): Promise<number> {
  let sum = 0;
  for (const name of await readdir(dir)) sum += (await stat(path.join(dir, name))).size;
  return sum;
}
