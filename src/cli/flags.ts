/**
 * The flags the commands declare: the scoring flags rank and eval share, and the parsers of numbers
 * typed on a command line. Declarations only, so that `--help` and `--version` load nothing else; the
 * choices are the const arrays the library checks its options against (src/image/image.ts,
 * src/model-format.ts), and option values are checked once, by the library, where they enter it.
 */
import { Command, InvalidArgumentError, Option } from 'commander';
import { EXIF_MODES, RESIZE_MODES, type ExifMode, type ResizeMode } from '../image/image.js';
import type { EvalFormat } from './formats.js';
import { PRECISION_CHOICES, type AttentionImpl, type Precision, type PrecisionChoice } from '../model-format.js';
import { MAX_BATCH_SIZE, THREADS_PER_CORE, checkBatchSize, checkThreads } from '../pipeline/options.js';
import { SCORER_NAMES } from '../scorers/scorers.js';

export interface ScorerFlags {
  /** `--model`, repeatable: a model, or `<scorer>=<model>` per scorer. */
  model: string[];
  /** `--scorer`, as typed (a comma list): the library checks it. */
  scorer?: string;
  /** auto, cpu, cuda, cuda:N or cuda:all, as typed: the library parses it. */
  device: string;
  precision: PrecisionChoice;
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
}

/** Adds the shared flags; `shardHelp` says what a shard run writes, which differs between commands. */
export function addScorerFlags(command: Command, shardHelp: string): Command {
  return command
    .option('-m, --model <name|dir>', "known model name or model folder (default: the scorer's own, PickScore v1 for pickscore); "
      + 'with several scorers, <scorer>=<name|dir> for each one not run on its default model (repeatable)', collect, [])
    .option('--scorer <names>', `comma list of ${SCORER_NAMES.join(', ')} (default: pickscore); the first ranks and gates. See docs/scorers.md`)
    .option('--device <device>', 'auto, cpu, cuda, cuda:N, or cuda:all (one worker per GPU, merged)', 'auto')
    .addOption(new Option('--precision <precision>', 'encoder precision; auto is fp16 on CUDA, fp32 on CPU').choices(PRECISION_CHOICES).default('auto'))
    .option('-b, --batch-size <n>', `images per encoder call (at most ${MAX_BATCH_SIZE}; memory grows with it: about 2.4 MB an image at 224 px)`,
      (value) => checkBatchSize(parsePositiveInteger(value), '--batch-size'))
    .option('--threads <n>', `threads for image decoding and for the CPU encoder (default: CPU cores; at most ${THREADS_PER_CORE} per core). `
      + 'Each decoding thread holds the image it decodes: about 1 GB for a 13000x13000 image', (value) => checkThreads(parsePositiveInteger(value), '--threads'))
    .addOption(new Option('--exif <mode>', 'apply EXIF orientation, or ignore it as the model card code does').choices(EXIF_MODES).default('apply'))
    .addOption(new Option('--resize <mode>', "exact reproduces Pillow's bicubic; fast is sharp's own resize").choices(RESIZE_MODES).default('exact'))
    .option('--max-pixels <n>', 'refuse images with more decoded pixels than this', parsePositiveInteger)
    .option('--cache-dir <dir>', 'embedding cache folder (default: $PICKSCORE_HOME/embeddings)')
    .option('--no-cache', 'neither read nor write the embedding cache')
    .option('--shard <K/N>', `score only shard K of N (0-based), or "auto" from the job engine environment${shardHelp}`)
    .option('--shard-count <n>', 'the N for a shard index taken from JOB_COMPLETION_INDEX')
    .option('-q, --quiet', 'no progress or informational lines; warnings and errors still print', false)
    .option('-v, --verbose', 'progress and informational lines on stderr even when it is not a terminal', false);
}

/** Commander argument parser for counts: the flag is named in commander's message. */
export function parsePositiveInteger(value: string): number {
  const n = /^\s*\d+\s*$/.test(value) ? Number(value) : NaN;
  if (!Number.isSafeInteger(n) || n < 1) throw new InvalidArgumentError(`Expected a positive integer but received ${JSON.stringify(value)}.`);
  return n;
}

export function parseNumber(value: string): number {
  const n = Number(value);
  if (value.trim() === '' || !Number.isFinite(n)) throw new InvalidArgumentError(`Expected a number but received ${JSON.stringify(value)}`);
  return n;
}

export function parseNonNegativeNumber(value: string): number {
  const n = parseNumber(value);
  if (n < 0) throw new InvalidArgumentError(`Expected a number >= 0 but received ${JSON.stringify(value)}`);
  return n;
}

export function parseSeed(value: string): number {
  const n = Number(value);
  if (!/^\d+$/.test(value.trim()) || n > 0xffffffff) throw new InvalidArgumentError(`Expected an integer from 0 to 4294967295 but received ${JSON.stringify(value)}`);
  return n;
}

/** A repeatable flag's values, in order. */
export function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}

export interface RankFlags extends ScorerFlags {
  prompt: string[];
  promptsFile?: string;
  promptFrom?: 'sidecar' | 'png';
  top?: number;
  format?: string;
  out?: string;
  stats: boolean;
}

export interface EvalFlags extends ScorerFlags {
  format?: EvalFormat;
  out?: string;
  scores?: string;
  baseline?: string;
  candidate?: string;
  maxDrop?: number;
  gateScorer?: string;
  tieThreshold?: number;
  validation?: string;
  skipInvalid: boolean;
  seed: number;
}

export interface MergeFlags {
  format?: string;
  out?: string;
  top?: number;
  scores?: string;
  quiet: boolean;
  verbose: boolean;
}

export interface CommonFlags { quiet: boolean; verbose: boolean; json?: boolean }

export interface PullFlags extends CommonFlags { precision: Precision; attention: AttentionImpl }

export interface ConvertFlags extends CommonFlags { out: string; precision: Precision; attention: AttentionImpl; tokenizer?: string; name?: string; openClipModel?: string; head?: string }
