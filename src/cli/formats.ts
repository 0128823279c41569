/**
 * How each command picks its output format: --format wins; else the --out extension; else one format
 * for a person at a terminal and another for a pipe. Names and choices only; no writer is loaded here.
 */
import path from 'node:path';
import { UsageError, expectedMessage } from '../errors.js';
import { FORMAT_BY_EXTENSION, OUTPUT_FORMATS, type OutputFormat } from '../io/writers/formats.js';

export { OUTPUT_FORMATS, type OutputFormat } from '../io/writers/formats.js';

/** eval's report formats. */
export const EVAL_FORMATS = ['json', 'md', 'html'] as const;
export type EvalFormat = (typeof EVAL_FORMATS)[number];

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

export const EVAL_FORMAT_CHOICE: FormatChoice<EvalFormat> = {
  formats: EVAL_FORMATS,
  byExtension: { '.json': 'json', '.md': 'md', '.markdown': 'md', '.html': 'html', '.htm': 'html' },
  onTerminal: 'md',
  inPipe: 'json',
  unknownOut: (out: string) => `Cannot tell the report format from --out ${out}: use .json, .md or .html, or pass --format`,
};

/** --format wins; else the --out extension; else Markdown for a person at a terminal, JSON for a pipe. */
export function chooseEvalFormat(format: string | undefined, out: string | undefined, stdoutIsTTY: boolean): EvalFormat {
  return pickFormat<EvalFormat>(EVAL_FORMAT_CHOICE, format, out, stdoutIsTTY);
}
