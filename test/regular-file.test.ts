/**
 * The one reader every whole-file read goes through: FIFOs, devices and folders are refused on the
 * open handle without blocking, and no read takes more memory than its limit, whatever the file claims.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdir, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { FileReadError, formatSize, readFailureText, readRegularFile, readRegularFileSync, readRegularTextFile } from '../src/io/regular-file.js';
import { withTempDir } from './helpers/temp-dir.js';

async function refusal(file: string | Buffer, maxBytes = 1024): Promise<FileReadError> {
  try {
    await readRegularFile(file, maxBytes, 'a test file');
  } catch (err) {
    assert.ok(err instanceof FileReadError, String(err));
    return err;
  }
  assert.fail(`${String(file)} was read`);
}

test('a FIFO (no writer, so a blocking open would wait forever), /dev/zero, a link to it and a folder are refused', async () => {
  await withTempDir('regular-file', async (dir) => {
    execFileSync('mkfifo', [path.join(dir, 'fifo')]);
    await symlink('/dev/zero', path.join(dir, 'zero.png'));
    await mkdir(path.join(dir, 'folder'));
    for (const name of ['fifo', 'zero.png']) {
      const err = await refusal(path.join(dir, name));
      assert.equal(err.reason, 'not a regular file (a FIFO, socket or device)', name);
      assert.equal(readFailureText(err), err.reason);
    }
    assert.equal((await refusal('/dev/zero')).reason, 'not a regular file (a FIFO, socket or device)');
    assert.equal((await refusal(path.join(dir, 'folder'))).reason, 'it is a directory');
    const missing = await refusal(path.join(dir, 'nope'));
    assert.equal(missing.reason, 'no such file');
    assert.equal(readFailureText(missing), 'ENOENT');
  });
});

test('a file over the limit is refused by its size; one at the limit is read whole; a name in bytes opens', async () => {
  await withTempDir('regular-file', async (dir) => {
    await writeFile(path.join(dir, 'big'), Buffer.alloc(1025, 1));
    await writeFile(path.join(dir, 'fits'), Buffer.alloc(1024, 2));
    assert.equal((await refusal(path.join(dir, 'big'))).reason, 'too large: 1025 bytes, over the limit of 1 KiB for a test file');
    assert.deepEqual(await readRegularFile(path.join(dir, 'fits'), 1024, 'a test file'), Buffer.alloc(1024, 2));
    const raw = Buffer.concat([Buffer.from(`${dir}/caf`), Buffer.from([0xe9])]);
    await writeFile(raw, 'latin-1 name');
    assert.equal(await readRegularTextFile(raw, 1024, 'a test file'), 'latin-1 name');
    assert.equal(await readRegularTextFile(new Uint8Array(raw), 1024, 'a test file'), 'latin-1 name');
  });
});

test('a file that reports size 0 but has content (/proc) is read, and stopped one byte past the limit', async () => {
  const status = await readRegularTextFile('/proc/self/status', 1 << 20, 'a test file');
  assert.match(status, /^Name:/);
  const err = await refusal('/proc/self/status', 16);
  assert.equal(err.reason, 'too large: more than 16 bytes, over the limit of 16 bytes for a test file');
  // The synchronous reader (the image pool's) grows its buffer and stops at the same byte.
  assert.match(readRegularFileSync('/proc/self/status', 1 << 20, 'a test file').toString('utf8'), /^Name:/);
  assert.throws(() => readRegularFileSync('/proc/self/status', 16, 'a test file'),
    (thrown: unknown) => thrown instanceof FileReadError && thrown.reason === 'too large: more than 16 bytes, over the limit of 16 bytes for a test file');
  assert.throws(() => readRegularFileSync('/dev/zero', 16, 'a test file'), (thrown: unknown) => thrown instanceof FileReadError && /not a regular file/.test(thrown.reason));
});

test('sizes in messages are exact, with a binary unit when it is a round one', () => {
  assert.deepEqual([formatSize(1 << 30), formatSize(4 << 20), formatSize(1536), formatSize(0x1fff_ffe8)], ['1 GiB', '4 MiB', '1536 bytes', '536870888 bytes']);
});
