/**
 * Images the pipeline tests generate: small, distinct PNGs written by a minimal encoder (8-bit RGB,
 * no filtering), so the tests need no image library and every file has its own content hash.
 */
import { deflateSync } from 'node:zlib';
import { writeFile } from 'node:fs/promises';

const CRC_TABLE = Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});

function crc32(bytes: Uint8Array): number {
  let c = 0xffffffff;
  for (const b of bytes) c = CRC_TABLE[(c ^ b) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

function chunk(type: string, data: Uint8Array): Buffer {
  const head = Buffer.alloc(8);
  head.writeUInt32BE(data.length, 0);
  head.write(type, 4, 'latin1');
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(Buffer.concat([head.subarray(4), data])), 0);
  return Buffer.concat([head, data, crc]);
}

/** Encodes interleaved RGB as a PNG. */
export function encodePng(rgb: Uint8Array, width: number, height: number): Buffer {
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr.set([8, 2, 0, 0, 0], 8);
  const raw = Buffer.alloc(height * (width * 3 + 1));
  for (let y = 0; y < height; y++) raw.set(rgb.subarray(y * width * 3, (y + 1) * width * 3), y * (width * 3 + 1) + 1);
  const signature = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
  return Buffer.concat([signature, chunk('IHDR', ihdr), chunk('IDAT', deflateSync(raw)), chunk('IEND', new Uint8Array(0))]);
}

/** A deterministic gradient that differs for every seed. */
export function gradientRgb(width: number, height: number, seed: number): Uint8Array {
  const rgb = new Uint8Array(width * height * 3);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const i = (y * width + x) * 3;
      rgb[i] = (x * 7 + seed * 31) & 0xff;
      rgb[i + 1] = (y * 5 + seed * 17) & 0xff;
      rgb[i + 2] = (x * y + seed * 13) & 0xff;
    }
  }
  return rgb;
}

/** Writes `count` distinct PNGs named img-000.png... into `dir`; returns their file names. */
export async function writeGradientPngs(dir: string, count: number, size = 32): Promise<string[]> {
  const names: string[] = [];
  for (let i = 0; i < count; i++) {
    const name = `img-${String(i).padStart(3, '0')}.png`;
    await writeFile(`${dir}/${name}`, encodePng(gradientRgb(size, size, i), size, size));
    names.push(name);
  }
  return names;
}
