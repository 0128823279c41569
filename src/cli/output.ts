/**
 * Everything the CLI prints: data to stdout or an atomic --out file, logs and progress bars to stderr.
 * Progress and informational lines appear only when stderr is a TTY; warnings and errors always do,
 * so a pipeline's stderr holds nothing but what needs attention.
 */
import cliProgress from 'cli-progress';
import { openSink } from '../io/writers/sink.js';
import { checkOutputWritable } from '../io/atomic.js';
import { refuseOutputsNamingInputs, type NamedOutput } from '../io/same-file.js';
import type { HubProgress } from '../model/hub.js';
import { ExitCode } from './exit-codes.js';

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
  /** A progress bar; `bytes` shows sizes, the transfer rate and the time left, for downloads. */
  progress(label: string, unit?: 'items' | 'bytes'): Progress;
}

export interface Progress {
  update(done: number, total: number): void;
  stop(): void;
}

const NO_PROGRESS: Progress = { update: () => undefined, stop: () => undefined };

/** 75 s -> "1m15s"; 3,700 s -> "1h01m". */
export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds)) return '?';
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}

/**
 * A byte count's progress as a person reads it: `1.2 GB/3.9 GB  35.0 MB/s  ETA 1m17s`. The rate counts
 * only the bytes of this run (a resumed download starts part way), over `elapsedMs`.
 */
export function describeTransfer(done: number, total: number, bytesThisRun: number, elapsedMs: number): string {
  const rate = elapsedMs > 0 ? (bytesThisRun * 1000) / elapsedMs : 0;
  const eta = rate > 0 ? formatDuration((total - done) / rate) : '?';
  return `${formatBytes(done)}/${formatBytes(total)}  ${formatBytes(rate)}/s  ETA ${eta}`;
}

/**
 * The stderr side of a command. On a TTY: a progress bar and informational lines. With --verbose and
 * no TTY: progress as plain lines (`rank: 8/40`), which scripts and tests can follow. --quiet silences
 * both; warnings and errors always print.
 *
 * One bar is on screen at a time, on the last line: a newer bar replaces an older one. A line logged
 * while a bar is drawn is written above it (the bar's line is cleared, the line written, the bar drawn
 * again below), so a warning never ends the bar.
 */
export function createConsole(opts: { quiet: boolean; verbose?: boolean; stderr?: NodeJS.WriteStream }): Console {
  const stderr = opts.stderr ?? process.stderr;
  const tty = stderr.isTTY === true;
  const chatty = (tty || opts.verbose === true) && !opts.quiet;
  let drawn: ConsoleBar | null = null;
  // A command that ends with its bar still drawn (interrupted, failed) clears it on the way out, which
  // also shows the cursor again and turns line wrapping back on.
  const clearOnExit = () => drawn?.stop();
  const draw = (bar: ConsoleBar | null) => {
    if (drawn === null && bar !== null) process.once('exit', clearOnExit);
    if (drawn !== null && bar === null) process.off('exit', clearOnExit);
    drawn = bar;
  };
  return {
    log(line: string) {
      if (!chatty && !shownAlways(line)) return;
      if (!drawn) {
        stderr.write(`${line}\n`);
        return;
      }
      // Clear the bar's line, write the log line in its place, and save the cursor at the start of the
      // new last line: cli-progress restores the cursor it saved at start() when the bar stops, and
      // that must be the bar's line now, not the one the log line took.
      stderr.write(`\r\x1b[2K${line}\n\x1b7`);
      drawn.render(); // forceRedraw: drawn again even though its text did not change
    },
    progress(label: string, unit: 'items' | 'bytes' = 'items'): Progress {
      if (!chatty) return NO_PROGRESS;
      let startValue = 0;
      let startedAt = 0;
      const describe = (done: number, total: number) =>
        (unit === 'bytes' ? describeTransfer(done, total, done - startValue, performance.now() - startedAt) : `${done}/${total}`);
      if (!tty) {
        // A 3.9 GB download reports every 64 KB chunk: as lines, only each whole percent and the end.
        let shown = -1;
        return {
          update(done, total) {
            if (unit === 'bytes') {
              const step = Math.floor((done / Math.max(total, 1)) * 100);
              if (step === shown && done < total) return;
              if (shown === -1) [startValue, startedAt] = [done, performance.now()];
              shown = step;
            }
            stderr.write(`${label}: ${describe(done, total)}\n`);
          },
          stop: () => undefined,
        };
      }
      const own = new ConsoleBar({
        stream: stderr,
        format: unit === 'bytes'
          ? (options, params) => `${label} [${barText(options, params.progress)}] ${describe(params.value, params.total)}`
          : `${label} [{bar}] {value}/{total} {eta_formatted}`,
        hideCursor: true,
        clearOnComplete: true,
        forceRedraw: true,
      }, cliProgress.Presets.shades_classic);
      let started = false;
      return {
        update(done, total) {
          if (!started) {
            if (drawn) drawn.stop(); // an older bar gives up the line
            startValue = done;
            startedAt = performance.now();
            own.start(total, done);
            started = true;
            draw(own);
          } else if (drawn === own) {
            own.setTotal(total);
            own.update(done);
          }
        },
        stop() {
          if (drawn === own) {
            own.stop();
            draw(null);
          }
        },
      };
    },
  };
}

/**
 * Warnings and errors, and the lines of `cuda:all` workers (`[cuda:0 (shard 0/2)] ...`), which pass on
 * only what a --quiet run shows: its warnings and errors, and anything it wrote to stderr itself.
 */
function shownAlways(line: string): boolean {
  return /^(warning|error)\b/i.test(line) || /^\[[^\]\n]+\] /.test(line);
}

/**
 * cli-progress redraws on a timer while a bar runs. That timer must not keep the process alive: a run
 * interrupted on a terminal, or one that failed, has to end with its bar still up.
 */
class ConsoleBar extends cliProgress.SingleBar {
  override render(): void {
    super.render();
    (this as unknown as { timer: NodeJS.Timeout | null }).timer?.unref();
  }
}

/**
 * Progress of a model that has to be pulled: one bar per downloaded file, then one for the conversion,
 * each closed when it is complete.
 */
export function modelProgress(console: Console): { onProgress: (e: HubProgress) => void; stop: () => void } {
  let current: { file: string; bar: Progress } | undefined;
  return {
    onProgress(e) {
      if (current?.file !== e.file) {
        current?.bar.stop();
        current = { file: e.file, bar: console.progress(e.file, 'bytes') };
      }
      current.bar.update(e.done, e.total);
      if (e.done >= e.total) current.bar.stop();
    },
    stop: () => current?.bar.stop(),
  };
}

function barText(options: cliProgress.Options, progress: number): string {
  const size = options.barsize ?? 40;
  const complete = Math.round(Math.min(1, Math.max(0, progress)) * size);
  return (options.barCompleteString ?? '').slice(0, complete) + (options.barIncompleteString ?? '').slice(0, size - complete);
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

/** What a command sees of SIGINT, SIGTERM and SIGHUP while it runs and writes its output. */
export interface Interrupt {
  /** Aborted by the first signal: the scoring stops after its current batch. */
  readonly signal: AbortSignal;
  /** The final write begins: a first signal from now on lets it finish, instead of stopping the scoring. */
  writing(): void;
}

/**
 * Runs a command, its final write included, with SIGINT, SIGTERM and SIGHUP handled: the first signal asks the
 * run to stop after its current batch, so what is done can still be written, or, once the write has
 * begun, lets the write finish; either way the command then exits 130. A second signal ends the process
 * at once; the temporary file of a write in progress is removed on the way out (src/io/atomic.ts), so
 * the previous output stays as it was. The handlers stay until `run` has put the output in place: a
 * signal between the scoring and the rename must not kill the process with the default action, which
 * lost the output and left the temporary file behind.
 */
/** SIGHUP too: a closed terminal or SSH session would otherwise kill the run with its finished rows unwritten. */
const INTERRUPTING_SIGNALS: readonly NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];

export async function withInterruptSignal<T>(console: Console, run: (interrupt: Interrupt) => Promise<T>): Promise<T> {
  const controller = new AbortController();
  let writing = false;
  const onSignal = (signal: NodeJS.Signals): void => {
    if (controller.signal.aborted) process.exit(ExitCode.interrupted);
    console.log(writing
      ? `warning: ${signal} received while the output is written; finishing it, then exiting (again to quit now, leaving no output)`
      : `warning: ${signal} received; stopping (a download at once, keeping its bytes; scoring after the current batch), then writing what is done (again to quit now)`);
    controller.abort();
  };
  for (const name of INTERRUPTING_SIGNALS) process.on(name, onSignal);
  try {
    return await run({ signal: controller.signal, writing: () => { writing = true; } });
  } finally {
    for (const name of INTERRUPTING_SIGNALS) process.off(name, onSignal);
  }
}
