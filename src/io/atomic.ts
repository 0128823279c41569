/**
 * Atomic output files. Data goes to a temporary file in the target's folder (so the final rename
 * stays on one filesystem), is fsynced, and only then renamed over the target. A failed or aborted
 * write removes the temporary file and leaves any previous file at the target untouched, so a reader
 * never sees a truncated output.
 */
import { open, rename, unlink, type FileHandle } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { InputError, errorMessage } from '../errors.js';

/** The few filesystem calls an atomic write makes; tests inject failures (ENOSPC) through this. */
export interface AtomicFs {
  open(file: string): Promise<AtomicFileHandle>;
  rename(from: string, to: string): Promise<void>;
  unlink(file: string): Promise<void>;
  /** fsync of a folder, so the rename itself survives a crash; best effort. */
  syncDir(dir: string): Promise<void>;
}

export interface AtomicFileHandle {
  write(data: Uint8Array): Promise<void>;
  sync(): Promise<void>;
  close(): Promise<void>;
}

export const nodeAtomicFs: AtomicFs = {
  async open(file) {
    // 'wx': the temporary name is random, so an existing file there means something else owns it.
    const handle = await open(file, 'wx', 0o666);
    return fileHandleAdapter(handle);
  },
  rename: (from, to) => rename(from, to),
  unlink: (file) => unlink(file),
  async syncDir(dir) {
    let handle: FileHandle | undefined;
    try {
      handle = await open(dir, 'r');
      await handle.sync();
    } catch {
      // Some filesystems refuse fsync on a folder; the data file itself is already synced.
    } finally {
      await handle?.close().catch(() => undefined);
    }
  },
};

function fileHandleAdapter(handle: FileHandle): AtomicFileHandle {
  return {
    async write(data) {
      let offset = 0;
      while (offset < data.length) {
        const { bytesWritten } = await handle.write(data, offset, data.length - offset);
        offset += bytesWritten;
      }
    },
    sync: () => handle.sync(),
    close: () => handle.close(),
  };
}

/** Writes are gathered up to this size, so many small rows cost few system calls. */
const FLUSH_BYTES = 64 * 1024;

/**
 * A file that appears at `target` only when `commit()` succeeds. Write with `write()` as often as
 * needed; call `abort()` on any failure path (it is safe to call after a failed commit, or twice).
 */
export class AtomicFileWriter {
  private pending: Uint8Array[] = [];
  private pendingBytes = 0;
  private state: 'open' | 'committed' | 'aborted' = 'open';

  private constructor(
    readonly target: string,
    readonly tempPath: string,
    private readonly handle: AtomicFileHandle,
    private readonly fs: AtomicFs,
  ) {}

  static async open(target: string, opts: { fs?: AtomicFs } = {}): Promise<AtomicFileWriter> {
    const fs = opts.fs ?? nodeAtomicFs;
    const tempPath = temporaryPathFor(target);
    let handle: AtomicFileHandle;
    try {
      handle = await fs.open(tempPath);
    } catch (err) {
      throw outputError(target, err);
    }
    return new AtomicFileWriter(target, tempPath, handle, fs);
  }

  async write(data: string | Uint8Array): Promise<void> {
    this.assertOpen();
    const bytes = typeof data === 'string' ? Buffer.from(data, 'utf8') : data;
    this.pending.push(bytes);
    this.pendingBytes += bytes.length;
    if (this.pendingBytes >= FLUSH_BYTES) await this.guard(() => this.flush());
  }

  /** Flushes, fsyncs and renames over the target. On failure the temporary file is removed. */
  async commit(): Promise<void> {
    this.assertOpen();
    await this.guard(async () => {
      await this.flush();
      await this.handle.sync();
      await this.handle.close();
      await this.fs.rename(this.tempPath, this.target);
    });
    this.state = 'committed';
    await this.fs.syncDir(path.dirname(path.resolve(this.target)));
  }

  /** Drops everything written; the target is not touched. */
  async abort(): Promise<void> {
    if (this.state !== 'open') return;
    this.state = 'aborted';
    this.pending = [];
    await this.handle.close().catch(() => undefined);
    await this.fs.unlink(this.tempPath).catch(() => undefined);
  }

  private async flush(): Promise<void> {
    if (this.pendingBytes === 0) return;
    const chunk = Buffer.concat(this.pending, this.pendingBytes);
    this.pending = [];
    this.pendingBytes = 0;
    await this.handle.write(chunk);
  }

  /** Runs a filesystem step; any failure aborts (removing the temporary file) and names the target. */
  private async guard(step: () => Promise<void>): Promise<void> {
    try {
      await step();
    } catch (err) {
      await this.abort();
      throw outputError(this.target, err);
    }
  }

  private assertOpen(): void {
    if (this.state !== 'open') throw new InputError(`Output file ${this.target} was already ${this.state}`);
  }
}

/** Writes a whole file atomically: temp file in the same folder, fsync, rename. */
export async function writeFileAtomic(target: string, data: string | Uint8Array, opts: { fs?: AtomicFs } = {}): Promise<void> {
  const writer = await AtomicFileWriter.open(target, opts);
  try {
    await writer.write(data);
    await writer.commit();
  } catch (err) {
    await writer.abort();
    throw err;
  }
}

/** A hidden, unique name beside the target: same folder, so rename(2) is atomic. */
function temporaryPathFor(target: string): string {
  const dir = path.dirname(target);
  const base = path.basename(target);
  return path.join(dir, `.${base}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`);
}

const OUTPUT_ERROR_REASONS: Record<string, string> = {
  ENOSPC: 'no space left on the device',
  EDQUOT: 'disk quota exceeded',
  EACCES: 'permission denied',
  EPERM: 'operation not permitted',
  ENOENT: 'its folder does not exist',
  ENOTDIR: 'a part of its folder path is not a folder',
  EROFS: 'the filesystem is read-only',
  EISDIR: 'it is a folder',
  EIO: 'an I/O error occurred',
};

/** Why a write failed, in words, with the system's code: `its folder does not exist (ENOENT)`. */
export function describeWriteError(err: unknown): string {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  const reason = (code && OUTPUT_ERROR_REASONS[code]) ?? errorMessage(err);
  return code ? `${reason} (${code})` : reason;
}

/** Every filesystem failure while writing an output becomes an InputError that names the output file. */
function outputError(target: string, err: unknown): InputError {
  if (err instanceof InputError) return err;
  return new InputError(`Cannot write output file ${target}: ${describeWriteError(err)}; any previous file there is unchanged`, { cause: err });
}
