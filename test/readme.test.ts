/**
 * The README's library examples run as written: the only changes are that `'pickscore'` resolves to the
 * compiled tree beside this test, and that the TypeScript is stripped of its types first. Their first
 * use pulls "PickScore v1" from a loopback Hub in which the tiny reference CLIP stands in for the real
 * weights, as a user's first run pulls from the Hub. They are also type-checked, strictly, against the
 * package's own declarations (`import ... from 'pickscore'` as a user's project resolves it), so every
 * name they import is exported from index.ts with its type.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { copyFile, cp, mkdir, readFile, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import ts from 'typescript';
import { knownModels } from '../src/model/registry.js';
import { startHubServer } from './helpers/hub-server.js';
import { makeTempDir, removeTempDirs } from './helpers/hub-temp.js';
import { buildHubRoot } from './helpers/tiny-hub.js';
import { fixturesDir, referenceDir, repoRoot, skipWithoutReference } from './helpers/paths.js';

test.after(removeTempDirs);

/** The fenced ```ts blocks of one README section. */
function codeBlocks(readme: string, heading: string): string[] {
  const start = readme.indexOf(`\n## ${heading}\n`);
  assert.ok(start >= 0, `README has a "## ${heading}" section`);
  const end = readme.indexOf('\n## ', start + 1);
  const section = readme.slice(start, end < 0 ? undefined : end);
  return [...section.matchAll(/```ts\n([\s\S]*?)```/g)].map((m) => m[1]);
}

async function libraryExamples(): Promise<string[]> {
  return codeBlocks(await readFile(path.join(repoRoot, 'README.md'), 'utf8'), 'Library');
}

/** An example as a module node runs: its types stripped, `'pickscore'` naming the compiled library. */
function runnable(example: string): string {
  const index = new URL('../src/index.js', import.meta.url).href;
  const source = example.replace("from 'pickscore'", `from ${JSON.stringify(index)}`);
  return ts.transpileModule(source, { compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022, verbatimModuleSyntax: true } }).outputText;
}

/**
 * Runs `example` in a work folder that holds a.png and b.png, imgs/ (four reference images and a broken
 * one), and the checkpoint-comparison fixture (checkpoints.jsonl and its images/), with a fresh
 * $PICKSCORE_HOME and a loopback Hub. Returns its stdout and the work folder.
 */
async function runExample(example: string): Promise<{ stdout: string; work: string }> {
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
    await copyFile(path.join(fixturesDir, 'eval', 'checkpoints.jsonl'), path.join(work, 'checkpoints.jsonl'));
    await cp(path.join(fixturesDir, 'eval', 'images'), path.join(work, 'images'), { recursive: true });

    await writeFile(path.join(work, 'example.mjs'), runnable(example));
    const env = { ...process.env, PICKSCORE_HOME: path.join(home, 'pickscore'), HF_HOME: path.join(home, 'hf'), HF_ENDPOINT: server.endpoint };
    const { stdout } = await promisify(execFile)(process.execPath, ['example.mjs'], { cwd: work, env });
    return { stdout, work };
  } finally {
    await server.close();
  }
}

test('the README library example runs and prints scores, probabilities and ranked rows', { skip: skipWithoutReference }, async () => {
  const [example] = await libraryExamples();
  assert.ok(example?.includes("from 'pickscore'"), 'the example imports the package');
  const { stdout } = await runExample(example);

  const lines = stdout.trim().split('\n');
  const numbers = (lines[0].match(/-?\d+\.\d+(e-?\d+)?/g) ?? []).map(Number);
  assert.equal(numbers.length, 4, `two scores and two probabilities: ${lines[0]}`);
  assert.ok(Math.abs(numbers[2] + numbers[3] - 1) < 1e-9, 'the probabilities sum to 1');
  assert.equal(numbers[0] > numbers[1], numbers[2] > numbers[3], 'the higher score has the higher probability');
  const rows = lines.slice(1);
  assert.deepEqual(rows.slice(0, 3).map((r) => r.split(' ')[0]), ['1', '2', '3'], stdout);
  assert.match(rows.at(-1) ?? '', /^null \.\/imgs\/broken\.png .+/, 'the broken image is a row with its error');
});

test('the README eval and merge example runs: the gate, each model, the Markdown summary, and the merged ranking', { skip: skipWithoutReference }, async () => {
  const example = (await libraryExamples()).find((block) => block.includes('runEval') && block.includes('runMerge'));
  assert.ok(example, 'the Library section has an example of runEval and runMerge');
  const { stdout, work } = await runExample(example);

  const lines = stdout.trim().split('\n');
  assert.match(lines[0], /^(worse|not worse) \S/, `the gate's decision and its reason: ${lines[0]}`);
  assert.deepEqual(lines.slice(1, 3).map((line) => line.split(' ').slice(0, 2)), [['ckpt-a', '4'], ['ckpt-b', '3']], stdout);
  for (const line of lines.slice(1, 3)) assert.ok(Number.isFinite(Number(line.split(' ')[2])), `a mean score: ${line}`);
  const summary = await readFile(path.join(work, 'summary.md'), 'utf8');
  assert.ok(summary.includes('ckpt-b'), 'the Markdown summary names the candidate');

  // Both shards' rows, ranked together: the four readable images 1 to 4 by descending score, the broken one last.
  const rows = lines.slice(3).map((line) => line.split(' '));
  assert.deepEqual(rows.map((row) => row[0]), ['1', '2', '3', '4', 'null'], stdout);
  assert.deepEqual(rows.map((row) => row[1]).sort(), ['./imgs/broken.png', './imgs/camera-gray.png', './imgs/chelsea.webp', './imgs/palette.gif', './imgs/tiny-5x3.png']);
  const scores = rows.slice(0, 4).map((row) => Number(row[2]));
  assert.deepEqual(scores, [...scores].sort((a, b) => b - a), 'scores descend with the rank');
  for (const index of [0, 1]) assert.ok(existsSync(path.join(work, `part-${index}.json`)), `part-${index}.json was written`);
});

test('the README library examples type-check, strictly, against the package as a user imports it', { skip: existsSync(path.join(repoRoot, 'dist', 'index.d.ts')) ? false : 'dist/ is not built (npm run build)' }, async () => {
  const examples = await libraryExamples();
  assert.ok(examples.length >= 2, 'the scorer example and the eval and merge example');
  const project = await makeTempDir('readme-types');
  // `from 'pickscore'` resolves as in a user's project: node_modules/pickscore, its package.json's types.
  await mkdir(path.join(project, 'node_modules'));
  await symlink(repoRoot, path.join(project, 'node_modules', 'pickscore'), 'dir');
  const files = await Promise.all(examples.map(async (example, i) => {
    const file = path.join(project, `example-${i}.mts`);
    await writeFile(file, example);
    return file;
  }));
  const program = ts.createProgram(files, {
    strict: true, noEmit: true, noUnusedLocals: true, skipLibCheck: true,
    target: ts.ScriptTarget.ES2022, module: ts.ModuleKind.NodeNext, moduleResolution: ts.ModuleResolutionKind.NodeNext,
    lib: ['lib.es2023.d.ts'], types: ['node'], typeRoots: [path.join(repoRoot, 'node_modules', '@types')],
  });
  const problems = ts.getPreEmitDiagnostics(program).map((d) => {
    const where = d.file && d.start !== undefined ? `${path.basename(d.file.fileName)}:${d.file.getLineAndCharacterOfPosition(d.start).line + 1}: ` : '';
    return `${where}${ts.flattenDiagnosticMessageText(d.messageText, '\n')}`;
  });
  assert.deepEqual(problems, []);
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
