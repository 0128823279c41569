/** Builders for image files that tests generate: hand-made PNGs (16-bit, bombs, text chunks). */
import { crc32, deflateSync } from 'node:zlib';

const SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

export function pngChunk(type: string, data: Uint8Array): Buffer {
  const head = Buffer.alloc(8);
  head.writeUInt32BE(data.length, 0);
  head.write(type, 4, 'latin1');
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(Buffer.concat([head.subarray(4), data])) >>> 0, 0);
  return Buffer.concat([head, data, crc]);
}

function ihdr(width: number, height: number, bitDepth: number, colourType: number): Buffer {
  const data = Buffer.alloc(13);
  data.writeUInt32BE(width, 0);
  data.writeUInt32BE(height, 4);
  data.writeUInt8(bitDepth, 8);
  data.writeUInt8(colourType, 9);
  return pngChunk('IHDR', data);
}

/** A PNG from raw big-endian samples (filter 0 on every row). colourType: 0 grey, 2 RGB, 4 grey+alpha, 6 RGBA. */
export function pngFromSamples(width: number, height: number, bitDepth: 8 | 16, colourType: 0 | 2 | 4 | 6, samples: Uint8Array, extraChunks: Buffer[] = []): Buffer {
  const rowBytes = samples.length / height;
  const filtered = Buffer.alloc(height * (rowBytes + 1));
  for (let y = 0; y < height; y++) filtered.set(samples.subarray(y * rowBytes, (y + 1) * rowBytes), y * (rowBytes + 1) + 1);
  return Buffer.concat([SIGNATURE, ihdr(width, height, bitDepth, colourType), ...extraChunks, pngChunk('IDAT', deflateSync(filtered)), pngChunk('IEND', new Uint8Array(0))]);
}

/** A PNG whose header claims width x height over a few bytes of data: a decompression bomb, cheaply. */
export function pngBombHeader(width: number, height: number): Buffer {
  return Buffer.concat([SIGNATURE, ihdr(width, height, 8, 2), pngChunk('IDAT', deflateSync(Buffer.alloc(64))), pngChunk('IEND', new Uint8Array(0))]);
}

/** A 1x1 RGB PNG carrying the given text chunks (already encoded chunk bodies). */
export function pngWithChunks(chunks: Buffer[]): Buffer {
  return pngFromSamples(1, 1, 8, 2, new Uint8Array([1, 2, 3]), chunks);
}

export function textChunk(keyword: string, text: string): Buffer {
  return pngChunk('tEXt', Buffer.concat([Buffer.from(keyword, 'latin1'), Buffer.from([0]), Buffer.from(text, 'latin1')]));
}

export function ztxtChunk(keyword: string, text: string): Buffer {
  return pngChunk('zTXt', Buffer.concat([Buffer.from(keyword, 'latin1'), Buffer.from([0, 0]), deflateSync(Buffer.from(text, 'latin1'))]));
}

export function itxtChunk(keyword: string, text: string, compressed: boolean): Buffer {
  const body = compressed ? deflateSync(Buffer.from(text, 'utf8')) : Buffer.from(text, 'utf8');
  return pngChunk('iTXt', Buffer.concat([Buffer.from(keyword, 'latin1'), Buffer.from([0, compressed ? 1 : 0, 0]), Buffer.from('en\0', 'latin1'), Buffer.from([0]), body]));
}
