/**
 * The reference tiny CLIP, converted to a pickscore model folder once and shared by every test file.
 *
 * Test files run in parallel processes, so the folder lives at a fixed path under os.tmpdir(), keyed by
 * a hash of the source checkpoint (its path and bytes), the tokenizer, pickscore's version and the converter's compiled
 * code (a converter change must not reuse an old conversion). It is converted into a private folder
 * and renamed into place; a process that loses the race uses the winner's folder.
 */
import { createHash } from 'node:crypto';
import { readdir, readFile, rename, rm, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { convertCheckpoint } from '../../src/convert/convert.js';
import { PICKSCORE_VERSION } from '../../src/version.js';
import { referenceDir } from './paths.js';

export const tinyClipDir = path.join(referenceDir, 'tiny-clip');
export const clipTokenizerDir = path.join(referenceDir, 'clip-tokenizer');

const converted = new Map<string, Promise<string>>();

/** The converted tiny CLIP's folder (fp32 unless asked otherwise), converting it on first use. */
export function tinyModel(precision: 'fp32' | 'fp16' | 'int8' = 'fp32'): Promise<string> {
  let dir = converted.get(precision);
  if (!dir) {
    dir = convertOnce(precision);
    converted.set(precision, dir);
  }
  return dir;
}

async function convertOnce(precision: 'fp32' | 'fp16' | 'int8'): Promise<string> {
  const key = await cacheKey(precision);
  const target = path.join(os.tmpdir(), `pickscore-test-tiny-clip-${key}`);
  if (await exists(path.join(target, 'pickscore-model.json'))) return target;
  const staging = `${target}.${process.pid}.${Date.now()}.tmp`;
  await convertCheckpoint(tinyClipDir, { outDir: staging, precision, tokenizerDir: clipTokenizerDir, name: 'tiny-clip' });
  try {
    await rename(staging, target);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== 'ENOTEMPTY' && code !== 'EEXIST') throw err;
    await rm(staging, { recursive: true, force: true });
  }
  return target;
}

async function cacheKey(precision: string): Promise<string> {
  // The folder records where it was converted from (messages name that checkpoint), so the source's
  // path is part of the key: a checkout elsewhere on the same machine converts its own.
  const hash = createHash('sha256').update(`${PICKSCORE_VERSION}\0${precision}\0${tinyClipDir}\0${clipTokenizerDir}\0`);
  for (const file of ['config.json', 'model.safetensors']) hash.update(await readFile(path.join(tinyClipDir, file)));
  for (const file of ['tokenizer.json', 'vocab.json', 'merges.txt']) hash.update(await readFile(path.join(clipTokenizerDir, file)));
  const converterDir = fileURLToPath(new URL('../../src/convert/', import.meta.url));
  for (const file of (await readdir(converterDir)).filter((f) => f.endsWith('.js')).sort()) {
    hash.update(file).update(await readFile(path.join(converterDir, file)));
  }
  hash.update(await readFile(fileURLToPath(new URL('../../src/model-format.js', import.meta.url))));
  return hash.digest('hex').slice(0, 16);
}

async function exists(file: string): Promise<boolean> {
  return stat(file).then(() => true, () => false);
}
