/**
 * The converter hashes its source files on a worker thread while the towers are written. The manifest
 * must carry the files' true SHA-256, whether the converter runs in an ES module file or in
 * `node --input-type=module -e` (as the benchmark runs it), whose eval workers are ES modules too.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { convertCheckpoint } from '../src/convert/convert.js';
import type { ModelManifest } from '../src/model-format.js';
import { referenceDir, skipWithoutReference } from './helpers/paths.js';

const tinyClip = path.join(referenceDir, 'tiny-clip');
const tokenizerDir = path.join(referenceDir, 'clip-tokenizer');

let scratch: string;
before(async () => {
  scratch = await mkdtemp(path.join(os.tmpdir(), 'pickscore-source-hash-'));
});
after(async () => {
  await rm(scratch, { recursive: true, force: true });
});

async function expectedSourceFiles(): Promise<ModelManifest['source']['files']> {
  return Promise.all(['config.json', 'model.safetensors'].map(async (name) => {
    const bytes = await readFile(path.join(tinyClip, name));
    return { name, size: bytes.length, sha256: createHash('sha256').update(bytes).digest('hex') };
  }));
}

describe('source hashes', { skip: skipWithoutReference }, () => {
  test('the manifest lists every source file with its size and SHA-256, and progress reaches the total', async () => {
    const seen: [number, number][] = [];
    const manifest = await convertCheckpoint(tinyClip, { outDir: path.join(scratch, 'here'), precision: 'fp32', tokenizerDir, onProgress: (d, t) => seen.push([d, t]) });
    assert.deepEqual(manifest.source.files, await expectedSourceFiles());
    assert.deepEqual(seen.at(-1), [seen[0][1], seen[0][1]]);
  });

  test('hashing works when the converter runs from `node --input-type=module -e`', async () => {
    const convertModule = new URL('../src/convert/convert.js', import.meta.url).href;
    const outDir = path.join(scratch, 'eval');
    const script = `
      const { convertCheckpoint } = await import(${JSON.stringify(convertModule)});
      const manifest = await convertCheckpoint(${JSON.stringify(tinyClip)}, { outDir: ${JSON.stringify(outDir)}, precision: 'fp32', tokenizerDir: ${JSON.stringify(tokenizerDir)} });
      process.stdout.write(JSON.stringify(manifest.source.files));
    `;
    const { stdout } = await promisify(execFile)(process.execPath, ['--input-type=module', '-e', script]);
    assert.deepEqual(JSON.parse(stdout), await expectedSourceFiles());
  });
});
