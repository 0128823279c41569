/**
 * The Markdown report's provenance line repeats strings a merge reads from its parts' provenance
 * (precision, execution provider, device, versions), which any file can set. They are written as text,
 * as the model name already was: no HTML, no Markdown, no line break gets through into a pull-request
 * comment or the job summary, and each is shortened, so the report keeps its size bound.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { MARKDOWN_LIMITS, renderMarkdown } from '../src/eval/render-markdown.js';
import type { EvalReport } from '../src/eval/report.js';
import { fixturesDir } from './helpers/paths.js';

async function goldenReport(): Promise<EvalReport> {
  return JSON.parse(await readFile(path.join(fixturesDir, 'goldens', 'eval-gate.json'), 'utf8')) as EvalReport;
}

/** The provenance line: the last `<sub>` of the page, up to its end. */
function provenanceLine(markdown: string): string {
  return markdown.slice(markdown.lastIndexOf('\n<sub>') + 1);
}

test('hostile provenance strings are written as text, shortened, on the one provenance line', async () => {
  const report = await goldenReport();
  const hostile = '</sub>\n\n# Approved <img src=x onerror=alert(1)> *[merge](https://example.com)*|';
  Object.assign(report.provenance!, {
    precision: hostile, attention: hostile, executionProvider: hostile, device: hostile, onnxruntimeVersion: hostile, pickscoreVersion: `${hostile}${'x'.repeat(100_000)}`,
  });
  const line = provenanceLine(renderMarkdown(report));
  assert.equal(line.trimEnd().split('\n').length, 1, 'one line');
  assert.match(line, /^<sub>[^<>]*<\/sub>\n$/, 'no tag but the line\'s own <sub>');
  assert.doesNotMatch(line, /(?<!\\)[*[\]|]/, 'no Markdown emphasis, link or table cell');
  assert.ok(line.length < 8 * MARKDOWN_LIMITS.nameChars * 2, `bounded: ${line.length} characters`);
});

test('ordinary provenance is written as it was', async () => {
  const report = await goldenReport();
  report.provenance!.pickscoreVersion = '0.1.0';
  assert.equal(provenanceLine(renderMarkdown(report)), '<sub>tiny-clip · fp32 · CPUExecutionProvider (cpu) · exif apply · resize exact · onnxruntime 1.29.0 · pickscore 0.1.0 · seed 0</sub>\n');
});
