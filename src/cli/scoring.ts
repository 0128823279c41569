/**
 * What rank and eval do alike once their flags are parsed: the library's scoring options from the
 * shared flags (a translation: the library checks them), progress, and the lines about the workers of
 * a `--device cuda:all` run.
 */
import type { WorkerOutcome } from '../commands/all-devices.js';
import type { RunScorerOptions } from '../pipeline/options.js';
import type { ScorerFlags } from './flags.js';
import { UsageError } from '../errors.js';
import { SCORER_NAMES, type ScorerName } from '../scorers/scorers.js';
import { modelProgress, type Console } from './output.js';

/** The scoring options from the shared flags, with log lines and progress going to the console. */
export function scorerOptionsFromFlags(flags: ScorerFlags, console: Console): RunScorerOptions {
  const { model, models } = modelFlags(flags.model);
  return {
    scorers: flags.scorer,
    model,
    models,
    device: flags.device as RunScorerOptions['device'],
    precision: flags.precision,
    batchSize: flags.batchSize,
    threads: flags.threads,
    exif: flags.exif,
    resize: flags.resize,
    maxPixels: flags.maxPixels,
    cacheDir: flags.cache ? flags.cacheDir : false,
    log: (line) => console.log(line),
    onModelProgress: modelProgress(console).onProgress,
  };
}

/**
 * `--model` values: `<scorer>=<name|dir>` names a scorer's model (the text before `=` is a scorer
 * name, else the whole value is a model); a bare value names the model of the single scorer.
 */
export function modelFlags(values: readonly string[]): { model?: string; models?: Partial<Record<ScorerName, string>> } {
  let model: string | undefined;
  const models: Partial<Record<ScorerName, string>> = {};
  for (const value of values) {
    const eq = value.indexOf('=');
    const name = eq > 0 ? value.slice(0, eq) : '';
    if ((SCORER_NAMES as readonly string[]).includes(name)) {
      if (models[name as ScorerName] !== undefined) throw new UsageError(`--model ${name}= is given twice`);
      models[name as ScorerName] = value.slice(eq + 1);
    } else {
      if (model !== undefined) throw new UsageError(`--model is given twice (${model} and ${value}); with several scorers write --model <scorer>=<name|dir>`);
      model = value;
    }
  }
  return { ...(model !== undefined ? { model } : {}), ...(Object.keys(models).length > 0 ? { models } : {}) };
}

/** Progress for `done` of `total` rows, closing the bar at the end. */
export function progressReporter(console: Console, label: string): (done: number, total: number) => void {
  const progress = console.progress(label);
  return (done, total) => {
    progress.update(done, total);
    if (done >= total) progress.stop();
  };
}

/** The lines a run of a command prints about itself, for its counts; rank also speaks of rows with errors. */
export interface RunLines {
  interrupted(counts: WorkerOutcome['counts']): string;
  rowErrors?(counts: WorkerOutcome['counts']): string;
}

/**
 * A `cuda:all` run's workers, each reported as its own run would have reported itself, labelled with
 * its device and shard: an interruption, rows that could not be scored.
 */
export function reportWorkers(console: Console, workers: WorkerOutcome[], lines: RunLines): void {
  for (const worker of workers) {
    if (worker.incomplete) console.log(`[${worker.label}] ${lines.interrupted(worker.counts)}`);
    else if (worker.counts.errors > 0 && lines.rowErrors) console.log(`[${worker.label}] ${lines.rowErrors(worker.counts)}`);
  }
  if (workers.some((worker) => worker.incomplete)) console.log('warning: at least one shard was interrupted; the merged output is marked incomplete');
}
