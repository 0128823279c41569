/**
 * The flags every scoring command shares (rank and eval): the model, where and how it runs, how images
 * are read, the cache, sharding and verbosity. Declared once so the commands cannot drift apart.
 */
import { Command, Option } from 'commander';
import { THREADS_PER_CORE, checkThreads } from '../pipeline/options.js';
import type { ScorerOptions } from '../pipeline/scorer.js';
import type { NamedOutput } from '../io/same-file.js';
import { modelProgress, parsePositiveInteger, type Console } from './output.js';
import type { ExifMode, ResizeMode } from '../image/image.js';

export interface ScorerFlags {
  model?: string;
  device: string;
  precision: string;
  batchSize?: number;
  threads?: number;
  exif: ExifMode;
  resize: ResizeMode;
  maxPixels?: number;
  cacheDir?: string;
  cache: boolean;
  shard?: string;
  shardCount?: string;
  quiet: boolean;
  verbose: boolean;
  /** `out=FILE`, `scores=FILE`: what the merge of a `--device cuda:all` run writes (mergedOutputs). */
  mergedOutput: string[];
}

/** Adds the shared flags; `shardHelp` says what a shard run writes, which differs between commands. */
export function addScorerFlags(command: Command, shardHelp: string): Command {
  return command
    .option('-m, --model <name|dir>', 'known model name or model folder (default: PickScore v1)')
    .option('--device <device>', 'auto, cpu, cuda, cuda:N, or cuda:all (one worker per GPU, merged)', 'auto')
    .addOption(new Option('--precision <precision>', 'encoder precision; auto is fp16 on CUDA, fp32 on CPU').choices(['auto', 'fp32', 'fp16', 'int8']).default('auto'))
    .option('-b, --batch-size <n>', 'images per encoder call', parsePositiveInteger)
    .option('--threads <n>', `threads for image decoding and for the CPU encoder (default: CPU cores; at most ${THREADS_PER_CORE} per core). `
      + 'Each decoding thread holds the image it decodes: about 1 GB for a 13000x13000 image', (value) => checkThreads(parsePositiveInteger(value), '--threads'))
    .addOption(new Option('--exif <mode>', 'apply EXIF orientation, or ignore it as the model card code does').choices(['apply', 'ignore']).default('apply'))
    .addOption(new Option('--resize <mode>', "exact reproduces Pillow's bicubic; fast is sharp's own resize").choices(['exact', 'fast']).default('exact'))
    .option('--max-pixels <n>', 'refuse images with more decoded pixels than this', parsePositiveInteger)
    .option('--cache-dir <dir>', 'embedding cache folder (default: $PICKSCORE_HOME/embeddings)')
    .option('--no-cache', 'neither read nor write the embedding cache')
    .option('--shard <K/N>', `score only shard K of N (0-based), or "auto" from the job engine environment${shardHelp}`)
    .option('--shard-count <n>', 'the N for a shard index taken from JOB_COMPLETION_INDEX')
    .option('-q, --quiet', 'no progress or informational lines; warnings and errors still print', false)
    .option('-v, --verbose', 'progress and informational lines on stderr even when it is not a terminal', false)
    .addOption(new Option('--merged-output <flag=file>', 'set by --device cuda:all for its workers').hideHelp().argParser(collectValues).default([]));
}

function collectValues(value: string, previous: string[]): string[] {
  return [...previous, value];
}

/**
 * The files that the merge of a `--device cuda:all` run will write (its --out and --scores), which each
 * worker refuses, as the unsharded command would, when one of them is an input: only the workers see
 * the inputs, and the merge comes after all the work.
 */
export function mergedOutputs(flags: Pick<ScorerFlags, 'mergedOutput'>): NamedOutput[] {
  return flags.mergedOutput.map((value) => {
    const split = value.indexOf('=');
    return { flag: `--${value.slice(0, split)}`, path: value.slice(split + 1) };
  });
}

/** The scorer's options from the shared flags, with log lines and progress going to the console. */
export function scorerOptionsFromFlags(flags: ScorerFlags, console: Console): ScorerOptions {
  return {
    model: flags.model,
    device: flags.device as ScorerOptions['device'],
    precision: flags.precision as ScorerOptions['precision'],
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

/** Progress for `done` of `total` rows, closing the bar at the end. */
export function progressReporter(console: Console, label: string): (done: number, total: number) => void {
  const progress = console.progress(label);
  return (done, total) => {
    progress.update(done, total);
    if (done >= total) progress.stop();
  };
}
