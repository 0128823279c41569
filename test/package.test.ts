/**
 * The npm package, as a user gets it: `npm pack`, then in a clean folder `npm install --offline` of
 * the tarball, then `npx pickscore --help`, a rank with the tiny reference model checked against the
 * Python reference scores, the library import, and its types through `exports`.
 *
 * Two deliberate departures from a plain install, both about this machine rather than the package:
 * - `npm pack --ignore-scripts`: the `prepack` build would rewrite dist/ while other test files run
 *   from it; `npm test` has just built it.
 * - The tests never touch the network, and what npm's cache holds depends on how the machine was set
 *   up (`npm ci` stores tarballs, not the registry metadata an install of a tarball asks for). So the
 *   clean folder starts with the dependencies this checkout already installed (hard links where the
 *   filesystem allows, copies otherwise), and npm runs with a private, empty cache: it must take
 *   every dependency the package declares from what is installed, resolve its bin, and fetch nothing.
 *   A dependency the package declares but this checkout lacks fails the install (ENOTCACHED).
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { cp, mkdir, mkdtemp, readdir, readlink, rm, symlink, writeFile } from 'node:fs/promises';
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
 * The environment of a user's shell: `npm test` exports its own settings (npm_config_local_prefix,
 * npm_config_cache and the like) to child processes, and an npm started from the test must not inherit
 * them and act on the repository or its cache.
 */
function userEnv(extra: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const env = Object.fromEntries(Object.entries(process.env).filter(([key]) => !/^npm_/i.test(key)));
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

test('npm reads the repository\'s configuration without a warning; onnxruntime-node\'s CUDA download is skipped by means each npm supports', { skip }, async () => {
  // npm 11 warns on every command about keys in the project's .npmrc that are not npm's own.
  const npm = ok(await run('npm', ['pkg', 'get', 'name'], repoRoot), 'npm pkg get name');
  assert.doesNotMatch(npm.stderr, /project config/i);
  assert.equal(npm.stdout.trim(), JSON.stringify(pkg.name));
  // npm 11.19 and later skip a script package.json denies; npm 10 ignores allowScripts, so the CI script
  // sets onnxruntime-node's own switch before `npm ci`.
  assert.equal((pkg as { allowScripts?: Record<string, boolean> }).allowScripts?.['onnxruntime-node'], false);
  const ci = readFileSync(path.join(repoRoot, '.ci', 'run'), 'utf8');
  const skipLine = ci.search(/^export ONNXRUNTIME_NODE_INSTALL="\$\{ONNXRUNTIME_NODE_INSTALL:-skip\}"$/m);
  assert.ok(skipLine >= 0 && skipLine < ci.search(/^npm ci\b/m), '.ci/run sets ONNXRUNTIME_NODE_INSTALL=skip before npm ci');
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
  await installedDependenciesInto(app);
  const cache = path.join(dir, 'npm-cache');
  const installed = await run('npm', ['install', '--offline', '--no-audit', '--no-fund', path.join(dir, filename)], app, { npm_config_cache: cache });
  ok(installed, 'npm install --offline of the tarball, with an empty cache, beside the installed dependencies');
  assert.ok(existsSync(path.join(app, 'node_modules', 'pickscore', 'dist', 'index.js')), 'the package was unpacked');

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

/**
 * The production dependencies this checkout installed (package-lock.json's entries not marked dev, as
 * they are on disk), laid into `app/node_modules` as `npm ci` laid them, with their bin links.
 */
async function installedDependenciesInto(app: string): Promise<void> {
  const lock = JSON.parse(readFileSync(path.join(repoRoot, 'package-lock.json'), 'utf8')) as { packages: Record<string, { dev?: boolean }> };
  const wanted = Object.entries(lock.packages).filter(([key, entry]) => key.startsWith('node_modules/') && !entry.dev).map(([key]) => key).sort();
  const copied: string[] = [];
  for (const key of wanted) {
    if (copied.some((parent) => key.startsWith(`${parent}/`)) || !existsSync(path.join(repoRoot, key))) continue; // inside a copied one, or not for this platform
    await mkdir(path.dirname(path.join(app, key)), { recursive: true });
    await linkTree(path.join(repoRoot, key), path.join(app, key));
    copied.push(key);
  }
  const binDir = path.join(repoRoot, 'node_modules', '.bin');
  await mkdir(path.join(app, 'node_modules', '.bin'), { recursive: true });
  for (const name of await readdir(binDir).catch(() => [])) {
    const target = await readlink(path.join(binDir, name));
    const owner = path.relative(path.join(repoRoot, 'node_modules'), path.resolve(binDir, target));
    if (copied.some((key) => owner.startsWith(`${key.slice('node_modules/'.length)}/`))) await symlink(target, path.join(app, 'node_modules', '.bin', name));
  }
}

/** `cp -al` (hard links: no space, no time), else a plain recursive copy. */
async function linkTree(from: string, to: string): Promise<void> {
  if (spawnSync('cp', ['-al', from, to]).status === 0) return;
  await rm(to, { recursive: true, force: true });
  await cp(from, to, { recursive: true, verbatimSymlinks: true });
}
