/**
 * The embedding cache: one SQLite file (better-sqlite3, WAL mode) under the cache folder.
 * Text embeddings are keyed by (model fingerprint, prompt); image embeddings by (model fingerprint,
 * content hash of the file, preprocessing mode), so a rerun or a new prompt over the same folder
 * encodes only what is new. Several processes may read and write the same file at once: WAL lets
 * readers run beside one writer, and busy_timeout makes a second writer wait instead of failing.
 *
 * The file carries an `application_id` and a schema version. A file that is not ours, from another
 * schema, or corrupt is reported through `onWarning`, moved aside as `<file>.corrupt-<timestamp>`,
 * and rebuilt empty: a cache can always be recomputed, a run should not fail because of it.
 */
import Database from 'better-sqlite3';
import { closeSync, mkdirSync, openSync, renameSync, rmSync, statSync } from 'node:fs';
import path from 'node:path';
import { InputError } from '../errors.js';

/** "PSEC" (pickscore embedding cache), stored in the SQLite header. */
export const CACHE_APPLICATION_ID = 0x50534543;
export const CACHE_SCHEMA_VERSION = 1;
export const CACHE_FILE_NAME = 'embeddings.sqlite';
/** How long a writer waits for another process's write transaction before giving up. */
const BUSY_TIMEOUT_MS = 30_000;

export interface EmbeddingCacheOptions {
  /** Told when a foreign or corrupt file was moved aside; defaults to process.emitWarning. */
  onWarning?: (message: string) => void;
}

export interface CacheModelRows { fingerprint: string; textRows: number; imageRows: number }

export interface EmbeddingCacheInfo {
  path: string;
  /** The database file plus its WAL, in bytes. */
  bytes: number;
  textRows: number;
  imageRows: number;
  models: CacheModelRows[];
}

export interface TextEntry { prompt: string; embedding: Float32Array }
export interface ImageEntry { contentHash: string; embedding: Float32Array }

export function embeddingCachePath(dir: string): string {
  return path.join(dir, CACHE_FILE_NAME);
}

const SCHEMA = `
  CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
  CREATE TABLE IF NOT EXISTS text_embeddings (
    model TEXT NOT NULL, prompt TEXT NOT NULL, embedding BLOB NOT NULL,
    PRIMARY KEY (model, prompt)) WITHOUT ROWID;
  CREATE TABLE IF NOT EXISTS image_embeddings (
    model TEXT NOT NULL, content_hash TEXT NOT NULL, mode TEXT NOT NULL, embedding BLOB NOT NULL,
    PRIMARY KEY (model, content_hash, mode)) WITHOUT ROWID;
`;

/** Why an existing file cannot be used, or undefined when it is a cache of this schema (or empty). */
function incompatibility(db: Database.Database): string | undefined {
  const appId = db.pragma('application_id', { simple: true }) as number;
  const tables = db.prepare("SELECT count(*) AS n FROM sqlite_master").get() as { n: number };
  if (appId === 0 && tables.n === 0) return undefined; // a new, empty file
  if (appId !== CACHE_APPLICATION_ID) return `it is not a pickscore embedding cache (application_id ${appId})`;
  const row = db.prepare("SELECT value FROM meta WHERE key = 'schema_version'").get() as { value: string } | undefined;
  if (row?.value !== String(CACHE_SCHEMA_VERSION)) return `it has schema version ${row?.value ?? 'none'}, this pickscore uses ${CACHE_SCHEMA_VERSION}`;
  return undefined;
}

function initialise(db: Database.Database): void {
  // IMMEDIATE: two processes creating the cache at once take turns; the second finds it made.
  db.transaction(() => {
    if ((db.pragma('application_id', { simple: true }) as number) === CACHE_APPLICATION_ID) return;
    db.exec(SCHEMA);
    db.prepare("INSERT OR REPLACE INTO meta (key, value) VALUES ('schema_version', ?)").run(String(CACHE_SCHEMA_VERSION));
    db.pragma(`application_id = ${CACHE_APPLICATION_ID}`);
  }).immediate();
}

function openChecked(file: string): Database.Database {
  const db = new Database(file, { timeout: BUSY_TIMEOUT_MS });
  try {
    db.pragma(`busy_timeout = ${BUSY_TIMEOUT_MS}`);
    // One read transaction, so that a cache another process is creating right now is seen either
    // wholly made or not at all, never as tables without their application_id.
    const problem = db.transaction(() => incompatibility(db))();
    if (problem) throw new CacheFileRejected(problem);
    db.pragma('journal_mode = WAL');
    db.pragma('synchronous = NORMAL');
    initialise(db);
    db.prepare('SELECT count(*) FROM text_embeddings').get();
    return db;
  } catch (err) {
    db.close();
    throw err;
  }
}

class CacheFileRejected extends Error {}

/** SQLite's own words for a file that is damaged or not a database at all. */
function isCorruption(err: unknown): boolean {
  const code = (err as { code?: unknown }).code;
  return err instanceof CacheFileRejected || code === 'SQLITE_NOTADB' || code === 'SQLITE_CORRUPT';
}

function moveAside(file: string): string {
  const aside = `${file}.corrupt-${new Date().toISOString().replace(/[:.]/g, '-')}`;
  for (const suffix of ['', '-wal', '-shm']) {
    try {
      renameSync(`${file}${suffix}`, `${aside}${suffix}`);
    } catch (err) {
      // Another process may have moved it first; a missing -wal or -shm is normal.
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
  }
  return aside;
}

const REPAIR_LOCK_WAIT_MS = 50;
const REPAIR_LOCK_STALE_MS = 30_000;

/**
 * Moving a bad file aside and creating its replacement happen under `<file>.repair-lock`, so that two
 * processes meeting the same bad file replace it once. A lock older than any repair takes is stale.
 */
function withRepairLock<T>(file: string, repair: () => T): T {
  const lock = `${file}.repair-lock`;
  for (;;) {
    try {
      closeSync(openSync(lock, 'wx'));
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      const age = Date.now() - (statSync(lock, { throwIfNoEntry: false })?.mtimeMs ?? Date.now());
      if (age > REPAIR_LOCK_STALE_MS) rmSync(lock, { force: true });
      else Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, REPAIR_LOCK_WAIT_MS);
    }
  }
  try {
    return repair();
  } finally {
    rmSync(lock, { force: true });
  }
}

function toBlob(embedding: Float32Array): Buffer {
  return Buffer.from(embedding.buffer, embedding.byteOffset, embedding.byteLength);
}

/** Copies out of SQLite's buffer: a Float32Array needs 4-byte alignment, which a Buffer slice need not have. */
function fromBlob(blob: Buffer): Float32Array {
  const out = new Float32Array(blob.length / 4);
  new Uint8Array(out.buffer).set(blob);
  return out;
}

export class EmbeddingCache {
  private readonly getTextStmt: Database.Statement<[string, string], { embedding: Buffer }>;
  private readonly putTextStmt: Database.Statement<[string, string, Buffer]>;
  private readonly getImageStmt: Database.Statement<[string, string, string], { embedding: Buffer }>;
  private readonly putImageStmt: Database.Statement<[string, string, string, Buffer]>;

  private constructor(private readonly db: Database.Database, readonly path: string) {
    this.getTextStmt = db.prepare('SELECT embedding FROM text_embeddings WHERE model = ? AND prompt = ?');
    this.putTextStmt = db.prepare('INSERT OR REPLACE INTO text_embeddings (model, prompt, embedding) VALUES (?, ?, ?)');
    this.getImageStmt = db.prepare('SELECT embedding FROM image_embeddings WHERE model = ? AND content_hash = ? AND mode = ?');
    this.putImageStmt = db.prepare('INSERT OR REPLACE INTO image_embeddings (model, content_hash, mode, embedding) VALUES (?, ?, ?, ?)');
  }

  /** Opens (creating if needed) `<dir>/embeddings.sqlite`; a foreign or corrupt file is moved aside and rebuilt. */
  static open(dir: string, opts: EmbeddingCacheOptions = {}): EmbeddingCache {
    const file = embeddingCachePath(dir);
    try {
      mkdirSync(dir, { recursive: true });
    } catch (err) {
      throw new InputError(`Cannot create the cache folder ${dir}: ${(err as Error).message}`, { cause: err });
    }
    const inode = inodeOf(file);
    try {
      return new EmbeddingCache(openChecked(file), file);
    } catch (err) {
      if (!isCorruption(err)) throw new InputError(`Cannot open the embedding cache ${file}: ${(err as Error).message}`, { cause: err });
      return withRepairLock(file, () => {
        // Another process that met the same bad file may have replaced it meanwhile: move only the file we judged.
        if (inodeOf(file) === inode) {
          const aside = moveAside(file);
          const warn = opts.onWarning ?? ((message: string) => process.emitWarning(message));
          warn(`the embedding cache ${file} was unusable (${(err as Error).message}); moved it to ${aside} and started an empty cache`);
        }
        return new EmbeddingCache(openChecked(file), file);
      });
    }
  }

  getText(fingerprint: string, prompt: string): Float32Array | undefined {
    const row = this.getTextStmt.get(fingerprint, prompt);
    return row && fromBlob(row.embedding);
  }

  getTexts(fingerprint: string, prompts: readonly string[]): (Float32Array | undefined)[] {
    return this.db.transaction(() => prompts.map((p) => this.getText(fingerprint, p)))();
  }

  putText(fingerprint: string, prompt: string, embedding: Float32Array): void {
    this.putTexts(fingerprint, [{ prompt, embedding }]);
  }

  putTexts(fingerprint: string, entries: readonly TextEntry[]): void {
    this.db.transaction(() => {
      for (const e of entries) this.putTextStmt.run(fingerprint, e.prompt, toBlob(e.embedding));
    }).immediate();
  }

  getImage(fingerprint: string, contentHash: string, mode: string): Float32Array | undefined {
    const row = this.getImageStmt.get(fingerprint, contentHash, mode);
    return row && fromBlob(row.embedding);
  }

  getImages(fingerprint: string, mode: string, contentHashes: readonly string[]): (Float32Array | undefined)[] {
    return this.db.transaction(() => contentHashes.map((h) => this.getImage(fingerprint, h, mode)))();
  }

  putImage(fingerprint: string, contentHash: string, mode: string, embedding: Float32Array): void {
    this.putImages(fingerprint, mode, [{ contentHash, embedding }]);
  }

  putImages(fingerprint: string, mode: string, entries: readonly ImageEntry[]): void {
    this.db.transaction(() => {
      for (const e of entries) this.putImageStmt.run(fingerprint, e.contentHash, mode, toBlob(e.embedding));
    }).immediate();
  }

  info(): EmbeddingCacheInfo {
    const count = (table: string) => (this.db.prepare(`SELECT count(*) AS n FROM ${table}`).get() as { n: number }).n;
    const models = this.db.prepare(`
      SELECT model AS fingerprint, sum(kind = 'text') AS textRows, sum(kind = 'image') AS imageRows FROM (
        SELECT model, 'text' AS kind FROM text_embeddings UNION ALL SELECT model, 'image' FROM image_embeddings)
      GROUP BY model ORDER BY model`).all() as CacheModelRows[];
    return { path: this.path, bytes: fileBytes(this.path) + fileBytes(`${this.path}-wal`), textRows: count('text_embeddings'), imageRows: count('image_embeddings'), models };
  }

  /** Deletes every embedding and gives the space back to the filesystem. */
  clear(): { textRows: number; imageRows: number } {
    const removed = this.db.transaction(() => ({
      textRows: this.db.prepare('DELETE FROM text_embeddings').run().changes,
      imageRows: this.db.prepare('DELETE FROM image_embeddings').run().changes,
    })).immediate();
    this.db.exec('VACUUM');
    this.db.pragma('wal_checkpoint(TRUNCATE)');
    return removed;
  }

  close(): void {
    if (this.db.open) this.db.close();
  }
}

function inodeOf(file: string): number | undefined {
  try {
    return statSync(file).ino;
  } catch {
    return undefined;
  }
}

function fileBytes(file: string): number {
  try {
    return statSync(file).size;
  } catch {
    return 0;
  }
}
