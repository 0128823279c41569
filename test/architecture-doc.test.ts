/**
 * docs/architecture.md is the map a newcomer opens first, so it must not send anyone to a file that is
 * not there: every path under src/ (and test/, bench/, fixtures/) it names exists, and every folder and
 * top-level module of src/ is named in it.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { repoRoot } from './helpers/paths.js';

const doc = readFileSync(path.join(repoRoot, 'docs', 'architecture.md'), 'utf8');

/** The repository paths the page names: `src/...`, `test/...`, `bench/...`, `fixtures/...`, `bin/...`, `docs/...`. */
function namedPaths(text: string): string[] {
  const found = [...text.matchAll(/(?<![\w./-])((?:src|test|bench|fixtures|bin|docs|models)\/[\w./*-]*[\w/])/g)].map((m) => m[1]);
  return [...new Set(found.filter((p) => !p.includes('*')))].sort();
}

/** The same for a folder-relative module named in a `src/<folder>/` context, like `rank-action.ts` under src/cli/. */
test('every path docs/architecture.md names exists', () => {
  const paths = namedPaths(doc);
  assert.ok(paths.length > 50, `the page names the files it speaks of (${paths.length} found)`);
  const missing = paths.filter((p) => !existsSync(path.join(repoRoot, p)));
  assert.deepEqual(missing, []);
});

test('every file name in backquotes on docs/architecture.md is a file of src/ (or a known outside name)', () => {
  const srcFiles = new Set<string>();
  const walk = (dir: string): void => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      if (entry.isDirectory()) walk(path.join(dir, entry.name));
      else srcFiles.add(entry.name);
    }
  };
  walk(path.join(repoRoot, 'src'));
  const names = [...doc.matchAll(/`([\w-]+\.(?:ts|md))`/g)].map((m) => m[1]);
  const unknown = [...new Set(names)].filter((name) => !srcFiles.has(name) && !existsSync(path.join(repoRoot, 'test', name)));
  assert.deepEqual(unknown, []);
});

test('every folder and top-level module of src/ is on docs/architecture.md', () => {
  const units = readdirSync(path.join(repoRoot, 'src'), { withFileTypes: true })
    .filter((entry) => entry.isDirectory() || entry.name.endsWith('.ts'))
    .map((entry) => `src/${entry.name}${entry.isDirectory() ? '/' : ''}`);
  assert.deepEqual(units.filter((unit) => !doc.includes(unit)), []);
});

test('the path finder reads paths out of prose, tables and code spans', () => {
  assert.deepEqual(namedPaths('see `src/cli/main.ts`, src/io/ and (test/lazy-load.test.ts); not xsrc/a.ts'), ['src/cli/main.ts', 'src/io/', 'test/lazy-load.test.ts']);
});
