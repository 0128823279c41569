/**
 * Runs the pickscore CLI as a child process, with pipes (not a TTY) for stdout and stderr.
 *
 * Under `npm test` the suite runs from build/ after `npm run build` compiled dist/, so the real bin
 * (bin/pickscore.js -> dist/cli/main.js) is spawned. A test build elsewhere (tsc --outDir) runs the
 * same main() from the compiled tree beside the test, since dist/ may be stale or absent there.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { repoRoot } from './paths.js';

const compiledMain = new URL('../../src/cli/main.js', import.meta.url).href;
const runsFromNpmBuild = fileURLToPath(import.meta.url).startsWith(path.join(repoRoot, 'build') + path.sep);

/**
 * A one-line bin beside the compiled tree, like bin/pickscore.js. It must be a file: node flags such as
 * --input-type would be inherited by the image pool's worker threads, which reject them.
 */
function compiledTreeBin(): string {
  const file = fileURLToPath(new URL('../../pickscore-test-bin.mjs', import.meta.url));
  writeFileSync(file, `const { main } = await import(${JSON.stringify(compiledMain)});\nawait main(process.argv);\n`);
  return file;
}

export const cliEntry: string[] = [runsFromNpmBuild ? path.join(repoRoot, 'bin', 'pickscore.js') : compiledTreeBin()];

export interface CliResult { code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }

/** Spawns `command` with stdin closed and collects its stdout and stderr as text. */
export function spawnCollecting(command: string, args: string[], opts: { cwd: string; env: NodeJS.ProcessEnv }): { child: ChildProcess; done: Promise<CliResult> } {
  const child = spawn(command, args, { cwd: opts.cwd, env: opts.env, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout?.setEncoding('utf8').on('data', (chunk: string) => { stdout += chunk; });
  child.stderr?.setEncoding('utf8').on('data', (chunk: string) => { stderr += chunk; });
  const done = new Promise<CliResult>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr }));
  });
  return { child, done };
}

/** Sends `signal` to the child once, the first time a stderr chunk satisfies `when` (a progress line, say). */
export function signalWhen(child: ChildProcess, when: (stderrChunk: string) => boolean, signal: NodeJS.Signals): void {
  let sent = false;
  child.stderr?.on('data', (chunk: string) => {
    if (sent || !when(chunk)) return;
    sent = true;
    child.kill(signal);
  });
}

export function spawnCli(args: string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv } = {}): { child: ChildProcess; done: Promise<CliResult> } {
  return spawnCollecting(process.execPath, [...cliEntry, ...args], { cwd: opts.cwd ?? repoRoot, env: { ...process.env, ...opts.env } });
}

export function runCli(args: string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv } = {}): Promise<CliResult> {
  return spawnCli(args, opts).done;
}
