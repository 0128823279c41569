/**
 * `npm run bench`: runs every benchmark module in this folder and prints one JSON document to stdout.
 * Each module exports `name` and `run(ctx)`, returning plain figures. Ratios are always measured side by
 * side in the same run, because the machines are shared and noisy. Not part of the test suite.
 *
 *   npm run bench                 all benchmarks
 *   npm run bench -- preprocess   only those whose name contains "preprocess"
 */
import { readdir, mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import os from 'node:os';
import { fileURLToPath, pathToFileURL } from 'node:url';

export interface BenchContext {
  /** Scratch folder for generated inputs; large generated checkpoints live here. */
  workDir: string;
  /** Progress lines for a human; never mixed into the JSON on stdout. */
  log(message: string): void;
}

export interface BenchModule {
  name: string;
  run(ctx: BenchContext): Promise<Record<string, unknown>>;
}

async function main(): Promise<void> {
  const filter = process.argv[2];
  const here = path.dirname(fileURLToPath(import.meta.url));
  const files = (await readdir(here)).filter((f) => f.endsWith('.bench.js')).sort();
  const workDir = path.resolve(process.env.PICKSCORE_BENCH_DIR ?? path.join(process.cwd(), '.bench-out'));
  await mkdir(workDir, { recursive: true });
  const ctx: BenchContext = { workDir, log: (m) => process.stderr.write(`[bench] ${m}\n`) };
  const results: Record<string, unknown> = {};
  for (const file of files) {
    const mod = (await import(pathToFileURL(path.join(here, file)).href)) as BenchModule;
    if (filter && !mod.name.includes(filter)) continue;
    ctx.log(`running ${mod.name}`);
    const started = Date.now();
    try {
      results[mod.name] = { ...(await mod.run(ctx)), wall_s: (Date.now() - started) / 1000 };
    } catch (err) {
      results[mod.name] = { error: err instanceof Error ? err.stack ?? err.message : String(err) };
    }
  }
  const machine = { cpus: os.cpus().length, cpu_model: os.cpus()[0]?.model, total_mem_gib: os.totalmem() / 2 ** 30, node: process.version };
  const json = `${JSON.stringify({ machine, results }, null, 2)}\n`;
  // Also kept on disk: npm prints its own banner on stdout around `npm run bench` (`npm run -s bench` does not).
  await writeFile(path.join(workDir, 'results.json'), json);
  ctx.log(`results also in ${path.join(workDir, 'results.json')}`);
  process.stdout.write(json);
}

await main();
