/**
 * What a command costs before it does anything: the CPU time of `pickscore --version` and
 * `pickscore --help` against a program that loads commander alone and prints a version, each in its
 * own process, in alternating rounds, side by side. CPU time (user + system, of the child processes)
 * rather than wall time, since the machines are shared: a loaded machine stretches the wall clock much
 * more than the work done. It also lists the native addons that `--version` loaded (none, if the lazy
 * doors hold).
 *
 *   npm run -s bench -- startup
 */
import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';
import { median } from '../src/score/stats.js';
import type { BenchContext } from './run.js';

export const name = 'startup';

const ROUNDS = 20;
const TICKS_PER_SECOND = 100;

/** CPU seconds of the children this process has waited for (cutime + cstime of /proc/self/stat). */
function childrenCpuSeconds(): number {
  const stat = readFileSync('/proc/self/stat', 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // Fields after the command name start at field 3 (state); cutime and cstime are fields 16 and 17.
  return (Number(fields[16 - 3]) + Number(fields[17 - 3])) / TICKS_PER_SECOND;
}

function cpuOf(args: string[]): number {
  const before = childrenCpuSeconds();
  const run = spawnSync(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  if (run.status !== 0) throw new Error(`${args.join(' ')} exited ${run.status}: ${run.stderr.toString()}`);
  return childrenCpuSeconds() - before;
}

export async function run(ctx: BenchContext): Promise<Record<string, unknown>> {
  const bin = new URL('../../bin/pickscore.js', import.meta.url).pathname;
  const commanderOnly = path.join(ctx.workDir, 'commander-only.mjs');
  const commander = createRequire(import.meta.url).resolve('commander');
  writeFileSync(commanderOnly, `import { Command } from ${JSON.stringify(commander)};\nnew Command('x').version('0.0.0').parse(['node', 'x', '--version']);\n`);
  // The native addons a process loaded are the .node files it has mapped: /proc/self/maps lists them,
  // however they were loaded (import, require, a library loading its own).
  const probe = path.join(ctx.workDir, 'version-addons.mjs');
  writeFileSync(probe, `process.argv = [process.argv[0], ${JSON.stringify(bin)}, '--version'];\n`
    + `const out = process.stdout.write.bind(process.stdout); process.stdout.write = () => true;\n`
    + `await import(${JSON.stringify(bin)});\n`
    + `const maps = (await import('node:fs')).readFileSync('/proc/self/maps', 'utf8');\n`
    + `out(JSON.stringify([...new Set(maps.split('\\n').map((l) => l.split(/\\s+/)[5]).filter((f) => f && f.endsWith('.node')))]));\n`);
  const addons = JSON.parse(spawnSync(process.execPath, [probe], { encoding: 'utf8' }).stdout) as string[];
  const samples: Record<'version' | 'help' | 'commanderOnly', number[]> = { version: [], help: [], commanderOnly: [] };
  ctx.log(`startup: ${ROUNDS} rounds of pickscore --version, pickscore --help and a commander-only program`);
  for (let round = 0; round < ROUNDS; round++) {
    samples.commanderOnly.push(cpuOf([commanderOnly]));
    samples.version.push(cpuOf([bin, '--version']));
    samples.help.push(cpuOf([bin, '--help']));
  }
  const round = (seconds: number) => Math.round(seconds * 1000) / 1000;
  const summary = (values: number[]) => ({ median_cpu_s: round(median(values)), min_cpu_s: round(Math.min(...values)), max_cpu_s: round(Math.max(...values)) });
  return {
    rounds: ROUNDS,
    version: summary(samples.version),
    help: summary(samples.help),
    commander_only: summary(samples.commanderOnly),
    version_over_commander_only: round(median(samples.version) / median(samples.commanderOnly)),
    native_addons_loaded_by_version: addons.map((file) => path.basename(file)),
  };
}
