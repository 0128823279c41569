import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { Scorer, type ScoreRequest, type ScoredItem } from '../src/pipeline/scorer.js';
import { autoFallbackNotice } from '../src/pipeline/open-model.js';
import { ReadAheadWindow, groupConsecutive } from '../src/pipeline/window.js';
import { batchSizeFor } from '../src/pipeline/options.js';
import { encoderVariant } from '../src/model-format.js';
import { cudaProviderInstalled, cudaProviderProblem } from '../src/encoder/cuda-provider.js';
import { referenceDir, skipWithoutReference } from './helpers/paths.js';
import { tinyModel } from './helpers/tiny-model.js';
import { encodePng, gradientRgb } from './helpers/pipe-images.js';
import { withTempDir } from './helpers/temp-dir.js';
import { loadReference } from './helpers/graph-models.js';
import Database from 'better-sqlite3';
import { embeddingCachePath } from '../src/io/embedding-cache.js';

const SCORE_TOLERANCE = 0.01;

async function collect<T>(items: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const item of items) out.push(item);
  return out;
}


test('groupConsecutive keeps order and groups only neighbours with the same key', async () => {
  const groups = await collect(groupConsecutive(['a1', 'a2', 'b1', 'a3'], (s) => s[0]));
  assert.deepEqual(groups, [{ key: 'a', items: ['a1', 'a2'] }, { key: 'b', items: ['b1'] }, { key: 'a', items: ['a3'] }]);
});

test('ReadAheadWindow starts at most `capacity` items ahead of the consumer', async () => {
  let started = 0;
  let consumed = 0;
  let maxAhead = 0;
  async function* source(): AsyncGenerator<number> {
    for (let i = 0; i < 50; i++) yield i;
  }
  const window = new ReadAheadWindow(source(), (n: number) => {
    started++;
    maxAhead = Math.max(maxAhead, started - consumed);
    return n * 2;
  }, 4);
  const seen: number[] = [];
  for (let item = await window.next(); item !== undefined; item = await window.next()) {
    consumed++;
    seen.push(item);
  }
  assert.deepEqual(seen, Array.from({ length: 50 }, (_, i) => i * 2));
  assert.ok(maxAhead <= 5, `at most capacity + the one being handed over, got ${maxAhead}`);
});

test('Scorer matches the reference scores, keeps input order, and encodes each image and prompt once', { skip: skipWithoutReference }, async () => {
  const reference = await loadReference();
  const model = await tinyModel();
  const promptIndexes = [0, 3, 22]; // a short prompt, a long one, and one truncated at 77 tokens
  const raw = reference.images.map((image, column) => ({ ...image, column })).filter((image) => image.orientation === 'raw');
  const requests: ScoreRequest[] = raw.flatMap((image) =>
    promptIndexes.map((p) => ({ prompt: reference.prompts[p].prompt, image: { path: path.join(referenceDir, 'images', image.image) }, key: image.image })));
  await withTempDir('pipe', async (cacheDir) => {
    const warnings: string[] = [];
    const scorer = await Scorer.open({ model, device: 'cpu', exif: 'ignore', batchSize: 3, threads: 2, cacheDir, log: (l) => warnings.push(l) });
    try {
      const items = await collect(scorer.scoreStream(requests));
      assert.deepEqual(items.map((i) => [i.key, i.prompt]), requests.map((r) => [r.key, r.prompt]));
      items.forEach((item, n) => {
        const image = raw[Math.floor(n / promptIndexes.length)];
        const expected = reference.scores.values[promptIndexes[n % promptIndexes.length]][image.column];
        assert.equal(item.error, null);
        assert.ok(Math.abs((item.score as number) - expected) <= SCORE_TOLERANCE, `${item.key} / ${item.prompt.slice(0, 30)}: ${item.score} vs ${expected}`);
      });
      const stats = scorer.stats();
      assert.equal(stats.imagesEncoded, raw.length);
      assert.equal(stats.imageEncoderCalls, Math.ceil(raw.length / 3));
      assert.equal(stats.textsEncoded, promptIndexes.length);
      assert.equal(warnings.filter((w) => /134 tokens/.test(w)).length, 1, `one truncation warning: ${warnings.join('\n')}`);
      assert.equal(scorer.provenance().exif, 'ignore');
    } finally {
      await scorer.close();
    }

    const again = await Scorer.open({ model, device: 'cpu', exif: 'ignore', batchSize: 3, threads: 2, cacheDir });
    try {
      await collect(again.scoreStream(requests));
      const stats = again.stats();
      assert.equal(stats.imagesEncoded, 0, 'a rerun takes every image embedding from the cache');
      assert.equal(stats.imageCacheHits, raw.length);
      assert.equal(stats.textsEncoded, 0);
      assert.equal(stats.textCacheHits, promptIndexes.length);
    } finally {
      await again.close();
    }
  });
});

test('Scorer turns a bad image into an error item and scores the rest; paths, bytes and raw RGB agree', { skip: skipWithoutReference }, async () => {
  const model = await tinyModel();
  const rgb = gradientRgb(40, 30, 7);
  const png = encodePng(rgb, 40, 30);
  await withTempDir('pipe', async (dir) => {
    const file = path.join(dir, 'gradient.png');
    await writeFile(file, png);
    const scorer = await Scorer.open({ model, device: 'cpu', batchSize: 2, threads: 1, cacheDir: false });
    try {
      const prompt = 'a gradient';
      const items: ScoredItem[] = await collect(scorer.scoreStream([
        { prompt, image: { path: file }, key: 'path' },
        { prompt, image: { bytes: new Uint8Array([1, 2, 3, 4]), label: 'garbage.png' }, key: 'garbage' },
        { prompt, image: { bytes: png, label: 'bytes.png' }, key: 'bytes' },
        { prompt, image: { rgb: { data: rgb, width: 40, height: 30 }, label: 'raw' }, key: 'raw' },
      ]));
      assert.deepEqual(items.map((i) => i.key), ['path', 'garbage', 'bytes', 'raw']);
      assert.equal(items[1].score, null);
      assert.match(items[1].error ?? '', /\S/);
      const [fromPath, , fromBytes, fromRaw] = items.map((i) => i.score as number);
      assert.equal(fromBytes, fromPath);
      assert.ok(Math.abs(fromRaw - fromPath) < 1e-6, `raw ${fromRaw} vs path ${fromPath}`);
      assert.deepEqual([items[0].width, items[0].height], [40, 30]);
    } finally {
      await scorer.close();
    }
  });
});

// Batch k+1 is launched before batch k's results are yielded (so the encoder never waits for the
// consumer); an abort while batch 1 is consumed lets batch 2 finish its run but yields nothing of it.
test('an aborted stream stops after the batch being encoded', { skip: skipWithoutReference }, async () => {
  const model = await tinyModel();
  const images = ['astronaut.jpg', 'chelsea.webp', 'coffee.png', 'palette.gif', 'tiny-5x3.png', 'camera-gray.png'];
  const scorer = await Scorer.open({ model, device: 'cpu', batchSize: 2, threads: 2, cacheDir: false });
  try {
    const controller = new AbortController();
    const requests = images.map((image) => ({ prompt: 'x', image: { path: path.join(referenceDir, 'images', image) }, key: image }));
    const items = await collect(scorer.scoreStream(requests, { signal: controller.signal, onProgress: () => controller.abort() }));
    assert.deepEqual(items.map((i) => i.key), images.slice(0, 2));
    assert.equal(scorer.stats().imageEncoderCalls, 2);
  } finally {
    await scorer.close();
  }
});

test('Scorer.open rejects bad options before touching the model', async () => {
  await assert.rejects(Scorer.open({ batchSize: 0 }), { name: 'UsageError', message: /positive integer for batchSize but received number 0/ });
  await assert.rejects(Scorer.open({ device: 'tpu' as never }), { name: 'UsageError', message: /device/ });
});

test('embedTexts returns one normalised row per prompt, duplicates included, and matches prompt by prompt', { skip: skipWithoutReference }, async () => {
  const scorer = await Scorer.open({ model: await tinyModel(), device: 'cpu', threads: 1, cacheDir: false });
  try {
    const together = await scorer.embedTexts(['a cat', 'a dog', 'a cat']);
    const dim = scorer.dimension;
    assert.equal(together.length, 3 * dim);
    assert.deepEqual(together.subarray(0, dim), together.subarray(2 * dim, 3 * dim));
    const dog = await scorer.embedTexts(['a dog']);
    assert.deepEqual(dog, together.slice(dim, 2 * dim));
    const norm = Math.hypot(...together.subarray(0, dim));
    assert.ok(Math.abs(norm - 1) < 1e-5, `norm ${norm}`);
    assert.equal(scorer.stats().textsEncoded, 2);
  } finally {
    await scorer.close();
  }
});

test('concurrent streams on one Scorer each get their own batch buffers and the reference scores', { skip: skipWithoutReference }, async () => {
  const reference = await loadReference();
  const model = await tinyModel();
  const raw = reference.images.map((image, column) => ({ ...image, column })).filter((image) => image.orientation === 'raw');
  const requestsFor = (p: number): ScoreRequest[] => raw.map((image) =>
    ({ prompt: reference.prompts[p].prompt, image: { path: path.join(referenceDir, 'images', image.image) }, key: image.image }));
  // No cache, so both streams really encode and would overwrite each other's pixels if they shared a buffer.
  const scorer = await Scorer.open({ model, device: 'cpu', exif: 'ignore', batchSize: 2, threads: 2, cacheDir: false });
  try {
    // Reversed image order in the second stream, so a shared buffer would mix different images.
    const [first, second] = await Promise.all([collect(scorer.scoreStream(requestsFor(0))), collect(scorer.scoreStream(requestsFor(5).reverse()))]);
    const check = (items: ScoredItem[], p: number): void => {
      for (const item of items) {
        const column = raw.find((image) => image.image === item.key)?.column as number;
        const expected = reference.scores.values[p][column];
        assert.ok(Math.abs((item.score as number) - expected) <= SCORE_TOLERANCE, `${item.key}: ${item.score} vs ${expected}`);
      }
    };
    check(first, 0);
    check(second, 5);
    assert.equal(scorer.stats().imagesEncoded, 2 * raw.length);
  } finally {
    await scorer.close();
  }
});

test('encoders suit the device: fp16 with fused attention and batches of 128 on CUDA, fp32 fused and 16 on CPU', () => {
  assert.deepEqual(encoderVariant('auto', true), { precision: 'fp16', attention: 'fused' });
  assert.deepEqual(encoderVariant('auto', false), { precision: 'fp32', attention: 'fused' });
  assert.deepEqual(encoderVariant('fp32', true), { precision: 'fp32', attention: 'plain' }, 'fp32 on CUDA stays plain ONNX');
  assert.deepEqual(encoderVariant('int8', false), { precision: 'int8', attention: 'fused' });
  assert.deepEqual(encoderVariant('fp16', false), { precision: 'fp16', attention: 'plain' }, 'fp16 on the CPU stays plain ONNX');
  assert.equal(batchSizeFor(undefined, true), 128);
  assert.equal(batchSizeFor(undefined, false), 16);
  assert.equal(batchSizeFor(7, true), 7);
});

test('without the CUDA provider libraries, the reason names the missing files and where they were looked for', async () => {
  await withTempDir('pipe', async (emptyBindingDir) => {
    const problem = cudaProviderProblem(emptyBindingDir);
    assert.match(problem ?? '', /libonnxruntime_providers_shared\.so and libonnxruntime_providers_cuda\.so missing in /);
    assert.ok(problem?.includes(emptyBindingDir));
  });
});

test('--device auto ending on the CPU warns where the CUDA provider loads, informs where it cannot, and says one short line where it is not installed', () => {
  const fellBack = { executionProvider: 'CPUExecutionProvider', fallbackReason: 'CUDA unavailable, using CPU: no CUDA-capable device is detected' };
  assert.equal(autoFallbackNotice(fellBack, 'loads'), 'warning: device auto: using CPUExecutionProvider (CUDA unavailable, using CPU: no CUDA-capable device is detected)');
  assert.equal(autoFallbackNotice(fellBack, 'unloadable'), 'device auto: using CPUExecutionProvider (CUDA unavailable, using CPU: no CUDA-capable device is detected)');
  const notInstalled = { executionProvider: 'CPUExecutionProvider', fallbackReason: `CUDA unavailable, using CPU: ${cudaProviderProblem('/nonexistent')}` };
  const short = autoFallbackNotice(notInstalled, 'absent') ?? '';
  assert.equal(short, "device auto: using the CPU (onnxruntime-node's CUDA provider is not installed)");
  assert.ok(short.length <= 80, `one line on an 80-column terminal: ${short.length} characters`);
  assert.equal(autoFallbackNotice({ executionProvider: 'CUDAExecutionProvider' }, 'loads'), undefined);
  assert.equal(cudaProviderInstalled('/nonexistent'), false);
});

test('a cached rerun reads and hashes each image and decodes none; its items equal the first run\'s, sizes included', { skip: skipWithoutReference }, async () => {
  const model = await tinyModel();
  const png = encodePng(gradientRgb(40, 30, 3), 40, 30);
  const rgb = gradientRgb(20, 10, 9);
  const reference = (name: string) => ({ path: path.join(referenceDir, 'images', name) });
  // EXIF orientation 6 (640x427 stored, 427x640 shown), a tall and a wide image, a grey one, duplicates
  // apart and together, the caller's bytes and raw pixels, an undecodable file and a missing one.
  const images = [
    reference('rocket-exif6.jpg'), reference('tall-300x900.png'), reference('wide-1600x400.jpg'), reference('camera-gray.png'),
    reference('coffee.png'), { bytes: png, label: 'bytes.png' }, reference('coffee.png'), reference('coffee.png'),
    { rgb: { data: rgb, width: 20, height: 10 }, label: 'raw' }, { bytes: new Uint8Array([1, 2, 3]), label: 'junk.png' },
    reference('no-such-file.png'), reference('chelsea.webp'),
  ];
  const requests: ScoreRequest[] = images.flatMap((image, i) => ['a rocket', 'a cat'].map((prompt) => ({ prompt, image, key: String(i) })));
  await withTempDir('pipe', async (cacheDir) => {
    const run = async () => {
      const scorer = await Scorer.open({ model, device: 'cpu', batchSize: 2, threads: 2, cacheDir });
      try {
        return { items: await collect(scorer.scoreStream(requests)), stats: scorer.stats() };
      } finally {
        await scorer.close();
      }
    };
    const first = await run();
    assert.deepEqual([first.items[0].width, first.items[0].height], [427, 640], 'the size as shown, after EXIF');
    assert.equal(first.items.filter((i) => i.error !== null).length, 4, 'junk and the missing file, for two prompts each');
    assert.equal(first.stats.imagesDecoded, 10, 'every image but the missing one, neighbouring duplicates once');

    const second = await run();
    assert.deepEqual(second.items, first.items, 'the same items, scores, sizes, hashes and errors');
    assert.equal(second.stats.imagesDecoded, 1, 'only the undecodable file, which has no embedding to cache');
    assert.equal(second.stats.imagesEncoded, 0);
    assert.equal(second.stats.imageCacheHits, 9);

    // Rows written before the cache held image sizes (or by an older pickscore) have none: misses, replaced.
    const db = new Database(embeddingCachePath(cacheDir));
    db.exec('UPDATE image_embeddings SET width = NULL, height = NULL');
    db.close();
    const third = await run();
    assert.deepEqual(third.items, first.items);
    assert.deepEqual([third.stats.imagesDecoded, third.stats.imageCacheHits], [10, 0]);
    const fourth = await run();
    assert.deepEqual([fourth.stats.imagesDecoded, fourth.stats.imageCacheHits], [1, 9]);
  });
});
