/**
 * The library's API is index.ts, with types: every type that an exported function, class or type names
 * (its options, its result, the fields of those, and so on down) is exported from index.ts too, so that
 * a caller can write it down (`const report: EvalReport`, `function gate(d: GateDecision)`). Read on the
 * declarations the package ships (dist/index.d.ts), as a user's compiler reads them.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import ts from 'typescript';
import { repoRoot } from './helpers/paths.js';
import { withTempDir } from './helpers/temp-dir.js';

/**
 * The types declared under `within` that the exports of `entry` name, directly or through other such
 * types, without exporting them: each with the exported or named types that name it.
 */
function unexportedTypes(entry: string, within: string): Map<string, string[]> {
  const program = ts.createProgram([entry], { strict: true, module: ts.ModuleKind.NodeNext, moduleResolution: ts.ModuleResolutionKind.NodeNext, skipLibCheck: true, noEmit: true });
  const checker = program.getTypeChecker();
  const unalias = (symbol: ts.Symbol): ts.Symbol => (symbol.flags & ts.SymbolFlags.Alias ? checker.getAliasedSymbol(symbol) : symbol);
  const exports = checker.getExportsOfModule(checker.getSymbolAtLocation(program.getSourceFile(entry)!)!).map(unalias);
  const exported = new Set(exports);
  const ours = (node: ts.Node): boolean => path.resolve(node.getSourceFile().fileName).startsWith(within);
  const missing = new Map<string, string[]>();
  const visited = new Set<ts.Symbol>();

  const visitNode = (node: ts.Node, from: string): void => {
    // Private members are not part of what a caller sees.
    if (ts.canHaveModifiers(node) && ts.getModifiers(node)?.some((m) => m.kind === ts.SyntaxKind.PrivateKeyword)) return;
    const name = ts.isTypeReferenceNode(node) ? node.typeName : ts.isExpressionWithTypeArguments(node) ? node.expression : undefined;
    const found = name && checker.getSymbolAtLocation(name);
    if (found) {
      const symbol = unalias(found);
      if (!(symbol.flags & ts.SymbolFlags.TypeParameter) && symbol.declarations?.some(ours)) {
        if (!exported.has(symbol)) missing.set(symbol.name, [...new Set([...(missing.get(symbol.name) ?? []), from])]);
        visitSymbol(symbol);
      }
    }
    ts.forEachChild(node, (child) => visitNode(child, from));
  };
  const visitSymbol = (symbol: ts.Symbol): void => {
    if (visited.has(symbol)) return;
    visited.add(symbol);
    for (const declaration of symbol.declarations ?? []) if (ours(declaration)) visitNode(declaration, symbol.name);
  };
  exports.forEach(visitSymbol);
  return missing;
}

test('every type the library API names is exported from index.ts', { skip: existsSync(path.join(repoRoot, 'dist', 'index.d.ts')) ? false : 'dist/ is not built (npm run build)' }, () => {
  const missing = unexportedTypes(path.join(repoRoot, 'dist', 'index.d.ts'), path.join(repoRoot, 'dist') + path.sep);
  assert.deepEqual(Object.fromEntries(missing), {});
});

test('the finder sees a type named only through another, and not a private member\'s, nor one that is exported', async () => {
  await withTempDir('index-types', async (dir) => {
    await writeFile(path.join(dir, 'api.d.ts'), [
      'interface Hidden { deep: Deeper }',
      'interface Deeper { n: number }',
      'interface Secret { s: string }',
      'export interface Shown { n: number }',
      'export declare function open(options: { shown: Shown }): Promise<Hidden>;',
      'export declare class Engine { private state; private peek(): Secret; run(): Shown }',
      // As tsc writes a module's declarations: without it, every declaration of a .d.ts counts as exported.
      'export {};',
    ].join('\n'));
    const missing = unexportedTypes(path.join(dir, 'api.d.ts'), dir + path.sep);
    assert.deepEqual(Object.fromEntries(missing), { Hidden: ['open'], Deeper: ['Hidden'] });
  });
});
