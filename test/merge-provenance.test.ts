/**
 * What a merge part says about how its run read the images (provenance.exif, resize, maxPixels) is
 * repeated by the merged output, and the merged HTML gallery makes its thumbnails by it. A part whose
 * provenance holds a value no run could have used is refused, naming the part and the field, as the
 * run's own option would have been: it was thumbnailed as `--exif ignore` whatever it said.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { InputError } from '../src/errors.js';
import { runMerge } from '../src/commands/merge.js';
import { repoRoot } from './helpers/paths.js';
import { withTempDir } from './helpers/temp-dir.js';

const goldenParts = ['rank-part-0.json', 'rank-part-1.json'].map((name) => path.join(repoRoot, 'fixtures', 'goldens', name));

/** The two golden rank parts, each with `edit` applied to its provenance, written into `dir`. */
async function editedParts(dir: string, edit: (provenance: Record<string, unknown>) => void): Promise<string[]> {
  return Promise.all(goldenParts.map(async (golden, i) => {
    const part = JSON.parse(await readFile(golden, 'utf8')) as { provenance: Record<string, unknown> };
    edit(part.provenance);
    const file = path.join(dir, `part-${i}.json`);
    await writeFile(file, `${JSON.stringify(part)}\n`);
    return file;
  }));
}

test('the golden parts merge as they are', async () => {
  await withTempDir('merge-provenance', async (dir) => {
    const merged = await runMerge({ parts: await editedParts(dir, () => undefined) });
    assert.equal(merged.kind, 'rank');
  });
});

for (const [field, value, expected] of [
  ['exif', 'sideways', 'one of apply, ignore'],
  ['resize', 'bilinear', 'one of exact, fast'],
  ['maxPixels', 'lots', 'a positive integer'],
  ['maxPixels', 0, 'a positive integer'],
] as const) {
  test(`a part whose provenance.${field} is ${JSON.stringify(value)} is refused, naming the part and the field`, async () => {
    await withTempDir('merge-provenance', async (dir) => {
      const parts = await editedParts(dir, (provenance) => {
        provenance[field] = value;
      });
      await assert.rejects(runMerge({ parts }), (err: unknown) => err instanceof InputError
        && err.message === `Expected ${expected} for ${parts[0]}: provenance.${field} but received ${typeof value === 'string' ? JSON.stringify(value) : `number ${value}`}`);
    });
  });
}
