import { test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { readManifests, parseManifest, ManifestError, formatIssue } from '../src/io/manifest.js';
import { InputError } from '../src/errors.js';
import { fixturesDir } from './helpers/paths.js';

const evalDir = path.join(fixturesDir, 'eval');
const invalid = path.join(evalDir, 'invalid.jsonl');

test('every bad line is reported as file:line: field: problem, all of them, in one InputError', async () => {
  const err = await readManifests([invalid]).then(() => assert.fail('expected a ManifestError'), (e: unknown) => e);
  assert.ok(err instanceof ManifestError);
  assert.ok(err instanceof InputError, 'an input error, so the CLI exits 4');
  const lines = err.issues.map(formatIssue);
  const images = path.join(evalDir, 'images');
  assert.match(lines[0], new RegExp(`^${escape(invalid)}:3: json: not valid JSON \\(.+\\)$`));
  assert.deepEqual(lines.slice(1), [
    `${invalid}:4: json: Expected a JSON object for the line but received array of length 2`,
    `${invalid}:5: prompt: missing (a string; "caption" is accepted for pairwise lines)`,
    `${invalid}:6: prompt: Expected a string for prompt but received number 7`,
    `${invalid}:6: model: Expected a non-empty string for model but received ""`,
    `${invalid}:7: image: no such file: ${path.join(images, 'nope.png')}`,
    `${invalid}:8: image_1: missing`,
    `${invalid}:8: label_0: Expected 1, 0 or 0.5 (0.5 is a tie) for label_0 but received number 2`,
    `${invalid}:9: caption: differs from "prompt"; give one of them`,
    `${invalid}:10: image: missing: a pointwise line needs "image"; a pairwise line needs "image_0", "image_1" and "label_0"`,
    `${invalid}:11: image_0: not a file: ${images}`,
  ]);
  // Lines are counted, as --skip-invalid counts what it skips; a line with two problems is one line.
  assert.match(err.message, /^11 problems on 9 invalid manifest lines \(pass --skip-invalid to score the others\):\n/);
  assert.ok(err.message.includes(lines[4]), 'the message lists the issues');
});

test('skipInvalid returns the good rows and counts the skipped lines; a BOM and CRLF are fine', async () => {
  const { rows, skipped, issues } = await readManifests([invalid], { skipInvalid: true });
  assert.equal(skipped, 9);
  assert.equal(issues.length, 11);
  assert.equal(rows.length, 1);
  assert.deepEqual(rows[0], {
    kind: 'pointwise', manifest: invalid, line: 1, prompt: 'a fox',
    image: { given: 'images/fox-a.png', path: path.join(evalDir, 'images', 'fox-a.png') },
    model: 'm', id: null, extra: {},
  });
});

test('pointwise and pairwise rows from several manifests: relative paths, caption, extra fields', async () => {
  const { rows, skipped } = await readManifests([path.join(evalDir, 'checkpoints.jsonl'), path.join(evalDir, 'pairs.jsonl')]);
  assert.equal(skipped, 0);
  assert.equal(rows.length, 12);
  const first = rows[0];
  assert.equal(first.kind, 'pointwise');
  assert.deepEqual(first.kind === 'pointwise' && [first.model, first.id, first.extra, first.image.path],
    ['ckpt-a', 'fox-1', { seed: 1 }, path.join(evalDir, 'images', 'fox-a.png')]);
  const pair = rows[7];
  assert.equal(pair.kind, 'pairwise');
  assert.deepEqual(pair.kind === 'pairwise' && [pair.prompt, pair.label0, pair.image1.given, pair.line, path.basename(pair.manifest)],
    ['a watercolor painting of a fox in a snowy forest', 1, 'images/fox-b.png', 1, 'pairs.jsonl']);
});

test('absolute image paths are kept; numeric ids become strings; a missing manifest is an input error', async () => {
  const absolute = path.join(evalDir, 'images', 'fox-a.png');
  const { rows, issues } = parseManifest(`${JSON.stringify({ prompt: 'p', image: absolute, id: 12 })}\n`, '/elsewhere/m.jsonl');
  assert.deepEqual(issues, []);
  assert.equal(rows[0].kind === 'pointwise' && rows[0].image.path, absolute);
  assert.equal(rows[0].id, '12');
  await assert.rejects(readManifests([path.join(evalDir, 'absent.jsonl')]), (e: unknown) => e instanceof InputError && /Cannot read manifest .*absent\.jsonl: ENOENT/.test(e.message));
  await assert.rejects(readManifests([]), /No manifest given/);
});

function escape(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
