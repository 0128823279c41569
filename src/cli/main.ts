/**
 * Entry point of the `pickscore` bin. Runs the program and turns any error into a message on stderr
 * and an exit code. It sets process.exitCode and never calls process.exit(), so nothing written to
 * a piped stdout is lost.
 */
import { CommanderError } from 'commander';
import { PickScoreError } from '../errors.js';
import { buildProgram } from './program.js';
import { ExitCode, exitCodeForError } from './exit-codes.js';

export async function main(argv: string[]): Promise<void> {
  process.stdout.on('error', onStdoutError);
  process.stderr.on('error', onStderrError);
  try {
    await buildProgram().parseAsync(argv);
  } catch (err) {
    process.exitCode = reportError(err);
  }
}

/**
 * A reader that goes away (`pickscore rank ... | head`) closes the pipe: stop writing quietly, as tools
 * killed by SIGPIPE do, instead of crashing on an unhandled 'error' event. Other write errors (a full
 * disk) are reported once; the writers that stream results report theirs with the output named.
 */
let stdoutFailed = false;
function onStdoutError(err: NodeJS.ErrnoException): void {
  if (stdoutFailed) return;
  stdoutFailed = true;
  if (err.code === 'EPIPE') return;
  process.stderr.write(`error: cannot write to standard output (${err.code ?? err.message})\n`);
  process.exitCode = ExitCode.input;
}

/**
 * Logs, progress and error messages are best effort: a stderr on a full disk (`2>/dev/full`) or a closed
 * pipe (`2>&1 | head`) must neither crash the run nor change its exit code, which a pipeline gates on.
 */
function onStderrError(): void {
  // Nothing can be reported: stderr is where it would go.
}

/** Commander has already printed its own message (naming the flag); pickscore errors are printed here. */
function reportError(err: unknown): number {
  const code = exitCodeForError(err);
  if (err instanceof CommanderError) return code;
  if (err instanceof PickScoreError && code !== ExitCode.internal) {
    process.stderr.write(`error: ${err.message}\n`);
  } else {
    const detail = err instanceof Error ? err.stack ?? err.message : String(err);
    process.stderr.write(`error: internal error, please report it: ${detail}\n`);
  }
  return code;
}
