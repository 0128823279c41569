import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ThumbnailPrefetch } from '../src/io/thumbnail-prefetch.js';
import type { RankRecord } from '../src/io/writers/record.js';

function row(file: string): RankRecord {
  return { path: file, prompt: 'p', score: 1, prob: 1, rank: 1, width: 1, height: 1, error: null };
}

/** A thumbnail maker whose calls finish when the test says so. */
function controlledMaker(): { make: (file: string) => Promise<string>; calls: string[]; finish: (file: string, uri?: string) => void } {
  const calls: string[] = [];
  const pending = new Map<string, (uri: string) => void>();
  return {
    calls,
    make: (file) => {
      calls.push(file);
      return new Promise((resolve) => pending.set(file, resolve));
    },
    finish: (file, uri = `data:image/webp;base64,${file}`) => pending.get(file)!(uri),
  };
}

const settle = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

test('thumbnails of scored images are made during the run, two at a time, and handed to the gallery once', async () => {
  const maker = controlledMaker();
  const prefetch = new ThumbnailPrefetch(maker.make);
  for (const file of ['a.png', 'b.png', 'c.png', 'd.png']) prefetch.add(file);
  assert.deepEqual(maker.calls, ['a.png', 'b.png'], 'two at a time, in scoring order');
  maker.finish('a.png');
  await settle();
  assert.deepEqual(maker.calls, ['a.png', 'b.png', 'c.png'], 'the next starts when one finishes');
  prefetch.add('a.png');
  assert.equal(maker.calls.length, 3, 'an image is made once');

  // The write begins: what is ready is handed over, what is running is awaited, what waits is made on demand.
  assert.equal(await prefetch.thumbnail(row('a.png')), 'data:image/webp;base64,a.png');
  const b = prefetch.thumbnail(row('b.png'));
  maker.finish('b.png');
  assert.equal(await b, 'data:image/webp;base64,b.png');
  maker.finish('c.png');
  await settle();
  assert.deepEqual(maker.calls, ['a.png', 'b.png', 'c.png'], 'nothing new is prefetched once the write has begun');
  const d = prefetch.thumbnail(row('d.png'));
  assert.deepEqual(maker.calls, ['a.png', 'b.png', 'c.png', 'd.png'], 'made on demand');
  maker.finish('d.png');
  assert.equal(await d, 'data:image/webp;base64,d.png');
  const again = prefetch.thumbnail(row('a.png'));
  assert.equal(maker.calls.at(-1), 'a.png', 'handed over once: a second request makes it again');
  maker.finish('a.png');
  await again;
  prefetch.add('e.png');
  assert.equal(maker.calls.includes('e.png'), false, 'images scored after the write began are not prefetched');
});

test('prefetched thumbnails stop at 64 MB; a failed one reaches the gallery as a failure', async () => {
  const big = `data:image/webp;base64,${'A'.repeat(40 * 1024 * 1024)}`;
  const made: string[] = [];
  const prefetch = new ThumbnailPrefetch(async (file) => {
    made.push(file);
    if (file === 'bad.png') throw new Error('cannot decode');
    return big;
  });
  prefetch.add('bad.png');
  await settle();
  for (const file of ['a.png', 'b.png', 'c.png', 'd.png']) {
    prefetch.add(file);
    await settle();
  }
  assert.deepEqual(made, ['bad.png', 'a.png', 'b.png'], 'two 40 MB thumbnails pass the budget; no more are started');
  await assert.rejects(prefetch.thumbnail(row('bad.png')), /cannot decode/);
});
