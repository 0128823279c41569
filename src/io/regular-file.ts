/**
 * The one way pickscore reads a file whole: images, sidecar prompts, PNG text, prompts files,
 * manifests, merge parts, configs and model files all come through here.
 *
 * - The open is non-blocking (O_NONBLOCK), so opening a FIFO returns at once instead of waiting for a
 *   writer, and O_NOCTTY, so opening a terminal never makes it the process's controlling terminal.
 * - The type is checked on the open handle (fstat), not on the path before opening, so nothing can
 *   swap the file in between: a FIFO, socket, device (a link to /dev/zero, say) or folder is refused.
 * - The read stops one byte past the limit, so a file that is larger than it says (one that grows
 *   while it is read, or a /proc file that reports size 0) cannot take more memory than the limit.
 *
 * Failures are FileReadErrors with a short reason; each caller adds which file it was and what it was
 * for, and decides the error's kind (an error row for an image, exit 4 for a prompts file, ...).
 */
import { closeSync, constants, fstatSync, openSync, readSync } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';

/** A path as text, or as the exact bytes of a name that is not valid UTF-8 (a Uint8Array once it crossed a thread). */
export type FilePath = string | Uint8Array;

/** The form node:fs takes: text, or a Buffer over the same bytes. */
export function fsPath(file: FilePath): string | Buffer {
  return typeof file === 'string' || Buffer.isBuffer(file) ? file : Buffer.from(file.buffer, file.byteOffset, file.byteLength);
}

const KiB = 1024;
const MiB = 1024 * KiB;
const GiB = 1024 * MiB;

/**
 * How large each kind of file may be. Images: the default pixel limit (178,956,970) stored as 8-bit RGB
 * without compression is 537 MB, so 1 GiB holds every image that limit admits but the uncompressed
 * 16-bit ones. Text read as one string (prompts files, manifests, merge parts): the longest string V8
 * can hold. Prompt text (a sidecar): the cap PNG text chunks already have. Configs, tokenizer files,
 * checksum lists and model manifests are a few megabytes at most.
 */
export const READ_LIMITS = {
  image: GiB,
  promptText: 4 * MiB,
  textList: 0x1fff_ffe8,
  config: 64 * MiB,
} as const;

export class FileReadError extends Error {
  constructor(readonly reason: string, readonly code?: string, options?: { cause?: unknown }) {
    super(reason, options);
    this.name = 'FileReadError';
  }
}

/** Sizes in error messages: exact bytes, with a round binary unit when it is one. */
export function formatSize(bytes: number): string {
  for (const [unit, size] of [['GiB', GiB], ['MiB', MiB], ['KiB', KiB]] as const) {
    if (bytes >= size && bytes % size === 0) return `${bytes / size} ${unit}`;
  }
  return `${bytes} bytes`;
}

const OPEN_FLAGS = constants.O_RDONLY | constants.O_NONBLOCK | constants.O_NOCTTY;

/** What an errno from open or read means, in the words pickscore's messages use. */
function reasonFor(err: unknown): FileReadError {
  const code = (err as NodeJS.ErrnoException).code;
  const reason = code === 'ENOENT' ? 'no such file'
    : code === 'EACCES' || code === 'EPERM' ? 'permission denied'
      : code === 'ELOOP' ? 'symbolic link loop (ELOOP)'
        : code === 'EISDIR' ? 'it is a directory'
          : code ?? (err instanceof Error ? err.message : String(err));
  // Opening a socket fails with ENXIO: the same refusal as for a FIFO or device.
  if (code === 'ENXIO') return new FileReadError(NOT_REGULAR, NOT_REGULAR_CODE, { cause: err });
  return new FileReadError(reason, code, { cause: err });
}

const NOT_REGULAR = 'not a regular file (a FIFO, socket or device)';
/** Not an errno: the file opened, and fstat showed it is something else. */
const NOT_REGULAR_CODE = 'ENOTREG';
const TOO_LARGE_CODE = 'EFBIG';

/**
 * A failure as the readers' messages have always put it: the errno code for the system's own errors
 * (ENOENT, EACCES, ...), the reason for the refusals this module makes (a FIFO, a folder, too large).
 */
export function readFailureText(err: unknown): string {
  if (!(err instanceof FileReadError)) return err instanceof Error ? err.message : String(err);
  const ownRefusal = err.code === undefined || err.code === NOT_REGULAR_CODE || err.code === TOO_LARGE_CODE || err.code === 'EISDIR';
  return ownRefusal ? err.reason : err.code!;
}

/** The size of an opened file that must be regular: a folder, FIFO, device or socket is refused. */
function regularFileSize(stats: { isDirectory(): boolean; isFile(): boolean; size: number }): number {
  if (stats.isDirectory()) throw new FileReadError('it is a directory', 'EISDIR');
  if (!stats.isFile()) throw new FileReadError(NOT_REGULAR, NOT_REGULAR_CODE);
  return stats.size;
}

/**
 * A full read buffer, grown for a file that is longer than fstat said (it grew while read, or its
 * filesystem reports no size): never past one byte over the bound, so that reading that byte is what
 * proves the file too large.
 */
function grownBuffer(buffer: Buffer<ArrayBuffer>, maxBytes: number, tooLarge: (bytes: string) => FileReadError): Buffer<ArrayBuffer> {
  if (buffer.length > maxBytes) throw tooLarge(`more than ${maxBytes} bytes`);
  const grown = Buffer.allocUnsafe(Math.min(Math.max(2 * buffer.length, 64 * KiB), maxBytes + 1));
  buffer.copy(grown);
  return grown;
}

/**
 * Opens `file` for reading and checks, on the handle, that it is a regular file; the caller closes the
 * handle. For readers that stream (hashing a multi-gigabyte checkpoint) rather than read whole.
 */
export async function openRegularFile(file: FilePath): Promise<{ handle: FileHandle; size: number }> {
  let handle: FileHandle;
  try {
    handle = await open(fsPath(file), OPEN_FLAGS);
  } catch (err) {
    throw reasonFor(err);
  }
  try {
    return { handle, size: regularFileSize(await handle.stat()) };
  } catch (err) {
    await handle.close();
    throw err instanceof FileReadError ? err : reasonFor(err);
  }
}

/** Checks that `file` is a regular file that can be opened, without reading it (for files another library loads). */
export async function checkRegularFile(file: FilePath): Promise<void> {
  const { handle } = await openRegularFile(file);
  await handle.close();
}

/** The whole content of a regular file of at most `maxBytes`; `what` names the kind of file in the too-large reason. */
export async function readRegularFile(file: FilePath, maxBytes: number, what: string): Promise<Buffer> {
  const { handle, size } = await openRegularFile(file);
  const tooLarge = (bytes: string) => new FileReadError(`too large: ${bytes}, over the limit of ${formatSize(maxBytes)} for ${what}`, TOO_LARGE_CODE);
  try {
    if (size > maxBytes) throw tooLarge(`${size} bytes`);
    // One byte more than the size: reading it tells that the file ended where fstat said it would.
    let buffer = Buffer.allocUnsafe(size + 1);
    let length = 0;
    for (;;) {
      if (length === buffer.length) buffer = grownBuffer(buffer, maxBytes, tooLarge);
      const { bytesRead } = await handle.read(buffer, length, buffer.length - length, null);
      if (bytesRead === 0) break;
      length += bytesRead;
    }
    if (length > maxBytes) throw tooLarge(`more than ${maxBytes} bytes`);
    return buffer.subarray(0, length);
  } catch (err) {
    throw err instanceof FileReadError ? err : reasonFor(err);
  } finally {
    await handle.close();
  }
}

/**
 * readRegularFile without the event loop, for a worker thread whose only job is to read (the image
 * pool's): the same open flags, the same check on the open descriptor, the same bound, but no round
 * trip through libuv's thread pool for each step, which on a cached rerun was most of an image's time.
 */
export function readRegularFileSync(file: FilePath, maxBytes: number, what: string): Buffer {
  let fd: number;
  try {
    fd = openSync(fsPath(file), OPEN_FLAGS);
  } catch (err) {
    throw reasonFor(err);
  }
  const tooLarge = (bytes: string) => new FileReadError(`too large: ${bytes}, over the limit of ${formatSize(maxBytes)} for ${what}`, TOO_LARGE_CODE);
  try {
    const size = regularFileSize(fstatSync(fd));
    if (size > maxBytes) throw tooLarge(`${size} bytes`);
    let buffer = Buffer.allocUnsafe(size + 1);
    let length = 0;
    for (;;) {
      if (length === buffer.length) buffer = grownBuffer(buffer, maxBytes, tooLarge);
      const bytesRead = readSync(fd, buffer, length, buffer.length - length, null);
      if (bytesRead === 0) break;
      length += bytesRead;
    }
    if (length > maxBytes) throw tooLarge(`more than ${maxBytes} bytes`);
    return buffer.subarray(0, length);
  } catch (err) {
    throw err instanceof FileReadError ? err : reasonFor(err);
  } finally {
    closeSync(fd);
  }
}

/** A regular file's text, decoded as UTF-8 (invalid sequences become U+FFFD); for configs and other JSON. */
export async function readRegularTextFile(file: FilePath, maxBytes: number, what: string): Promise<string> {
  return (await readRegularFile(file, maxBytes, what)).toString('utf8');
}
