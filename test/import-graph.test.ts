/**
 * The shape of src/, checked on its import graph: no module imports itself back through others (no
 * cycle), each native library is imported by exactly one module, and no import runs back up the
 * layers the architecture names (docs/architecture.md), from the pure numeric code at the bottom to
 * the CLI at the top. Type-only imports count for cycles and layers: a type that has to be fetched
 * from above says the layering is wrong as surely as a value does. A worker's entry counts, for the
 * layers, as imported by the module that starts it (`new URL('./entry.js', import.meta.url)`); not for
 * cycles, since the entry runs in another thread or process, in a module graph of its own.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { repoRoot } from './helpers/paths.js';

const SRC = path.join(repoRoot, 'src');

interface Import { specifier: string; typeOnly: boolean; workerEntry?: boolean }

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) return sourceFiles(full);
    return entry.name.endsWith('.ts') ? [full] : [];
  });
}

/** Comments removed: block comments, and line comments that take a whole line. */
function code(source: string): string {
  return source.replace(/\/\*[\s\S]*?\*\//g, '').replace(/^\s*\/\/.*$/gm, '');
}

/** Every module a source file names: static imports and re-exports, dynamic imports, requires, worker entries. */
export function importsOf(source: string): Import[] {
  const text = code(source);
  const found: Import[] = [];
  for (const m of text.matchAll(/\b(import|export)(\s+type)?\s*(\{[^}]*\}|\*(?:\s+as\s+\w+)?|\w+(?:\s*,\s*\{[^}]*\})?)?\s*from\s*'([^']+)'/g)) {
    const names = m[3] ?? '';
    const allTypes = names.startsWith('{') && names.slice(1, -1).split(',').map((n) => n.trim()).filter(Boolean).every((n) => n.startsWith('type '));
    found.push({ specifier: m[4], typeOnly: m[2] !== undefined || allTypes });
  }
  for (const m of text.matchAll(/\bimport\s+'([^']+)'/g)) found.push({ specifier: m[1], typeOnly: false });
  for (const m of text.matchAll(/\bimport\(\s*'([^']+)'\s*\)/g)) found.push({ specifier: m[1], typeOnly: false });
  for (const m of text.matchAll(/\b\w*[rR]equire(?:\([^()]*\))?\(\s*'([^']+)'\s*\)/g)) found.push({ specifier: m[1], typeOnly: false });
  for (const m of text.matchAll(/new URL\(\s*'(\.[^']+)',\s*import\.meta\.url\s*\)/g)) found.push({ specifier: m[1], typeOnly: false, workerEntry: true });
  return found;
}

interface Module { file: string; imports: Import[] }

function loadGraph(): Map<string, Module> {
  const modules = new Map<string, Module>();
  for (const file of sourceFiles(SRC)) {
    modules.set(path.relative(SRC, file), { file, imports: importsOf(readFileSync(file, 'utf8')) });
  }
  return modules;
}

/** The src-relative .ts path a relative specifier names, or undefined for a package. */
function resolveLocal(from: string, specifier: string): string | undefined {
  if (!specifier.startsWith('.')) return undefined;
  return path.normalize(path.join(path.dirname(from), specifier)).replace(/\.js$/, '.ts');
}

function localEdges(modules: Map<string, Module>, opts: { workerEntries: boolean }): Map<string, string[]> {
  const edges = new Map<string, string[]>();
  for (const [name, module] of modules) {
    const imports = module.imports.filter((i) => opts.workerEntries || !i.workerEntry);
    const targets = imports.map((i) => resolveLocal(name, i.specifier)).filter((t): t is string => t !== undefined);
    for (const target of targets) assert.ok(modules.has(target), `${name} imports ${target}, which does not exist`);
    edges.set(name, [...new Set(targets)]);
  }
  return edges;
}

/** Every cycle's path, found by depth-first search (each reported once, from its first module met). */
export function findCycles(edges: Map<string, string[]>): string[][] {
  const state = new Map<string, 'open' | 'done'>();
  const stack: string[] = [];
  const cycles: string[][] = [];
  const visit = (node: string): void => {
    state.set(node, 'open');
    stack.push(node);
    for (const next of edges.get(node) ?? []) {
      if (state.get(next) === 'open') cycles.push([...stack.slice(stack.indexOf(next)), next]);
      else if (!state.has(next)) visit(next);
    }
    stack.pop();
    state.set(node, 'done');
  };
  for (const node of [...edges.keys()].sort()) if (!state.has(node)) visit(node);
  return cycles;
}

/**
 * The layers, lowest first. A module may import its own layer's folder and any lower layer, never a
 * higher one, nor another folder of its own layer (encoder and converter stay apart).
 */
const LAYERS: string[][] = [
  ['errors.ts', 'version.ts'],
  ['checks.ts'],
  ['score/', 'shard.ts'],
  ['io/'],
  ['tokenizer/', 'image/'],
  ['model-format.ts'],
  ['scorers/'],
  ['encoder/', 'convert/'],
  ['model/'],
  ['pipeline/'],
  ['eval/'],
  ['commands/'],
  ['cli/', 'index.ts'],
];

function unitOf(module: string): { unit: string; layer: number } {
  for (const [layer, units] of LAYERS.entries()) {
    for (const unit of units) if (unit.endsWith('/') ? module.startsWith(unit) : module === unit) return { unit, layer };
  }
  throw new Error(`${module} belongs to no layer: name its folder in LAYERS (and in docs/architecture.md)`);
}

const NATIVE = ['sharp', 'onnxruntime-node', 'better-sqlite3'];

test('src/ has no import cycle', () => {
  const cycles = findCycles(localEdges(loadGraph(), { workerEntries: false }));
  assert.deepEqual(cycles.map((cycle) => cycle.join(' -> ')), []);
});

test('the cycle finder finds a cycle, a self-import, and none in a tree', () => {
  assert.deepEqual(findCycles(new Map([['a', ['b']], ['b', ['c']], ['c', ['a']]])), [['a', 'b', 'c', 'a']]);
  assert.deepEqual(findCycles(new Map([['a', ['a']]])), [['a', 'a']]);
  assert.deepEqual(findCycles(new Map([['a', ['b', 'c']], ['b', ['c']], ['c', []]])), []);
});

test('the import reader sees static, type-only, dynamic, required and worker imports', () => {
  const found = importsOf([
    "import { a } from './a.js';",
    "import type { B } from './b.js';",
    "import { type C, type D } from './c.js';",
    "export { e } from './e.js';",
    "const f = await import('./f.js');",
    "const g = createRequire(import.meta.url)('better-sqlite3');",
    "new Worker(new URL('./h.js', import.meta.url));",
    "// import { x } from './not-code.js';",
  ].join('\n'));
  assert.deepEqual(found, [
    { specifier: './a.js', typeOnly: false }, { specifier: './b.js', typeOnly: true }, { specifier: './c.js', typeOnly: true },
    { specifier: './e.js', typeOnly: false }, { specifier: './f.js', typeOnly: false }, { specifier: 'better-sqlite3', typeOnly: false },
    { specifier: './h.js', typeOnly: false, workerEntry: true },
  ]);
});

test('each native library is imported by exactly one module', () => {
  const modules = loadGraph();
  for (const library of NATIVE) {
    const importers = [...modules].filter(([, m]) => m.imports.some((i) => i.specifier === library && !i.typeOnly)).map(([name]) => name);
    assert.equal(importers.length, 1, `${library} is imported by ${importers.join(', ') || 'no module'}`);
  }
});

test('no import runs back up the layers', () => {
  const problems: string[] = [];
  for (const [from, targets] of localEdges(loadGraph(), { workerEntries: true })) {
    const source = unitOf(from);
    for (const target of targets) {
      const dest = unitOf(target);
      if (dest.layer > source.layer) problems.push(`${from} imports ${target}: ${dest.unit} is above ${source.unit}`);
      else if (dest.layer === source.layer && dest.unit !== source.unit) problems.push(`${from} imports ${target}: ${source.unit} and ${dest.unit} are kept apart`);
    }
  }
  assert.deepEqual(problems, []);
});

test('a worker entry is started by URL and imported by no module, so importing the library never runs one', () => {
  const modules = loadGraph();
  const entries = new Set<string>();
  for (const [name, module] of modules) {
    for (const i of module.imports) if (i.workerEntry) entries.add(resolveLocal(name, i.specifier)!);
  }
  assert.deepEqual([...entries].sort(), ['commands/device-worker.ts', 'encoder/encoder-thread.ts', 'image/pool-worker.ts']);
  const importers = [...modules].flatMap(([name, module]) => module.imports
    .filter((i) => !i.workerEntry && entries.has(resolveLocal(name, i.specifier) ?? ''))
    .map((i) => `${name} imports ${i.specifier}`));
  assert.deepEqual(importers, []);
});
