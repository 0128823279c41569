/**
 * One set of predicates, and one message shape for whatever fails them: "Expected X for Y but received
 * Z" (expectedMessage in errors.ts). Options are checked with these once, where they enter (src/cli's
 * flags, the library's options); data read from files (manifests, model folders, merge parts) is
 * checked with the same predicates, with the file and field as the subject. A check returns the value,
 * typed, or throws the kind of error its caller names: a UsageError for an option, an InputError for the
 * user's data, a ModelError for a model file.
 */
import { UsageError, expectedMessage, type PickScoreError } from './errors.js';

export type ErrorClass = new (message: string, options?: { cause?: unknown }) => PickScoreError;

export const is = {
  string: (value: unknown): value is string => typeof value === 'string',
  nonEmptyString: (value: unknown): value is string => typeof value === 'string' && value !== '',
  /** A finite number: not NaN, not an infinity. */
  number: (value: unknown): value is number => typeof value === 'number' && Number.isFinite(value),
  /** A safe integer of at least `min`: a count, a size, an index. */
  count: (value: unknown, min = 0): value is number => Number.isSafeInteger(value) && (value as number) >= min,
  positiveInteger: (value: unknown): value is number => Number.isSafeInteger(value) && (value as number) > 0,
  inRange: (value: unknown, min: number, max: number): value is number => typeof value === 'number' && value >= min && value <= max,
  /** An object that is not an array (nor null). */
  object: (value: unknown): value is Record<string, unknown> => typeof value === 'object' && value !== null && !Array.isArray(value),
  array: (value: unknown): value is unknown[] => Array.isArray(value),
  oneOf: <T>(values: readonly T[], value: unknown): value is T => (values as readonly unknown[]).includes(value),
  sha256: (value: unknown): value is string => typeof value === 'string' && /^[0-9a-f]{64}$/.test(value),
};

/** The error `Kind` with the one message shape. */
export function invalid(expected: string, subject: string, received: unknown, Kind: ErrorClass = UsageError): PickScoreError {
  return new Kind(expectedMessage(expected, subject, received));
}

/** `value` when `ok(value)`, else the error: `check(is.positiveInteger, 'a positive integer', 'batchSize', 0)`. */
export function check<T>(ok: (value: unknown) => value is T, expected: string, subject: string, value: unknown, Kind: ErrorClass = UsageError): T {
  if (ok(value)) return value;
  throw invalid(expected, subject, value, Kind);
}

/** One of `values`, named in the message as "one of a, b, c". */
export function oneOf<T>(values: readonly T[], subject: string, value: unknown, Kind: ErrorClass = UsageError): T {
  return check((v): v is T => is.oneOf(values, v), `one of ${values.join(', ')}`, subject, value, Kind);
}

export function positiveInteger(subject: string, value: unknown, Kind: ErrorClass = UsageError): number {
  return check(is.positiveInteger, 'a positive integer', subject, value, Kind);
}
