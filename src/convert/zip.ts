/**
 * Random-access reading of weight files, and of the zip archives that `torch.save` writes.
 *
 * Checkpoints reach 4 GB and more, so nothing here reads a whole file: the zip reader parses only the
 * central directory (zip64 included) and hands out byte ranges of stored (uncompressed) entries, which
 * `torch.save` always writes.
 */
import type { FileHandle } from 'node:fs/promises';
import { ModelError } from '../errors.js';
import { openRegularFile, readFailureText } from '../io/regular-file.js';

/** Node reads at most 2 GiB - 1 bytes per call; larger ranges are read in chunks of this size. */
const MAX_READ_CHUNK = 1 << 30;

/** An open file read by absolute position; every read is checked against the file's size. */
export class RandomAccessFile {
  private constructor(
    readonly path: string,
    readonly size: number,
    private readonly handle: FileHandle,
  ) {}

  static async open(filePath: string): Promise<RandomAccessFile> {
    // Opened as every read is (src/io/regular-file.ts): a FIFO or device named like a weights file is refused.
    let opened: { handle: FileHandle; size: number };
    try {
      opened = await openRegularFile(filePath);
    } catch (err) {
      throw new ModelError(`Cannot open weights file ${filePath}: ${readFailureText(err)}`, { cause: err });
    }
    return new RandomAccessFile(filePath, opened.size, opened.handle);
  }

  /**
   * Reads exactly `length` bytes at `position`. `what` names the data for the error when the range
   * lies past the end of the file, which is how a truncated download shows up.
   */
  async read(position: number, length: number, what: string): Promise<Buffer> {
    if (position + length > this.size) {
      throw new ModelError(
        `${this.path} is truncated: ${what} needs bytes ${position}..${position + length} but the file has ${this.size} bytes`,
      );
    }
    const out = Buffer.allocUnsafe(length);
    let done = 0;
    while (done < length) {
      const chunk = Math.min(MAX_READ_CHUNK, length - done);
      const { bytesRead } = await this.handle.read(out, done, chunk, position + done);
      if (bytesRead === 0) throw new ModelError(`${this.path} ended early while reading ${what} (the file shrank?)`);
      done += bytesRead;
    }
    return out;
  }

  async close(): Promise<void> {
    await this.handle.close();
  }
}

export interface ZipEntry {
  name: string;
  /** 0 = stored. torch.save never compresses, and a compressed tensor could not be read in place. */
  method: number;
  compressedSize: number;
  size: number;
  localHeaderOffset: number;
}

const EOCD_SIGNATURE = 0x06054b50;
const ZIP64_LOCATOR_SIGNATURE = 0x07064b50;
const ZIP64_EOCD_SIGNATURE = 0x06064b50;
const CENTRAL_SIGNATURE = 0x02014b50;
const LOCAL_SIGNATURE = 0x04034b50;
const EOCD_SIZE = 22;
const ZIP64_LOCATOR_SIZE = 20;
const MAX_COMMENT = 0xffff;
const ZIP64_EXTRA_ID = 0x0001;
const U16_MAX = 0xffff;
const U32_MAX = 0xffffffff;

/** Where the central directory lies, from the end-of-central-directory records. */
interface CentralDirectory {
  offset: number;
  size: number;
  count: number;
}

/** A zip archive's directory, with byte ranges of its stored entries. */
export class ZipArchive {
  private readonly dataOffsets = new Map<string, number>();

  private constructor(
    readonly file: RandomAccessFile,
    readonly entries: Map<string, ZipEntry>,
  ) {}

  static async open(file: RandomAccessFile): Promise<ZipArchive> {
    const directory = await findCentralDirectory(file);
    const bytes = await file.read(directory.offset, directory.size, 'the zip central directory');
    return new ZipArchive(file, parseCentralDirectory(bytes, directory.count, file.path));
  }

  entry(name: string): ZipEntry {
    const entry = this.entries.get(name);
    if (!entry) throw new ModelError(`${this.file.path} has no entry ${name}; the checkpoint is incomplete or corrupt`);
    return entry;
  }

  /** Reads `length` bytes at `offset` within a stored entry. */
  async readEntry(name: string, offset: number, length: number, what: string): Promise<Buffer> {
    const entry = this.entry(name);
    if (entry.method !== 0) {
      throw new ModelError(
        `${this.file.path}: entry ${name} is compressed (method ${entry.method}); only stored entries, as torch.save writes them, are supported`,
      );
    }
    if (offset + length > entry.size) {
      throw new ModelError(
        `${this.file.path}: ${what} needs bytes ${offset}..${offset + length} of entry ${name}, which holds ${entry.size} bytes`,
      );
    }
    const start = await this.dataOffset(entry);
    return this.file.read(start + offset, length, what);
  }

  /** The entry's data starts after its local header, whose extra field may differ from the central one. */
  private async dataOffset(entry: ZipEntry): Promise<number> {
    const cached = this.dataOffsets.get(entry.name);
    if (cached !== undefined) return cached;
    const header = await this.file.read(entry.localHeaderOffset, 30, `the local header of ${entry.name}`);
    if (header.readUInt32LE(0) !== LOCAL_SIGNATURE) {
      throw new ModelError(`${this.file.path}: corrupt zip, no local header for ${entry.name} at byte ${entry.localHeaderOffset}`);
    }
    const start = entry.localHeaderOffset + 30 + header.readUInt16LE(26) + header.readUInt16LE(28);
    this.dataOffsets.set(entry.name, start);
    return start;
  }
}

async function findCentralDirectory(file: RandomAccessFile): Promise<CentralDirectory> {
  const tailLength = Math.min(file.size, EOCD_SIZE + MAX_COMMENT + ZIP64_LOCATOR_SIZE);
  const tailStart = file.size - tailLength;
  const tail = await file.read(tailStart, tailLength, 'the zip trailer');
  let eocd = -1;
  for (let i = tail.length - EOCD_SIZE; i >= 0; i--) {
    if (tail.readUInt32LE(i) === EOCD_SIGNATURE) {
      eocd = i;
      break;
    }
  }
  if (eocd < 0) {
    throw new ModelError(`${file.path} is not a zip archive or is truncated: no end-of-central-directory record`);
  }
  const count = tail.readUInt16LE(eocd + 10);
  const size = tail.readUInt32LE(eocd + 12);
  const offset = tail.readUInt32LE(eocd + 16);
  if (count !== U16_MAX && size !== U32_MAX && offset !== U32_MAX) return { offset, size, count };
  return readZip64Directory(file, tail, eocd - ZIP64_LOCATOR_SIZE);
}

/** Archives over 4 GB (or with over 65535 entries) keep the real figures in the zip64 records. */
async function readZip64Directory(file: RandomAccessFile, tail: Buffer, locator: number): Promise<CentralDirectory> {
  if (locator < 0 || tail.readUInt32LE(locator) !== ZIP64_LOCATOR_SIGNATURE) {
    throw new ModelError(`${file.path}: corrupt zip, the end record asks for zip64 but there is no zip64 locator`);
  }
  const recordOffset = readU64(tail, locator + 8, file.path);
  const record = await file.read(recordOffset, 56, 'the zip64 end-of-central-directory record');
  if (record.readUInt32LE(0) !== ZIP64_EOCD_SIGNATURE) {
    throw new ModelError(`${file.path}: corrupt zip, no zip64 end-of-central-directory record at byte ${recordOffset}`);
  }
  return {
    count: readU64(record, 32, file.path),
    size: readU64(record, 40, file.path),
    offset: readU64(record, 48, file.path),
  };
}

function parseCentralDirectory(bytes: Buffer, count: number, filePath: string): Map<string, ZipEntry> {
  const entries = new Map<string, ZipEntry>();
  let pos = 0;
  for (let i = 0; i < count; i++) {
    if (pos + 46 > bytes.length || bytes.readUInt32LE(pos) !== CENTRAL_SIGNATURE) {
      throw new ModelError(`${filePath}: corrupt zip central directory at entry ${i}`);
    }
    const nameLength = bytes.readUInt16LE(pos + 28);
    const extraLength = bytes.readUInt16LE(pos + 30);
    const commentLength = bytes.readUInt16LE(pos + 32);
    const name = bytes.toString('utf8', pos + 46, pos + 46 + nameLength);
    const extra = bytes.subarray(pos + 46 + nameLength, pos + 46 + nameLength + extraLength);
    const entry = applyZip64Extra(
      {
        name,
        method: bytes.readUInt16LE(pos + 10),
        compressedSize: bytes.readUInt32LE(pos + 20),
        size: bytes.readUInt32LE(pos + 24),
        localHeaderOffset: bytes.readUInt32LE(pos + 42),
      },
      extra,
      filePath,
    );
    entries.set(name, entry);
    pos += 46 + nameLength + extraLength + commentLength;
  }
  return entries;
}

/** The zip64 extra field holds, in this order, only those of the three values whose 32-bit field is 0xFFFFFFFF. */
function applyZip64Extra(entry: ZipEntry, extra: Buffer, filePath: string): ZipEntry {
  const needs = [entry.size, entry.compressedSize, entry.localHeaderOffset].some((v) => v === U32_MAX);
  if (!needs) return entry;
  for (let pos = 0; pos + 4 <= extra.length; ) {
    const id = extra.readUInt16LE(pos);
    const length = extra.readUInt16LE(pos + 2);
    if (id === ZIP64_EXTRA_ID) {
      const field = extra.subarray(pos + 4, pos + 4 + length);
      let at = 0;
      const next = (): number => {
        const value = readU64(field, at, filePath);
        at += 8;
        return value;
      };
      const size = entry.size === U32_MAX ? next() : entry.size;
      const compressedSize = entry.compressedSize === U32_MAX ? next() : entry.compressedSize;
      const localHeaderOffset = entry.localHeaderOffset === U32_MAX ? next() : entry.localHeaderOffset;
      return { ...entry, size, compressedSize, localHeaderOffset };
    }
    pos += 4 + length;
  }
  throw new ModelError(`${filePath}: corrupt zip, entry ${entry.name} needs a zip64 extra field but has none`);
}

function readU64(bytes: Buffer, offset: number, filePath: string): number {
  if (offset + 8 > bytes.length) throw new ModelError(`${filePath}: corrupt zip, a zip64 field is cut short`);
  const value = bytes.readBigUInt64LE(offset);
  if (value > BigInt(Number.MAX_SAFE_INTEGER)) throw new ModelError(`${filePath}: corrupt zip, offset ${value} is out of range`);
  return Number(value);
}
