/**
 * `merge`: combines the outputs of sharded runs (`--shard K/N`) into what one unsharded run writes.
 * Options in, data out. Shard parts must be JSON documents: they carry full-precision scores, the
 * provenance that every part must share, and the shard they cover, so merge can check that the parts
 * are one complete, non-overlapping set from one model and one preprocessing mode.
 *
 * Rank: probabilities and ranks are recomputed over each prompt's images across all shards by the
 * same function rank uses (rankRecords), fed in the order an unsharded run feeds it (discovery order,
 * which is sorted by path), so the merged output matches the unsharded one byte for byte.
 */
import { readFile } from 'node:fs/promises';
import { InputError, UsageError, expectedMessage, describeValue } from '../errors.js';
import { compareCodePoints } from '../io/discover.js';
import type { RankRecord } from '../io/writers/record.js';
import type { Provenance, ScoredItem, ScorerStats } from '../pipeline/scorer.js';
import { formatShard, parseShard, type Shard } from '../shard.js';
import { rankRecords, type RankResult } from './rank.js';

export interface MergeOptions {
  /** Part files written by sharded runs with `--format json`. */
  parts: string[];
  /** Keep the best K images per prompt, as `rank --top` does (shard runs must keep every row). */
  top?: number;
}

/** A shard part as read from disk. */
export interface RankPart {
  file: string;
  shard: Shard;
  provenance: Record<string, unknown>;
  rows: RankRecord[];
  incomplete: boolean;
}

export type MergedRank = Pick<RankResult, 'records' | 'provenance' | 'incomplete' | 'stats'> & { shardCount: number };

/** Provenance fields that describe one shard's process, not the result: dropped or combined on merge. */
const PER_PART_FIELDS = new Set(['shard', 'stats', 'device']);

export async function runMerge(options: MergeOptions): Promise<MergedRank> {
  if (!Array.isArray(options.parts) || options.parts.length === 0) {
    throw new UsageError(expectedMessage('at least one part file', 'merge <parts...>', options.parts));
  }
  if (options.top !== undefined && !(Number.isInteger(options.top) && options.top > 0)) {
    throw new UsageError(expectedMessage('a positive integer', '--top', options.top));
  }
  const parts = await Promise.all(options.parts.map(readRankPart));
  return mergeRankParts(parts, options.top);
}

/** Pure: the merged records, provenance and stats of a complete set of rank parts. */
export function mergeRankParts(parts: RankPart[], top?: number): MergedRank {
  const ordered = checkCompleteSet(parts);
  const provenance = commonProvenance(ordered);
  const promptErrors: RankRecord[] = [];
  const items: ScoredItem[] = [];
  const seen = new Map<string, string>();
  for (const part of ordered) {
    for (const row of part.rows) {
      const identity = JSON.stringify([row.path, row.prompt]);
      const earlier = seen.get(identity);
      if (earlier !== undefined) {
        throw new InputError(`${row.path} with prompt ${describeValue(row.prompt)} is in both ${earlier} and ${part.file}: the parts overlap`);
      }
      seen.set(identity, part.file);
      // A row without a prompt is an image whose own prompt could not be read; rank lists those last.
      if (row.prompt === '' && row.error !== null) promptErrors.push(row);
      else items.push({ key: row.path, prompt: row.prompt, score: row.score, width: row.width, height: row.height, contentHash: row.contentHash ?? null, error: row.error });
    }
  }
  const records = rankRecords(inUnshardedOrder(items, ordered), top).concat(promptErrors.sort((a, b) => compareCodePoints(a.path, b.path)));
  return {
    records,
    provenance: provenance as unknown as Provenance,
    incomplete: ordered.some((part) => part.incomplete),
    stats: sumStats(ordered),
    shardCount: ordered.length,
  };
}

/**
 * The order an unsharded run scores in: images sorted by path (discovery's order) and, for each image,
 * its prompts in the order the run was given them (the order they first appear in any part).
 */
function inUnshardedOrder(items: ScoredItem[], parts: RankPart[]): ScoredItem[] {
  const promptOrder = new Map<string, number>();
  for (const part of parts) for (const row of part.rows) if (!promptOrder.has(row.prompt)) promptOrder.set(row.prompt, promptOrder.size);
  return items.sort((a, b) => compareCodePoints(a.key, b.key) || promptOrder.get(a.prompt)! - promptOrder.get(b.prompt)!);
}

/** Parts sorted by shard index, after checking they are shards 0..N-1 of one N, each exactly once. */
export function checkCompleteSet<T extends { file: string; shard: Shard }>(parts: T[]): T[] {
  const count = parts[0].shard.count;
  const byIndex = new Map<number, T>();
  for (const part of parts) {
    if (part.shard.count !== count) {
      throw new InputError(`${part.file} is shard ${formatShard(part.shard)} but ${parts[0].file} is shard ${formatShard(parts[0].shard)}: the parts come from runs split ${count} and ${part.shard.count} ways`);
    }
    const other = byIndex.get(part.shard.index);
    if (other) throw new InputError(`${other.file} and ${part.file} are both shard ${formatShard(part.shard)}`);
    byIndex.set(part.shard.index, part);
  }
  const missing = Array.from({ length: count }, (_, i) => i).filter((i) => !byIndex.has(i));
  if (missing.length > 0) {
    throw new InputError(`Missing shard${missing.length > 1 ? 's' : ''} ${missing.map((i) => `${i}/${count}`).join(', ')}: merge needs all ${count} parts of the run`);
  }
  return [...byIndex.keys()].sort((a, b) => a - b).map((i) => byIndex.get(i)!);
}

/**
 * The provenance every part shares, without per-process fields. `device` is kept when all parts ran
 * on the same one, else it lists them in shard order (a multi-GPU run).
 */
export function commonProvenance(parts: { file: string; provenance: Record<string, unknown> }[]): Record<string, unknown> {
  const first = parts[0];
  const merged: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(first.provenance)) {
    if (key === 'device') merged.device = [...new Set(parts.map((p) => String(p.provenance.device)))].join(',');
    else if (!PER_PART_FIELDS.has(key)) merged[key] = value;
  }
  for (const part of parts.slice(1)) {
    const keys = new Set([...Object.keys(first.provenance), ...Object.keys(part.provenance)]);
    for (const key of keys) {
      if (PER_PART_FIELDS.has(key)) continue;
      const a = JSON.stringify(first.provenance[key]);
      const b = JSON.stringify(part.provenance[key]);
      if (a !== b) throw new InputError(`${first.file} and ${part.file} differ in provenance.${key} (${a} vs ${b}): they are not parts of one run`);
    }
  }
  return merged;
}

function sumStats(parts: RankPart[]): ScorerStats {
  const total: Record<string, number> = {};
  for (const part of parts) {
    const stats = part.provenance.stats;
    if (stats === null || typeof stats !== 'object') continue;
    for (const [key, value] of Object.entries(stats)) if (typeof value === 'number') total[key] = (total[key] ?? 0) + value;
  }
  return total as unknown as ScorerStats;
}

/** Reads and checks one part file; every problem names the file (and the row). */
export async function readRankPart(file: string): Promise<RankPart> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    throw new InputError(`Cannot read part ${file} (${(err as NodeJS.ErrnoException).code ?? String(err)})`, { cause: err });
  }
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch {
    throw new InputError(`${file} is not a JSON document: write shard parts with --format json (they carry the provenance and shard that merge checks)`);
  }
  if (!isObject(doc) || !Array.isArray(doc.rows) || !isObject(doc.provenance)) {
    throw new InputError(expectedMessage('a rank JSON document with "provenance" and "rows"', file, doc));
  }
  const shardText = doc.provenance.shard;
  if (typeof shardText !== 'string') {
    throw new InputError(`${expectedMessage('provenance.shard "K/N"', file, shardText)}: it was not written by a run with --shard`);
  }
  let shard: Shard;
  try {
    shard = parseShard(shardText, `${file}: provenance.shard`);
  } catch (err) {
    throw new InputError((err as Error).message);
  }
  return { file, shard, provenance: doc.provenance, rows: doc.rows.map((row, i) => checkRow(row, `${file}: rows[${i}]`)), incomplete: doc.incomplete === true };
}

function checkRow(row: unknown, where: string): RankRecord {
  if (!isObject(row)) throw new InputError(expectedMessage('an object', where, row));
  const field = <T>(name: string, ok: (v: unknown) => boolean, expected: string): T => {
    if (!ok(row[name])) throw new InputError(expectedMessage(expected, `${where}.${name}`, row[name]));
    return row[name] as T;
  };
  const numberOrNull = (v: unknown): boolean => v === null || (typeof v === 'number' && Number.isFinite(v));
  const stringOrNull = (v: unknown): boolean => v === null || typeof v === 'string';
  const record: RankRecord = {
    path: field('path', (v) => typeof v === 'string' && v !== '', 'a non-empty string'),
    prompt: field('prompt', (v) => typeof v === 'string', 'a string'),
    score: field('score', numberOrNull, 'a number or null'),
    prob: field('prob', numberOrNull, 'a number or null'),
    rank: field('rank', numberOrNull, 'a number or null'),
    width: field('width', numberOrNull, 'a number or null'),
    height: field('height', numberOrNull, 'a number or null'),
    error: field('error', stringOrNull, 'a string or null'),
  };
  if ('contentHash' in row) record.contentHash = field('contentHash', stringOrNull, 'a string or null');
  if (record.score === null && record.error === null) throw new InputError(`${where} has neither a score nor an error`);
  return record;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}
