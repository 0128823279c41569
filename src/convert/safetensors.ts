/**
 * safetensors reader: an 8-byte little-endian header length, a JSON header naming each tensor's dtype,
 * shape and byte range, then the raw little-endian data. Only the header is read up front.
 */
import { ModelError, expectedMessage } from '../errors.js';
import { DTYPE_BYTES, elementCount, isCount, isDType, type TensorEntry, type TensorFile } from './tensor-file.js';
import { RandomAccessFile } from './zip.js';

/** A header larger than this is not a real checkpoint's (PickScore's is about 60 kB). */
const MAX_HEADER_BYTES = 100 * 1024 * 1024;

export async function openSafetensorsFile(filePath: string): Promise<TensorFile> {
  const file = await RandomAccessFile.open(filePath);
  try {
    return { file, tensors: await readTensorEntries(file) };
  } catch (err) {
    await file.close();
    throw err;
  }
}

async function readTensorEntries(file: RandomAccessFile): Promise<TensorEntry[]> {
  const headerLength = Number((await file.read(0, 8, 'the safetensors header length')).readBigUInt64LE(0));
  if (headerLength > MAX_HEADER_BYTES) {
    throw new ModelError(`${file.path} is not a safetensors file: its header length field reads ${headerLength} bytes`);
  }
  const header = parseHeader(await file.read(8, headerLength, 'the safetensors header'), file.path);
  const dataStart = 8 + headerLength;
  return Object.entries(header)
    .filter(([name]) => name !== '__metadata__')
    .map(([name, info]) => toEntry(file, name, info, dataStart));
}

function parseHeader(bytes: Buffer, filePath: string): Record<string, unknown> {
  let header: unknown;
  try {
    header = JSON.parse(bytes.toString('utf8'));
  } catch (err) {
    throw new ModelError(`${filePath}: the safetensors header is not valid JSON (${(err as Error).message})`, { cause: err });
  }
  if (typeof header !== 'object' || header === null || Array.isArray(header)) {
    throw new ModelError(expectedMessage('a JSON object', `the safetensors header of ${filePath}`, header));
  }
  return header as Record<string, unknown>;
}

function toEntry(file: RandomAccessFile, name: string, info: unknown, dataStart: number): TensorEntry {
  const subject = `tensor ${name} in ${file.path}`;
  const { dtype, shape, data_offsets: offsets } = (info ?? {}) as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
  if (!isDType(dtype)) {
    throw new ModelError(expectedMessage(`a supported dtype (${Object.keys(DTYPE_BYTES).join(', ')})`, `the dtype of ${subject}`, dtype));
  }
  if (!Array.isArray(shape) || !shape.every(isCount)) {
    throw new ModelError(expectedMessage('an array of non-negative integers', `the shape of ${subject}`, shape));
  }
  if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every(isCount) || offsets[1] < offsets[0]) {
    throw new ModelError(expectedMessage('[begin, end] byte offsets', `data_offsets of ${subject}`, offsets));
  }
  const [begin, end] = offsets as [number, number];
  const byteLength = elementCount(shape) * DTYPE_BYTES[dtype];
  if (end - begin !== byteLength) {
    throw new ModelError(
      `${file.path}: tensor ${name} spans ${end - begin} bytes but its dtype ${dtype} and shape [${shape.join(', ')}] need ${byteLength}`,
    );
  }
  if (dataStart + end > file.size) {
    throw new ModelError(
      `${file.path} is truncated: tensor ${name} ends at byte ${dataStart + end} but the file has ${file.size} bytes`,
    );
  }
  return {
    name,
    dtype,
    shape: [...shape],
    byteLength,
    file: file.path,
    read: () => file.read(dataStart + begin, byteLength, `tensor ${name}`),
  };
}

