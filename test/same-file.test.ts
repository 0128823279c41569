import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { link, mkdir, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { refuseOutputsNamingInputs } from '../src/io/same-file.js';
import { UsageError } from '../src/errors.js';
import { makeTempDir, removeTempDirs } from './helpers/hub-temp.js';

after(removeTempDirs);

const refusal = (pattern: RegExp) => (e: unknown): boolean => e instanceof UsageError && pattern.test(e.message);

test('an output that is an input, by any spelling, symlink or hard link, is refused naming both roles', async () => {
  const dir = await makeTempDir('same-file');
  await mkdir(path.join(dir, 'imgs'));
  const image = path.join(dir, 'imgs', 'a.png');
  await writeFile(image, 'png bytes');
  await writeFile(path.join(dir, 'imgs', 'b.png'), 'other png bytes');
  await symlink('imgs/a.png', path.join(dir, 'link.csv'));
  await link(image, path.join(dir, 'hard.csv'));
  const inputs = [
    { role: 'the input image imgs/b.png', path: path.join(dir, 'imgs', 'b.png') },
    { role: 'the input image imgs/a.png', path: image },
  ];
  for (const spelling of [image, path.join(dir, 'imgs', '..', 'imgs', './a.png'), path.join(dir, 'link.csv'), path.join(dir, 'hard.csv')]) {
    await assert.rejects(refuseOutputsNamingInputs([{ flag: '--out', path: spelling }], inputs),
      refusal(/^--out names the same file as the input image imgs\/a\.png: writing it would destroy that input/), spelling);
  }
  // A raw (Buffer) input path is compared the same way.
  await assert.rejects(refuseOutputsNamingInputs([{ flag: '--scores', path: image }], [{ role: 'the image x', path: Buffer.from(image) }]), refusal(/^--scores names the same file as the image x/));
  await refuseOutputsNamingInputs([{ flag: '--out', path: path.join(dir, 'ranked.csv') }], inputs);
  await refuseOutputsNamingInputs([{ flag: '--out', path: path.join(dir, 'imgs', 'c.png') }], inputs);
});

test('two outputs that are one file are refused, whether it exists yet or not', async () => {
  const dir = await makeTempDir('same-file');
  const fresh = path.join(dir, 'report.json');
  await assert.rejects(refuseOutputsNamingInputs([{ flag: '--out', path: fresh }, { flag: '--scores', path: path.join(dir, '.', 'report.json') }]),
    refusal(/^--scores names the same file as --out \(.*report\.json\)/));
  await writeFile(fresh, '{}');
  await symlink('report.json', path.join(dir, 'scores.jsonl'));
  await assert.rejects(refuseOutputsNamingInputs([{ flag: '--out', path: fresh }, { flag: '--scores', path: path.join(dir, 'scores.jsonl') }]),
    refusal(/^--scores names the same file as --out/));
  await refuseOutputsNamingInputs([{ flag: '--out', path: fresh }, { flag: '--scores', path: path.join(dir, 'items.csv') }]);
});
