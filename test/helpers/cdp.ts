/**
 * Headless Chromium driven through the DevTools protocol over a pipe (`--remote-debugging-pipe`: the
 * browser reads commands on fd 3 and answers on fd 4, each message JSON ended by a NUL byte), for tests
 * that must look inside a rendered page: run JavaScript in it, read layout, time its load, and take
 * full-page screenshots at a chosen width and colour scheme. No dependency and no port: nothing but
 * this process can talk to the browser, and it starts with the suite's flags that keep it off the
 * network (BASE_FLAGS).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { Readable, Writable } from 'node:stream';
import { BASE_FLAGS, chromiumPath } from './chromium.js';

type Json = Record<string, unknown>;
interface Pending { resolve(value: Json): void; reject(err: Error): void; method: string; timer: NodeJS.Timeout }
interface Waiter { method: string; sessionId: string | undefined; resolve(params: Json): void }

const COMMAND_TIMEOUT_MS = 60_000;

export class Browser {
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();
  private waiters: Waiter[] = [];
  private readonly listeners: ((method: string, params: Json, sessionId: string | undefined) => void)[] = [];
  private buffered = '';
  private closed = false;

  private constructor(private readonly child: ChildProcess, private readonly profile: string) {
    const input = child.stdio[4] as Readable;
    input.setEncoding('utf8');
    input.on('data', (chunk: string) => this.receive(chunk));
    child.on('exit', () => this.fail(new Error('chromium exited')));
  }

  static async launch(): Promise<Browser> {
    if (!chromiumPath) throw new Error('chromium is not installed');
    const profile = await mkdtemp(path.join(os.tmpdir(), 'pickscore-cdp-'));
    const child = spawn(chromiumPath, [...BASE_FLAGS, `--user-data-dir=${profile}`, '--remote-debugging-pipe', '--no-default-browser-check', 'about:blank'],
      { stdio: ['ignore', 'ignore', 'pipe', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr!.on('data', (chunk: Buffer) => { stderr = (stderr + chunk.toString()).slice(-4000); });
    const browser = new Browser(child, profile);
    try {
      await browser.send('Browser.getVersion');
    } catch (err) {
      await browser.close();
      throw new Error(`chromium did not start: ${(err as Error).message}\n${stderr}`);
    }
    return browser;
  }

  /** A new tab, attached in flat mode: its commands carry its session id. */
  async newPage(): Promise<Page> {
    const { targetId } = await this.send('Target.createTarget', { url: 'about:blank' }) as { targetId: string };
    const { sessionId } = await this.send('Target.attachToTarget', { targetId, flatten: true }) as { sessionId: string };
    const page = new Page(this, sessionId);
    await page.init();
    return page;
  }

  send(method: string, params: Json = {}, sessionId?: string): Promise<Json> {
    if (this.closed) return Promise.reject(new Error(`${method}: the browser is closed`));
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new Error(`${method}: no answer from chromium in ${COMMAND_TIMEOUT_MS / 1000} s`));
      }, COMMAND_TIMEOUT_MS);
      this.pending.set(id, { resolve, reject, method, timer });
      (this.child.stdio[3] as Writable).write(`${JSON.stringify({ id, method, params, ...(sessionId ? { sessionId } : {}) })}\0`);
    });
  }

  /** The next event of this name (for this session), waited for at most timeoutMs. */
  waitFor(method: string, sessionId: string | undefined, timeoutMs = COMMAND_TIMEOUT_MS): Promise<Json> {
    return new Promise((resolve, reject) => {
      const waiter: Waiter = { method, sessionId, resolve: (params) => { clearTimeout(timer); resolve(params); } };
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w !== waiter);
        reject(new Error(`no ${method} from chromium in ${timeoutMs / 1000} s`));
      }, timeoutMs);
      this.waiters.push(waiter);
    });
  }

  onEvent(listener: (method: string, params: Json, sessionId: string | undefined) => void): void {
    this.listeners.push(listener);
  }

  async close(): Promise<void> {
    if (!this.closed) {
      this.closed = true;
      const exited = new Promise((resolve) => this.child.once('exit', resolve));
      if (this.child.exitCode === null && this.child.signalCode === null) {
        this.child.kill('SIGTERM');
        const timer = setTimeout(() => this.child.kill('SIGKILL'), 5_000);
        await exited;
        clearTimeout(timer);
      }
    }
    await rm(this.profile, { recursive: true, force: true, maxRetries: 3 });
  }

  private receive(chunk: string): void {
    this.buffered += chunk;
    let end: number;
    while ((end = this.buffered.indexOf('\0')) >= 0) {
      const message = JSON.parse(this.buffered.slice(0, end)) as { id?: number; method?: string; params?: Json; result?: Json; error?: { message: string }; sessionId?: string };
      this.buffered = this.buffered.slice(end + 1);
      if (message.id !== undefined) {
        const pending = this.pending.get(message.id);
        if (!pending) continue;
        this.pending.delete(message.id);
        clearTimeout(pending.timer);
        if (message.error) pending.reject(new Error(`${pending.method}: ${message.error.message}`));
        else pending.resolve(message.result ?? {});
      } else if (message.method) {
        for (const listener of this.listeners) listener(message.method, message.params ?? {}, message.sessionId);
        const matched = this.waiters.filter((w) => w.method === message.method && w.sessionId === message.sessionId);
        this.waiters = this.waiters.filter((w) => !matched.includes(w));
        for (const w of matched) w.resolve(message.params ?? {});
      }
    }
  }

  private fail(err: Error): void {
    for (const [id, pending] of this.pending) {
      clearTimeout(pending.timer);
      pending.reject(new Error(`${pending.method}: ${err.message}`));
      this.pending.delete(id);
    }
  }
}

export interface LoadTiming {
  /** From navigation start (performance.now() = 0) to the end of DOMContentLoaded and of the load event, in ms. */
  domContentLoadedMs: number;
  loadMs: number;
  /** performance.now() in the first animation frame after load: the page laid out and painted. */
  firstFrameAfterLoadMs: number;
  /** As the test process saw it: from sending Page.navigate to that first frame. */
  wallMs: number;
}

export class Page {
  /** Console errors, uncaught exceptions and Content-Security-Policy violations the page reported. */
  readonly problems: string[] = [];

  constructor(private readonly browser: Browser, readonly sessionId: string) {
    browser.onEvent((method, params, session) => {
      if (session !== this.sessionId) return;
      if (method === 'Runtime.exceptionThrown') this.problems.push(`exception: ${JSON.stringify((params.exceptionDetails as Json | undefined)?.exception ?? params)}`);
      if (method === 'Log.entryAdded') {
        const entry = params.entry as { level: string; text: string; source: string };
        if (entry.level === 'error' || entry.source === 'security') this.problems.push(`${entry.source}: ${entry.text}`);
      }
      if (method === 'Runtime.consoleAPICalled' && params.type === 'error') this.problems.push(`console.error: ${JSON.stringify(params.args)}`);
    });
  }

  async init(): Promise<void> {
    for (const domain of ['Page', 'Runtime', 'Log']) await this.send(`${domain}.enable`);
  }

  send(method: string, params: Json = {}): Promise<Json> {
    return this.browser.send(method, params, this.sessionId);
  }

  /** Sets the viewport (CSS pixels) and the colour scheme `prefers-color-scheme` reports. */
  async emulate(opts: { width: number; height: number; colorScheme?: 'light' | 'dark' }): Promise<void> {
    await this.send('Emulation.setDeviceMetricsOverride', { width: opts.width, height: opts.height, deviceScaleFactor: 1, mobile: false });
    await this.send('Emulation.setEmulatedMedia', { features: [{ name: 'prefers-color-scheme', value: opts.colorScheme ?? 'light' }] });
  }

  /** Loads the URL and waits for its load event and the first frame after it. */
  async load(url: string): Promise<LoadTiming> {
    const started = performance.now();
    const loaded = this.browser.waitFor('Page.loadEventFired', this.sessionId);
    const navigation = await this.send('Page.navigate', { url });
    if (typeof navigation.errorText === 'string') throw new Error(`cannot load ${url}: ${navigation.errorText}`);
    await loaded;
    const timing = await this.evaluate<Omit<LoadTiming, 'wallMs'>>(`new Promise((resolve) => requestAnimationFrame(() => requestAnimationFrame(() => {
      const nav = performance.getEntriesByType('navigation')[0];
      resolve({ domContentLoadedMs: nav.domContentLoadedEventEnd, loadMs: nav.loadEventEnd, firstFrameAfterLoadMs: performance.now() });
    })))`);
    return { ...timing, wallMs: performance.now() - started };
  }

  /** Runs an expression in the page (awaiting a promise) and returns its value, which must be JSON. */
  async evaluate<T>(expression: string): Promise<T> {
    const answer = await this.send('Runtime.evaluate', { expression, returnByValue: true, awaitPromise: true }) as { result: { value: T }; exceptionDetails?: Json };
    if (answer.exceptionDetails) throw new Error(`evaluate failed: ${JSON.stringify(answer.exceptionDetails)}`);
    return answer.result.value;
  }

  /** A PNG of the whole page at the emulated width (or of its first maxHeight pixels). */
  async screenshot(opts: { maxHeight?: number } = {}): Promise<Buffer> {
    const metrics = await this.send('Page.getLayoutMetrics') as { cssContentSize: { width: number; height: number }; cssLayoutViewport: { clientWidth: number } };
    const width = metrics.cssLayoutViewport.clientWidth;
    const height = Math.min(Math.ceil(metrics.cssContentSize.height), opts.maxHeight ?? Infinity);
    const { data } = await this.send('Page.captureScreenshot', { format: 'png', captureBeyondViewport: true, clip: { x: 0, y: 0, width, height, scale: 1 } }) as { data: string };
    return Buffer.from(data, 'base64');
  }
}

/** Runs `use` with a fresh browser and page, and always closes the browser. */
export async function withPage<T>(use: (page: Page) => Promise<T>): Promise<T> {
  const browser = await Browser.launch();
  try {
    return await use(await browser.newPage());
  } finally {
    await browser.close();
  }
}
