import { stringify } from 'csv-stringify/sync';
import { RECORD_FIELDS, recordToObject, type RankRecord } from './record.js';
import type { StreamingFormat } from './format.js';

/**
 * RFC 4180 CSV: a field with a comma, quote, CR or LF is quoted and its quotes doubled, so odd paths
 * and multi-line prompts round-trip. Numbers keep full precision; null is an empty field.
 */
export function csvFormat(withContentHash: boolean): StreamingFormat {
  const columns: string[] = [...RECORD_FIELDS, ...(withContentHash ? ['contentHash'] : [])];
  return {
    header: () => csvLine(columns),
    row: (rec: RankRecord) => {
      const obj = recordToObject(rec);
      return csvLine(columns.map((column) => obj[column] ?? ''));
    },
    footer: () => '',
  };
}

function csvLine(fields: (string | number)[]): string {
  return stringify([fields], { record_delimiter: '\n', quoted_match: /\r/ });
}
