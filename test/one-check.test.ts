/**
 * Each of `--exif`, `--precision` and `--device` is checked by exactly one function, beside the const
 * array (or the grammar) its values come from; every other layer takes the typed value and checks it no
 * more. Read on the source of src/: the values are written out once, the arrays are checked against only
 * in those functions, and the device grammar lives in one module. docs/architecture.md lists the files
 * each flag passes through.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { repoRoot } from './helpers/paths.js';

const SRC = path.join(repoRoot, 'src');

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) return sourceFiles(full);
    return entry.name.endsWith('.ts') ? [full] : [];
  });
}

/** Each source file's code lines, comments blanked, with the function each line is in. */
function codeLines(): { file: string; line: string; fn: string | undefined }[] {
  return sourceFiles(SRC).flatMap((full) => {
    const code = readFileSync(full, 'utf8')
      .replace(/\/\*[\s\S]*?\*\//g, (comment) => comment.replace(/[^\n]/g, ' '))
      .replace(/^\s*\/\/.*$/gm, '');
    let fn: string | undefined;
    return code.split('\n').map((line) => {
      fn = /^(?:export )?(?:async )?function\*? (\w+)/.exec(line)?.[1] ?? (/^\S/.test(line) && !/^[}\])]/.test(line) ? undefined : fn);
      return { file: path.relative(SRC, full), line, fn };
    });
  });
}

/** Where `pattern` occurs in code: "file function" for each line, deduplicated and sorted. */
function sites(pattern: RegExp): string[] {
  return [...new Set(codeLines().filter(({ line }) => pattern.test(line)).map(({ file, fn }) => `${file} ${fn ?? '(top level)'}`))].sort();
}

test('the values of --exif and --precision are written out once, in their const arrays', () => {
  assert.deepEqual(sites(/'apply'\s*[,|]\s*'ignore'|'ignore'\s*[,|]\s*'apply'/), ['image/image.ts (top level)']);
  assert.deepEqual(sites(/'fp32'\s*[,|]\s*'fp16'|'fp16'\s*[,|]\s*'int8'|'fp32'\s*[,|]\s*'int8'/), ['model-format.ts (top level)']);
});

test('--exif is checked by parseExifMode alone', () => {
  assert.deepEqual(sites(/\b(?:oneOf|check)\([^)]*EXIF_MODES|EXIF_MODES[^;]*\.includes\(/), ['image/image.ts parseExifMode']);
});

test('--precision is checked by parsePrecision alone (and a model manifest\'s own field by its reader)', () => {
  assert.deepEqual(sites(/\b(?:oneOf|check)\([^)]*PRECISION|PRECISION(?:S|_CHOICES)[^;]*\.includes\(/),
    ['model-format.ts parsePrecision', 'model-format.ts validateManifest']);
});

test('--device is checked by parseDevice alone: device names are parsed in encoder/device.ts only', () => {
  // The grammar: a regular expression over `cuda:N`, or a raw value compared with a device name.
  assert.deepEqual(sites(/\/[^/\n]*cuda[^/\n]*\/[dgimsuy]*[.)]/), ['encoder/device.ts parseDevice']);
  assert.deepEqual(sites(/(?<![.\w])(?:value|device|name)\s*[!=]==\s*'(?:auto|cpu|cuda|cuda:all)'(?!\w)/), ['encoder/device.ts parseDevice']);
  // parseDevice is called where a device enters: the resolve step, and PICKSCORE_DEVICES' entries for cuda:all.
  assert.deepEqual(sites(/\bparseDevice\(/), ['commands/all-devices.ts isNamedDevice', 'commands/all-devices.ts runOnAllDevices', 'encoder/device.ts parseDevice', 'pipeline/options.ts resolveRunOptions', 'pipeline/options.ts resolveScorerOptions']);
});

test('the site finder names the function a line is in, and sees a check written out of place', () => {
  const line = (text: string) => /\b(?:oneOf|check)\([^)]*EXIF_MODES|EXIF_MODES[^;]*\.includes\(/.test(text);
  assert.ok(line("  if (!(EXIF_MODES as readonly unknown[]).includes(value)) throw new UsageError('bad exif');"));
  assert.ok(line("  return oneOf(EXIF_MODES, 'exif', value);"));
  assert.ok(!line("    .addOption(new Option('--exif <mode>', '...').choices(EXIF_MODES).default('apply'))"));
});
