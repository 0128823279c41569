/**
 * Exit codes, in one place (the table in docs/architecture.md). Commands return data; the CLI turns
 * outcomes and typed errors into these codes.
 */
import { CommanderError } from 'commander';
import { PickScoreError } from '../errors.js';

export const ExitCode = {
  ok: 0,
  /** eval gate: the candidate is worse than the baseline. */
  gateFailed: 1,
  usage: 2,
  /** The run finished, but some rows carry an error. */
  rowErrors: 3,
  /** An input error stopped the run: a missing path, an invalid manifest. */
  input: 4,
  model: 5,
  internal: 70,
  /** SIGINT, SIGTERM or SIGHUP: the output holds what was done, marked incomplete. */
  interrupted: 130,
} as const;

export type ExitCodeValue = (typeof ExitCode)[keyof typeof ExitCode];

const BY_KIND = { usage: ExitCode.usage, input: ExitCode.input, model: ExitCode.model, internal: ExitCode.internal, interrupted: ExitCode.interrupted } as const;

/**
 * The exit code for an error that stopped a command. Commander signals --help and --version with an
 * exit code of 0 and bad flags otherwise; anything untyped is a bug, hence internal.
 */
export function exitCodeForError(err: unknown): ExitCodeValue {
  if (err instanceof PickScoreError) return BY_KIND[err.kind];
  if (err instanceof CommanderError) return err.exitCode === 0 ? ExitCode.ok : ExitCode.usage;
  return ExitCode.internal;
}

/** The exit code of a run that returned data: interrupted beats failed rows, which beat success. */
export function exitCodeForRun(outcome: { incomplete: boolean; errorRows: number }): ExitCodeValue {
  if (outcome.incomplete) return ExitCode.interrupted;
  if (outcome.errorRows > 0) return ExitCode.rowErrors;
  return ExitCode.ok;
}
