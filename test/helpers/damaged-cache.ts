/**
 * Damages one table of a closed embedding cache the way a bad sector or a torn copy would: the header
 * and the other tables stay intact, so SQLite opens the file and only notices when it reads that
 * table's pages, which may be in the middle of a run.
 */
import { open } from 'node:fs/promises';
import Database from 'better-sqlite3';

/** Overwrites the first bytes of `table`'s root page with 0xFF (an invalid b-tree page type). */
export async function damageTable(file: string, table: 'text_embeddings' | 'image_embeddings'): Promise<void> {
  const db = new Database(file, { readonly: true });
  let pageSize: number;
  let rootPage: number;
  try {
    pageSize = db.pragma('page_size', { simple: true }) as number;
    rootPage = (db.prepare('SELECT rootpage FROM sqlite_master WHERE name = ?').get(table) as { rootpage: number }).rootpage;
  } finally {
    db.close();
  }
  const handle = await open(file, 'r+');
  try {
    await handle.write(Buffer.alloc(64, 0xff), 0, 64, (rootPage - 1) * pageSize);
  } finally {
    await handle.close();
  }
}
