/**
 * The README's library example runs as written: the only change is that `'pickscore'` resolves to the
 * compiled tree beside this test. Its first use pulls "PickScore v1" from a loopback Hub in which the
 * tiny reference CLIP stands in for the real weights, as a user's first run pulls from the Hub.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { copyFile, mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { knownModels } from '../src/model/registry.js';
import { startHubServer } from './helpers/hub-server.js';
import { makeTempDir, removeTempDirs } from './helpers/hub-temp.js';
import { buildHubRoot } from './helpers/tiny-hub.js';
import { referenceDir, repoRoot, skipWithoutReference } from './helpers/paths.js';

test.after(removeTempDirs);

/** The fenced ```ts blocks of one README section. */
function codeBlocks(readme: string, heading: string): string[] {
  const start = readme.indexOf(`\n## ${heading}\n`);
  assert.ok(start >= 0, `README has a "## ${heading}" section`);
  const end = readme.indexOf('\n## ', start + 1);
  const section = readme.slice(start, end < 0 ? undefined : end);
  return [...section.matchAll(/```ts\n([\s\S]*?)```/g)].map((m) => m[1]);
}

test('the README library example runs and prints scores, probabilities and ranked rows', { skip: skipWithoutReference }, async () => {
  const [example] = codeBlocks(await readFile(path.join(repoRoot, 'README.md'), 'utf8'), 'Library');
  assert.ok(example?.includes("from 'pickscore'"), 'the example imports the package');

  const home = await makeTempDir('readme');
  await buildHubRoot(path.join(home, 'hub-root'));
  const pinned = Object.fromEntries((await knownModels()).map((m) => [m.weights.repo, m.weights.revision]).filter(([, rev]) => /^[0-9a-f]{40}$/.test(rev)));
  const server = await startHubServer(path.join(home, 'hub-root'), { commits: pinned });
  try {
    const work = path.join(home, 'work');
    await mkdir(path.join(work, 'imgs'), { recursive: true });
    const images = path.join(referenceDir, 'images');
    await copyFile(path.join(images, 'astronaut.jpg'), path.join(work, 'a.png'));
    await copyFile(path.join(images, 'coffee.png'), path.join(work, 'b.png'));
    for (const name of ['chelsea.webp', 'palette.gif', 'tiny-5x3.png', 'camera-gray.png']) await copyFile(path.join(images, name), path.join(work, 'imgs', name));
    await writeFile(path.join(work, 'imgs', 'broken.png'), 'not an image');

    const index = new URL('../src/index.js', import.meta.url).href;
    await writeFile(path.join(work, 'example.mjs'), example.replace("from 'pickscore'", `from ${JSON.stringify(index)}`));
    const env = { ...process.env, PICKSCORE_HOME: path.join(home, 'pickscore'), HF_HOME: path.join(home, 'hf'), HF_ENDPOINT: server.endpoint };
    const { stdout } = await promisify(execFile)(process.execPath, ['example.mjs'], { cwd: work, env });

    const lines = stdout.trim().split('\n');
    const numbers = (lines[0].match(/-?\d+\.\d+(e-?\d+)?/g) ?? []).map(Number);
    assert.equal(numbers.length, 4, `two scores and two probabilities: ${lines[0]}`);
    assert.ok(Math.abs(numbers[2] + numbers[3] - 1) < 1e-9, 'the probabilities sum to 1');
    assert.equal(numbers[0] > numbers[1], numbers[2] > numbers[3], 'the higher score has the higher probability');
    const rows = lines.slice(1);
    assert.deepEqual(rows.slice(0, 3).map((r) => r.split(' ')[0]), ['1', '2', '3'], stdout);
    assert.match(rows.at(-1) ?? '', /^null \.\/imgs\/broken\.png .+/, 'the broken image is a row with its error');
  } finally {
    await server.close();
  }
});

test('the README\'s other-scorers example runs with an open_clip folder and prints the scorer and its cosines', { skip: skipWithoutReference }, async () => {
  const [example] = codeBlocks(await readFile(path.join(repoRoot, 'README.md'), 'utf8'), 'Other scorers');
  assert.ok(example?.includes("scorer: 'hpsv2.1'"), 'the example loads a scorer');
  const work = await makeTempDir('readme-scorers');
  const images = path.join(referenceDir, 'images');
  await copyFile(path.join(images, 'astronaut.jpg'), path.join(work, 'a.png'));
  await copyFile(path.join(images, 'coffee.png'), path.join(work, 'b.png'));
  const { convertCheckpoint } = await import('../src/convert/convert.js');
  await convertCheckpoint(path.join(referenceDir, 'open_clip', 'tiny-openclip'), { outDir: path.join(work, 'hps-model'), precision: 'fp32', tokenizerDir: path.join(referenceDir, 'clip-tokenizer') });
  const index = new URL('../src/index.js', import.meta.url).href;
  await writeFile(path.join(work, 'example.mjs'), example.replace("from 'pickscore'", `from ${JSON.stringify(index)}`));
  const { stdout } = await promisify(execFile)(process.execPath, ['example.mjs'], { cwd: work, env: { ...process.env, PICKSCORE_HOME: path.join(work, 'home') } });
  assert.match(stdout, /^hpsv2\.1 \[/);
  const numbers = (stdout.slice('hpsv2.1'.length).match(/-?\d+\.\d+(e-?\d+)?/g) ?? []).map(Number);
  assert.equal(numbers.length, 2, stdout);
  assert.ok(numbers.every((n) => n >= -1 && n <= 1), `cosines: ${stdout}`);
});
