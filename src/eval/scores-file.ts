/**
 * Per-item scores of an eval run (`--scores FILE`): one record per manifest row, as JSON Lines or CSV.
 * Extra manifest fields pass through; the schema's own fields win a name clash.
 */
import { stringify } from 'csv-stringify/sync';
import type { ManifestRow } from '../io/manifest.js';
import { softmax } from '../score/similarity.js';
import { neutraliseCsvText } from '../io/writers/csv.js';

export type ItemRecord = Record<string, unknown>;

/**
 * With several scorers, `scores` holds each one's score of the row by scorer name: the record gets a
 * `score:<name>` field each (as rank's CSV column), `score` staying the first scorer's.
 */
export function pointwiseRecord(row: ManifestRow & { kind: 'pointwise' }, score: number | null, error: string | null,
  scores?: Record<string, number | null>): ItemRecord {
  return withExtra({
    manifest: row.manifest, line: row.line, kind: row.kind, id: row.id, model: row.model,
    prompt: row.prompt, image: row.image.given, score, error, ...perScorer('score', scores),
  }, row.extra);
}

/** With several scorers, a `score_0:<name>` and `score_1:<name>` field each; `score_0`, `score_1` and the probabilities stay the first scorer's. */
export function pairwiseRecord(row: ManifestRow & { kind: 'pairwise' }, score0: number | null, score1: number | null, error: string | null,
  scores0?: Record<string, number | null>, scores1?: Record<string, number | null>): ItemRecord {
  const [prob0, prob1] = score0 !== null && score1 !== null ? softmax([score0, score1]) : [null, null];
  return withExtra({
    manifest: row.manifest, line: row.line, kind: row.kind, id: row.id, prompt: row.prompt,
    image_0: row.image0.given, image_1: row.image1.given, label_0: row.label0,
    score_0: score0, score_1: score1, prob_0: prob0, prob_1: prob1, error,
    ...perScorer('score_0', scores0), ...perScorer('score_1', scores1),
  }, row.extra);
}

/** `<field>:<scorer>` per scorer. */
function perScorer(field: string, scores: Record<string, number | null> | undefined): ItemRecord {
  return scores === undefined ? {} : Object.fromEntries(Object.entries(scores).map(([name, value]) => [`${field}:${name}`, value]));
}

/** The schema's fields first, then the manifest's own fields; on a name clash the schema's value stays. */
function withExtra(record: ItemRecord, extra: Record<string, unknown>): ItemRecord {
  const out: ItemRecord = { ...record };
  for (const [key, value] of Object.entries(extra)) if (!(key in out)) out[key] = value;
  return out;
}

export function scoresFormatFor(file: string): 'csv' | 'jsonl' {
  return file.toLowerCase().endsWith('.csv') ? 'csv' : 'jsonl';
}

export function renderScoresJsonl(records: readonly ItemRecord[]): string {
  return records.map((r) => `${JSON.stringify(r)}\n`).join('');
}

/**
 * CSV with the union of the records' fields as columns, in order of first appearance. Null is an empty
 * field; an object or array from the manifest is written as its JSON. Text that a spreadsheet would run
 * as a formula gets a leading `'` (neutraliseCsvText), the column names included, since manifests name
 * their own extra fields; numbers stay numbers.
 */
export function renderScoresCsv(records: readonly ItemRecord[]): string {
  const columns: string[] = [];
  const seen = new Set<string>();
  for (const record of records) {
    for (const key of Object.keys(record)) if (!seen.has(key)) { seen.add(key); columns.push(key); }
  }
  const cells = records.map((r) => columns.map((c) => csvCell(r[c])));
  // A lone CR ends a record for most readers, so a cell holding one is quoted, as in rank's CSV.
  return stringify([columns.map(neutraliseCsvText), ...cells], { record_delimiter: '\n', quoted_match: /\r/ });
}

function csvCell(value: unknown): string | number | boolean {
  if (value === null || value === undefined) return '';
  if (typeof value === 'string') return neutraliseCsvText(value);
  if (typeof value === 'number' || typeof value === 'boolean') return value;
  return neutraliseCsvText(JSON.stringify(value));
}
