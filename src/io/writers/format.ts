import type { RankRecord } from './record.js';

/** A format written row by row as records arrive (csv, jsonl, json, md): the writer holds no rows. */
export interface StreamingFormat {
  header(): string;
  row(rec: RankRecord): string;
  footer(incomplete: boolean): string;
}
