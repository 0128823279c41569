/**
 * Typed errors. Every failure the user can cause or meet is one of these kinds; the CLI maps each kind
 * to an exit code in one place (src/cli/exit-codes.ts). Library users can branch on `kind`.
 */
export type ErrorKind = 'usage' | 'input' | 'model' | 'internal' | 'interrupted';

export abstract class PickScoreError extends Error {
  abstract readonly kind: ErrorKind;
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** The command line or API call itself is wrong: a bad flag value, a missing argument. */
export class UsageError extends PickScoreError {
  readonly kind = 'usage' as const;
}

/** The user's data is wrong or unreadable: a missing path, a bad manifest line, an image that cannot be decoded. */
export class InputError extends PickScoreError {
  readonly kind = 'input' as const;
}

/** A model folder, checkpoint or ONNX file is missing, corrupt or unsupported. */
export class ModelError extends PickScoreError {
  readonly kind = 'model' as const;
}

/**
 * SIGINT or SIGTERM stopped work that has no partial result to write (a model download): the message
 * says what was kept, such as the bytes a later run resumes from.
 */
export class InterruptedError extends PickScoreError {
  readonly kind = 'interrupted' as const;
}

/** A bug in pickscore: an invariant that should hold did not. */
export class InternalError extends PickScoreError {
  readonly kind = 'internal' as const;
}

/** Renders a value for an error message: short, and unambiguous about its type. */
/** The message of anything thrown: an Error's message, else the value as a string. */
export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

export function describeValue(value: unknown): string {
  if (value === undefined) return 'undefined';
  if (value === null) return 'null';
  if (typeof value === 'string') return JSON.stringify(value.length > 60 ? `${value.slice(0, 57)}...` : value);
  if (typeof value === 'number' || typeof value === 'boolean' || typeof value === 'bigint') return `${typeof value} ${String(value)}`;
  if (Array.isArray(value)) return `array of length ${value.length}`;
  if (Buffer.isBuffer(value)) return `Buffer of ${value.length} bytes`;
  return typeof value;
}

/**
 * One message shape for every validation failure: "Expected X for Y but received Z".
 * Returns the message so callers choose the error class (UsageError for flags, InputError for data).
 */
export function expectedMessage(expected: string, subject: string, received: unknown): string {
  return `Expected ${expected} for ${subject} but received ${describeValue(received)}`;
}
