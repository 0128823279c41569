import { stringify } from 'csv-stringify/sync';
import { RECORD_FIELDS, recordToObject, scoreColumn, type RankRecord } from './record.js';
import type { StreamingFormat } from './format.js';

/**
 * RFC 4180 CSV: a field with a comma, quote, CR or LF is quoted and its quotes doubled, so odd paths
 * and multi-line prompts round-trip. Numbers keep full precision; null is an empty field. Text cells
 * that a spreadsheet would run as a formula are neutralised (neutraliseCsvText).
 */
export function csvFormat(withContentHash: boolean, scorers: readonly string[] = []): StreamingFormat {
  const columns: string[] = [...RECORD_FIELDS, ...(withContentHash ? ['contentHash'] : [])];
  // A run of several scorers adds one column per scorer after the others.
  const all = [...columns, ...scorers.map(scoreColumn)];
  return {
    header: () => csvLine(all),
    row: (rec: RankRecord) => {
      const obj = recordToObject(rec);
      const scores = obj.scores as Record<string, number | null> | undefined;
      return csvLine([...columns.map((column) => csvCell(obj[column] ?? '')), ...scorers.map((name) => scores?.[name] ?? '')] as (string | number)[]);
    },
    footer: () => '',
  };
}

function csvLine(fields: (string | number)[]): string {
  return stringify([fields], { record_delimiter: '\n', quoted_match: /\r/ });
}

/** A CSV cell: numbers stay numbers (a negative score is still `-5.4`), text is neutralised. */
export function csvCell<T>(value: T): T | string {
  return typeof value === 'string' ? neutraliseCsvText(value) : value;
}

/**
 * Spreadsheets run a cell that begins with `=`, `+`, `-`, `@`, a tab or a carriage return as a formula,
 * so a file named `=HYPERLINK(...).png` or a prompt like it would run when the CSV is opened. As OWASP
 * recommends, such a text cell gets a leading `'`, which makes it text. A cell that already begins with
 * quotes before one of those characters gets one more, so the rule can be undone exactly
 * (restoreCsvText): every text cell round-trips.
 */
export function neutraliseCsvText(text: string): string {
  return FORMULA_START.test(text) ? `'${text}` : text;
}

/** The text that neutraliseCsvText was given: drops the one quote it adds. */
export function restoreCsvText(cell: string): string {
  return NEUTRALISED_START.test(cell) ? cell.slice(1) : cell;
}

const FORMULA_START = /^'*[=+\-@\t\r]/;
const NEUTRALISED_START = /^'+[=+\-@\t\r]/;
