/**
 * The one way pickscore reads a JSON file: the bounded regular-file read (regular-file.ts: no FIFO,
 * no device, no folder, a size limit), then the parse, each failure a typed error that names the file.
 * The error kind is the caller's (a ModelError for a model's files, an InputError for the user's data),
 * and so are the words, where a message must say what the file was for.
 */
import type { ErrorClass } from '../checks.js';
import { readFailureText, readRegularTextFile } from './regular-file.js';

export interface JsonFileOptions {
  /** What the file is, as the size-limit message says it: 'a model manifest', 'a merge part'. */
  what: string;
  maxBytes: number;
  /** The error kind of either failure. */
  error: ErrorClass;
  /** The message when the file cannot be read, given the reason; default `Cannot read <file>: <reason>`. */
  unreadable?: (reason: string) => string;
  /** The message when it is not JSON, given the parser's words; default `<file> is not valid JSON: <words>`. */
  notJson?: (detail: string) => string;
}

export async function readJsonFile(file: string, opts: JsonFileOptions): Promise<unknown> {
  let text: string;
  try {
    text = await readRegularTextFile(file, opts.maxBytes, opts.what);
  } catch (err) {
    const reason = readFailureText(err);
    throw new opts.error(opts.unreadable ? opts.unreadable(reason) : `Cannot read ${file}: ${reason}`, { cause: err });
  }
  try {
    return JSON.parse(text) as unknown;
  } catch (err) {
    const detail = (err as Error).message;
    throw new opts.error(opts.notJson ? opts.notJson(detail) : `${file} is not valid JSON: ${detail}`, { cause: err });
  }
}
