/**
 * The GPU check (bench/gpu/device-check.sh) runs once on a device machine, where a broken step costs a
 * whole device call. Its dry run takes every step here on CPU with the tiny reference model: conversion
 * through the CLI (fp16, fused attention), bench/gpu/encoder.js against PyTorch's fp32 reference
 * embeddings, JPEG generation, rank with --device cpu and auto, and the summary.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { markdownShellBlocks } from './helpers/docs-lint-shell.js';
import { cliEntry } from './helpers/pipe-cli.js';
import { gpuUtilization } from '../bench/gpu/summary.js';
import { repoRoot, skipWithoutReference } from './helpers/paths.js';

const bashMissing = spawnSync('bash', ['--version']).error !== undefined;
if (bashMissing) process.stderr.write('notice: bash not found; the GPU check script tests are skipped\n');
const skip = bashMissing ? 'bash is missing' : skipWithoutReference;

/** The compiled tree this test runs from (build/ under npm test), which holds build/bench/gpu/*.js. */
const buildDir = fileURLToPath(new URL('..', import.meta.url));
const script = path.join(repoRoot, 'bench', 'gpu', 'device-check.sh');
const DRY_RUN_IMAGES = 6;

interface Drift { max_abs_error: number; rel_error: number; min_cosine: number }
interface Parity { image: Drift; text: Drift; max_score_drift: number; kendall_tau_min: number; top1_agreement: number }
interface Summary {
  ok: boolean; gpu: string; steps: { step: string; rc: number }[];
  encoder: { executionProvider: string; model: { precision: string; attention: string }; image_encoder: { batch: number; iterations: number; images_per_s: number };
    parity: Record<string, Parity> };
  rank_end_to_end: { images: number; scored: number; errors: number; encoder_idle_gaps: number; images_per_s_stream: number };
  device_auto: { executionProvider: string; ok: boolean };
}

test('the script parses with bash -n', { skip: bashMissing && 'bash is missing' }, () => {
  const result = spawnSync('bash', ['-n', script], { encoding: 'utf8' });
  assert.equal(result.status, 0, result.stderr);
});

test('every shell block of docs/gpu.md parses with bash -n', { skip: bashMissing && 'bash is missing' }, async () => {
  const blocks = markdownShellBlocks(await readFile(path.join(repoRoot, 'docs', 'gpu.md'), 'utf8'));
  assert.ok(blocks.length >= 3, 'docs/gpu.md shows the build, the two device calls and the commit');
  for (const block of blocks) {
    const result = spawnSync('bash', ['-n'], { input: block, encoding: 'utf8' });
    assert.equal(result.status, 0, `${result.stderr}\n${block}`);
  }
});

test('the dry run takes every step on CPU and reproduces the reference embeddings in fp16', { skip }, async () => {
  const out = await mkdtemp(path.join(os.tmpdir(), 'pickscore-gpu-check-'));
  try {
    const run = spawnSync('bash', [script], {
      cwd: repoRoot, encoding: 'utf8', timeout: 180_000,      // a hang guard, not a timing assertion
      env: { ...process.env, DRY_RUN: '1', OUT: out, BUILD_DIR: buildDir, PICKSCORE_BIN: cliEntry[0], IMAGES: String(DRY_RUN_IMAGES) },
    });
    assert.equal(run.status, 0, `device-check.sh failed:\n${run.stderr}`);
    const summary = JSON.parse(await readFile(path.join(out, 'gpu-check.json'), 'utf8')) as Summary;
    assert.deepEqual(summary.steps.map((s) => [s.step, s.rc]), [['reference-dump', 0], ['convert', 0], ['encoder', 0], ['jpegs', 0], ['rank', 0], ['rank-auto', 0]]);
    assert.equal(summary.ok, true);

    const { encoder } = summary;
    assert.equal(encoder.executionProvider, 'CPUExecutionProvider');
    assert.deepEqual(encoder.model, { ...encoder.model, precision: 'fp16', attention: 'fused' });
    assert.equal(encoder.image_encoder.batch, 4);
    assert.ok(Number.isFinite(encoder.image_encoder.images_per_s) && encoder.image_encoder.images_per_s > 0);
    // fp16 against PyTorch fp32 on the tiny model: measured 7e-4 (image) and 1.0e-3 (text) relative error,
    // 0.10 score drift on a score spread of 75, Kendall tau at least 0.93 per prompt.
    const parity = encoder.parity.ours_vs_torch_fp32;
    assert.ok(parity.image.rel_error < 3e-3, `image rel error ${parity.image.rel_error}`);
    assert.ok(parity.text.rel_error < 3e-3, `text rel error ${parity.text.rel_error}`);
    assert.ok(parity.image.min_cosine > 0.9999 && parity.text.min_cosine > 0.9999, JSON.stringify(parity));
    assert.ok(parity.max_score_drift < 0.3, `score drift ${parity.max_score_drift}`);
    assert.ok(parity.kendall_tau_min >= 0.85, `Kendall tau ${parity.kendall_tau_min}`);
    assert.equal(parity.top1_agreement, 1);

    assert.equal(summary.rank_end_to_end.images, DRY_RUN_IMAGES);
    assert.equal(summary.rank_end_to_end.scored, DRY_RUN_IMAGES);
    assert.equal(summary.rank_end_to_end.errors, 0);
    assert.equal(summary.rank_end_to_end.encoder_idle_gaps, 1, 'two batches of 4 for 6 images leave one gap between them');
    assert.equal(summary.device_auto.executionProvider, 'CPUExecutionProvider');
    const rows = (await readFile(path.join(out, 'rank.jsonl'), 'utf8')).trim().split('\n').map((l) => JSON.parse(l) as { score: number | null });
    assert.equal(rows.length, DRY_RUN_IMAGES);
    assert.ok(rows.every((r) => typeof r.score === 'number' && Number.isFinite(r.score)));
  } finally {
    await rm(out, { recursive: true, force: true });
  }
});

test('the summary fails the run when a step fails', { skip }, async () => {
  const out = await mkdtemp(path.join(os.tmpdir(), 'pickscore-gpu-check-'));
  try {
    const run = spawnSync('bash', [script], {
      cwd: repoRoot, encoding: 'utf8', timeout: 120_000,
      env: { ...process.env, DRY_RUN: '1', OUT: out, BUILD_DIR: buildDir, PICKSCORE_BIN: cliEntry[0], TOKENIZER: path.join(out, 'no-tokenizer') },
    });
    assert.equal(run.status, 1, run.stderr);
    const summary = JSON.parse(await readFile(path.join(out, 'gpu-check.json'), 'utf8')) as Summary;
    assert.equal(summary.ok, false);
    assert.notEqual(summary.steps.find((s) => s.step === 'convert')?.rc, 0);
  } finally {
    await rm(out, { recursive: true, force: true });
  }
});

test('steps that would run past DEADLINE_S are recorded as timed out, and the summary still comes', { skip }, async () => {
  const out = await mkdtemp(path.join(os.tmpdir(), 'pickscore-gpu-check-'));
  try {
    const run = spawnSync('bash', [script], {
      cwd: repoRoot, encoding: 'utf8', timeout: 60_000,
      env: { ...process.env, DRY_RUN: '1', OUT: out, BUILD_DIR: buildDir, PICKSCORE_BIN: cliEntry[0], DEADLINE_S: '20' },
    });
    assert.equal(run.status, 1, run.stderr);
    const summary = JSON.parse(await readFile(path.join(out, 'gpu-check.json'), 'utf8')) as Summary;
    assert.equal(summary.ok, false);
    assert.deepEqual(summary.steps.map((s) => s.rc), [124, 124, 124, 124, 124, 124]);
  } finally {
    await rm(out, { recursive: true, force: true });
  }
});

test('GPU utilisation is averaged over the span the GPU was busy, not the idle start-up before it', () => {
  const csv = ['0, 500', '0, 900', '90, 20000', '100, 21000', '70, 21000', '0, 21000', '100, 21000', '0, 800', ''].join('\n');
  assert.deepEqual(gpuUtilization(csv), { samples: 8, active_samples: 5, mean_pct_while_active: (90 + 100 + 70 + 0 + 100) / 5, peak_memory_mib: 21000 });
  assert.deepEqual(gpuUtilization('0, 10\n0, 10\n'), { samples: 2, active_samples: 0, mean_pct_while_active: 0, peak_memory_mib: 10 });
  assert.equal(gpuUtilization(''), null);
  assert.equal(gpuUtilization('[N/A], [N/A]\n'), null);
});
