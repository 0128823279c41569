/**
 * The embedding cache: one SQLite file (better-sqlite3, WAL mode) under the cache folder.
 * Text embeddings are keyed by (model fingerprint, prompt); image embeddings by (model fingerprint,
 * content hash of the file, preprocessing mode), so a rerun or a new prompt over the same folder
 * encodes only what is new. Several processes may read and write the same file at once: WAL lets
 * readers run beside one writer, and busy_timeout makes a second writer wait instead of failing.
 *
 * The file carries an `application_id` and a schema version. A file that is not ours, from another
 * schema, or corrupt is reported through `onWarning`, moved aside as `<file>.corrupt-<timestamp>`,
 * and rebuilt empty: a cache can always be recomputed, a run should not fail because of it. SQLite
 * notices a damaged page only when it reads it, which may be in the middle of a run, so every
 * operation (not only the open) moves a damaged file aside and is then retried once on a fresh file.
 * Any other failure (a full disk, a read-only file or folder, a lock held past the busy timeout) is
 * an EmbeddingCacheUnavailable naming the file: the pipeline then goes on without the cache, and the
 * `cache` commands report it.
 */
import { createRequire } from 'node:module';
import type Database from 'better-sqlite3';
import { closeSync, openSync, renameSync, rmSync, statSync } from 'node:fs';
import path from 'node:path';
import { InputError, UsageError, errorMessage, expectedMessage } from '../errors.js';
import { makeDirsSync } from './make-dirs.js';

type SqliteModule = typeof Database;
let sqlite: SqliteModule | undefined;

/**
 * better-sqlite3, loaded when the first cache opens: a command that uses no cache (--no-cache, --help,
 * a merge) never loads the native addon. A CommonJS module, so require() keeps EmbeddingCache.open synchronous.
 */
function loadSqlite(): SqliteModule {
  sqlite ??= createRequire(import.meta.url)('better-sqlite3') as SqliteModule;
  return sqlite;
}

/** "PSEC" (pickscore embedding cache), stored in the SQLite header. */
export const CACHE_APPLICATION_ID = 0x50534543;
export const CACHE_SCHEMA_VERSION = 1;
export const CACHE_FILE_NAME = 'embeddings.sqlite';
/** How long a writer waits for another process's write transaction before giving up. */
const BUSY_TIMEOUT_MS = 30_000;

export interface EmbeddingCacheOptions {
  /** Told when a foreign or corrupt file was moved aside; defaults to process.emitWarning. */
  onWarning?: (message: string) => void;
  /** How long to wait for another process's write lock before the cache counts as unavailable (default 30 s). */
  busyTimeoutMs?: number;
  /**
   * The most pages the file may grow to (SQLite's max_page_count); a write past it fails as it would on
   * a full disk. Unbounded by default; the tests use it to fill a cache without filling a disk.
   */
  maxPages?: number;
}

/**
 * The cache cannot be used, for a reason that moving the file aside would not cure: its folder or file
 * cannot be created or written (full disk, read-only filesystem, permissions) or another process held
 * its lock past the busy timeout. The message names the file and what was being done.
 */
export class EmbeddingCacheUnavailable extends InputError {}

interface Settings { warn: (message: string) => void; busyTimeoutMs: number; maxPages?: number }

function settingsFrom(opts: EmbeddingCacheOptions): Settings {
  for (const [name, value] of [['busyTimeoutMs', opts.busyTimeoutMs], ['maxPages', opts.maxPages]] as const) {
    if (value !== undefined && !(Number.isSafeInteger(value) && value >= 0)) throw new UsageError(expectedMessage('a non-negative integer', name, value));
  }
  return {
    warn: opts.onWarning ?? ((message: string) => process.emitWarning(message)),
    busyTimeoutMs: opts.busyTimeoutMs ?? BUSY_TIMEOUT_MS,
    maxPages: opts.maxPages,
  };
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
/** `width` and `height` are the image's, as a row reports them; a hit with them needs no decoding. */
export interface ImageEntry { contentHash: string; embedding: Float32Array; width?: number; height?: number }
export interface CachedImage { embedding: Float32Array; width: number; height: number }

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
    width INTEGER, height INTEGER,
    PRIMARY KEY (model, content_hash, mode)) WITHOUT ROWID;
`;

/**
 * Columns added to schema 1 in place: the image's size, so that a cache hit needs no decoding to fill a
 * row. They may be NULL (rows written before them, or by an older pickscore sharing the file, which
 * reads and writes the file as before), and such a row is no hit for getImageEntry.
 */
const ADDED_IMAGE_COLUMNS = ['width', 'height'] as const;

function addMissingColumns(db: Database.Database): void {
  const present = new Set((db.prepare("SELECT name FROM pragma_table_info('image_embeddings')").all() as { name: string }[]).map((c) => c.name));
  for (const column of ADDED_IMAGE_COLUMNS) {
    if (!present.has(column)) db.exec(`ALTER TABLE image_embeddings ADD COLUMN ${column} INTEGER`);
  }
}

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
    if ((db.pragma('application_id', { simple: true }) as number) === CACHE_APPLICATION_ID) return addMissingColumns(db);
    db.exec(SCHEMA);
    db.prepare("INSERT OR REPLACE INTO meta (key, value) VALUES ('schema_version', ?)").run(String(CACHE_SCHEMA_VERSION));
    db.pragma(`application_id = ${CACHE_APPLICATION_ID}`);
  }).immediate();
}

function openChecked(file: string, settings: Settings): Database.Database {
  const db = new (loadSqlite())(file, { timeout: settings.busyTimeoutMs });
  try {
    db.pragma(`busy_timeout = ${settings.busyTimeoutMs}`);
    if (settings.maxPages !== undefined) db.pragma(`max_page_count = ${settings.maxPages}`);
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

function sqliteCode(err: unknown): string {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : '';
}

/** SQLite's own words for a file that is damaged or not a database at all (SQLITE_CORRUPT and its extended codes). */
function isCorruption(err: unknown): boolean {
  const code = sqliteCode(err);
  return err instanceof CacheFileRejected || code === 'SQLITE_NOTADB' || code.startsWith('SQLITE_CORRUPT');
}

/** Another process moved the file aside (it found it damaged) while this one had it open: reopen the path. */
function isMovedAway(err: unknown): boolean {
  return sqliteCode(err) === 'SQLITE_READONLY_DBMOVED';
}

/** A failure of the file or the filesystem (SQLite's, or Node's errno), as opposed to a bug in the caller. */
function isStorageFailure(err: unknown): boolean {
  return (sqlite !== undefined && err instanceof sqlite.SqliteError) || /^E[A-Z]+$/.test(sqliteCode(err));
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

/** One open connection to the file: its prepared statements and the inode it was opened on. */
class Connection {
  readonly getText: Database.Statement<[string, string], { embedding: Buffer }>;
  readonly putText: Database.Statement<[string, string, Buffer]>;
  readonly getImage: Database.Statement<[string, string, string], { embedding: Buffer; width: number | null; height: number | null }>;
  readonly putImage: Database.Statement<[string, string, string, Buffer, number | null, number | null]>;

  constructor(readonly db: Database.Database, readonly inode: number | undefined) {
    this.getText = db.prepare('SELECT embedding FROM text_embeddings WHERE model = ? AND prompt = ?');
    this.putText = db.prepare('INSERT OR REPLACE INTO text_embeddings (model, prompt, embedding) VALUES (?, ?, ?)');
    this.getImage = db.prepare('SELECT embedding, width, height FROM image_embeddings WHERE model = ? AND content_hash = ? AND mode = ?');
    this.putImage = db.prepare('INSERT OR REPLACE INTO image_embeddings (model, content_hash, mode, embedding, width, height) VALUES (?, ?, ?, ?, ?, ?)');
  }

  static open(file: string, settings: Settings): Connection {
    const db = openChecked(file, settings);
    return new Connection(db, inodeOf(file));
  }

  close(): void {
    try {
      if (this.db.open) this.db.close();
    } catch {
      // Closing checkpoints the WAL into the file, which may fail on a damaged one; it is being dropped anyway.
    }
  }
}

function unavailable(file: string, doing: string, err: unknown): EmbeddingCacheUnavailable {
  if (err instanceof EmbeddingCacheUnavailable) return err;
  return new EmbeddingCacheUnavailable(`Cannot use the embedding cache ${file} (${doing}): ${errorMessage(err)}`, { cause: err });
}

/**
 * Moves the damaged file aside, with one warning naming both files, and opens a fresh one in its place.
 * `judged` is the inode found damaged: another process that met the same file may have replaced it
 * already, and then its replacement is simply opened.
 */
function replaceDamaged(file: string, judged: number | undefined, damage: unknown, doing: string, settings: Settings): Connection {
  try {
    return withRepairLock(file, () => {
      if (inodeOf(file) === judged) {
        const aside = moveAside(file);
        settings.warn(`the embedding cache ${file} was unusable (${errorMessage(damage)}, found while ${doing}); moved it to ${aside} and started an empty cache`);
      }
      return Connection.open(file, settings);
    });
  } catch (err) {
    throw unavailable(file, `replacing the damaged file, found while ${doing}`, err);
  }
}

export class EmbeddingCache {
  /** Set once the cache has failed for good: every later call throws it again. */
  private failure: EmbeddingCacheUnavailable | null = null;

  private constructor(private connection: Connection, readonly path: string, private readonly settings: Settings) {}

  /**
   * Opens (creating if needed) `<dir>/embeddings.sqlite`; a foreign or corrupt file is moved aside and
   * rebuilt. Throws EmbeddingCacheUnavailable when the folder or file cannot be created or opened.
   */
  static open(dir: string, opts: EmbeddingCacheOptions = {}): EmbeddingCache {
    const file = embeddingCachePath(dir);
    const settings = settingsFrom(opts);
    try {
      makeDirsSync(dir);
    } catch (err) {
      throw new EmbeddingCacheUnavailable(`Cannot create the cache folder ${dir}: ${errorMessage(err)}`, { cause: err });
    }
    const inode = inodeOf(file);
    let connection: Connection;
    try {
      connection = Connection.open(file, settings);
    } catch (err) {
      if (!isCorruption(err)) throw unavailable(file, 'opening it', err);
      connection = replaceDamaged(file, inode, err, 'opening it', settings);
    }
    return new EmbeddingCache(connection, file, settings);
  }

  getText(fingerprint: string, prompt: string): Float32Array | undefined {
    return this.use('reading a text embedding', (c) => readBlob(c.getText.get(fingerprint, prompt)));
  }

  getTexts(fingerprint: string, prompts: readonly string[]): (Float32Array | undefined)[] {
    return this.use('reading text embeddings', (c) => c.db.transaction(() => prompts.map((p) => readBlob(c.getText.get(fingerprint, p))))());
  }

  putText(fingerprint: string, prompt: string, embedding: Float32Array): void {
    this.putTexts(fingerprint, [{ prompt, embedding }]);
  }

  putTexts(fingerprint: string, entries: readonly TextEntry[]): void {
    this.use('writing text embeddings', (c) => c.db.transaction(() => {
      for (const e of entries) c.putText.run(fingerprint, e.prompt, toBlob(e.embedding));
    }).immediate());
  }

  getImage(fingerprint: string, contentHash: string, mode: string): Float32Array | undefined {
    return this.use('reading an image embedding', (c) => readBlob(c.getImage.get(fingerprint, contentHash, mode)));
  }

  /** The embedding with the image's size; a row without the size (written before it was stored) is a miss. */
  getImageEntry(fingerprint: string, contentHash: string, mode: string): CachedImage | undefined {
    return this.use('reading an image embedding', (c) => {
      const row = c.getImage.get(fingerprint, contentHash, mode);
      if (!row || !isSize(row.width) || !isSize(row.height)) return undefined;
      return { embedding: fromBlob(row.embedding), width: row.width, height: row.height };
    });
  }

  getImages(fingerprint: string, mode: string, contentHashes: readonly string[]): (Float32Array | undefined)[] {
    return this.use('reading image embeddings', (c) => c.db.transaction(() => contentHashes.map((h) => readBlob(c.getImage.get(fingerprint, h, mode))))());
  }

  putImage(fingerprint: string, contentHash: string, mode: string, embedding: Float32Array): void {
    this.putImages(fingerprint, mode, [{ contentHash, embedding }]);
  }

  putImages(fingerprint: string, mode: string, entries: readonly ImageEntry[]): void {
    this.use('writing image embeddings', (c) => c.db.transaction(() => {
      for (const e of entries) c.putImage.run(fingerprint, e.contentHash, mode, toBlob(e.embedding), e.width ?? null, e.height ?? null);
    }).immediate());
  }

  info(): EmbeddingCacheInfo {
    return this.use('counting its rows', ({ db }) => {
      const count = (table: string) => (db.prepare(`SELECT count(*) AS n FROM ${table}`).get() as { n: number }).n;
      const models = db.prepare(`
        SELECT model AS fingerprint, sum(kind = 'text') AS textRows, sum(kind = 'image') AS imageRows FROM (
          SELECT model, 'text' AS kind FROM text_embeddings UNION ALL SELECT model, 'image' FROM image_embeddings)
        GROUP BY model ORDER BY model`).all() as CacheModelRows[];
      return { path: this.path, bytes: fileBytes(this.path) + fileBytes(`${this.path}-wal`), textRows: count('text_embeddings'), imageRows: count('image_embeddings'), models };
    });
  }

  /** Deletes every embedding and gives the space back to the filesystem. */
  clear(): { textRows: number; imageRows: number } {
    return this.use('clearing it', ({ db }) => {
      const removed = db.transaction(() => ({
        textRows: db.prepare('DELETE FROM text_embeddings').run().changes,
        imageRows: db.prepare('DELETE FROM image_embeddings').run().changes,
      })).immediate();
      db.exec('VACUUM');
      db.pragma('wal_checkpoint(TRUNCATE)');
      return removed;
    });
  }

  close(): void {
    this.connection.close();
  }

  /**
   * Runs one operation. A damaged file is moved aside and the operation retried once on a fresh file;
   * a file another process moved aside is reopened at its path and the operation retried; any other
   * failure of the storage makes the cache unavailable for good. Errors that are not the storage's
   * (a bug, a bad argument) pass through unchanged.
   */
  private use<T>(doing: string, operation: (connection: Connection) => T): T {
    if (this.failure) throw this.failure;
    try {
      return operation(this.connection);
    } catch (err) {
      if (!isStorageFailure(err)) throw err;
      if (!isCorruption(err) && !isMovedAway(err)) throw this.fail(doing, err);
      const stale = this.connection;
      stale.close();
      try {
        this.connection = isCorruption(err)
          ? replaceDamaged(this.path, stale.inode, err, doing, this.settings)
          : Connection.open(this.path, this.settings);
      } catch (reopenError) {
        throw this.fail(doing, reopenError);
      }
    }
    try {
      return operation(this.connection);
    } catch (err) {
      if (!isStorageFailure(err)) throw err;
      throw this.fail(doing, err);
    }
  }

  private fail(doing: string, err: unknown): EmbeddingCacheUnavailable {
    this.failure = unavailable(this.path, doing, err);
    this.connection.close();
    return this.failure;
  }
}

function isSize(value: unknown): value is number {
  return Number.isSafeInteger(value) && (value as number) > 0;
}

function readBlob(row: { embedding: Buffer } | undefined): Float32Array | undefined {
  return row && fromBlob(row.embedding);
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
