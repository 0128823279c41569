/**
 * The npm package, as a user gets it: `npm pack`, then in a clean folder `npm install --offline` of
 * the tarball (every dependency comes from npm's cache, filled by `npm ci`), then `npx pickscore
 * --help`, a rank with the tiny reference model checked against the Python reference scores, the
 * library import, and its types through `exports`.
 *
 * Two deliberate departures from a plain install, both about this machine rather than the package:
 * - `npm pack --ignore-scripts`: the `prepack` build would rewrite dist/ while other test files run
 *   from it; `npm test` has just built it.
 * - better-sqlite3 has no prebuilt binary offline, and compiling SQLite takes over a minute on two
 *   cores. Its installer (prebuild-install) takes a local prebuild instead, and the test gives it the
 *   binary `npm ci` built for this very version and Node ABI. The install script still runs.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { copyFile, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { referenceDir, repoRoot, skipWithoutReference } from './helpers/paths.js';
import { tinyModel } from './helpers/tiny-model.js';
import { spawnCollecting } from './helpers/pipe-cli.js';

function npmAvailable(): boolean {
  const ok = spawnSync('npm', ['--version'], { encoding: 'utf8' }).status === 0;
  if (!ok) process.stderr.write('notice: npm is not available; the packaging test is skipped\n');
  return ok;
}

const skip = skipWithoutReference || (npmAvailable() ? false : 'npm is not available');
const pkg = JSON.parse(readFileSync(path.join(repoRoot, 'package.json'), 'utf8')) as {
  name: string; version: string; engines?: { node?: string }; types?: string; bin?: Record<string, string>;
  exports?: Record<string, string | Record<string, string>>; dependencies: Record<string, string>;
};

interface Run { code: number | null; stdout: string; stderr: string }

/**
 * The environment of a user's shell: `npm test` exports its own settings (npm_config_local_prefix
 * and the like) to child processes, and an npm started from the test must not inherit them and act
 * on the repository. npm's cache location is kept: the offline install reads from it.
 */
function userEnv(extra: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const env = Object.fromEntries(Object.entries(process.env).filter(([key]) => !/^npm_/i.test(key) || key === 'npm_config_cache'));
  return { ...env, ...extra };
}

function run(command: string, args: string[], cwd: string, env: NodeJS.ProcessEnv = {}): Promise<Run> {
  return spawnCollecting(command, args, { cwd, env: userEnv(env) }).done;
}

function ok(result: Run, what: string): Run {
  assert.equal(result.code, 0, `${what} exited ${result.code}\n${result.stderr}`);
  return result;
}

let dir: string;
before(async () => {
  if (!skip) dir = await mkdtemp(path.join(os.tmpdir(), 'pickscore-package-test-'));
});
after(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

test('package.json declares engines, exports, types and the bin', () => {
  assert.match(pkg.engines?.node ?? '', />=\s*20/);
  const main = pkg.exports?.['.'];
  assert.ok(main && typeof main === 'object', 'exports["."] is a conditions object');
  assert.equal(main.types, pkg.types);
  assert.match(main.import ?? '', /^\.\/dist\/.*\.js$/);
  assert.equal(pkg.bin?.pickscore, 'bin/pickscore.js');
});

test('npm pack installs offline in a clean folder, runs the CLI and the library, with types', { skip, timeout: 120_000 }, async () => {
  assert.ok(existsSync(path.join(repoRoot, 'dist', 'cli', 'main.js')), 'dist/ is built (npm test builds it first; otherwise run npm run build)');
  const packed = ok(await run('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', dir], repoRoot), 'npm pack');
  const [{ filename, files }] = JSON.parse(packed.stdout) as { filename: string; files: { path: string }[] }[];
  const shipped = files.map((f) => f.path);
  assert.deepEqual(shipped.filter((p) => /^(fixtures|test|bench|build|src|docs)\//.test(p) || /\.test\.js$/.test(p)), [], 'no fixtures, tests or sources');
  for (const required of ['package.json', 'bin/pickscore.js', 'dist/cli/main.js', 'dist/index.js', 'dist/index.d.ts', 'models/pickscore-v1.json']) {
    assert.ok(shipped.includes(required), `the tarball ships ${required}`);
  }

  const app = path.join(dir, 'app');
  await mkdir(app);
  await writeFile(path.join(app, 'package.json'), JSON.stringify({ name: 'pickscore-package-check', private: true, type: 'module' }));
  const installed = await run('npm', ['install', '--offline', '--no-audit', '--no-fund', path.join(dir, filename)], app, {
    npm_config_better_sqlite3_local_prebuilds: await betterSqlitePrebuild(),
    ONNXRUNTIME_NODE_INSTALL: 'skip',
  });
  ok(installed, 'npm install --offline of the tarball');

  const help = ok(await run('npx', ['--no-install', 'pickscore', '--help'], app), 'npx pickscore --help');
  for (const command of ['rank', 'eval', 'merge', 'model']) assert.match(help.stdout, new RegExp(`^\\s+${command}\\b`, 'm'));

  await checkRankMatchesReference(app);

  const library = ok(await run(process.execPath, ['--input-type=module', '-e', "import { PickScore } from 'pickscore'; console.log(typeof PickScore, typeof PickScore.load);"], app), 'import pickscore');
  assert.equal(library.stdout.trim(), 'function function');
  // The types resolve through `exports` as a NodeNext TypeScript project resolves them.
  await writeFile(path.join(app, 'check.ts'), "import { PickScore } from 'pickscore';\nexport const load: typeof PickScore.load = PickScore.load;\n");
  ok(await run(process.execPath, [path.join(repoRoot, 'node_modules', 'typescript', 'bin', 'tsc'), '--noEmit', '--strict', '--module', 'nodenext', '--moduleResolution', 'nodenext', '--skipLibCheck', 'check.ts'], app), 'tsc on an import of pickscore');
});

/** A rank by the installed package scores the reference images as the Python reference does. */
async function checkRankMatchesReference(app: string): Promise<void> {
  const reference = JSON.parse(readFileSync(path.join(referenceDir, 'reference.json'), 'utf8')) as {
    prompts: { prompt: string }[]; images: { image: string; orientation: string }[]; scores: { values: number[][] };
  };
  const prompt = reference.prompts[0].prompt;
  const result = ok(await run('npx', ['--no-install', 'pickscore', 'rank', path.join(referenceDir, 'images'), '--prompt', prompt,
    '--model', await tinyModel(), '--device', 'cpu', '--exif', 'ignore', '--no-cache', '--format', 'json'], app, { PICKSCORE_HOME: path.join(dir, 'home') }), 'npx pickscore rank');
  const rows = (JSON.parse(result.stdout) as { rows: { path: string; score: number }[] }).rows;
  const expected = new Map(reference.images.map((image, i) => [`${image.image}/${image.orientation}`, reference.scores.values[0][i]]));
  assert.equal(rows.length, reference.images.length / 2);
  for (const row of rows) {
    const want = expected.get(`${path.basename(row.path)}/raw`);
    assert.ok(want !== undefined && Math.abs(row.score - want) < 1e-3, `${row.path}: score ${row.score}, reference ${want}`);
  }
}

/** The local prebuild prebuild-install looks for: the binary npm ci built, in its release layout. */
async function betterSqlitePrebuild(): Promise<string> {
  const moduleDir = path.join(repoRoot, 'node_modules', 'better-sqlite3');
  const { version } = JSON.parse(readFileSync(path.join(moduleDir, 'package.json'), 'utf8')) as { version: string };
  const stage = path.join(dir, 'prebuild-stage');
  await mkdir(path.join(stage, 'build', 'Release'), { recursive: true });
  await copyFile(path.join(moduleDir, 'build', 'Release', 'better_sqlite3.node'), path.join(stage, 'build', 'Release', 'better_sqlite3.node'));
  const prebuilds = path.join(dir, 'prebuilds');
  await mkdir(prebuilds);
  const name = `better-sqlite3-v${version}-node-v${process.versions.modules}-${process.platform}-${process.arch}.tar.gz`;
  ok(await run('tar', ['-czf', path.join(prebuilds, name), '-C', stage, 'build'], dir), 'tar of the better-sqlite3 prebuild');
  return prebuilds;
}
