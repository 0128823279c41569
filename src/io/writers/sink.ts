/**
 * Where a writer's bytes go: an output file (one that appears atomically on commit, or a FIFO or device
 * written in place; see openOutputFile), or a stream the caller owns (stdout). A stream is never ended
 * here; its owner decides, so stdout stays usable.
 */
import { fstatSync, writeSync } from 'node:fs';
import type { Writable } from 'node:stream';
import { openOutputFile, type AtomicFs } from '../atomic.js';
import { InputError } from '../../errors.js';

export interface OutputSink {
  write(text: string): Promise<void>;
  /** Everything written is in place: the file renamed over the target, or the stream flushed. */
  commit(): Promise<void>;
  /** Gives up: the temporary file is removed and any previous target is untouched. */
  abort(): Promise<void>;
}

export type WriterTarget = { path: string; fs?: AtomicFs } | { stream: Writable };

export async function openSink(target: WriterTarget): Promise<OutputSink> {
  if ('stream' in target) {
    const fd = regularFileDescriptor(target.stream);
    return fd === undefined ? new StreamSink(target.stream) : new DescriptorSink(fd);
  }
  const file = await openOutputFile(target.path, { fs: target.fs });
  return { write: (text) => file.write(text), commit: () => file.commit(), abort: () => file.abort() };
}

/** Stream writes are gathered up to this size, so each row does not cost a round trip. */
const STREAM_FLUSH_CHARS = 64 * 1024;

const listenedStreams = new WeakSet<Writable>();

/**
 * A failed write reports to its callback, where it becomes an InputError, and then the stream emits
 * 'error' as well. With no listener that second report would crash the process (stdout on a full disk
 * did, with a stack trace and exit 1), so each stream gets one listener that leaves it to the callback.
 */
function reportErrorsThroughCallbacks(stream: Writable): void {
  if (listenedStreams.has(stream)) return;
  listenedStreams.add(stream);
  stream.on('error', () => undefined);
}

class StreamSink implements OutputSink {
  private pending = '';

  constructor(private readonly stream: Writable) {
    reportErrorsThroughCallbacks(stream);
  }

  async write(text: string): Promise<void> {
    this.pending += text;
    if (this.pending.length >= STREAM_FLUSH_CHARS) await this.flush();
  }

  commit(): Promise<void> {
    return this.flush();
  }

  async abort(): Promise<void> {
    this.pending = '';
  }

  /** Resolves once the stream has taken the chunk (its callback), so backpressure is respected. */
  private flush(): Promise<void> {
    const chunk = this.pending;
    this.pending = '';
    if (chunk === '') return Promise.resolve();
    return new Promise((resolve, reject) => {
      this.stream.write(chunk, (err) => (err ? reject(new InputError(`Cannot write the output stream: ${err.message}`, { cause: err })) : resolve()));
    });
  }
}

/**
 * The descriptor behind a stream that writes to a regular file (`> out.jsonl`), else undefined. Node
 * writes such a stdout with one writeSync per chunk and no loop, so a short write (a file-size limit, a
 * disk filling up) dropped the rest of the chunk without an error, and the run ended with exit 0 and
 * rows missing. Such a file is written here instead, looping until every byte is taken or an error says why.
 */
function regularFileDescriptor(stream: Writable): number | undefined {
  const fd = (stream as Writable & { fd?: unknown }).fd;
  if (typeof fd !== 'number') return undefined;
  try {
    return fstatSync(fd).isFile() ? fd : undefined;
  } catch {
    return undefined;
  }
}

class DescriptorSink implements OutputSink {
  private pending = '';

  constructor(private readonly fd: number) {}

  async write(text: string): Promise<void> {
    this.pending += text;
    if (this.pending.length >= STREAM_FLUSH_CHARS) this.flush();
  }

  async commit(): Promise<void> {
    this.flush();
  }

  async abort(): Promise<void> {
    this.pending = '';
  }

  private flush(): void {
    const bytes = Buffer.from(this.pending, 'utf8');
    this.pending = '';
    let offset = 0;
    try {
      while (offset < bytes.length) offset += writeSync(this.fd, bytes, offset, bytes.length - offset);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      const reason = code === 'EFBIG' ? 'the file is too large for its limit (EFBIG)' : code === 'ENOSPC' ? 'no space left on the device (ENOSPC)' : (err as Error).message;
      throw new InputError(`Cannot write the output stream: ${reason}; ${offset} of ${bytes.length} bytes of the last chunk were written`, { cause: err });
    }
  }
}
