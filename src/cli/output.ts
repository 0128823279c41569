/**
 * Everything the CLI prints: data to stdout or an atomic --out file, logs and progress bars to stderr.
 * Progress and informational lines appear only when stderr is a TTY; warnings and errors always do,
 * so a pipeline's stderr holds nothing but what needs attention.
 */
import path from 'node:path';
import cliProgress from 'cli-progress';
import { InvalidArgumentError } from 'commander';
import { UsageError, expectedMessage } from '../errors.js';
import { FORMAT_BY_EXTENSION, OUTPUT_FORMATS, type OutputFormat } from '../io/writers/index.js';
import { openSink } from '../io/writers/sink.js';
import { checkOutputWritable } from '../io/atomic.js';
import { refuseOutputsNamingInputs, type NamedOutput } from '../io/same-file.js';
import { ExitCode } from './exit-codes.js';

export { OUTPUT_FORMATS, type OutputFormat } from '../io/writers/index.js';

/** How a command picks its output format: its formats, their --out extensions, and its defaults. */
interface FormatChoice<F extends string> {
  formats: readonly F[];
  byExtension: Readonly<Record<string, F>>;
  onTerminal: F;
  inPipe: F;
  unknownOut: (out: string) => string;
}

/** --format wins; else the --out extension; else one format for a person at a terminal, another for a pipe. */
export function pickFormat<F extends string>(choice: FormatChoice<F>, format: string | undefined, out: string | undefined, stdoutIsTTY: boolean): F {
  if (format !== undefined) {
    if ((choice.formats as readonly string[]).includes(format)) return format as F;
    throw new UsageError(expectedMessage(choice.formats.join(', '), '--format', format));
  }
  if (out !== undefined) {
    const byExtension = choice.byExtension[path.extname(out).toLowerCase()];
    if (byExtension) return byExtension;
    throw new UsageError(choice.unknownOut(out));
  }
  return stdoutIsTTY ? choice.onTerminal : choice.inPipe;
}

const RANK_FORMATS: FormatChoice<OutputFormat> = {
  formats: OUTPUT_FORMATS, byExtension: FORMAT_BY_EXTENSION, onTerminal: 'table', inPipe: 'jsonl',
  unknownOut: (out) => `Cannot tell the output format from --out ${out}: use an extension (${Object.keys(FORMAT_BY_EXTENSION).join(' ')}) or pass --format`,
};

/** rank's and merge's rank outputs: a table for a person at a terminal, JSONL for a pipe. */
export function chooseFormat(format: string | undefined, out: string | undefined, stdoutIsTTY: boolean): OutputFormat {
  return pickFormat(RANK_FORMATS, format, out, stdoutIsTTY);
}

/** Decimal units, one decimal place above bytes: 3.9 GB, 512 B. */
export function formatBytes(bytes: number): string {
  const units = ['B', 'KB', 'MB', 'GB', 'TB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1000 && unit < units.length - 1) {
    value /= 1000;
    unit++;
  }
  return `${unit === 0 ? value : value.toFixed(1)} ${units[unit]}`;
}

/** A command's text result on stdout, ending in one newline. */
export function printText(text: string): Promise<void> {
  return writeOutput({}, (write) => write(text.endsWith('\n') ? text : `${text}\n`));
}

export function printJson(value: unknown): Promise<void> {
  return printText(JSON.stringify(value, null, 2));
}

export interface Console {
  /** Warnings and errors: always written. Other lines: only on a TTY, and never with --quiet. */
  log(line: string): void;
  progress(label: string): Progress;
}

export interface Progress {
  update(done: number, total: number): void;
  stop(): void;
}

const NO_PROGRESS: Progress = { update: () => undefined, stop: () => undefined };

/**
 * The stderr side of a command. On a TTY: a progress bar and informational lines. With --verbose and
 * no TTY: progress as plain lines (`rank: 8/40`), which scripts and tests can follow. --quiet silences
 * both; warnings and errors always print.
 */
export function createConsole(opts: { quiet: boolean; verbose?: boolean; stderr?: NodeJS.WriteStream }): Console {
  const stderr = opts.stderr ?? process.stderr;
  const tty = stderr.isTTY === true;
  const chatty = (tty || opts.verbose === true) && !opts.quiet;
  let bar: cliProgress.SingleBar | null = null;
  return {
    log(line: string) {
      if (!chatty && !/^(warning|error)\b/i.test(line)) return;
      if (bar) bar.stop();
      stderr.write(`${line}\n`);
      bar = null;
    },
    progress(label: string): Progress {
      if (!chatty) return NO_PROGRESS;
      if (!tty) return { update: (done, total) => stderr.write(`${label}: ${done}/${total}\n`), stop: () => undefined };
      const own = new cliProgress.SingleBar(
        { stream: stderr, format: `${label} [{bar}] {value}/{total} {eta_formatted}`, hideCursor: true, clearOnComplete: true },
        cliProgress.Presets.shades_classic,
      );
      let started = false;
      bar = own;
      return {
        update(done, total) {
          if (bar !== own) return;
          if (!started) own.start(total, done);
          else own.update(done);
          started = true;
        },
        stop() {
          if (started) own.stop();
          if (bar === own) bar = null;
        },
      };
    },
  };
}

/**
 * Writes an output to --out (atomically: a temporary file renamed on success) or to stdout. `produce`
 * hands over text a piece at a time; this resolves once every byte has been handed over, so the
 * process can end without losing any. On failure a partial --out file never replaces the target.
 */
export async function writeOutput(target: { out?: string }, produce: (write: (text: string) => Promise<void>) => Promise<void>): Promise<void> {
  const sink = await openSink(target.out !== undefined ? { path: target.out } : { stream: process.stdout });
  try {
    await produce((text) => sink.write(text));
    await sink.commit();
  } catch (err) {
    await sink.abort();
    throw err;
  }
}

/**
 * The files a command will write (a path undefined: stdout, or not asked for), checked before any work:
 * a missing or read-only folder is reported at once instead of after the scoring, and two outputs
 * that are one file are refused. Returns those given, for the command's own check against its inputs.
 */
export async function checkOutputTargets(outputs: readonly { flag: string; path: string | undefined }[]): Promise<NamedOutput[]> {
  const given = outputs.filter((output): output is NamedOutput => output.path !== undefined);
  for (const output of given) await checkOutputWritable(output.path);
  await refuseOutputsNamingInputs(given);
  return given;
}

/** One finished document (a report rendered whole). */
export function writeDocument(text: string, target: { out?: string }): Promise<void> {
  return writeOutput(target, (write) => write(text));
}

/** Commander argument parser for counts: the flag is named in commander's message. */
export function parsePositiveInteger(value: string): number {
  const n = /^\s*\d+\s*$/.test(value) ? Number(value) : NaN;
  if (!Number.isSafeInteger(n) || n < 1) throw new InvalidArgumentError(`Expected a positive integer but received ${JSON.stringify(value)}.`);
  return n;
}

/** What a command sees of SIGINT and SIGTERM while it runs and writes its output. */
export interface Interrupt {
  /** Aborted by the first signal: the scoring stops after its current batch. */
  readonly signal: AbortSignal;
  /** The final write begins: a first signal from now on lets it finish, instead of stopping the scoring. */
  writing(): void;
}

/**
 * Runs a command, its final write included, with SIGINT and SIGTERM handled: the first signal asks the
 * run to stop after its current batch, so what is done can still be written, or, once the write has
 * begun, lets the write finish; either way the command then exits 130. A second signal ends the process
 * at once; the temporary file of a write in progress is removed on the way out (src/io/atomic.ts), so
 * the previous output stays as it was. The handlers stay until `run` has put the output in place: a
 * signal between the scoring and the rename must not kill the process with the default action, which
 * lost the output and left the temporary file behind.
 */
export async function withInterruptSignal<T>(console: Console, run: (interrupt: Interrupt) => Promise<T>): Promise<T> {
  const controller = new AbortController();
  let writing = false;
  const onSignal = (signal: NodeJS.Signals): void => {
    if (controller.signal.aborted) process.exit(ExitCode.interrupted);
    console.log(writing
      ? `warning: ${signal} received while the output is written; finishing it, then exiting (again to quit now, leaving no output)`
      : `warning: ${signal} received; finishing the current batch, then writing what is done (again to quit now)`);
    controller.abort();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  try {
    return await run({ signal: controller.signal, writing: () => { writing = true; } });
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}
