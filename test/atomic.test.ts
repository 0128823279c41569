import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, readdir, writeFile, mkdir } from 'node:fs/promises';
import path from 'node:path';
import { AtomicFileWriter, nodeAtomicFs, writeFileAtomic, type AtomicFs } from '../src/io/atomic.js';
import { InputError } from '../src/errors.js';
import { makeTempDir, removeTempDirs } from './helpers/hub-temp.js';

after(removeTempDirs);

const tempDir = (): Promise<string> => makeTempDir('atomic');

function enospc(): NodeJS.ErrnoException {
  return Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' });
}

/** The real filesystem, except that writes fail with ENOSPC once `allowedBytes` have been written. */
function diskThatFillsAfter(allowedBytes: number): AtomicFs {
  return {
    ...nodeAtomicFs,
    async open(file) {
      const handle = await nodeAtomicFs.open(file);
      let written = 0;
      return {
        async write(data) {
          if (written + data.length > allowedBytes) {
            await handle.write(data.subarray(0, allowedBytes - written)); // a partial write, as a full disk gives
            written = allowedBytes;
            throw enospc();
          }
          written += data.length;
          await handle.write(data);
        },
        sync: () => handle.sync(),
        close: () => handle.close(),
      };
    },
  };
}

test('writeFileAtomic creates the file and leaves no temporary file behind', async () => {
  const dir = await tempDir();
  const target = path.join(dir, 'out.json');
  await writeFileAtomic(target, '{"a":1}\n');
  assert.equal(await readFile(target, 'utf8'), '{"a":1}\n');
  assert.deepEqual(await readdir(dir), ['out.json']);
});

test('writeFileAtomic replaces a previous file and accepts bytes', async () => {
  const dir = await tempDir();
  const target = path.join(dir, 'out.bin');
  await writeFile(target, 'old');
  await writeFileAtomic(target, new Uint8Array([1, 2, 3]));
  assert.deepEqual([...(await readFile(target))], [1, 2, 3]);
  assert.deepEqual(await readdir(dir), ['out.bin']);
});

test('a full disk (ENOSPC) is an InputError naming the output, and the previous file is untouched', async () => {
  const dir = await tempDir();
  const target = path.join(dir, 'ranking.csv');
  await writeFile(target, 'previous complete output\n');
  const err = await writeFileAtomic(target, 'x'.repeat(10_000), { fs: diskThatFillsAfter(100) }).then(
    () => assert.fail('expected ENOSPC to reject'),
    (e: unknown) => e,
  );
  assert.ok(err instanceof InputError);
  assert.match(err.message, /ranking\.csv/);
  assert.match(err.message, /no space left/);
  assert.match(err.message, /ENOSPC/);
  assert.equal(await readFile(target, 'utf8'), 'previous complete output\n');
  assert.deepEqual(await readdir(dir), ['ranking.csv']);
});

test('AtomicFileWriter streams large outputs in chunks; ENOSPC mid-way removes the temporary file', async () => {
  const dir = await tempDir();
  const target = path.join(dir, 'big.jsonl');
  const writer = await AtomicFileWriter.open(target, { fs: diskThatFillsAfter(200_000) });
  const line = `${JSON.stringify({ path: 'imgs/a.png', score: 21.5 })}\n`;
  let failure: unknown;
  try {
    for (let i = 0; i < 20_000; i++) await writer.write(line);
  } catch (e) {
    failure = e;
  }
  assert.ok(failure instanceof InputError, 'the write that hits the full disk rejects');
  assert.match(failure.message, /big\.jsonl/);
  assert.deepEqual(await readdir(dir), [], 'neither the target nor the temporary file exists');
  await writer.abort(); // a second abort after the failure is harmless
});

test('before commit only a hidden temporary file exists; commit renames it over the target', async () => {
  const dir = await tempDir();
  const target = path.join(dir, 'out.md');
  await writeFile(target, 'old');
  const writer = await AtomicFileWriter.open(target);
  await writer.write('new ');
  await writer.write(Buffer.from('content'));
  const during = await readdir(dir);
  assert.equal(during.length, 2);
  assert.ok(during.some((name) => name.startsWith('.out.md.') && name.endsWith('.tmp')));
  assert.equal(await readFile(target, 'utf8'), 'old');
  await writer.commit();
  assert.equal(await readFile(target, 'utf8'), 'new content');
  assert.deepEqual(await readdir(dir), ['out.md']);
});

test('abort keeps the previous file and removes the temporary one', async () => {
  const dir = await tempDir();
  const target = path.join(dir, 'out.html');
  await writeFile(target, 'previous');
  const writer = await AtomicFileWriter.open(target);
  await writer.write('partial');
  await writer.abort();
  assert.equal(await readFile(target, 'utf8'), 'previous');
  assert.deepEqual(await readdir(dir), ['out.html']);
  await assert.rejects(writer.write('more'), /already aborted/);
});

test('a failing fsync or rename also leaves the previous file and no temporary file', async () => {
  for (const failing of ['sync', 'rename'] as const) {
    const dir = await tempDir();
    const target = path.join(dir, 'out.json');
    await writeFile(target, 'previous');
    const fs: AtomicFs = {
      ...nodeAtomicFs,
      async open(file) {
        const handle = await nodeAtomicFs.open(file);
        return failing === 'sync' ? { ...handle, sync: async () => Promise.reject(enospc()) } : handle;
      },
      rename: failing === 'rename' ? async () => Promise.reject(Object.assign(new Error('EIO'), { code: 'EIO' })) : nodeAtomicFs.rename,
    };
    await assert.rejects(writeFileAtomic(target, 'new', { fs }), (e: unknown) => e instanceof InputError && e.message.includes(target));
    assert.equal(await readFile(target, 'utf8'), 'previous', failing);
    assert.deepEqual(await readdir(dir), ['out.json'], failing);
  }
});

test('a missing output folder or a folder at the target path is a clear InputError', async () => {
  const dir = await tempDir();
  await assert.rejects(writeFileAtomic(path.join(dir, 'no-such-folder', 'out.csv'), 'x'), (e: unknown) =>
    e instanceof InputError && /no-such-folder\/out\.csv: its folder does not exist \(ENOENT\)/.test(e.message),
  );
  await mkdir(path.join(dir, 'taken'));
  await assert.rejects(writeFileAtomic(path.join(dir, 'taken'), 'x'), (e: unknown) => e instanceof InputError && e.message.includes('taken'));
  assert.deepEqual((await readdir(dir)).sort(), ['taken']);
});
