import { createHash } from 'node:crypto';
import { openRegularFile, type FilePath } from './regular-file.js';

/**
 * SHA-256 of a file, hex, streamed so that a multi-GB checkpoint is never held in memory. The file is
 * opened as every read is (src/io/regular-file.ts): a FIFO or device is refused instead of blocking.
 */
export async function sha256File(file: FilePath): Promise<string> {
  const { handle } = await openRegularFile(file);
  const hash = createHash('sha256');
  for await (const chunk of handle.createReadStream()) hash.update(chunk as Buffer);
  return hash.digest('hex');
}
