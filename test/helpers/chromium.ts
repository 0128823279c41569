/**
 * Headless Chromium for tests of generated HTML (the rank gallery, the eval report). Tests skip with
 * a printed notice when Debian's `chromium` is not installed. Every flag that would reach the network
 * is off, and each run gets its own throwaway profile.
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';

const CANDIDATES = [process.env.CHROMIUM_BIN, '/usr/bin/chromium', '/usr/bin/chromium-browser'];

export const chromiumPath: string | undefined = CANDIDATES.find((p): p is string => typeof p === 'string' && p !== '' && existsSync(p));

/** For `test(name, { skip: skipWithoutChromium }, ...)`; prints why when it skips. */
export const skipWithoutChromium: string | false = chromiumPath ? false : skipNotice();

function skipNotice(): string {
  const reason = 'chromium is not installed (/usr/bin/chromium); headless browser tests are skipped';
  process.stderr.write(`notice: ${reason}\n`);
  return reason;
}

export const BASE_FLAGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--disable-dev-shm-usage',
  '--hide-scrollbars',
];

/** Loads a local HTML file and returns the DOM after scripts and layout, as Chromium serialises it. */
export async function dumpDom(htmlFile: string, opts: { timeoutMs?: number } = {}): Promise<string> {
  return withProfile((profile) => runChromium([...BASE_FLAGS, `--user-data-dir=${profile}`, '--dump-dom', pathToFileURL(htmlFile).href], opts.timeoutMs));
}

/** Renders a local HTML file to a PNG screenshot. `colorScheme: 'dark'` emulates a dark-mode reader. */
export async function screenshot(htmlFile: string, pngFile: string, opts: { width?: number; height?: number; colorScheme?: 'light' | 'dark'; timeoutMs?: number } = {}): Promise<void> {
  const size = `--window-size=${opts.width ?? 1200},${opts.height ?? 900}`;
  // Blink's PreferredColorScheme: 0 is dark, 1 is light (what `prefers-color-scheme` then reports).
  const scheme = `--blink-settings=preferredColorScheme=${opts.colorScheme === 'dark' ? 0 : 1}`;
  await withProfile((profile) =>
    runChromium([...BASE_FLAGS, scheme, `--user-data-dir=${profile}`, `--screenshot=${pngFile}`, size, pathToFileURL(htmlFile).href], opts.timeoutMs),
  );
}

async function withProfile<T>(run: (profile: string) => Promise<T>): Promise<T> {
  const profile = await mkdtemp(path.join(os.tmpdir(), 'pickscore-chromium-'));
  try {
    return await run(profile);
  } finally {
    await rm(profile, { recursive: true, force: true });
  }
}

function runChromium(args: string[], timeoutMs = 60_000): Promise<string> {
  if (!chromiumPath) return Promise.reject(new Error('chromium is not installed'));
  return new Promise((resolve, reject) => {
    execFile(chromiumPath!, args, { timeout: timeoutMs, maxBuffer: 64 * 1024 * 1024, encoding: 'utf8' }, (err, stdout, stderr) => {
      if (err) reject(new Error(`chromium failed: ${err.message}\n${stderr.slice(-2000)}`));
      else resolve(stdout);
    });
  });
}
