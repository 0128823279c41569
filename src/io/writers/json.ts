import { recordToObject, type RankRecord } from './record.js';
import type { StreamingFormat } from './format.js';

export const JSON_SCHEMA_VERSION = 1;

/** One object per line; nothing but rows, so a partial run is still valid JSONL. */
export const jsonlFormat: StreamingFormat = {
  header: () => '',
  row: (rec: RankRecord) => `${JSON.stringify(recordToObject(rec))}\n`,
  footer: () => '',
};

/**
 * One JSON document `{schemaVersion, provenance, rows, incomplete}`, streamed: the head is written
 * first, one row per line, and `incomplete` last, since it is known only when the run ends.
 */
export function jsonFormat(provenance: object | null): StreamingFormat {
  let rows = 0;
  return {
    header: () =>
      `{\n  "schemaVersion": ${JSON_SCHEMA_VERSION},\n  "provenance": ${indent(JSON.stringify(provenance, null, 2))},\n  "rows": [`,
    row: (rec: RankRecord) => `${rows++ === 0 ? '' : ','}\n    ${JSON.stringify(recordToObject(rec))}`,
    footer: (incomplete: boolean) => `${rows === 0 ? '' : '\n  '}],\n  "incomplete": ${incomplete}\n}\n`,
  };
}

function indent(json: string): string {
  return json.replace(/\n/g, '\n  ');
}
