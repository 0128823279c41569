/**
 * `merge`: combines the outputs of sharded runs (`--shard K/N`) into what one unsharded run writes.
 * Options in, data out. Shard parts are JSON documents: they carry full-precision scores, the
 * provenance that every part must share, and the shard they cover, so merge can check that the parts
 * are one complete, non-overlapping set from one model and one preprocessing mode.
 *
 * Rank: probabilities and ranks are recomputed over each prompt's images across all shards by the
 * same function rank uses (rankRecords), fed in the order an unsharded run feeds it (discovery order,
 * which is sorted by path), so the merged output matches the unsharded one byte for byte.
 *
 * Eval: a sharded eval writes an eval part (buildEvalPart), not a report: a shard alone may lack a
 * baseline's rows or any validation pair. Merge puts the scored rows of all parts back in manifest
 * order and calls the report function eval itself uses (buildReport), so aggregates, bootstrap
 * intervals and the gate are those of the unsharded run.
 */
import { createHash } from 'node:crypto';
import { InputError, InternalError, UsageError, expectedMessage, describeValue } from '../errors.js';
import { positiveInteger } from '../checks.js';
import { parseExifMode, parseResizeMode } from '../image/image.js';
import { buildReport, type EvalReport, type PairScore, type PointScore, type ReportInput } from '../eval/report.js';
import type { ItemRecord } from '../eval/scores-file.js';
import { compareCodePoints } from '../score/rank.js';
import type { ManifestRow } from '../io/manifest.js';
import { readJsonFile } from '../io/json-file.js';
import { READ_LIMITS } from '../io/regular-file.js';
import type { RankRecord } from '../io/writers/record.js';
import type { Provenance, ScoredItem, ScorerStats } from '../pipeline/scorer.js';
import { digestKeys, formatShard, parseShard, type EvalRunIdentity, type KeySetDigest, type RankRunIdentity, type Shard } from '../shard.js';
import { galleryThumbnails } from './gallery.js';
import { rankRecords } from './rank-records.js';
import type { ThumbnailFn } from '../io/html-gallery.js';
import { outputsToSkip, refuseOutputsNamingInputs, type NamedOutput, type OutputClash } from '../io/same-file.js';

export interface MergeOptions {
  /** Part files written by sharded runs: `rank --format json`, or any sharded `eval`. */
  parts: string[];
  /** Keep the best K images per prompt, as `rank --top` does (shard runs must keep every row). */
  top?: number;
  /** Files the caller will write with the result (the CLI's --out and --scores): refused when one of them is a part. */
  outputs?: NamedOutput[];
  /** Files the caller will also write if it can (a job summary): one that names a part or an output is listed in skippedOutputs instead. */
  optionalOutputs?: NamedOutput[];
}

/** A shard part of a rank run as read from disk. */
export interface RankPart {
  file: string;
  shard: Shard;
  /** What the whole run was given (provenance.run): every part of one run carries the same. */
  run: RankRunIdentity;
  provenance: Record<string, unknown>;
  rows: RankRecord[];
  incomplete: boolean;
}

export interface MergedRank {
  kind: 'rank';
  records: RankRecord[];
  provenance: Provenance;
  incomplete: boolean;
  stats: ScorerStats;
  /** The HTML gallery's thumbnails, of the images as the shards read them. */
  thumbnail: ThumbnailFn;
  shardCount: number;
}

export interface MergedEval {
  kind: 'eval';
  report: EvalReport;
  /** Per-row scores in manifest order, as `eval --scores` writes them. */
  items: ItemRecord[];
  incomplete: boolean;
  counts: { rows: number; errors: number; notReached: number; skippedLines: number };
  shardCount: number;
}

/** A merge, with the optional outputs that are not to be written (they name a part or an output). */
export type MergeResult = (MergedRank | MergedEval) & { skippedOutputs: OutputClash[] };

/**
 * Provenance fields that are not the result's: one shard's process (shard, stats, device: dropped or
 * combined on merge) and the run's identity (run: checked on its own, and absent from an unsharded run's output).
 */
const PER_PART_FIELDS = new Set(['shard', 'stats', 'device', 'run']);

export async function runMerge(options: MergeOptions): Promise<MergeResult> {
  if (!Array.isArray(options.parts) || options.parts.length === 0) {
    throw new UsageError(expectedMessage('at least one part file', 'merge <parts...>', options.parts));
  }
  if (options.top !== undefined && !(Number.isInteger(options.top) && options.top > 0)) {
    throw new UsageError(expectedMessage('a positive integer', '--top', options.top));
  }
  const inputs = options.parts.map((part) => ({ role: `the part ${part}`, path: part }));
  await refuseOutputsNamingInputs(options.outputs ?? [], inputs);
  const skippedOutputs = await outputsToSkip(options.optionalOutputs ?? [], options.outputs ?? [], inputs);
  const parts = await Promise.all(options.parts.map(readPart));
  const evalParts = parts.filter((part): part is EvalPartFile => 'points' in part);
  if (evalParts.length === 0) return { ...mergeRankParts(parts as RankPart[], options.top), skippedOutputs };
  if (evalParts.length < parts.length) {
    const rank = parts.find((part) => !('points' in part))!;
    throw new InputError(`${rank.file} is a rank output but ${evalParts[0].file} is an eval part: merge the parts of one run`);
  }
  if (options.top !== undefined) throw new UsageError('--top applies to rank outputs, but these parts come from eval');
  return { ...mergeEvalParts(evalParts), skippedOutputs };
}

/** Pure: the merged records, provenance and stats of a complete set of rank parts. */
export function mergeRankParts(parts: RankPart[], top?: number): MergedRank {
  const ordered = checkCompleteSet(parts, (part) => part.shard);
  checkOneRun(ordered, (part) => part.run, RANK_IDENTITY_FIELDS);
  const provenance = commonProvenance(ordered);
  ordered.forEach(checkEveryRowKept);
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
      else items.push({ key: row.path, prompt: row.prompt, score: row.score, width: row.width, height: row.height, contentHash: row.contentHash ?? null, error: row.error,
        ...(row.scores ? { scores: row.scores } : {}) });
    }
  }
  const incomplete = ordered.some((part) => part.incomplete);
  if (!incomplete) checkEveryImageCovered(ordered);
  // The probabilities are PickScore's: a part of another scorer (provenance.scorer) has none.
  const probabilities = provenance.scorer === undefined;
  const records = rankRecords(inUnshardedOrder(items, ordered), top, { probabilities }).concat(promptErrors.sort((a, b) => compareCodePoints(a.path, b.path)));
  return {
    records,
    provenance: provenance as unknown as Provenance,
    incomplete,
    stats: sumStats(ordered),
    thumbnail: galleryThumbnails(provenance as Partial<Provenance>).thumbnail,
    kind: 'rank',
    shardCount: ordered.length,
  };
}

/**
 * Every image of the run has at least one row in some part (an error row when it could not be scored),
 * unless a shard was interrupted: so the paths of all parts' rows are exactly the run's images.
 */
function checkEveryImageCovered(parts: RankPart[]): void {
  const expected = parts[0].run.images;
  const found = digestKeys(parts.flatMap((part) => part.rows.map((row) => row.path)));
  if (found.sha256 === expected.sha256) return;
  const files = parts.map((part) => part.file).join(', ');
  throw new InputError(found.count === expected.count
    ? `The rows of ${files} are for ${found.count} images, but not the ${expected.count} their run was given: a part holds rows of another run, or was edited`
    : `The rows of ${files} are for ${found.count} images, but their run was given ${expected.count}: a part lacks rows or holds rows of another run, or was edited`);
}

/** How each field of a run's identity reads in a message, so that a refusal says what differs. */
type IdentityFields = Record<string, { label: string; describe: (value: never) => string }>;

const describeScorers = (scorers: string[] | undefined): string => (scorers ?? ['pickscore']).join(', ');

const RANK_IDENTITY_FIELDS: IdentityFields = {
  scorers: { label: 'scorers', describe: describeScorers },
  prompts: { label: 'prompts', describe: describePrompts },
  images: { label: 'images (the inputs before sharding)', describe: (d: KeySetDigest) => `${d.count} image${d.count === 1 ? '' : 's'}` },
};

const EVAL_IDENTITY_FIELDS: IdentityFields = {
  scorers: { label: 'scorers', describe: describeScorers },
  rows: { label: 'manifest rows', describe: (d: KeySetDigest) => `${d.count} valid row${d.count === 1 ? '' : 's'}` },
  validationRows: { label: 'validation rows', describe: (d: KeySetDigest | null) => (d === null ? 'no --validation' : `${d.count} valid row${d.count === 1 ? '' : 's'}`) },
};

function describePrompts(prompts: RankRunIdentity['prompts']): string {
  if (prompts.from !== 'list') return prompts.from === 'sidecar' ? "each image's sidecar .txt (--prompt-from sidecar)" : "each PNG's embedded prompt (--prompt-from png)";
  const shown = prompts.prompts.slice(0, 3).map((p) => describeValue(p)).join(', ');
  return `${prompts.prompts.length} prompt${prompts.prompts.length === 1 ? '' : 's'} (${shown}${prompts.prompts.length > 3 ? ', ...' : ''})`;
}

/**
 * Refuses parts whose run identities differ, naming each field that differs and which parts hold
 * which value. Values that read alike (two long prompt lists that differ past the third prompt, two
 * folders with as many images) are told apart by a hash.
 */
function checkOneRun<T extends { file: string }>(parts: T[], identityOf: (part: T) => object, fields: IdentityFields): void {
  const problems: string[] = [];
  for (const [field, { label, describe }] of Object.entries(fields)) {
    const groups = new Map<string, { value: unknown; files: string[] }>();
    for (const part of parts) {
      const value = (identityOf(part) as Record<string, unknown>)[field];
      const key = JSON.stringify(value);
      const group = groups.get(key) ?? { value, files: [] };
      group.files.push(part.file);
      groups.set(key, group);
    }
    if (groups.size < 2) continue;
    const described = [...groups].map(([key, group]) => ({ key, files: group.files, text: describe(group.value as never) }));
    const ambiguous = new Set(described.map((d) => d.text)).size < described.length;
    const shown = described.map((d) => `${d.files.join(', ')}: ${d.text}${ambiguous ? ` (sha256 ${createHash('sha256').update(d.key).digest('hex').slice(0, 12)})` : ''}`);
    problems.push(`  ${label}: ${shown.join('; ')}`);
  }
  if (problems.length > 0) {
    throw new InputError(`The parts come from different runs, so merging them would give wrong results:\n${problems.join('\n')}\nMerge the parts of one run, each shard given the same inputs, prompts and options.`);
  }
}

/**
 * A shard run with --top drops rows that the merged ranking needs, and nothing in the part says so,
 * except this: rank's probabilities are a softmax over all of a prompt's scored rows, so in a part
 * that kept every row they sum to 1 per prompt.
 */
function checkEveryRowKept(part: RankPart): void {
  const sums = new Map<string, number>();
  for (const row of part.rows) if (row.prob !== null) sums.set(row.prompt, (sums.get(row.prompt) ?? 0) + row.prob);
  for (const [prompt, sum] of sums) {
    if (Math.abs(sum - 1) > 1e-9) {
      throw new InputError(`${part.file}: the probabilities for prompt ${describeValue(prompt)} sum to ${sum}, not 1, so the part lacks rows (was it written with --top?): run shards without --top and pass --top to merge`);
    }
  }
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
export function checkCompleteSet<T extends { file: string }>(parts: T[], shardOf: (part: T) => Shard): T[] {
  const count = shardOf(parts[0]).count;
  const byIndex = new Map<number, T>();
  for (const part of parts) {
    const shard = shardOf(part);
    if (shard.count !== count) {
      throw new InputError(`${part.file} is shard ${formatShard(shard)} but ${parts[0].file} is shard ${formatShard(shardOf(parts[0]))}: the parts come from runs split ${count} and ${shard.count} ways`);
    }
    const other = byIndex.get(shard.index);
    if (other) throw new InputError(`${other.file} and ${part.file} are both shard ${formatShard(shard)}`);
    byIndex.set(shard.index, part);
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
  checkImageProvenance(merged, first.file);
  return merged;
}

/**
 * How the parts' run read its images, which the merged output repeats and its HTML thumbnails follow:
 * checked by the functions that checked the run's options, each failure an InputError naming the part.
 */
function checkImageProvenance(provenance: Record<string, unknown>, file: string): void {
  const field = (name: string) => `${file}: provenance.${name}`;
  if (provenance.exif !== undefined) parseExifMode(provenance.exif, field('exif'), InputError);
  if (provenance.resize !== undefined) parseResizeMode(provenance.resize, field('resize'), InputError);
  if (provenance.maxPixels !== undefined) positiveInteger(field('maxPixels'), provenance.maxPixels, InputError);
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

/** Reads one part file, rank or eval; every problem names the file (and the row). */
export async function readPart(file: string): Promise<RankPart | EvalPartFile> {
  const doc = await readJsonFile(file, {
    what: 'a merge part', maxBytes: READ_LIMITS.textList, error: InputError,
    unreadable: (reason) => `Cannot read part ${file} (${reason})`,
    notJson: () => `${file} is not a JSON document: write rank shard parts with --format json (they carry the provenance and shard that merge checks)`,
  });
  if (isObject(doc) && doc.format === EVAL_PART_FORMAT) return checkEvalPart(doc, file);
  if (isObject(doc) && doc.format === undefined && Array.isArray(doc.models) && doc.gate !== undefined) {
    throw new InputError(`${file} is an eval report, not a shard part: only eval runs with --shard write parts that merge can combine`);
  }
  if (!isObject(doc) || !Array.isArray(doc.rows) || !isObject(doc.provenance)) {
    throw new InputError(expectedMessage('a rank JSON document with "provenance" and "rows", or an eval part', file, doc));
  }
  const shard = partShard(doc.provenance.shard, file, 'provenance.shard');
  const run = checkRankIdentity(doc.provenance.run, file);
  return { file, shard, run, provenance: doc.provenance, rows: doc.rows.map((row, i) => checkRow(row, `${file}: rows[${i}]`)), incomplete: doc.incomplete === true };
}

function partShard(value: unknown, file: string, field: string): Shard {
  if (typeof value !== 'string') throw new InputError(`${expectedMessage(`${field} "K/N"`, file, value)}: it was not written by a run with --shard`);
  try {
    return parseShard(value, `${file}: ${field}`);
  } catch (err) {
    throw new InputError((err as Error).message);
  }
}

/**
 * Parts written before runs recorded their identity are refused: nothing in them shows whether they
 * came from one run (the same prompts, the same images), and merging parts of different runs gives
 * each prompt a ranking over some of the images with wrong probabilities, without a word.
 */
function missingIdentity(file: string, field: string): InputError {
  return new InputError(`${file} has no ${field}, the identity of the run it is a part of (written by an earlier pickscore, or edited): merge cannot check that the parts come from one run. Run the shards again with this version of pickscore`);
}

function checkDigest(value: unknown, where: string): KeySetDigest {
  if (!isObject(value) || !Number.isSafeInteger(value.count) || (value.count as number) < 0 || typeof value.sha256 !== 'string' || !/^[0-9a-f]{64}$/.test(value.sha256)) {
    throw new InputError(expectedMessage('{"count", "sha256"}', where, value));
  }
  return { count: value.count as number, sha256: value.sha256 };
}

/** The scorer list of a run identity: absent for PickScore alone, else a non-empty list of names. */
function checkScorers(value: unknown, where: string): { scorers?: string[] } {
  if (value === undefined) return {};
  if (!Array.isArray(value) || value.length === 0 || !value.every((s) => typeof s === 'string' && s !== '')) throw new InputError(expectedMessage('a non-empty array of scorer names', where, value));
  return { scorers: value as string[] };
}

function checkRankIdentity(value: unknown, file: string): RankRunIdentity {
  if (value === undefined) throw missingIdentity(file, 'provenance.run');
  if (!isObject(value) || value.command !== 'rank') throw new InputError(expectedMessage('a rank run identity {"command": "rank", ...}', `${file}: provenance.run`, value));
  const images = checkDigest(value.images, `${file}: provenance.run.images`);
  const scorers = checkScorers(value.scorers, `${file}: provenance.run.scorers`);
  const prompts = value.prompts;
  const where = `${file}: provenance.run.prompts`;
  if (isObject(prompts) && (prompts.from === 'sidecar' || prompts.from === 'png')) return { command: 'rank', images, prompts: { from: prompts.from }, ...scorers };
  if (isObject(prompts) && prompts.from === 'list' && Array.isArray(prompts.prompts) && prompts.prompts.every((p) => typeof p === 'string')) {
    return { command: 'rank', images, prompts: { from: 'list', prompts: prompts.prompts as string[] }, ...scorers };
  }
  throw new InputError(expectedMessage('{"from": "list", "prompts": [...]} or {"from": "sidecar" | "png"}', where, prompts));
}

function checkEvalIdentity(value: unknown, file: string): EvalRunIdentity {
  if (value === undefined) throw missingIdentity(file, 'run');
  if (!isObject(value) || value.command !== 'eval') throw new InputError(expectedMessage('an eval run identity {"command": "eval", ...}', `${file}: run`, value));
  return {
    command: 'eval',
    rows: checkDigest(value.rows, `${file}: run.rows`),
    validationRows: value.validationRows === null ? null : checkDigest(value.validationRows, `${file}: run.validationRows`),
    ...checkScorers(value.scorers, `${file}: run.scorers`),
  };
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
  if ('scores' in row) {
    const scores = row.scores;
    if (!isObject(scores) || !Object.values(scores).every(numberOrNull)) throw new InputError(expectedMessage('an object of scores (numbers or null) by scorer', `${where}.scores`, scores));
    record.scores = scores as Record<string, number | null>;
  }
  if (record.score === null && record.error === null) throw new InputError(`${where} has neither a score nor an error`);
  return record;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

/* ------------------------------------------------------------------------------------------------
 * Eval parts. A sharded eval scores only its shard's manifest rows (selected by evalShardKey) and
 * writes what buildReport needs instead of a report: the scored rows with their manifest and line,
 * and the report options, so that the merge can rebuild the unsharded report exactly.
 * ---------------------------------------------------------------------------------------------- */

export const EVAL_PART_FORMAT = 'pickscore-eval-part';

/** A scored row and where it is in its manifest: the order an unsharded eval sees the rows in. */
export type Located<T> = T & { manifest: string; line: number };

/** The report options a part was scored for; every part of a run must agree on them. */
export interface EvalPartSettings {
  seed?: number; resamples?: number; tieThreshold?: number; maxDrop?: number;
  baseline?: string; candidate?: string;
  /** The validation manifest, whose pairs are sharded like the main rows. */
  validation?: string;
}

export interface EvalPart {
  format: typeof EVAL_PART_FORMAT;
  schemaVersion: 1;
  shard: string;
  /** What the whole run was given: every part of one run carries the same. */
  run: EvalRunIdentity;
  provenance: Provenance | null;
  incomplete: boolean;
  manifests: string[];
  settings: EvalPartSettings;
  /** Invalid lines skipped with --skip-invalid: every shard reads whole manifests, so all parts agree. */
  skippedLines: number;
  notReached: number;
  points: Located<PointScore>[];
  pairs: Located<PairScore>[];
  validationPairs: Located<PairScore>[];
  items: ItemRecord[];
}

export type EvalPartFile = EvalPart & { file: string; shardOf: Shard };

/**
 * The shard key of a manifest row: the image as the manifest names it (a pointwise row), or the two
 * images of a pair. All rows that score one image land in one shard, so it is decoded once.
 */
export function evalShardKey(row: ManifestRow): string {
  return row.kind === 'pointwise' ? row.image.given : `${row.image0.given}\n${row.image1.given}`;
}

/**
 * Pure: the part a sharded eval writes. `items` and `validationItems` are the per-row records of the
 * main and validation rows, in the order the rows were scored: the i-th pointwise record belongs to
 * the i-th point and the j-th pairwise record to the j-th pair, which is how they lend their lines.
 */
export function buildEvalPart(shard: Shard, input: ReportInput, items: ItemRecord[], validationItems: ItemRecord[], run: EvalRunIdentity): EvalPart {
  const { validation, ...settings } = input.options;
  return {
    format: EVAL_PART_FORMAT,
    schemaVersion: 1,
    shard: formatShard(shard),
    run,
    provenance: input.provenance,
    incomplete: input.incomplete,
    manifests: input.manifests,
    settings: { ...settings, validation: validation?.manifest },
    skippedLines: input.skippedLines,
    notReached: input.notReached,
    points: locate(input.points, items, 'pointwise'),
    pairs: locate(input.pairs, items, 'pairwise'),
    validationPairs: locate(validation?.pairs ?? [], validationItems, 'pairwise'),
    items,
  };
}

function locate<T>(scored: T[], items: ItemRecord[], kind: 'pointwise' | 'pairwise'): Located<T>[] {
  const records = items.filter((item) => item.kind === kind);
  if (records.length !== scored.length) throw new InternalError(`${scored.length} scored ${kind} rows but ${records.length} ${kind} records`);
  return scored.map((row, i) => ({ ...row, manifest: String(records[i].manifest), line: Number(records[i].line) }));
}

/** Pure: the report of the unsharded run, from a complete set of eval parts. */
export function mergeEvalParts(parts: EvalPartFile[]): MergedEval {
  const ordered = checkCompleteSet(parts, (part) => part.shardOf);
  const first = ordered[0];
  for (const part of ordered.slice(1)) {
    for (const field of ['manifests', 'settings', 'skippedLines'] as const) {
      const a = JSON.stringify(first[field]);
      const b = JSON.stringify(part[field]);
      if (a !== b) throw new InputError(`${first.file} and ${part.file} differ in ${field} (${a} vs ${b}): they are not parts of one run`);
    }
  }
  checkOneRun(ordered, (part) => part.run, EVAL_IDENTITY_FIELDS);
  const provenance = first.provenance === null ? null : (commonProvenance(ordered.map((p) => ({ file: p.file, provenance: { ...p.provenance } }))) as unknown as Provenance);
  const order = manifestOrder(first.manifests);
  const points = inManifestOrder(ordered, (part) => part.points, order);
  const pairs = inManifestOrder(ordered, (part) => part.pairs, order);
  const validationPairs = inManifestOrder(ordered, (part) => part.validationPairs, order);
  const items = inManifestOrder(ordered, (part) => part.items as Located<ItemRecord>[], order);
  const { validation, ...settings } = first.settings;
  const incomplete = ordered.some((part) => part.incomplete);
  if (!incomplete) checkEveryRowCovered(ordered, points.length + pairs.length, validationPairs.length);
  const notReached = ordered.reduce((sum, part) => sum + part.notReached, 0);
  const report = buildReport({
    points: points.map(unlocated),
    pairs: pairs.map(unlocated),
    provenance,
    incomplete,
    manifests: first.manifests,
    skippedLines: first.skippedLines,
    notReached,
    options: { ...settings, validation: validation === undefined ? undefined : { manifest: validation, pairs: validationPairs.map(unlocated) } },
  });
  return {
    kind: 'eval', report, items, incomplete,
    counts: { rows: items.length, errors: report.counts.errors, notReached, skippedLines: first.skippedLines },
    shardCount: ordered.length,
  };
}

/** Each row of the run is in exactly one part unless a shard was interrupted: the counts must add up to the run's. */
function checkEveryRowCovered(parts: EvalPartFile[], rows: number, validationRows: number): void {
  const { run } = parts[0];
  const files = parts.map((part) => part.file).join(', ');
  if (rows !== run.rows.count) {
    throw new InputError(`${files} hold ${rows} scored manifest rows, but their run had ${run.rows.count}: a part lacks rows or holds rows of another run, or was edited`);
  }
  if (run.validationRows !== null && validationRows !== run.validationRows.count) {
    throw new InputError(`${files} hold ${validationRows} scored validation rows, but their run had ${run.validationRows.count}: a part lacks rows or holds rows of another run, or was edited`);
  }
}

/** Manifests in the order the run listed them; the validation manifest, not in the list, sorts after. */
function manifestOrder(manifests: string[]): (manifest: string) => number {
  const index = new Map<string, number>();
  for (const manifest of manifests) if (!index.has(manifest)) index.set(manifest, index.size);
  return (manifest) => index.get(manifest) ?? index.size;
}

function inManifestOrder<T>(parts: EvalPartFile[], rowsOf: (part: EvalPartFile) => Located<T>[], order: (manifest: string) => number): Located<T>[] {
  const seen = new Map<string, string>();
  const all: Located<T>[] = [];
  for (const part of parts) {
    for (const row of rowsOf(part)) {
      const where = `${row.manifest}:${row.line}`;
      const earlier = seen.get(where);
      if (earlier !== undefined) throw new InputError(`${where} is in both ${earlier} and ${part.file}: the parts overlap`);
      seen.set(where, part.file);
      all.push(row);
    }
  }
  return all.sort((a, b) => order(a.manifest) - order(b.manifest) || a.line - b.line);
}

function unlocated<T>(row: Located<T>): T {
  const { manifest: _manifest, line: _line, ...rest } = row;
  return rest as T;
}

function checkEvalPart(doc: Record<string, unknown>, file: string): EvalPartFile {
  const shardOf = partShard(doc.shard, file, 'shard');
  if (doc.schemaVersion !== 1) throw new InputError(expectedMessage('schemaVersion 1', file, doc.schemaVersion));
  for (const field of ['points', 'pairs', 'validationPairs', 'items', 'manifests'] as const) {
    if (!Array.isArray(doc[field])) throw new InputError(expectedMessage('an array', `${file}: ${field}`, doc[field]));
  }
  for (const field of ['points', 'pairs', 'validationPairs', 'items'] as const) {
    (doc[field] as unknown[]).forEach((row, i) => {
      if (!isObject(row) || typeof row.manifest !== 'string' || !Number.isInteger(row.line)) {
        throw new InputError(expectedMessage('a row with "manifest" and "line"', `${file}: ${field}[${i}]`, row));
      }
    });
  }
  if (!isObject(doc.settings)) throw new InputError(expectedMessage('an object', `${file}: settings`, doc.settings));
  const run = checkEvalIdentity(doc.run, file);
  if (!(doc.provenance === null || isObject(doc.provenance))) throw new InputError(expectedMessage('an object or null', `${file}: provenance`, doc.provenance));
  for (const field of ['skippedLines', 'notReached'] as const) {
    if (!Number.isInteger(doc[field])) throw new InputError(expectedMessage('an integer', `${file}: ${field}`, doc[field]));
  }
  return { ...(doc as unknown as EvalPart), run, file, shardOf, incomplete: doc.incomplete === true };
}
