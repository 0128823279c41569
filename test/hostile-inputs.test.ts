/**
 * Inputs that must not crash, hang or exhaust the process: command-line arguments of 100,000
 * characters, FIFOs and devices where a file is read, binary and UTF-16 prompts files, file names that
 * are not UTF-8, absurd thread counts. Each runs the real CLI (or a program using the library) as a
 * child process, so a crash shows as its exit code or signal instead of taking the suite down.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { runCli, spawnCollecting } from './helpers/pipe-cli.js';
import { encodePng, gradientRgb } from './helpers/pipe-images.js';
import { withTempDir } from './helpers/temp-dir.js';
import { tinyModel } from './helpers/tiny-model.js';
import { repoRoot, skipWithoutReference } from './helpers/paths.js';

/**
 * The environment of a desktop run: onnxruntime turns its telemetry off by itself when it sees a CI
 * variable (CI=true and the like), which hid the long-argument crash in CI; these cases must run without.
 */
function desktopEnv(): NodeJS.ProcessEnv {
  const ci = ['CI', 'TF_BUILD', 'GITHUB_ACTIONS', 'GITLAB_CI', 'CIRCLECI', 'TRAVIS', 'JENKINS_URL', 'CODEBUILD_BUILD_ID', 'BUILDKITE',
    'TEAMCITY_VERSION', 'APPVEYOR', 'BITBUCKET_BUILD_NUMBER', 'SYSTEM_TEAMFOUNDATIONCOLLECTIONURI', 'ORT_DISABLE_TELEMETRY',
    'ORT_TELEMETRY_DISABLED', 'ORT_RUNNING_UNIT_TESTS'];
  return Object.fromEntries(Object.entries(process.env).filter(([name]) => !ci.includes(name)));
}

const LONG_ARGUMENT = '!'.repeat(100_000);

async function onePng(dir: string, name = 'a.png'): Promise<string> {
  const file = path.join(dir, name);
  await writeFile(file, encodePng(gradientRgb(16, 16, 1), 16, 16));
  return file;
}

test('a 100,000-character --prompt is scored (it crashed the process with SIGSEGV, exit 139)', { skip: skipWithoutReference }, async () => {
  await withTempDir('long-arg', async (dir) => {
    await onePng(dir);
    const result = await runCli(['rank', dir, '--prompt', LONG_ARGUMENT, '--model', await tinyModel(), '--cache-dir', path.join(dir, 'cache'), '--format', 'jsonl'],
      { env: desktopEnv() });
    assert.equal(result.signal, null, result.stderr);
    assert.equal(result.code, 0, result.stderr);
    const rows = result.stdout.trim().split('\n').map((line) => JSON.parse(line) as { prompt: string; score: number | null });
    assert.equal(rows.length, 1);
    assert.equal(rows[0].prompt, LONG_ARGUMENT);
    assert.equal(typeof rows[0].score, 'number');
  });
});

test('a program that loads the library scores with a 100,000-character argument it never uses', { skip: skipWithoutReference }, async () => {
  await withTempDir('long-arg-lib', async (dir) => {
    const image = await onePng(dir);
    const index = new URL('../src/index.js', import.meta.url).href;
    const program = path.join(dir, 'program.mjs');
    await writeFile(program, [
      `const { PickScore } = await import(${JSON.stringify(index)});`,
      `const scorer = await PickScore.load({ model: ${JSON.stringify(await tinyModel())}, device: 'cpu', cacheDir: false, threads: 1 });`,
      `const [score] = await scorer.score('a photo', [${JSON.stringify(image)}]);`,
      'await scorer.close();',
      'console.log(JSON.stringify({ score }));',
    ].join('\n'));
    const { done } = spawnCollecting(process.execPath, [program, LONG_ARGUMENT], { cwd: repoRoot, env: desktopEnv() });
    const result = await done;
    assert.equal(result.signal, null, result.stderr);
    assert.equal(result.code, 0, result.stderr);
    assert.equal(typeof (JSON.parse(result.stdout) as { score: unknown }).score, 'number');
  });
});

