/**
 * A loopback HTTP server that speaks the part of the Hugging Face Hub protocol that downloads use:
 * `/<org>/<name>/resolve/<revision>/<file>` with ETag, X-Repo-Commit, X-Linked-Etag and X-Linked-Size,
 * LFS files redirected to a content-addressed path (on a second "CDN" origin when asked), Range requests,
 * and faults injected on demand. It serves `<root>/<org>/<name>/<file>`; one revision per repository.
 */
import { createHash } from 'node:crypto';
import { readFileSync, readdirSync, statSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';

export interface RecordedRequest { server: 'hub' | 'cdn'; method: string; url: string; headers: http.IncomingHttpHeaders }

export interface HubServerFaults {
  /** Close the connection after this many body bytes of the named file, `times` times (default once). */
  dropAfter?: { file: string; bytes: number; times?: number };
  /** Flip bytes in the body of the named file (every time). */
  corrupt?: string;
  /** Answer 404 for the named file. */
  missing?: string;
  /** Answer 401 unless `Authorization: Bearer <token>` is sent. */
  requireToken?: string;
  /**
   * Answer `status` (with Retry-After when given) to the next `times` requests: metadata requests on
   * `/resolve/`, or GETs of LFS bytes.
   */
  overloaded?: { status: number; times: number; on: 'metadata' | 'bytes'; retryAfter?: string };
  /**
   * A stalled Hub: send the answer's head and the first `bytes` of the named file's body, then nothing
   * more while keeping the connection open, `times` times (default once).
   */
  stallAfter?: { file: string; bytes: number; times?: number };
  /** Accept the next `times` metadata requests and never answer them. */
  silent?: { times: number };
}

export interface HubServer {
  endpoint: string;
  requests: RecordedRequest[];
  faults: HubServerFaults;
  /** The commit every repository's revision resolves to. */
  commitOf(repo: string): string;
  close(): Promise<void>;
}

interface RepoFile { bytes: Buffer; lfs: boolean; sha256: string; gitSha1: string }

/** Weights go through LFS on the Hub; small text files are plain git objects. */
const LFS_EXTENSIONS = ['.safetensors', '.bin', '.onnx', '.pt'];

function listFiles(dir: string, prefix = ''): string[] {
  return readdirSync(dir).flatMap((name) => {
    const full = path.join(dir, name);
    return statSync(full).isDirectory() ? listFiles(full, `${prefix}${name}/`) : [`${prefix}${name}`];
  });
}

function loadRepos(root: string): Map<string, Map<string, RepoFile>> {
  const repos = new Map<string, Map<string, RepoFile>>();
  for (const org of readdirSync(root)) {
    for (const name of readdirSync(path.join(root, org))) {
      const dir = path.join(root, org, name);
      const files = new Map<string, RepoFile>();
      for (const file of listFiles(dir)) {
        const bytes = readFileSync(path.join(dir, file));
        files.set(file, {
          bytes,
          lfs: LFS_EXTENSIONS.includes(path.extname(file)),
          sha256: createHash('sha256').update(bytes).digest('hex'),
          gitSha1: createHash('sha1').update(`blob ${bytes.length}\0`).update(bytes).digest('hex'),
        });
      }
      repos.set(`${org}/${name}`, files);
    }
  }
  return repos;
}

export interface HubServerOptions {
  /** Serve LFS files from a second server, so that the redirect crosses to another origin. */
  cdnOnOtherOrigin?: boolean;
  /** Redirect plain (non-LFS) files to `/api/resolve-cache/...` on the same host, as huggingface.co does. */
  resolveCacheRedirect?: boolean;
  /** The commit of a repository, for manifests that pin one; others get a commit derived from their name. */
  commits?: Record<string, string>;
}

export async function startHubServer(root: string, opts: HubServerOptions = {}): Promise<HubServer> {
  const commitOf = (repo: string) => opts.commits?.[repo] ?? createHash('sha1').update(`commit of ${repo}`).digest('hex');
  const repos = loadRepos(root);
  const requests: RecordedRequest[] = [];
  const faults: HubServerFaults = {};
  const blobsBySha = new Map<string, { file: string; entry: RepoFile }>();
  for (const files of repos.values()) for (const [file, entry] of files) if (entry.lfs) blobsBySha.set(entry.sha256, { file, entry });

  const listen = async (server: http.Server) => {
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  };

  const sendBody = (req: http.IncomingMessage, res: http.ServerResponse, file: string, entry: RepoFile, headers: Record<string, string>) => {
    let body = entry.bytes;
    if (faults.corrupt === file) body = Buffer.from(body.map((b, i) => (i % 97 === 0 ? b ^ 0xff : b)));
    let status = 200;
    const range = /^bytes=(\d+)-$/.exec(req.headers.range ?? '');
    if (range) {
      const start = Number(range[1]);
      headers['Content-Range'] = `bytes ${start}-${body.length - 1}/${body.length}`;
      body = body.subarray(start);
      status = 206;
    }
    res.writeHead(status, { ...headers, 'Content-Length': String(body.length), 'Accept-Ranges': 'bytes' });
    if (req.method === 'HEAD') return void res.end();
    if (faults.stallAfter?.file === file && body.length > faults.stallAfter.bytes) {
      const left = (faults.stallAfter.times ?? 1) - 1;
      res.write(body.subarray(0, faults.stallAfter.bytes));
      faults.stallAfter = left > 0 ? { ...faults.stallAfter, times: left } : undefined;
      return; // nothing more: the client must notice the silence itself
    }
    if (faults.dropAfter?.file === file && body.length > faults.dropAfter.bytes) {
      const cut = faults.dropAfter.bytes;
      const left = (faults.dropAfter.times ?? 1) - 1;
      faults.dropAfter = left > 0 ? { ...faults.dropAfter, times: left } : undefined;
      // Half-close after the bytes are flushed, so the client reads them and then sees a premature end.
      res.write(body.subarray(0, cut), () => res.socket?.end());
      return;
    }
    res.end(body);
  };

  /** Answers the request with the overload fault if it is armed for this kind of request. */
  const refusedAsOverloaded = (res: http.ServerResponse, on: 'metadata' | 'bytes'): boolean => {
    const fault = faults.overloaded;
    if (!fault || fault.on !== on || fault.times <= 0) return false;
    fault.times -= 1;
    res.writeHead(fault.status, fault.retryAfter ? { 'Retry-After': fault.retryAfter } : {}).end();
    return true;
  };

  let cdnOrigin = '';
  const serveLfs = (req: http.IncomingMessage, res: http.ServerResponse, sha: string) => {
    if (req.method === 'GET' && refusedAsOverloaded(res, 'bytes')) return;
    const blob = blobsBySha.get(sha);
    if (!blob) return void res.writeHead(404).end();
    sendBody(req, res, blob.file, blob.entry, { ETag: `"${sha}"` });
  };

  const hub = http.createServer((req, res) => {
    requests.push({ server: 'hub', method: req.method ?? '', url: req.url ?? '', headers: req.headers });
    const url = decodeURIComponent(req.url ?? '');
    const lfs = /^\/lfs\/([0-9a-f]{64})$/.exec(url);
    if (lfs) return serveLfs(req, res, lfs[1]);
    const cached = /^\/api\/resolve-cache\/models\/([^/]+\/[^/]+)\/([0-9a-f]{40})\/(.+)$/.exec(url);
    const cachedEntry = cached && repos.get(cached[1])?.get(cached[3]);
    if (cached && cachedEntry) return sendBody(req, res, cached[3], cachedEntry, { 'X-Repo-Commit': cached[2], ETag: `"${cachedEntry.gitSha1}"` });
    const match = /^\/([^/]+\/[^/]+)\/resolve\/([^/]+)\/(.+)$/.exec(url);
    if (!match) return void res.writeHead(404).end();
    const [, repo, revision, file] = match;
    if (faults.silent && faults.silent.times > 0) {
      faults.silent.times -= 1;
      return; // the request is read and never answered
    }
    if (refusedAsOverloaded(res, 'metadata')) return;
    if (faults.requireToken && req.headers.authorization !== `Bearer ${faults.requireToken}`) {
      return void res.writeHead(401, { 'X-Error-Code': 'GatedRepo' }).end();
    }
    const files = repos.get(repo);
    if (!files) return void res.writeHead(404, { 'X-Error-Code': 'RepoNotFound' }).end();
    if (revision !== 'main' && revision !== commitOf(repo)) return void res.writeHead(404, { 'X-Error-Code': 'RevisionNotFound' }).end();
    const entry = files.get(file);
    if (!entry || faults.missing === file) return void res.writeHead(404, { 'X-Error-Code': 'EntryNotFound' }).end();
    const common = { 'X-Repo-Commit': commitOf(repo) };
    if (!entry.lfs && opts.resolveCacheRedirect) {
      return void res.writeHead(307, { ...common, Location: `/api/resolve-cache/models/${repo}/${commitOf(repo)}/${encodeURI(file)}` }).end();
    }
    if (!entry.lfs) return sendBody(req, res, file, entry, { ...common, ETag: `"${entry.gitSha1}"` });
    res.writeHead(302, {
      ...common,
      ETag: `"${entry.gitSha1}"`,
      'X-Linked-Etag': `"${entry.sha256}"`,
      'X-Linked-Size': String(entry.bytes.length),
      Location: opts.cdnOnOtherOrigin ? `${cdnOrigin}/lfs/${entry.sha256}` : `/lfs/${entry.sha256}`,
    }).end();
  });
  const cdn = http.createServer((req, res) => {
    requests.push({ server: 'cdn', method: req.method ?? '', url: req.url ?? '', headers: req.headers });
    const lfs = /^\/lfs\/([0-9a-f]{64})$/.exec(req.url ?? '');
    if (!lfs) return void res.writeHead(404).end();
    serveLfs(req, res, lfs[1]);
  });

  const endpoint = await listen(hub);
  cdnOrigin = await listen(cdn);
  const close = (server: http.Server) => new Promise<void>((resolve) => {
    server.closeAllConnections();
    server.close(() => resolve());
  });
  return { endpoint, requests, faults, commitOf, close: async () => { await Promise.all([close(hub), close(cdn)]); } };
}
