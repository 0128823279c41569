/**
 * Output files. A regular file (new, or one to replace) is written atomically: data goes to a temporary
 * file in the target's folder (so the final rename stays on one filesystem), is fsynced, and only then
 * renamed over the target. A failed or aborted write removes the temporary file and leaves any previous
 * file at the target untouched, so a reader never sees a truncated output.
 *
 * What is at the path decides how it is written (planOutput). A symlink is followed, so the link stays
 * and the file it names is replaced, beside itself. Something that is not a regular file (a character
 * device such as /dev/null, a FIFO, /dev/stdout, a shell's `>(cat)`) is written in place, as a shell's
 * `>` would, and never renamed over: renaming a file over /dev/null would replace the device itself.
 */
import { access, lstat, open, readlink, realpath, rename, stat, unlink, type FileHandle } from 'node:fs/promises';
import { constants, unlinkSync, write as fsWrite } from 'node:fs';
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

/**
 * Temporary files of writes not yet committed or aborted. A process that exits in the middle of one
 * (a second Ctrl-C calls process.exit) removes them on the way out, so no `.name.<pid>.<hex>.tmp` is
 * left beside the output.
 */
const openTemporaryFiles = new Set<string>();
let removeOnExit = false;

function trackTemporaryFile(file: string): void {
  openTemporaryFiles.add(file);
  if (removeOnExit) return;
  removeOnExit = true;
  process.on('exit', () => {
    for (const temporary of openTemporaryFiles) {
      try {
        unlinkSync(temporary);
      } catch {
        // Already renamed into place, or removed.
      }
    }
  });
}

/** Writes are gathered up to this size, so many small rows cost few system calls. */
const FLUSH_BYTES = 64 * 1024;

/** Text and bytes gathered for one write call. */
class PendingBytes {
  private chunks: Uint8Array[] = [];
  private size = 0;

  /** Adds data; true once FLUSH_BYTES are gathered. */
  add(data: string | Uint8Array): boolean {
    const bytes = typeof data === 'string' ? Buffer.from(data, 'utf8') : data;
    this.chunks.push(bytes);
    this.size += bytes.length;
    return this.size >= FLUSH_BYTES;
  }

  /** Everything gathered, as one buffer (empty when nothing is), and nothing left. */
  take(): Buffer {
    const chunk = Buffer.concat(this.chunks, this.size);
    this.clear();
    return chunk;
  }

  clear(): void {
    this.chunks = [];
    this.size = 0;
  }
}

/** An output being written: `commit()` puts it in place, `abort()` gives it up (safe after a failed commit, or twice). */
export interface OutputFile {
  /** The path as the user gave it, which messages name. */
  readonly target: string;
  write(data: string | Uint8Array): Promise<void>;
  commit(): Promise<void>;
  abort(): Promise<void>;
}

/**
 * A file that appears at `target` only when `commit()` succeeds. Write with `write()` as often as
 * needed; call `abort()` on any failure path (it is safe to call after a failed commit, or twice).
 */
export class AtomicFileWriter implements OutputFile {
  private readonly pending = new PendingBytes();
  private state: 'open' | 'committed' | 'aborted' = 'open';

  private constructor(
    readonly target: string,
    /** The file renamed over: the target itself, or the file its symlinks lead to. */
    readonly file: string,
    readonly tempPath: string,
    private readonly handle: AtomicFileHandle,
    private readonly fs: AtomicFs,
  ) {}

  /** `file`: where the data goes when it is not `target` itself (the end of target's symlinks; see planOutput). */
  static async open(target: string, opts: { fs?: AtomicFs; file?: string } = {}): Promise<AtomicFileWriter> {
    const fs = opts.fs ?? nodeAtomicFs;
    const file = opts.file ?? target;
    const tempPath = temporaryPathFor(file);
    let handle: AtomicFileHandle;
    try {
      handle = await fs.open(tempPath);
    } catch (err) {
      throw outputError(target, err);
    }
    trackTemporaryFile(tempPath);
    return new AtomicFileWriter(target, file, tempPath, handle, fs);
  }

  async write(data: string | Uint8Array): Promise<void> {
    this.assertOpen();
    if (this.pending.add(data)) await this.guard(() => this.flush());
  }

  /** Flushes, fsyncs and renames over the target. On failure the temporary file is removed. */
  async commit(): Promise<void> {
    this.assertOpen();
    await this.guard(async () => {
      await this.flush();
      await this.handle.sync();
      await this.handle.close();
      await this.fs.rename(this.tempPath, this.file);
    });
    openTemporaryFiles.delete(this.tempPath);
    this.state = 'committed';
    await this.fs.syncDir(path.dirname(path.resolve(this.file)));
  }

  /** Drops everything written; the target is not touched. */
  async abort(): Promise<void> {
    if (this.state !== 'open') return;
    this.state = 'aborted';
    this.pending.clear();
    await this.handle.close().catch(() => undefined);
    await this.fs.unlink(this.tempPath).catch(() => undefined);
    openTemporaryFiles.delete(this.tempPath);
  }

  private async flush(): Promise<void> {
    const chunk = this.pending.take();
    if (chunk.length > 0) await this.handle.write(chunk);
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

/** Where in-place bytes go: a descriptor opened here (closed at the end), or one this process already holds. */
interface Descriptor {
  write(chunk: Buffer, offset: number): Promise<number>;
  close(): Promise<void>;
}

/**
 * Bytes written in place, to a FIFO, a character device or an open descriptor: as a stream, the way
 * stdout is written. Nothing is renamed, so the device or pipe stays what it is; `abort` stops writing,
 * but what a reader already took cannot be taken back.
 */
export class InPlaceFileWriter implements OutputFile {
  private readonly pending = new PendingBytes();
  private state: 'open' | 'committed' | 'aborted' = 'open';

  private constructor(readonly target: string, private readonly descriptor: Descriptor) {}

  /**
   * A descriptor of this process (/dev/stdout, /dev/fd/N) is written as it is: reopening a socket, which
   * is what a spawning program often hands over as stdout, fails (ENXIO). Anything else is opened to
   * append, without creating or truncating: a FIFO or device has nothing to truncate, and a descriptor
   * of another process that a shell opened for `>>` must not lose what it holds. Opening a FIFO waits
   * for its reader, as a shell's `>` does.
   */
  static async open(target: string, plan: Extract<OutputPlan, { kind: 'in-place' }>): Promise<InPlaceFileWriter> {
    if (plan.ownDescriptor !== undefined) return new InPlaceFileWriter(target, borrowedDescriptor(plan.ownDescriptor));
    try {
      const handle = await open(plan.file, constants.O_WRONLY | constants.O_APPEND);
      return new InPlaceFileWriter(target, {
        write: async (chunk, offset) => (await handle.write(chunk, offset, chunk.length - offset)).bytesWritten,
        close: () => handle.close(),
      });
    } catch (err) {
      throw outputError(target, err, 'in place');
    }
  }

  async write(data: string | Uint8Array): Promise<void> {
    this.assertOpen();
    if (this.pending.add(data)) await this.guard(() => this.flush());
  }

  async commit(): Promise<void> {
    this.assertOpen();
    await this.guard(async () => {
      await this.flush();
      await this.descriptor.close();
    });
    this.state = 'committed';
  }

  async abort(): Promise<void> {
    if (this.state !== 'open') return;
    this.state = 'aborted';
    this.pending.clear();
    await this.descriptor.close().catch(() => undefined);
  }

  private async flush(): Promise<void> {
    const chunk = this.pending.take();
    let offset = 0;
    while (offset < chunk.length) offset += await this.descriptor.write(chunk, offset);
  }

  private async guard(step: () => Promise<void>): Promise<void> {
    try {
      await step();
    } catch (err) {
      await this.abort();
      throw outputError(this.target, err, 'in place');
    }
  }

  private assertOpen(): void {
    if (this.state !== 'open') throw new InputError(`Output ${this.target} was already ${this.state}`);
  }
}

/** A descriptor the process already holds: written, never closed (its owner, often the shell, does that). */
function borrowedDescriptor(fd: number): Descriptor {
  return {
    async write(chunk, offset) {
      for (;;) {
        try {
          return await writeToDescriptor(fd, chunk, offset, chunk.length - offset);
        } catch (err) {
          // A descriptor someone left non-blocking answers EAGAIN while its reader catches up.
          if ((err as NodeJS.ErrnoException).code !== 'EAGAIN') throw err;
          await new Promise((resolve) => setTimeout(resolve, 10));
        }
      }
    },
    close: async () => undefined,
  };
}

function writeToDescriptor(fd: number, chunk: Buffer, offset: number, length: number): Promise<number> {
  return new Promise((resolve, reject) => fsWrite(fd, chunk, offset, length, null, (err, written) => (err ? reject(err) : resolve(written))));
}

/** How an output path is written, from what is there now. */
export type OutputPlan =
  /** A regular file, or nothing yet: written beside `file` and renamed over it. `file` is past any symlinks. */
  | { kind: 'file'; file: string }
  /**
   * A FIFO, a character device or an open descriptor (/dev/stdout, /dev/fd/N): written in place.
   * `ownDescriptor`: the descriptor number, when the path names one of this process's own.
   */
  | { kind: 'in-place'; file: string; what: string; ownDescriptor?: number };

/** As many symlinks as Linux follows before ELOOP. */
const MAX_SYMLINKS = 40;

/**
 * Follows `target`'s symlinks one at a time (so a dangling link still leads to where its file would
 * be) and looks at what is at the end. A folder, a block device or a socket is refused: no output
 * belongs there.
 */
export async function planOutput(target: string): Promise<OutputPlan> {
  let current = target;
  for (let links = 0; ; links++) {
    const descriptor = await descriptorPath(current);
    if (descriptor) return planDescriptor(target, current, descriptor);
    let info;
    try {
      info = await lstat(current);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { kind: 'file', file: current };
      throw outputError(target, err);
    }
    if (info.isSymbolicLink()) {
      if (links >= MAX_SYMLINKS) throw outputError(target, Object.assign(new Error('too many symbolic links'), { code: 'ELOOP' }));
      const link = await readlink(current).catch((err: unknown) => Promise.reject(outputError(target, err)));
      current = path.resolve(path.dirname(current), link);
      continue;
    }
    if (info.isFile()) return { kind: 'file', file: current };
    if (info.isFIFO()) return { kind: 'in-place', file: current, what: 'a FIFO' };
    if (info.isCharacterDevice()) return { kind: 'in-place', file: current, what: 'a character device' };
    if (info.isDirectory()) throw outputError(target, Object.assign(new Error('is a folder'), { code: 'EISDIR' }));
    const what = info.isBlockDevice() ? 'a block device' : 'a socket';
    throw new InputError(`Cannot write output file ${target}: it is ${what}; outputs go to files, FIFOs and character devices such as /dev/null`);
  }
}

/**
 * /dev/stdout, /dev/fd/N and /proc/<pid>/fd/N name a descriptor, not a file: their links read as
 * `pipe:[...]`, `socket:[...]` or the path the descriptor was opened with. Such a path is recognised by
 * its folder, /proc/<pid>/fd once resolved.
 */
async function descriptorPath(file: string): Promise<{ pid: number; fd: number } | null> {
  const dir = await realpath(path.dirname(file)).catch(() => '');
  const match = /^\/proc\/(\d+)(?:\/task\/\d+)?\/fd$/.exec(dir);
  const fd = path.basename(file);
  return match && /^\d{1,9}$/.test(fd) ? { pid: Number(match[1]), fd: Number(fd) } : null;
}

/** A descriptor is written in place if it holds something writable; epoll, eventfd and the like are refused. */
async function planDescriptor(target: string, file: string, descriptor: { pid: number; fd: number }): Promise<OutputPlan> {
  let info;
  try {
    info = await stat(file);
  } catch (err) {
    throw outputError(target, err);
  }
  if (!(info.isFile() || info.isFIFO() || info.isCharacterDevice() || info.isSocket())) {
    throw new InputError(`Cannot write output file ${target}: the descriptor it names is not a file, pipe, socket or device`);
  }
  return { kind: 'in-place', file, what: 'an open file descriptor', ownDescriptor: descriptor.pid === process.pid ? descriptor.fd : undefined };
}

/** Opens an output as its plan says: atomically where it is a file, in place where it is a FIFO or device. */
export async function openOutputFile(target: string, opts: { fs?: AtomicFs } = {}): Promise<OutputFile> {
  const plan = await planOutput(target);
  return plan.kind === 'file' ? AtomicFileWriter.open(target, { fs: opts.fs, file: plan.file }) : InPlaceFileWriter.open(target, plan);
}

/**
 * Fails now, before any work, if the output could not be written at the end: its folder is missing
 * or not writable, it is a folder, or a FIFO or device that cannot be opened for writing. Nothing is
 * created and no FIFO is opened.
 */
export async function checkOutputWritable(target: string): Promise<void> {
  const plan = await planOutput(target);
  const where = plan.kind === 'file' ? path.dirname(plan.file) : plan.file;
  try {
    if (plan.kind === 'file' && !(await stat(where)).isDirectory()) throw Object.assign(new Error('not a folder'), { code: 'ENOTDIR' });
    await access(where, constants.W_OK);
  } catch (err) {
    throw outputError(target, err);
  }
}

/**
 * Writes a whole output: atomically where it is a file (temp file in the same folder, fsync, rename),
 * in place where it is a FIFO or a device (planOutput).
 */
export async function writeFileAtomic(target: string, data: string | Uint8Array, opts: { fs?: AtomicFs } = {}): Promise<void> {
  const writer = await openOutputFile(target, opts);
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
  ELOOP: 'its symbolic links form a loop',
  ENXIO: 'it cannot be opened for writing (a socket, or a device or FIFO with nothing behind it)',
  EIO: 'an I/O error occurred',
};

/** Why a write failed, in words, with the system's code: `its folder does not exist (ENOENT)`. */
export function describeWriteError(err: unknown): string {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  const reason = (code && OUTPUT_ERROR_REASONS[code]) ?? errorMessage(err);
  return code ? `${reason} (${code})` : reason;
}

/** Every filesystem failure while writing an output becomes an InputError that names the output file. */
function outputError(target: string, err: unknown, how: 'atomic' | 'in place' = 'atomic'): InputError {
  if (err instanceof InputError) return err;
  const after = how === 'atomic' ? '; any previous file there is unchanged' : '';
  return new InputError(`Cannot write output file ${target}: ${describeWriteError(err)}${after}`, { cause: err });
}
