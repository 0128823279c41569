/** The row every output format writes: one image scored against one prompt. Numbers only, no pixels. */
export interface RankRecord {
  /** The image path as the user gave it. */
  path: string;
  prompt: string;
  /** The (first) scorer's score, PickScore's `logit_scale * cos(text, image)` by default; null when the image could not be scored. */
  score: number | null;
  /** Softmax of the score over this prompt's images; null for error rows. */
  prob: number | null;
  /** 1-based rank within this prompt, ties broken by path; null for error rows. */
  rank: number | null;
  width: number | null;
  height: number | null;
  /** Null, or why this image could not be scored. */
  error: string | null;
  /** SHA-256 hex of the file bytes, when known. */
  contentHash?: string | null;
  /** With several scorers: each one's score by scorer name (the first is `score`); absent otherwise. */
  scores?: Record<string, number | null>;
}

/** Field order shared by CSV columns and JSON objects. */
export const RECORD_FIELDS = ['path', 'prompt', 'score', 'prob', 'rank', 'width', 'height', 'error'] as const;

/** A plain object in field order; `contentHash` only when the record carries one. */
export function recordToObject(rec: RankRecord): Record<string, string | number | null | Record<string, number | null>> {
  const obj: Record<string, string | number | null | Record<string, number | null>> = {};
  for (const field of RECORD_FIELDS) obj[field] = finiteOrNull(rec[field]);
  if (rec.contentHash !== undefined) obj.contentHash = rec.contentHash;
  if (rec.scores !== undefined) obj.scores = Object.fromEntries(Object.entries(rec.scores).map(([name, value]) => [name, finiteOrNull(value)]));
  return obj;
}

/** The CSV column of a scorer's score in a run of several: `score:<name>`. */
export function scoreColumn(scorer: string): string {
  return `score:${scorer}`;
}

/** The scorers of a run of several, in the order the records first name them; empty for one scorer. */
export function recordScorers(records: readonly RankRecord[]): string[] {
  const names = new Set<string>();
  for (const rec of records) for (const name of Object.keys(rec.scores ?? {})) names.add(name);
  return [...names];
}

/** NaN and infinities are not JSON; they are written as null, as a missing number. */
function finiteOrNull<T>(value: T): T | null {
  return typeof value === 'number' && !Number.isFinite(value) ? null : value;
}

/** Score and probability as people read them; full precision stays in csv/json/jsonl. */
export function formatScore(value: number | null): string {
  return value === null || !Number.isFinite(value) ? '-' : value.toFixed(4);
}

export function formatProb(value: number | null): string {
  return value === null || !Number.isFinite(value) ? '-' : value.toFixed(4);
}

export function formatSize(rec: RankRecord): string {
  return rec.width === null || rec.height === null ? '-' : `${rec.width}x${rec.height}`;
}
