/**
 * Downloads from the Hugging Face Hub into the Hub's own cache layout, so that files a Python user has
 * already downloaded are reused, and the other way round:
 *
 *   <hub cache>/models--{org}--{name}/blobs/{etag}                 the bytes, named by their ETag
 *   <hub cache>/models--{org}--{name}/snapshots/{commit}/{file}    relative symlink to the blob
 *   <hub cache>/models--{org}--{name}/refs/{revision}              the commit the revision pointed to
 *
 * The protocol follows huggingface_hub: a HEAD request on `${endpoint}/${repo}/resolve/${revision}/${file}`
 * yields X-Repo-Commit, the ETag (X-Linked-Etag for LFS files, whose value is the file's sha256) and the
 * size (X-Linked-Size or Content-Length); LFS files answer with a redirect to a CDN, which is then fetched
 * without the token. Partial downloads are kept as `blobs/{etag}.incomplete` and resumed with a Range request.
 */
import { closeSync, openSync, writeSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import { copyFile, link, lstat, open, readFile, rename, rm, stat, symlink, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { InterruptedError, ModelError, UsageError, expectedMessage } from '../errors.js';
import { sha256File } from '../io/file-hash.js';
import { makeDirs } from '../io/make-dirs.js';

export interface HubProgress { file: string; done: number; total: number }

/** A failed request that will be tried again after `delayMs`: attempt `attempt` of `attempts` failed. */
export interface HubRetry { file: string; attempt: number; attempts: number; delayMs: number; reason: string }

/** One line for a log: what failed, and when the next try comes. */
export function describeRetry(e: HubRetry): string {
  const seconds = e.delayMs >= 1000 ? `${Math.round(e.delayMs / 100) / 10} s` : `${e.delayMs} ms`;
  return `${e.reason}; trying again in ${seconds} (try ${e.attempt + 1} of ${e.attempts})`;
}

/**
 * How often a request is tried, and the pauses between tries: exponential from `baseDelayMs`, at most
 * `maxDelayMs`, unless the server's Retry-After asks for longer (up to a minute).
 */
export interface RetryPolicy { attempts: number; baseDelayMs: number; maxDelayMs: number }

export interface HubDownloadOptions {
  repo: string;
  revision?: string;
  files: string[];
  /** Downloaded when the repository has them; a 404 for one of these is not an error. */
  optionalFiles?: string[];
  endpoint?: string;
  token?: string;
  /** Overrides $HF_HOME; the Hub cache is then `${hfHome}/hub`. */
  hfHome?: string;
  onProgress?: (e: HubProgress) => void;
  /** Told before each pause between tries, so a long wait is never silent. */
  onRetry?: (e: HubRetry) => void;
  retry?: Partial<RetryPolicy>;
  /**
   * A request that receives nothing for this long (no answer to a metadata request, no bytes of a
   * download) fails as a try that may pass: it is tried again, resuming, after a warning. Default:
   * $HF_HUB_DOWNLOAD_TIMEOUT seconds, else 10 s, as huggingface_hub.
   */
  idleTimeoutMs?: number;
  /**
   * Aborting stops at once: the request in flight is closed, a pause between tries ends, and an
   * InterruptedError says how much of the file is kept for the next run to resume from.
   */
  signal?: AbortSignal;
}

/** A file, revision or repository the Hub does not have (HTTP 404). Callers may fall back to another file. */
export class HubNotFoundError extends ModelError {
  constructor(message: string, readonly file: string) {
    super(message);
  }
}

/** HF_HUB_OFFLINE is set and the file is not in the cache. */
export class HubOfflineError extends ModelError {}

/**
 * The Hub could not be reached at all: the name does not resolve, the connection is refused or never
 * answers. `transient` failures are tried again; the error a caller sees is the last one.
 */
export class HubUnreachableError extends ModelError {
  constructor(message: string, options: ErrorOptions & { transient: boolean }) {
    super(message, options);
    this.transient = options.transient;
  }

  readonly transient: boolean;
}

/**
 * A failure that may pass: a dropped connection, or an overloaded server (HTTP 429 or 5xx); a refused
 * or silent one is a transient HubUnreachableError.
 * The request is tried again after a pause; a download resumes from the bytes already on disk.
 */
class TransientHubError extends ModelError {
  constructor(message: string, options?: ErrorOptions & { retryAfterMs?: number }) {
    super(message, options);
    this.retryAfterMs = options?.retryAfterMs;
  }

  readonly retryAfterMs: number | undefined;
}

const DEFAULT_ENDPOINT = 'https://huggingface.co';
/** A Hub repository id, `org/name`, as a regular-expression source (the registry adds `@revision`). */
export const REPO_ID_SOURCE = String.raw`[A-Za-z0-9][\w.-]*\/[\w.-]+`;
const REPO_PATTERN = new RegExp(`^${REPO_ID_SOURCE}$`);
const COMMIT_PATTERN = /^[0-9a-f]{40}$/;
const SHA256_PATTERN = /^[0-9a-f]{64}$/;
/** Five tries, pausing 1, 2, 4 and 8 s between them: about 15 s of patience before a pull gives up. */
const DEFAULT_RETRY: RetryPolicy = { attempts: 5, baseDelayMs: 1000, maxDelayMs: 8000 };
/**
 * huggingface_hub's default read timeout. Without one, a connection that opens and then sends nothing
 * waited for the HTTP client's own limit (300 s for headers), five times over, in silence.
 */
const DEFAULT_IDLE_TIMEOUT_MS = 10_000;
const IDLE_TIMEOUT_VARIABLE = 'HF_HUB_DOWNLOAD_TIMEOUT';
/** A Retry-After beyond this is not waited for in full: the run would look hung. */
const MAX_RETRY_AFTER_MS = 60_000;
/** Overload, maintenance and gateway answers, from the Hub or its CDN: worth another try. */
const TRANSIENT_STATUSES = new Set([408, 429, 500, 502, 503, 504]);
/** Connection errors that do not pass with a retry: the name does not resolve, or the address is wrong. */
const PERMANENT_NETWORK_CODES = new Set(['ENOTFOUND', 'ERR_INVALID_URL', 'ERR_TLS_CERT_ALTNAME_INVALID', 'CERT_HAS_EXPIRED', 'DEPTH_ZERO_SELF_SIGNED_CERT', 'UNABLE_TO_VERIFY_LEAF_SIGNATURE']);
const MAX_REDIRECTS = 5;

const LOCK_POLL_MS = 250;

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Runs `work` holding `lockFile` (created exclusively, holding our pid), unless another live process
 * holds it: then waits, and returns as soon as `done()` says that process finished the job. A lock
 * left by a dead process is taken over. Used for blobs here and for model conversion in registry.ts.
 */
export async function withLockFile<T>(lockFile: string, done: () => Promise<T | undefined>, work: () => Promise<T>, signal?: AbortSignal): Promise<T> {
  await makeDirs(path.dirname(lockFile));
  for (;;) {
    if (signal?.aborted) throw new InterruptedError(`Interrupted while waiting for the process that holds ${lockFile}`);
    const finished = await done();
    if (finished !== undefined) return finished;
    try {
      const handle = await open(lockFile, 'wx');
      await handle.writeFile(String(process.pid));
      await handle.close();
      try {
        return (await done()) ?? (await work());
      } finally {
        await rm(lockFile, { force: true });
      }
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    const holder = Number((await readFile(lockFile, 'utf8').catch(() => '')).trim());
    if (holder > 0 && !pidAlive(holder)) await rm(lockFile, { force: true });
    else await new Promise((resolve) => setTimeout(resolve, LOCK_POLL_MS));
  }
}

function hfHomeDir(hfHome?: string): string {
  return hfHome ?? process.env.HF_HOME ?? path.join(process.env.XDG_CACHE_HOME ?? path.join(os.homedir(), '.cache'), 'huggingface');
}

/** The Hub cache folder, as huggingface_hub computes it. */
export function hubCacheDir(hfHome?: string): string {
  if (!hfHome && process.env.HF_HUB_CACHE) return process.env.HF_HUB_CACHE;
  return path.join(hfHomeDir(hfHome), 'hub');
}

/** $HF_TOKEN, else the token `huggingface-cli login` saved ($HF_TOKEN_PATH, default $HF_HOME/token). */
async function hubToken(hfHome?: string): Promise<string | undefined> {
  if (process.env.HF_TOKEN) return process.env.HF_TOKEN;
  const file = (!hfHome && process.env.HF_TOKEN_PATH) || path.join(hfHomeDir(hfHome), 'token');
  const saved = (await readFile(file, 'utf8').catch(() => '')).trim();
  return saved || undefined;
}

/** `models--{org}--{name}` inside the Hub cache. */
export function hubRepoDir(repo: string, hfHome?: string): string {
  return path.join(hubCacheDir(hfHome), `models--${repo.split('/').join('--')}`);
}

/** The idle timeout: the option, else $HF_HUB_DOWNLOAD_TIMEOUT in seconds (fractions allowed), else the default. */
function idleTimeoutMs(option: number | undefined): number {
  if (option !== undefined) {
    if (!(Number.isFinite(option) && option > 0)) throw new UsageError(expectedMessage('a number of milliseconds above 0', 'idleTimeoutMs', option));
    return option;
  }
  const value = process.env[IDLE_TIMEOUT_VARIABLE];
  if (value === undefined || value.trim() === '') return DEFAULT_IDLE_TIMEOUT_MS;
  const seconds = Number(value);
  if (!(Number.isFinite(seconds) && seconds > 0)) throw new UsageError(expectedMessage('a number of seconds above 0', IDLE_TIMEOUT_VARIABLE, value));
  return seconds * 1000;
}

function describeSeconds(ms: number): string {
  return `${Math.round(ms / 100) / 10} s`;
}

function megabytes(bytes: number): string {
  return `${(bytes / 1e6).toFixed(1)} MB`;
}

function isOffline(): boolean {
  const value = (process.env.HF_HUB_OFFLINE ?? '').toLowerCase();
  return value === '1' || value === 'true' || value === 'yes' || value === 'on';
}

interface RepoContext {
  repo: string;
  revision: string;
  endpoint: string;
  token: string | undefined;
  repoDir: string;
  onProgress?: (e: HubProgress) => void;
  onRetry?: (e: HubRetry) => void;
  retry: RetryPolicy;
  idleTimeoutMs: number;
  signal?: AbortSignal;
}

/**
 * Makes every requested file available in one snapshot folder and returns that folder. Files already in
 * the cache for this revision need no request, so this works offline (HF_HUB_OFFLINE=1) once pulled.
 */
export async function hubDownload(opts: HubDownloadOptions): Promise<string> {
  if (!REPO_PATTERN.test(opts.repo)) throw new UsageError(expectedMessage('a Hub repository "org/name"', 'the model repository', opts.repo));
  for (const file of [...opts.files, ...(opts.optionalFiles ?? [])]) {
    if (file === '' || path.isAbsolute(file) || file.split('/').includes('..')) {
      throw new UsageError(expectedMessage('a relative file path inside the repository', `a file of ${opts.repo}`, file));
    }
  }
  const ctx: RepoContext = {
    repo: opts.repo,
    revision: opts.revision ?? 'main',
    endpoint: (opts.endpoint ?? process.env.HF_ENDPOINT ?? DEFAULT_ENDPOINT).replace(/\/+$/, ''),
    token: opts.token ?? (await hubToken(opts.hfHome)),
    repoDir: hubRepoDir(opts.repo, opts.hfHome),
    onProgress: opts.onProgress,
    onRetry: opts.onRetry,
    retry: { ...DEFAULT_RETRY, ...opts.retry },
    idleTimeoutMs: idleTimeoutMs(opts.idleTimeoutMs),
    signal: opts.signal,
  };
  let commit: string | undefined;
  const wanted = [...opts.files.map((f) => ({ file: f, optional: false })), ...(opts.optionalFiles ?? []).map((f) => ({ file: f, optional: true }))];
  for (const { file, optional } of wanted) {
    try {
      commit = await ensureFile(ctx, file, commit);
    } catch (err) {
      if (!(optional && (err instanceof HubNotFoundError || err instanceof HubOfflineError))) throw err;
    }
  }
  commit ??= await cachedCommit(ctx);
  if (!commit) throw new ModelError(`No files of ${ctx.repo} at revision ${ctx.revision} could be found`);
  return path.join(ctx.repoDir, 'snapshots', commit);
}

/** The commit a revision resolves to in the local cache, if it was recorded. */
async function cachedCommit(ctx: RepoContext): Promise<string | undefined> {
  if (COMMIT_PATTERN.test(ctx.revision)) return ctx.revision;
  try {
    const ref = (await readFile(path.join(ctx.repoDir, 'refs', ctx.revision), 'utf8')).trim();
    return COMMIT_PATTERN.test(ref) ? ref : undefined;
  } catch {
    return undefined;
  }
}

/** Whether `p` exists; a symlink counts only if its target does. */
export async function exists(p: string): Promise<boolean> {
  try {
    await stat(p); // follows the symlink: a dangling link does not count
    return true;
  } catch {
    return false;
  }
}

/** Returns the commit the file was stored under. `knownCommit` pins later files to the first file's commit. */
async function ensureFile(ctx: RepoContext, file: string, knownCommit: string | undefined): Promise<string> {
  const cached = knownCommit ?? (await cachedCommit(ctx));
  if (cached && (await exists(path.join(ctx.repoDir, 'snapshots', cached, file)))) return cached;
  if (isOffline()) {
    throw new HubOfflineError(`${ctx.repo}/${file} at revision ${ctx.revision} is not in the Hub cache (${ctx.repoDir}) and HF_HUB_OFFLINE is set`);
  }
  // Once the first file has told us the commit, the rest are fetched at that commit, so that one
  // snapshot never mixes two commits when the branch moves during the pull.
  const revision = knownCommit ?? ctx.revision;
  throwIfInterrupted(ctx, file);
  const meta = await withRetries(ctx, file, () => fetchMetadata(ctx, file, revision));
  const blobPath = path.join(ctx.repoDir, 'blobs', meta.etag);
  // Two processes may want the same blob (two models share the LAION processor files): one downloads, the other waits.
  await withLockFile(`${blobPath}.lock`, async () => ((await exists(blobPath)) ? true : undefined), async () => {
    await downloadBlob(ctx, file, meta, blobPath);
    return true;
  }, ctx.signal);
  await linkSnapshot(ctx, meta.commit, file, meta.etag);
  if (!COMMIT_PATTERN.test(ctx.revision) || ctx.revision !== meta.commit) {
    await makeDirs(path.dirname(path.join(ctx.repoDir, 'refs', ctx.revision)));
    await writeFile(path.join(ctx.repoDir, 'refs', ctx.revision), meta.commit);
  }
  return meta.commit;
}

interface FileMetadata { commit: string; etag: string; size: number; downloadUrl: string }

function resolveUrl(ctx: RepoContext, file: string, revision: string): string {
  const encodedFile = file.split('/').map(encodeURIComponent).join('/');
  return `${ctx.endpoint}/${ctx.repo}/resolve/${encodeURIComponent(revision)}/${encodedFile}`;
}

/** The token goes only to the endpoint's own origin, never across a redirect to another host. */
function headersFor(ctx: RepoContext, url: string, extra: Record<string, string> = {}): Record<string, string> {
  const headers: Record<string, string> = { 'Accept-Encoding': 'identity', 'User-Agent': 'pickscore', ...extra };
  if (ctx.token && new URL(url).origin === new URL(ctx.endpoint).origin) headers.Authorization = `Bearer ${ctx.token}`;
  return headers;
}

const UNREACHABLE_ADVICE = '. Check the network or HF_ENDPOINT; with the files already cached, HF_HUB_OFFLINE=1 skips the network';

/** A metadata request, given up on when nothing answers within the idle timeout. */
async function head(ctx: RepoContext, file: string, url: string): Promise<Response> {
  throwIfInterrupted(ctx, file);
  const controller = new AbortController();
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    controller.abort();
  }, ctx.idleTimeoutMs);
  const interrupt = () => controller.abort();
  ctx.signal?.addEventListener('abort', interrupt);
  try {
    return await fetch(url, { method: 'HEAD', redirect: 'manual', headers: headersFor(ctx, url), signal: controller.signal });
  } catch (err) {
    throwIfInterrupted(ctx, file);
    if (timedOut) {
      throw new HubUnreachableError(`No answer from ${new URL(url).origin} in ${describeSeconds(ctx.idleTimeoutMs)} to the request for ${ctx.repo}/${file} `
        + `(${IDLE_TIMEOUT_VARIABLE} sets how long to wait)${UNREACHABLE_ADVICE}`, { transient: true });
    }
    throw unreachable(ctx, file, url, err, UNREACHABLE_ADVICE);
  } finally {
    clearTimeout(timer);
    ctx.signal?.removeEventListener('abort', interrupt);
  }
}

/** A request that got no answer: retried unless the failure cannot pass (a name that does not resolve, a bad certificate). */
function unreachable(ctx: RepoContext, file: string, url: string, err: unknown, advice = ''): ModelError {
  const message = `Could not reach ${new URL(url).origin} to download ${ctx.repo}/${file}: ${describeCause(err)}${advice}`;
  const codes = [err, err instanceof Error ? err.cause : undefined].map((e) => (e as NodeJS.ErrnoException | undefined)?.code);
  const permanent = codes.some((code) => code !== undefined && PERMANENT_NETWORK_CODES.has(code));
  return new HubUnreachableError(message, { cause: err, transient: !permanent });
}

function throwIfInterrupted(ctx: RepoContext, file: string): void {
  if (ctx.signal?.aborted) throw new InterruptedError(`Interrupted: stopped fetching ${ctx.repo}/${file}`);
}

/** Resolves after `ms`, or rejects with an InterruptedError as soon as the signal aborts (or at once if it has). */
function pause(ctx: RepoContext, file: string, ms: number): Promise<void> {
  const interrupted = () => new InterruptedError(`Interrupted: stopped fetching ${ctx.repo}/${file} while waiting to try again`);
  return new Promise((resolve, reject) => {
    if (ctx.signal?.aborted) {
      reject(interrupted());
      return;
    }
    const interrupt = () => {
      clearTimeout(timer);
      reject(interrupted());
    };
    const timer = setTimeout(() => {
      ctx.signal?.removeEventListener('abort', interrupt);
      resolve();
    }, ms);
    ctx.signal?.addEventListener('abort', interrupt, { once: true });
  });
}

function isTransient(err: unknown): err is TransientHubError | HubUnreachableError {
  return err instanceof TransientHubError || (err instanceof HubUnreachableError && err.transient);
}

/** Retry-After in seconds or as an HTTP date; undefined when absent or unreadable. */
export function parseRetryAfter(value: string | null, now = Date.now()): number | undefined {
  if (!value) return undefined;
  const trimmed = value.trim();
  if (/^\d+$/.test(trimmed)) return Number(trimmed) * 1000;
  const date = Date.parse(trimmed);
  return Number.isNaN(date) ? undefined : Math.max(0, date - now);
}

/** The pause after failed attempt `attempt` (1-based). */
export function retryDelayMs(policy: RetryPolicy, attempt: number, retryAfterMs?: number): number {
  const backoff = Math.min(policy.maxDelayMs, policy.baseDelayMs * 2 ** (attempt - 1));
  return retryAfterMs === undefined ? backoff : Math.min(Math.max(backoff, retryAfterMs), MAX_RETRY_AFTER_MS);
}

/** Runs `request` until it succeeds, fails for good, or has failed transiently `ctx.retry.attempts` times. */
async function withRetries<T>(ctx: RepoContext, file: string, request: () => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await request();
    } catch (err) {
      if (!isTransient(err) || attempt >= ctx.retry.attempts) throw err;
      const delayMs = retryDelayMs(ctx.retry, attempt, err instanceof TransientHubError ? err.retryAfterMs : undefined);
      ctx.onRetry?.({ file, attempt, attempts: ctx.retry.attempts, delayMs, reason: err.message });
      await pause(ctx, file, delayMs);
    }
  }
}

function describeCause(err: unknown): string {
  const cause = err instanceof Error && err.cause instanceof Error ? err.cause : err;
  return cause instanceof Error ? cause.message : String(cause);
}

interface StatusLike { status: number; statusText: string; header(name: string): string | null }

function headerValue(value: string | string[] | undefined): string | null {
  return value === undefined ? null : Array.isArray(value) ? value.join(', ') : value;
}

function statusError(ctx: RepoContext, file: string, revision: string, res: StatusLike): ModelError {
  const where = `${file} in ${ctx.repo} at revision ${revision}`;
  if (res.status === 401 || res.status === 403) {
    return new ModelError(`Access denied (HTTP ${res.status}) to ${where}: the repository may be gated or private. ` +
      (ctx.token ? 'The token in HF_TOKEN was refused or lacks access; accept the model\'s terms on the Hub or use another token'
        : 'Set HF_TOKEN to a Hugging Face access token that can read it'));
  }
  if (res.status === 404) {
    const code = res.header('x-error-code');
    const what = code === 'RepoNotFound' ? `Repository ${ctx.repo} not found`
      : code === 'RevisionNotFound' ? `Revision ${revision} not found in ${ctx.repo}`
        : `File ${file} not found in ${ctx.repo} at revision ${revision}`;
    return new HubNotFoundError(`${what} (HTTP 404 from ${ctx.endpoint})`, file);
  }
  const message = `The Hub answered HTTP ${res.status} ${res.statusText} for ${where}`;
  if (TRANSIENT_STATUSES.has(res.status)) return new TransientHubError(message, { retryAfterMs: parseRetryAfter(res.header('retry-after')) });
  return new ModelError(message);
}

/** "abc", W/"abc" -> abc */
function normalizeEtag(value: string | null): string | undefined {
  if (!value) return undefined;
  return value.replace(/^W\//, '').replace(/^"|"$/g, '');
}

/** HEAD, following redirects on the same host (renamed repos) and stopping at the first one to another host (the CDN). */
async function fetchMetadata(ctx: RepoContext, file: string, revision: string): Promise<FileMetadata> {
  let url = resolveUrl(ctx, file, revision);
  for (let hop = 0; hop <= MAX_REDIRECTS; hop++) {
    const res = await head(ctx, file, url);
    const location = res.headers.get('location');
    const target = location ? new URL(location, url).href : undefined;
    if (res.status >= 300 && res.status < 400 && target && new URL(target).origin === new URL(url).origin && !res.headers.get('x-linked-etag')) {
      url = target;
      continue;
    }
    if (!res.ok && !(res.status >= 300 && res.status < 400)) {
      throw statusError(ctx, file, revision, { status: res.status, statusText: res.statusText, header: (name) => res.headers.get(name) });
    }
    const commit = res.headers.get('x-repo-commit') ?? undefined;
    const etag = normalizeEtag(res.headers.get('x-linked-etag') ?? res.headers.get('etag'));
    const size = Number(res.headers.get('x-linked-size') ?? res.headers.get('content-length'));
    if (!commit || !COMMIT_PATTERN.test(commit)) throw new ModelError(`${expectedMessage('a 40-hex commit in the X-Repo-Commit header', `${ctx.repo}/${file} at ${url}`, commit)}; is HF_ENDPOINT a Hugging Face Hub?`);
    if (!etag || !/^[\w.-]+$/.test(etag)) throw new ModelError(expectedMessage('an ETag header', `${ctx.repo}/${file} at ${url}`, etag));
    if (!Number.isSafeInteger(size) || size < 0) throw new ModelError(expectedMessage('a file size in X-Linked-Size or Content-Length', `${ctx.repo}/${file} at ${url}`, size));
    return { commit, etag, size, downloadUrl: target ?? url };
  }
  throw new ModelError(`Too many redirects for ${ctx.repo}/${file} at revision ${revision}`);
}

/** Thrown into a request that received nothing for the idle timeout. */
class StalledError extends Error {}
/**
 * Responses whose request was closed for stalling. Once the answer has begun, destroying the request
 * makes the response fail with a plain "aborted", so the stall is recorded here for fetchInto to name.
 */
const stalledResponses = new WeakSet<http.IncomingMessage>();

/**
 * GET with node:http, following every redirect; the Authorization header is dropped once the host changes.
 * node:http rather than fetch: its 'data' events hand over every byte that arrived before a dropped
 * connection, which is what a resume needs. The socket's idle timeout covers the wait for the answer
 * and every gap between chunks; the signal closes the request at once.
 */
async function getFollowing(ctx: RepoContext, file: string, start: string, extra: Record<string, string>): Promise<http.IncomingMessage> {
  let url = start;
  for (let hop = 0; hop <= MAX_REDIRECTS; hop++) {
    const res = await new Promise<http.IncomingMessage>((resolve, reject) => {
      const client = url.startsWith('https:') ? https : http;
      let response: http.IncomingMessage | undefined;
      const req = client.get(url, { headers: headersFor(ctx, url, extra), signal: ctx.signal }, (r) => {
        response = r;
        resolve(r);
      }).on('error', reject);
      req.setTimeout(ctx.idleTimeoutMs, () => {
        if (response) stalledResponses.add(response);
        req.destroy(new StalledError(`no bytes from ${new URL(url).origin} for ${describeSeconds(ctx.idleTimeoutMs)}`));
      });
    }).catch((err: unknown) => {
      throwIfInterrupted(ctx, file);
      if (err instanceof StalledError) {
        throw new HubUnreachableError(`No answer from ${new URL(url).origin} in ${describeSeconds(ctx.idleTimeoutMs)} to the download of ${ctx.repo}/${file} `
          + `(${IDLE_TIMEOUT_VARIABLE} sets how long to wait)`, { transient: true });
      }
      throw unreachable(ctx, file, url, err);
    });
    const status = res.statusCode ?? 0;
    if (status >= 300 && status < 400 && res.headers.location) {
      res.resume();
      url = new URL(res.headers.location, url).href;
      continue;
    }
    return res;
  }
  throw new ModelError(`Too many redirects for ${ctx.repo}/${file}`);
}

async function fileSize(p: string): Promise<number> {
  try {
    return (await stat(p)).size;
  } catch {
    return 0;
  }
}

/**
 * Streams the file into `{blob}.incomplete`, resuming with a Range request after a dropped connection,
 * then checks the size and (for LFS files) the sha256 before renaming it to its final name.
 */
async function downloadBlob(ctx: RepoContext, file: string, meta: FileMetadata, blobPath: string): Promise<void> {
  await makeDirs(path.dirname(blobPath));
  const partial = `${blobPath}.incomplete`;
  try {
    await withRetries(ctx, file, () => fetchInto(ctx, file, meta, partial));
  } catch (err) {
    if (err instanceof InterruptedError) {
      throw new InterruptedError(`Interrupted: stopped downloading ${ctx.repo}/${file}; ${megabytes(await fileSize(partial))} of ${megabytes(meta.size)} `
        + `are kept in ${partial} and the next run resumes from there`, { cause: err });
    }
    if (!isTransient(err)) throw err;
    throw new ModelError(`Download of ${ctx.repo}/${file} failed ${ctx.retry.attempts} times (last: ${describeCause(err)}); ` +
      `${await fileSize(partial)} of ${meta.size} bytes are kept in ${partial} and the next run resumes from there`, { cause: err });
  }
  await verifyBlob(ctx, file, meta, partial);
  await rename(partial, blobPath);
}

async function fetchInto(ctx: RepoContext, file: string, meta: FileMetadata, partial: string): Promise<void> {
  let offset = await fileSize(partial);
  if (offset > meta.size) {
    await rm(partial, { force: true });
    offset = 0;
  }
  if (offset === meta.size && meta.size > 0) return;
  const res = await getFollowing(ctx, file, meta.downloadUrl, offset > 0 ? { Range: `bytes=${offset}-` } : {});
  const status = res.statusCode ?? 0;
  if (status < 200 || status >= 300) {
    res.resume();
    throw statusError(ctx, file, ctx.revision, { status, statusText: res.statusMessage ?? '', header: (name) => headerValue(res.headers[name]) });
  }
  if (offset > 0 && status !== 206) offset = 0; // the server ignored the Range: start over
  const report = (done: number) => ctx.onProgress?.({ file, done, total: meta.size });
  let done = offset;
  report(done);
  const fd = openSync(partial, offset > 0 ? 'a' : 'w');
  try {
    // Written synchronously as each chunk arrives, so every byte received before a dropped connection is on disk to resume from.
    await new Promise<void>((resolve, reject) => {
      res.on('data', (chunk: Buffer) => {
        writeSync(fd, chunk);
        done += chunk.length;
        report(done);
      });
      res.on('end', resolve);
      res.on('error', reject);
      res.on('aborted', () => reject(new Error('the connection was closed early')));
    });
  } catch (err) {
    throwIfInterrupted(ctx, file);
    if (stalledResponses.has(res)) {
      throw new HubUnreachableError(`The download of ${ctx.repo}/${file} stalled at ${megabytes(done)} of ${megabytes(meta.size)}: `
        + `no bytes for ${describeSeconds(ctx.idleTimeoutMs)} (${IDLE_TIMEOUT_VARIABLE} sets how long to wait)`, { transient: true });
    }
    throw new TransientHubError(`Connection lost while downloading ${ctx.repo}/${file}: ${describeCause(err)}`, { cause: err });
  } finally {
    closeSync(fd);
  }
  if (done < meta.size) throw new TransientHubError(`The connection closed after ${done} of ${meta.size} bytes of ${ctx.repo}/${file}`);
}

async function verifyBlob(ctx: RepoContext, file: string, meta: FileMetadata, partial: string): Promise<void> {
  const size = await fileSize(partial);
  if (size !== meta.size) {
    await rm(partial, { force: true });
    throw new ModelError(`${expectedMessage(`${meta.size} bytes`, `${ctx.repo}/${file}`, `${size} bytes`)}; the bad download was deleted, run again to retry`);
  }
  if (!SHA256_PATTERN.test(meta.etag)) return; // a git object id: not a content hash we can recompute cheaply
  const actual = await sha256File(partial);
  if (actual !== meta.etag) {
    await rm(partial, { force: true });
    throw new ModelError(`Corrupt download of ${ctx.repo}/${file}: sha256 ${actual} does not match the Hub's ${meta.etag}; the bad download was deleted, run again to retry`);
  }
}

/** The file operations linkSnapshot uses; tests replace `symlink` to stand for a filesystem without links. */
export interface SnapshotFileOps {
  symlink: (target: string, linkPath: string) => Promise<void>;
  link: (existing: string, newPath: string) => Promise<void>;
  copyFile: (from: string, to: string) => Promise<void>;
}
const NODE_FILE_OPS: SnapshotFileOps = { symlink: (t, l) => symlink(t, l), link, copyFile };

/** Errors of a filesystem or an account that cannot make the link asked for (Windows without the privilege, FAT, some mounts). */
const LINK_UNSUPPORTED = new Set(['EPERM', 'EACCES', 'ENOTSUP', 'EOPNOTSUPP', 'ENOSYS', 'EINVAL', 'EXDEV', 'EMLINK']);

/**
 * snapshots/{commit}/{file} -> relative link to blobs/{etag}, as huggingface_hub writes it. Where symlinks
 * cannot be made, a hard link to the blob (no extra space), and failing that a copy, as huggingface_hub
 * falls back on Windows: the snapshot path is what readers open, whichever it is.
 */
export async function linkSnapshotFile(blobPath: string, linkPath: string, ops: SnapshotFileOps = NODE_FILE_OPS): Promise<'symlink' | 'hardlink' | 'copy'> {
  await makeDirs(path.dirname(linkPath));
  try {
    await lstat(linkPath);
    await rm(linkPath, { force: true }); // a dangling or stale link
  } catch {
    // absent: nothing to replace
  }
  const temp = `${linkPath}.${process.pid}.tmp`;
  const unsupported = (err: unknown) => LINK_UNSUPPORTED.has((err as NodeJS.ErrnoException).code ?? '');
  let made: 'symlink' | 'hardlink' | 'copy' = 'symlink';
  try {
    try {
      await ops.symlink(path.relative(path.dirname(linkPath), blobPath), temp);
    } catch (err) {
      if (!unsupported(err)) throw err;
      made = 'hardlink';
      try {
        await ops.link(blobPath, temp);
      } catch (linkErr) {
        if (!unsupported(linkErr)) throw linkErr;
        made = 'copy';
        await ops.copyFile(blobPath, temp);
      }
    }
    await rename(temp, linkPath);
  } catch (err) {
    await rm(temp, { force: true });
    throw err;
  }
  return made;
}

async function linkSnapshot(ctx: RepoContext, commit: string, file: string, etag: string): Promise<void> {
  await linkSnapshotFile(path.join(ctx.repoDir, 'blobs', etag), path.join(ctx.repoDir, 'snapshots', commit, file));
}
