/**
 * Eval manifests: JSON Lines, one object per line.
 *   pointwise  {"prompt", "image", "model"?, "id"?, ...}
 *   pairwise   {"prompt" | "caption", "image_0", "image_1", "label_0"}   label_0 in {1, 0, 0.5}; 0.5 is a tie
 * Image paths are relative to the manifest's folder unless absolute. Blank lines, CRLF and a leading BOM
 * are accepted. Every bad line is collected as `file:line: field: problem`, and all of them are reported
 * together in one ManifestError (an InputError), unless skipInvalid asks for the good rows and a count.
 */
import { stat } from 'node:fs/promises';
import path from 'node:path';
import { InputError, expectedMessage } from '../errors.js';
import { READ_LIMITS, readFailureText, readRegularFile } from './regular-file.js';
import type { PairLabel } from '../score/pairwise.js';

export type { PairLabel };

interface RowBase {
  /** The manifest path as given, and the 1-based line number. */
  manifest: string;
  line: number;
  prompt: string;
  id: string | null;
  /** Fields the schema does not use, passed through to the per-item output. */
  extra: Record<string, unknown>;
}

/** An image as the manifest wrote it, and where it is on disk. */
export interface ManifestImage { given: string; path: string }

export interface PointwiseRow extends RowBase {
  kind: 'pointwise';
  image: ManifestImage;
  model: string | null;
}

export interface PairwiseRow extends RowBase {
  kind: 'pairwise';
  image0: ManifestImage;
  image1: ManifestImage;
  label0: PairLabel;
}

export type ManifestRow = PointwiseRow | PairwiseRow;

export interface ManifestIssue { manifest: string; line: number; field: string; problem: string }

export function formatIssue(issue: ManifestIssue): string {
  return `${issue.manifest}:${issue.line}: ${issue.field}: ${issue.problem}`;
}

/**
 * Every bad line of every manifest, one problem per line of the message. The count is of lines, as
 * --skip-invalid counts what it skips; a line can have several problems, and then both are given.
 */
export class ManifestError extends InputError {
  readonly issues: readonly ManifestIssue[];
  constructor(issues: readonly ManifestIssue[]) {
    const lines = countLines(issues);
    const lineCount = `${lines} invalid manifest line${lines === 1 ? '' : 's'}`;
    const count = issues.length === lines ? lineCount : `${issues.length} problems on ${lineCount}`;
    super(`${count} (pass --skip-invalid to score the others):\n${issues.map(formatIssue).join('\n')}`);
    this.issues = issues;
  }
}

/** The distinct lines that issues are on, across manifests. */
function countLines(issues: readonly ManifestIssue[]): number {
  return new Set(issues.map((issue) => JSON.stringify([issue.manifest, issue.line]))).size;
}

export interface ManifestReadOptions {
  /** Return the good rows and count the bad lines instead of throwing. */
  skipInvalid?: boolean;
  /** Check that every image exists and is a file (default true). */
  checkFiles?: boolean;
}

export interface ManifestContents { rows: ManifestRow[]; skipped: number; issues: ManifestIssue[] }

const POINTWISE_FIELDS = new Set(['prompt', 'image', 'model', 'id']);
const PAIRWISE_FIELDS = new Set(['prompt', 'caption', 'image_0', 'image_1', 'label_0', 'id']);

/** Reads and validates every manifest; throws one ManifestError listing all bad lines unless skipInvalid. */
export async function readManifests(files: readonly string[], opts: ManifestReadOptions = {}): Promise<ManifestContents> {
  if (files.length === 0) throw new InputError('No manifest given: pass at least one .jsonl file');
  const rows: ManifestRow[] = [];
  const issues: ManifestIssue[] = [];
  /** Why a manifest adds no row: empty, blank, or every line skipped as invalid. */
  const nothingToScore: string[] = [];
  let skipped = 0;
  for (const file of files) {
    let text: string;
    try {
      text = (await readRegularFile(file, READ_LIMITS.textList, 'a manifest')).toString('utf8');
    } catch (err) {
      throw new InputError(`Cannot read manifest ${file}: ${readFailureText(err)}`, { cause: err });
    }
    const parsed = parseManifest(text, file);
    const missing = opts.checkFiles === false ? [] : await missingImages(parsed.rows);
    const badLines = new Set(missing.map((issue) => issue.line));
    const kept = parsed.rows.filter((row) => !badLines.has(row.line));
    rows.push(...kept);
    const fileIssues = [...parsed.issues, ...missing].sort((a, b) => a.line - b.line);
    issues.push(...fileIssues);
    const badCount = countLines(fileIssues);
    skipped += badCount;
    if (kept.length === 0) {
      nothingToScore.push(badCount === 0
        ? `The manifest ${file} is ${text.length === 0 ? 'empty' : 'blank'}: it holds no JSON lines to score`
        : `Every line of the manifest ${file} is invalid (${badCount} line${badCount === 1 ? '' : 's'}, all skipped with --skip-invalid): it holds nothing to score`);
    }
  }
  if (issues.length > 0 && !opts.skipInvalid) throw new ManifestError(issues);
  // An empty folder stops rank; an empty manifest, or one that --skip-invalid empties, stops eval likewise.
  if (nothingToScore.length > 0) throw new InputError(nothingToScore.join('\n'));
  return { rows, skipped, issues };
}

/** Parses one manifest's text (no I/O); image paths resolve against the manifest's folder. */
export function parseManifest(text: string, manifest: string): { rows: ManifestRow[]; issues: ManifestIssue[] } {
  const rows: ManifestRow[] = [];
  const issues: ManifestIssue[] = [];
  const base = path.dirname(manifest);
  const lines = text.replace(/^\uFEFF/, '').split(/\r?\n/);
  lines.forEach((raw, index) => {
    if (raw.trim() === '') return;
    const line = index + 1;
    const report = (field: string, problem: string): void => { issues.push({ manifest, line, field, problem }); };
    const before = issues.length;
    const row = parseLine(raw, { manifest, line, base }, report);
    if (row && issues.length === before) rows.push(row);
  });
  return { rows, issues };
}

interface LineContext { manifest: string; line: number; base: string }
type Report = (field: string, problem: string) => void;

function parseLine(raw: string, ctx: LineContext, report: Report): ManifestRow | undefined {
  let value: unknown;
  try {
    value = JSON.parse(raw);
  } catch (err) {
    report('json', `not valid JSON (${(err as Error).message})`);
    return undefined;
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    report('json', expectedMessage('a JSON object', 'the line', value));
    return undefined;
  }
  const obj = value as Record<string, unknown>;
  if ('image_0' in obj || 'image_1' in obj || 'label_0' in obj) return parsePairwise(obj, ctx, report);
  if ('image' in obj) return parsePointwise(obj, ctx, report);
  report('image', 'missing: a pointwise line needs "image"; a pairwise line needs "image_0", "image_1" and "label_0"');
  return undefined;
}

function parsePointwise(obj: Record<string, unknown>, ctx: LineContext, report: Report): PointwiseRow {
  // Fields are checked in schema order, so a line's issues read in that order.
  const prompt = requirePrompt(obj.prompt, 'prompt', report);
  const image = requireImage(obj.image, 'image', ctx.base, report);
  const model = obj.model === undefined || obj.model === null ? null : requireText(obj.model, 'model', report);
  return {
    kind: 'pointwise', manifest: ctx.manifest, line: ctx.line, prompt, image, model,
    id: optionalId(obj.id, report), extra: extraFields(obj, POINTWISE_FIELDS),
  };
}

function parsePairwise(obj: Record<string, unknown>, ctx: LineContext, report: Report): PairwiseRow {
  let prompt: string;
  if (obj.prompt !== undefined && obj.caption !== undefined && obj.prompt !== obj.caption) {
    report('caption', 'differs from "prompt"; give one of them');
    prompt = '';
  } else {
    const field = obj.prompt !== undefined ? 'prompt' : 'caption';
    prompt = requirePrompt(obj[field], field, report);
  }
  return {
    kind: 'pairwise', manifest: ctx.manifest, line: ctx.line, prompt,
    image0: requireImage(obj.image_0, 'image_0', ctx.base, report),
    image1: requireImage(obj.image_1, 'image_1', ctx.base, report),
    label0: requireLabel(obj.label_0, report),
    id: optionalId(obj.id, report), extra: extraFields(obj, PAIRWISE_FIELDS),
  };
}

function requirePrompt(value: unknown, field: string, report: Report): string {
  if (typeof value === 'string') return value;
  report(value === undefined ? 'prompt' : field, value === undefined ? 'missing (a string; "caption" is accepted for pairwise lines)' : expectedMessage('a string', field, value));
  return '';
}

function requireText(value: unknown, field: string, report: Report): string {
  if (typeof value === 'string' && value !== '') return value;
  report(field, value === undefined ? 'missing' : expectedMessage('a non-empty string', field, value));
  return '';
}

function requireImage(value: unknown, field: string, base: string, report: Report): ManifestImage {
  const given = requireText(value, field, report);
  return { given, path: given === '' ? '' : path.resolve(base, given) };
}

function requireLabel(value: unknown, report: Report): PairLabel {
  if (value === 0 || value === 0.5 || value === 1) return value;
  report('label_0', value === undefined ? 'missing (1, 0 or 0.5)' : expectedMessage('1, 0 or 0.5 (0.5 is a tie)', 'label_0', value));
  return 0.5;
}

function optionalId(value: unknown, report: Report): string | null {
  if (value === undefined || value === null) return null;
  if (typeof value === 'string' || (typeof value === 'number' && Number.isFinite(value))) return String(value);
  report('id', expectedMessage('a string or a number', 'id', value));
  return null;
}

function extraFields(obj: Record<string, unknown>, known: Set<string>): Record<string, unknown> {
  return Object.fromEntries(Object.entries(obj).filter(([key]) => !known.has(key)));
}

/** Stats every distinct image once; a missing path or a folder is an issue on each line that names it. */
async function missingImages(rows: readonly ManifestRow[]): Promise<ManifestIssue[]> {
  const verdicts = new Map<string, Promise<string | null>>();
  const check = (file: string): Promise<string | null> => {
    let verdict = verdicts.get(file);
    if (!verdict) {
      verdict = stat(file).then(
        (s) => (s.isFile() ? null : 'not a file'),
        (err: NodeJS.ErrnoException) => (err.code === 'ENOENT' ? 'no such file' : `cannot be read (${err.code ?? err.message})`),
      );
      verdicts.set(file, verdict);
    }
    return verdict;
  };
  const issues: ManifestIssue[] = [];
  for (const row of rows) {
    const images: [string, ManifestImage][] = row.kind === 'pointwise' ? [['image', row.image]] : [['image_0', row.image0], ['image_1', row.image1]];
    for (const [field, image] of images) {
      const problem = await check(image.path);
      if (problem) issues.push({ manifest: row.manifest, line: row.line, field, problem: `${problem}: ${image.path}` });
    }
  }
  return issues;
}
