import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { PickScore, InputError, UsageError } from '../src/index.js';
import { decodeImage } from '../src/image/codec.js';
import { referenceDir, skipWithoutReference } from './helpers/paths.js';
import { tinyModel } from './helpers/tiny-model.js';
import { withTempDir } from './helpers/temp-dir.js';

interface Reference { prompts: { prompt: string }[]; images: { image: string; orientation: string }[]; scores: { values: number[][] } }

const SCORE_TOLERANCE = 0.01;

test('PickScore: score, probs, embeddings and rank agree with the reference and with each other', { skip: skipWithoutReference }, async () => {
  const reference = JSON.parse(await readFile(path.join(referenceDir, 'reference.json'), 'utf8')) as Reference;
  const names = ['astronaut.jpg', 'coffee.png', 'chelsea.webp'];
  const columns = names.map((name) => reference.images.findIndex((i) => i.image === name && i.orientation === 'raw'));
  const prompt = reference.prompts[0].prompt;
  const files = names.map((name) => path.join(referenceDir, 'images', name));

  const scorer = await PickScore.load({ model: await tinyModel(), device: 'cpu', exif: 'ignore', cacheDir: false, threads: 2 });
  try {
    const scores = await scorer.score(prompt, files);
    scores.forEach((score, i) => assert.ok(Math.abs(score - reference.scores.values[0][columns[i]]) <= SCORE_TOLERANCE, `${names[i]}: ${score}`));

    const probs = await scorer.probs(prompt, files);
    const z = scores.reduce((sum, s) => sum + Math.exp(s), 0);
    probs.forEach((p, i) => assert.ok(Math.abs(p - Math.exp(scores[i]) / z) < 1e-12));

    // A Buffer of the file and the decoded RGB pixels give the score of the path.
    const bytes = await readFile(files[1]);
    const rgb = await decodeImage(bytes, { exif: 'ignore', maxPixels: 1e8 });
    const [fromBuffer, fromRgb] = await scorer.score(prompt, [bytes, { data: rgb.data, width: rgb.width, height: rgb.height }]);
    assert.equal(fromBuffer, scores[1]);
    assert.ok(Math.abs(fromRgb - scores[1]) < 1e-6);
    const [fromClamped] = await scorer.score(prompt, [{ data: new Uint8ClampedArray(rgb.data), width: rgb.width, height: rgb.height }]);
    assert.equal(fromClamped, fromRgb);

    // score = logit_scale * (text . image) on the normalised embeddings.
    const [text] = await scorer.embedTexts([prompt]);
    const images = await scorer.embedImages(files);
    images.forEach((image, i) => {
      const dot = image.reduce((sum, v, k) => sum + v * text[k], 0);
      assert.ok(Math.abs(scorer.logitScale * dot - scores[i]) < 1e-4);
    });

    const rows = [];
    for await (const row of scorer.rank(files, { prompts: [prompt] })) rows.push(row);
    assert.deepEqual(rows.map((r) => r.rank), [1, 2, 3]);
    const best = Math.max(...scores);
    assert.equal(rows[0].score, best);

    await assert.rejects(scorer.score(prompt, [Buffer.from('not an image')]), InputError);
    await assert.rejects(scorer.score(prompt, [42 as never]), UsageError);
    assert.equal(scorer.provenance().model, 'tiny-clip');
  } finally {
    await scorer.close();
  }
  await assert.rejects(scorer.score(prompt, files), UsageError, 'a closed scorer says so');
});

test('raw RGB pixels take the one preparation path: resize fast resizes them as it resizes a file, and their cache rows are their own', { skip: skipWithoutReference }, async () => {
  const bytes = await readFile(path.join(referenceDir, 'images', 'coffee.png'));
  const rgb = await decodeImage(bytes, { exif: 'ignore', maxPixels: 1e8 });
  const pixels = { data: rgb.data, width: rgb.width, height: rgb.height };
  const prompt = 'a cup of coffee';
  const scoresWith = async (resize: 'exact' | 'fast', cacheDir: string | false) => {
    const scorer = await PickScore.load({ model: await tinyModel(), device: 'cpu', exif: 'ignore', resize, cacheDir, threads: 1 });
    try {
      return await scorer.score(prompt, [bytes, pixels]);
    } finally {
      await scorer.close();
    }
  };
  const [exactFile, exactPixels] = await scoresWith('exact', false);
  const [fastFile, fastPixels] = await scoresWith('fast', false);
  assert.ok(Math.abs(exactPixels - exactFile) < 1e-6, 'exact: the pixels score as their file');
  assert.notEqual(fastFile, exactFile, 'the fast resize is another resize');
  assert.ok(Math.abs(fastPixels - fastFile) < 1e-6, `fast: the pixels score as their file (${fastPixels} vs ${fastFile}), not as the exact resize (${exactPixels})`);
  await withTempDir('api-cache', async (dir) => {
    const cacheDir = path.join(dir, 'cache');
    assert.deepEqual(await scoresWith('exact', cacheDir), [exactFile, exactPixels]);
    assert.deepEqual(await scoresWith('fast', cacheDir), [fastFile, fastPixels], 'a cached exact embedding is never served to a fast run');
  });
});
