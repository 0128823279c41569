import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { lstat, readFile, readdir, readlink, stat, symlink, writeFile, mkdir } from 'node:fs/promises';
import { createServer } from 'node:net';
import path from 'node:path';
import { AtomicFileWriter, checkOutputWritable, nodeAtomicFs, openOutputFile, planOutput, writeFileAtomic, type AtomicFs } from '../src/io/atomic.js';
import { InputError } from '../src/errors.js';
import { makeTempDir, removeTempDirs } from './helpers/hub-temp.js';
import { spawnCollecting } from './helpers/pipe-cli.js';

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

/** A character device like /dev/null (1, 3) at `file`; needs root, as in the containers pickscore often runs in. */
function makeNullDevice(file: string): boolean {
  try {
    execFileSync('mknod', [file, 'c', '1', '3'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

const rootOnly = process.getuid?.() === 0 ? false : 'mknod needs root';

test('a character device at the target is written through, never renamed over', { skip: rootOnly }, async () => {
  const dir = await tempDir();
  const device = path.join(dir, 'null');
  assert.ok(makeNullDevice(device), 'mknod');
  await writeFileAtomic(device, 'rows\n');
  const after = await lstat(device);
  assert.ok(after.isCharacterDevice(), 'still a device, not a 5-byte file');
  assert.equal(after.rdev, (await stat('/dev/null')).rdev);
  assert.deepEqual(await readdir(dir), ['null'], 'no temporary file beside it');
  assert.deepEqual(await planOutput(device), { kind: 'in-place', file: device, what: 'a character device' });
});

test('a FIFO at the target is written through to its reader and stays a FIFO', async () => {
  const dir = await tempDir();
  const fifo = path.join(dir, 'rows.csv');
  execFileSync('mkfifo', [fifo]);
  const reader = spawnCollecting('cat', [fifo], { cwd: dir, env: process.env });
  await writeFileAtomic(fifo, 'a,b\n1,2\n');
  assert.equal((await reader.done).stdout, 'a,b\n1,2\n');
  assert.ok((await lstat(fifo)).isFIFO());
  assert.deepEqual(await readdir(dir), ['rows.csv']);
});

test('a symlink to a file keeps the link and replaces the file it names, beside that file', async () => {
  const dir = await tempDir();
  await mkdir(path.join(dir, 'real'));
  await mkdir(path.join(dir, 'links'));
  const real = path.join(dir, 'real', 'ranking.csv');
  await writeFile(real, 'old\n');
  const link = path.join(dir, 'links', 'latest.csv');
  const chained = path.join(dir, 'links', 'chained.csv');
  await symlink('../real/ranking.csv', link);
  await symlink('latest.csv', chained);
  const writer = await openOutputFile(chained);
  assert.ok(writer instanceof AtomicFileWriter);
  assert.equal(path.dirname(writer.tempPath), path.join(dir, 'real'), 'the temporary file is beside the real file, so the rename is atomic');
  await writer.write('new\n');
  await writer.commit();
  assert.equal(await readlink(link), '../real/ranking.csv');
  assert.equal(await readlink(chained), 'latest.csv');
  assert.equal(await readFile(real, 'utf8'), 'new\n');
  assert.deepEqual(await readdir(path.join(dir, 'real')), ['ranking.csv']);
  assert.deepEqual((await readdir(path.join(dir, 'links'))).sort(), ['chained.csv', 'latest.csv']);

  // A link whose file does not exist yet: the file is created where it points, and the link stays.
  const dangling = path.join(dir, 'links', 'next.csv');
  await symlink('../real/next.csv', dangling);
  await writeFileAtomic(dangling, 'first\n');
  assert.ok((await lstat(dangling)).isSymbolicLink());
  assert.equal(await readFile(path.join(dir, 'real', 'next.csv'), 'utf8'), 'first\n');
});

test('a symlink loop, a folder or a socket at the target is refused, naming it, and nothing is written', async () => {
  const dir = await tempDir();
  const loop = path.join(dir, 'loop.csv');
  await symlink('loop.csv', loop);
  await assert.rejects(writeFileAtomic(loop, 'x'), (e: unknown) => e instanceof InputError && /loop\.csv: its symbolic links form a loop \(ELOOP\)/.test(e.message));
  const server = createServer();
  const socket = path.join(dir, 'sock.csv');
  await new Promise<void>((resolve) => server.listen(socket, resolve));
  try {
    await assert.rejects(writeFileAtomic(socket, 'x'), (e: unknown) => e instanceof InputError && /sock\.csv: it is a socket/.test(e.message));
    await assert.rejects(checkOutputWritable(socket), (e: unknown) => e instanceof InputError && /it is a socket/.test(e.message));
  } finally {
    await new Promise((resolve) => server.close(resolve));
  }
  assert.deepEqual((await readdir(dir)).sort(), ['loop.csv']);
});

test('checkOutputWritable reports a missing folder, a folder, or a file in the folder path before any work, and creates nothing', async () => {
  const dir = await tempDir();
  await writeFile(path.join(dir, 'file'), 'x');
  await mkdir(path.join(dir, 'folder'));
  const cases: [string, RegExp][] = [
    [path.join(dir, 'missing', 'out.csv'), /missing\/out\.csv: its folder does not exist \(ENOENT\)/],
    [path.join(dir, 'folder'), /folder: it is a folder \(EISDIR\)/],
    [path.join(dir, 'file', 'out.csv'), /file\/out\.csv: a part of its folder path is not a folder \(ENOTDIR\)/],
  ];
  for (const [target, message] of cases) {
    await assert.rejects(checkOutputWritable(target), (e: unknown) => e instanceof InputError && message.test(e.message), target);
  }
  await checkOutputWritable(path.join(dir, 'new.csv'));
  await checkOutputWritable(path.join(dir, 'file'));
  await checkOutputWritable('/dev/null');
  assert.deepEqual((await readdir(dir)).sort(), ['file', 'folder']);
});
