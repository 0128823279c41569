/**
 * `eval`: score the rows of one or more manifests and aggregate them into a report, with an optional
 * baseline/candidate gate. Options in, data out: printing and exit codes belong to src/cli.
 */
import { readManifests, type ManifestRow, type PairwiseRow, type PointwiseRow } from '../io/manifest.js';
import { buildReport, requireModel, UNNAMED_MODEL, type EvalReport, type GateDecision, type PairScore, type PointScore, type ReportInput } from '../eval/report.js';
import { pairwiseRecord, pointwiseRecord, type ItemRecord } from '../eval/scores-file.js';
import { InputError, UsageError, expectedMessage } from '../errors.js';
import { resolveRunOptions, type ResolvedScorerOptions, type RunScorerOptions } from '../pipeline/options.js';
import type { Scorer, ScoreRequest, ScoredItem } from '../pipeline/scorer.js';
import { openScorerSet, scoreWithEach, setProvenance } from './scorer-set.js';
import { digestKeys, selectShard, type EvalRunIdentity, type Shard } from '../shard.js';
import { allDevicesWithShardError, runOnAllDevices, type WorkerOutcome } from './all-devices.js';
import { buildEvalPart, evalShardKey, type EvalPart } from './merge.js';
import { sha256File } from '../io/file-hash.js';
import { outputsToSkip, refuseOutputsNamingInputs, type NamedInput, type NamedOutput, type OutputClash } from '../io/same-file.js';

/** What to evaluate; with the scoring options (EvalOptions), an eval run. */
export interface EvalQuery {
  manifests: string[];
  /** A pairwise manifest on which the tie threshold is chosen, as the paper does. */
  validation?: string;
  skipInvalid?: boolean;
  seed?: number;
  resamples?: number;
  tieThreshold?: number;
  baseline?: string;
  candidate?: string;
  maxDrop?: number;
  /** With several scorers, the one the report and the gate follow (default: the first). */
  gateScorer?: string;
  /** Aborting stops the scoring after its current batch (the report covers what was scored) and a model download at once. */
  signal?: AbortSignal;
  onProgress?: (done: number, total: number) => void;
  /** Score only this shard's rows (runEvalPart). */
  shard?: Shard;
  /** An open scorer (the library API shares one); otherwise eval opens one and closes it. */
  scorer?: EvalScorer;
  /**
   * Files the caller will write with the result (the CLI's --out and --scores): the run is refused
   * before any model is loaded when one of them is an input (a manifest, the validation manifest, an
   * image a manifest names).
   */
  outputs?: NamedOutput[];
  /**
   * Files the caller will also write if it can, such as a job summary appended beside the report: one
   * that names an input or one of `outputs` is not refused but listed in the result's skippedOutputs.
   */
  optionalOutputs?: NamedOutput[];
}

/** An eval run: what to evaluate, and how to score (the scoring options, or options already resolved). */
export type EvalOptions = EvalQuery & (RunScorerOptions | ResolvedScorerOptions);

/** What eval needs of the engine. */
export type EvalScorer = Pick<Scorer, 'scoreStream' | 'provenance' | 'description'>;

export interface EvalCounts {
  rows: number;
  skippedLines: number;
  /** Distinct image contents and distinct (image content, prompt) pairs: what was actually scored. */
  uniqueImages: number;
  scoreRequests: number;
  errors: number;
  notReached: number;
}

export interface EvalResult {
  report: EvalReport;
  gate: GateDecision | null;
  /** Per-row scores, for `--scores`. */
  items: ItemRecord[];
  incomplete: boolean;
  counts: EvalCounts;
  /** With `cuda:all`: what each worker did. */
  workers?: WorkerOutcome[];
  /** The optionalOutputs that name an input or an output, with what they name: not to be written. */
  skippedOutputs: OutputClash[];
}

export interface EvalPartResult {
  part: EvalPart;
  items: ItemRecord[];
  incomplete: boolean;
  counts: EvalCounts;
  skippedOutputs: OutputClash[];
}

export async function runEval(options: EvalOptions): Promise<EvalResult> {
  const { scoring, scorings, allDevices } = resolveRunOptions(options);
  const gateIndex = gateScorerIndex(scorings, options.gateScorer);
  if (allDevices) return evalOnAllDevices(options, scoring);
  if (options.shard) throw new UsageError('A sharded eval writes a part for merge: call runEvalPart');
  const scored = await scoreManifests(options, scorings);
  if (scored.inputs.length === 1) {
    const report = buildReport(scored.input);
    return { report, gate: report.gate, items: scored.items, incomplete: scored.input.incomplete, counts: { ...scored.counts, errors: report.counts.errors }, skippedOutputs: scored.skippedOutputs };
  }
  const names = scorings.map((s) => s.scorerDescription.name);
  const reports = Object.fromEntries(scored.inputs.map((input, i) => [names[i], buildReport(input)]));
  const report: EvalReport = { ...reports[names[gateIndex]], scorers: { gate: names[gateIndex], reports } };
  const errors = Math.max(...Object.values(reports).map((r) => r.counts.errors));
  return { report, gate: report.gate, items: scored.items, incomplete: scored.input.incomplete, counts: { ...scored.counts, errors }, skippedOutputs: scored.skippedOutputs };
}

/** `--gate-scorer`: one of the run's scorers (default the first), checked before anything is read. */
function gateScorerIndex(scorings: ResolvedScorerOptions[], gateScorer: string | undefined): number {
  if (gateScorer === undefined) return 0;
  const names = scorings.map((s) => s.scorerDescription.name as string);
  const index = names.indexOf(gateScorer);
  if (index < 0) throw new UsageError(expectedMessage(`one of this run's scorers (${names.join(', ')})`, '--gate-scorer', gateScorer));
  return index;
}

/**
 * One shard of an eval (`--shard K/N`): scores the rows whose shard key falls in the shard, main and
 * validation alike, and returns the part that `merge` combines into the unsharded report. No report
 * here: a shard alone may lack a baseline's rows or every validation pair.
 */
export async function runEvalPart(options: EvalOptions & { shard: Shard }): Promise<EvalPartResult> {
  const { scorings, allDevices } = resolveRunOptions(options);
  if (allDevices) throw allDevicesWithShardError();
  if (scorings.length > 1) throw new UsageError('A sharded eval runs one scorer: run the shards of each scorer apart, or several scorers unsharded');
  gateScorerIndex(scorings, options.gateScorer);
  const scored = await scoreManifests(options, scorings);
  const part = buildEvalPart(options.shard, scored.input, scored.items, scored.validationItems, scored.run);
  const errors = scored.input.points.filter((p) => p.error !== null).length + scored.input.pairs.filter((p) => p.error !== null).length;
  return { part, items: scored.items, incomplete: scored.input.incomplete, counts: { ...scored.counts, errors }, skippedOutputs: scored.skippedOutputs };
}

interface ScoredManifests {
  /** The first scorer's report input (the only one for one scorer). */
  input: ReportInput;
  /** One report input per scorer, in the run's order. */
  inputs: ReportInput[];
  items: ItemRecord[];
  validationItems: ItemRecord[];
  counts: Omit<EvalCounts, 'errors'>;
  /** What the whole run was given, before sharding. */
  run: EvalRunIdentity;
  skippedOutputs: OutputClash[];
}

/**
 * `cuda:all`: the run's shards on every device, merged into the unsharded report. What each worker did
 * comes back beside it.
 */
async function evalOnAllDevices(options: EvalQuery, scoring: ResolvedScorerOptions): Promise<EvalResult> {
  if (options.shard) throw allDevicesWithShardError();
  validateEvalOptions(options);
  const { manifests, validation, skipInvalid, seed, resamples, tieThreshold, baseline, candidate, maxDrop, optionalOutputs } = options;
  const { merged, workers } = await runOnAllDevices({ command: 'eval', options: { manifests, validation, skipInvalid, seed, resamples, tieThreshold, baseline, candidate, maxDrop, optionalOutputs } },
    scoring, { outputs: options.outputs, signal: options.signal });
  const skipped = new Map(workers.flatMap((worker) => worker.skippedOutputs ?? []).map((clash) => [clash.output.flag, clash]));
  const sum = (key: string) => workers.reduce((total, worker) => total + (worker.counts[key] ?? 0), 0);
  return {
    report: merged.report, gate: merged.report.gate, items: merged.items, incomplete: merged.incomplete,
    counts: { ...merged.counts, uniqueImages: sum('uniqueImages'), scoreRequests: sum('scoreRequests') },
    workers,
    skippedOutputs: [...skipped.values()],
  };
}

async function scoreManifests(options: EvalQuery, scorings: ResolvedScorerOptions[]): Promise<ScoredManifests> {
  validateEvalOptions(options);
  const main = await readManifests(options.manifests, { skipInvalid: options.skipInvalid });
  checkModelFlags(main.rows, options);
  const allValidationRows = options.validation ? await readValidation(options.validation, options.skipInvalid) : undefined;
  const run = evalRunIdentity(main.rows, allValidationRows, scorings.map((s) => s.scorerDescription.name));
  const mainRows = selectShard(main.rows, options.shard, evalShardKey);
  const inputs = [...evalInputs(options, [...main.rows, ...(allValidationRows ?? [])])];
  await refuseOutputsNamingInputs(options.outputs ?? [], inputs);
  const skippedOutputs = await outputsToSkip(options.optionalOutputs ?? [], options.outputs ?? [], inputs);
  const validationRows = selectShard(allValidationRows ?? [], options.shard, evalShardKey);
  const plan = await planRequests([...mainRows, ...validationRows]);
  const owned = options.scorer ? null : await openScorerSet(scorings);
  const scorers: EvalScorer[] = owned?.scorers ?? [options.scorer!];
  try {
    const results = new Map<string, ScoredItem>();
    const stream = scoreWithEach(scorers, () => plan.requests, {
      signal: options.signal,
      onProgress: (done) => options.onProgress?.(done, plan.requests.length * scorers.length),
    });
    for await (const item of stream) results.set(item.key, item);
    const lookup = (path: string, prompt: string): ScoredItem | undefined => results.get(plan.keyOf(path, prompt));
    const scored = scoreRows(mainRows, lookup);
    const validation = scoreRows(validationRows, lookup);
    const inputFor = (scorer: EvalScorer, index: number): ReportInput => {
      // Each scorer's report reads its own score of every row; the first's rows are the ones above.
      const own = index === 0 ? { scored, validation } : ownScores(scorer.description.name, results, plan, mainRows, validationRows);
      return { ...input, points: own.scored.points, pairs: own.scored.pairs, provenance: scorer.provenance(),
        options: { ...input.options, validation: options.validation ? { manifest: options.validation, pairs: own.validation.pairs } : undefined } };
    };
    const input: ReportInput = {
      points: scored.points,
      pairs: scored.pairs,
      provenance: setProvenance(scorers),
      incomplete: options.signal?.aborted === true,
      manifests: options.manifests,
      skippedLines: main.skipped,
      notReached: scored.notReached,
      options: {
        seed: options.seed, resamples: options.resamples, tieThreshold: options.tieThreshold,
        validation: options.validation ? { manifest: options.validation, pairs: validation.pairs } : undefined,
        baseline: options.baseline, candidate: options.candidate, maxDrop: options.maxDrop,
      },
    };
    const inputs = scorers.length === 1 ? [input] : scorers.map(inputFor);
    return {
      input: inputs[0], inputs, items: scored.items, validationItems: validation.items, run, skippedOutputs,
      counts: { rows: mainRows.length, skippedLines: main.skipped, uniqueImages: plan.uniqueImages, scoreRequests: plan.requests.length, notReached: scored.notReached },
    };
  } finally {
    await owned?.close();
  }
}

/** Every file eval reads: the manifests and every image they name (all shards': a shard must not overwrite another's). */
function* evalInputs(options: EvalQuery, rows: readonly ManifestRow[]): Generator<NamedInput> {
  for (const manifest of options.manifests) yield { role: `the manifest ${manifest}`, path: manifest };
  if (options.validation !== undefined) yield { role: `the --validation manifest ${options.validation}`, path: options.validation };
  for (const row of rows) {
    const images = row.kind === 'pointwise' ? [['image', row.image]] as const : [['image_0', row.image0], ['image_1', row.image1]] as const;
    for (const [field, image] of images) yield { role: `the image ${image.given} (${field} of ${row.manifest}:${row.line})`, path: image.path };
  }
}

/** Flag checks that need no data, made before any file is read or model loaded. */
function validateEvalOptions(o: EvalQuery): void {
  if (o.tieThreshold !== undefined && !(o.tieThreshold >= 0 && o.tieThreshold <= 1)) {
    throw new UsageError(expectedMessage('a number from 0 to 1', '--tie-threshold', o.tieThreshold));
  }
  if (o.tieThreshold !== undefined && o.validation !== undefined) throw new UsageError('Give --tie-threshold or --validation, not both');
  if (o.maxDrop !== undefined && !(Number.isFinite(o.maxDrop) && o.maxDrop >= 0)) throw new UsageError(expectedMessage('a number >= 0', '--max-drop', o.maxDrop));
  if (o.seed !== undefined && !(Number.isInteger(o.seed) && o.seed >= 0 && o.seed <= 0xffffffff)) {
    throw new UsageError(expectedMessage('an integer from 0 to 4294967295', '--seed', o.seed));
  }
  if (o.candidate !== undefined && o.baseline === undefined) throw new UsageError('--candidate needs --baseline');
  if (o.maxDrop !== undefined && (o.baseline === undefined || o.candidate === undefined)) throw new UsageError('--max-drop needs --baseline and --candidate');
}

/** Before any scoring: --baseline and --candidate must name models of the manifests (all rows, not one shard's). */
function checkModelFlags(rows: readonly ManifestRow[], o: EvalQuery): void {
  const models = [...new Set(rows.filter((r): r is PointwiseRow => r.kind === 'pointwise').map((r) => r.model ?? UNNAMED_MODEL))];
  if (o.baseline !== undefined) requireModel(o.baseline, '--baseline', models);
  if (o.candidate !== undefined) requireModel(o.candidate, '--candidate', models);
  if (o.candidate !== undefined && o.candidate === o.baseline) throw new UsageError('--baseline and --candidate name the same model');
}

async function readValidation(file: string, skipInvalid: boolean | undefined): Promise<PairwiseRow[]> {
  const { rows } = await readManifests([file], { skipInvalid });
  const pairs = rows.filter((r): r is PairwiseRow => r.kind === 'pairwise');
  if (pairs.length === 0) throw new InputError(`The validation manifest ${file} has no pairwise lines ({"prompt", "image_0", "image_1", "label_0"})`);
  return pairs;
}

/**
 * Every valid row of the run before sharding, by what makes it score and report as it does: where it
 * is (manifest as given, line), its prompt, its images as the manifest names them, its model or label,
 * and the fields passed through to --scores. Resolved paths are left out, so machines that mount the
 * data elsewhere still agree.
 */
export function evalRunIdentity(rows: readonly ManifestRow[], validationRows: readonly ManifestRow[] | undefined, scorers: string[] = ['pickscore']): EvalRunIdentity {
  const keyOf = (row: ManifestRow): string => JSON.stringify(row.kind === 'pointwise'
    ? [row.manifest, row.line, 'pointwise', row.prompt, row.image.given, row.model, row.id, row.extra]
    : [row.manifest, row.line, 'pairwise', row.prompt, row.image0.given, row.image1.given, row.label0, row.id, row.extra]);
  return {
    command: 'eval',
    rows: digestKeys(rows.map(keyOf)),
    validationRows: validationRows === undefined ? null : digestKeys(validationRows.map(keyOf)),
    // PickScore alone leaves the identity as it was, so its parts merge as before.
    ...(scorers.length === 1 && scorers[0] === 'pickscore' ? {} : { scorers }),
  };
}

/** The rows scored by one scorer of several: each joined item's own score of that scorer. */
function ownScores(name: string, results: Map<string, ScoredItem>, plan: RequestPlan, mainRows: readonly ManifestRow[], validationRows: readonly ManifestRow[]): { scored: ScoredRows; validation: ScoredRows } {
  const lookup = (path: string, prompt: string): ScoredItem | undefined => {
    const item = results.get(plan.keyOf(path, prompt));
    return item && { ...item, score: item.error === null ? item.scores?.[name] ?? null : null };
  };
  return { scored: scoreRows(mainRows, lookup), validation: scoreRows(validationRows, lookup) };
}

interface RequestPlan {
  requests: ScoreRequest[];
  uniqueImages: number;
  /** The request key that scores this image path against this prompt. */
  keyOf(path: string, prompt: string): string;
}

/**
 * One request per distinct (image content, prompt): identical files are scored once. Requests for one
 * content are consecutive, so the engine decodes each image once for all its prompts.
 */
async function planRequests(rows: readonly ManifestRow[]): Promise<RequestPlan> {
  const promptsByPath = new Map<string, Set<string>>();
  for (const row of rows) {
    const paths = row.kind === 'pointwise' ? [row.image.path] : [row.image0.path, row.image1.path];
    for (const path of paths) {
      const prompts = promptsByPath.get(path) ?? new Set<string>();
      prompts.add(row.prompt);
      promptsByPath.set(path, prompts);
    }
  }
  const identityOf = await contentIdentities([...promptsByPath.keys()]);
  const representative = new Map<string, string>();      // identity -> the first path with that content
  const promptsByIdentity = new Map<string, Set<string>>();
  for (const [path, prompts] of promptsByPath) {
    const identity = identityOf.get(path)!;
    if (!representative.has(identity)) representative.set(identity, path);
    const merged = promptsByIdentity.get(identity) ?? new Set<string>();
    for (const prompt of prompts) merged.add(prompt);
    promptsByIdentity.set(identity, merged);
  }
  const keyFor = (identity: string, prompt: string): string => `${identity}\u0000${prompt}`;
  const requests: ScoreRequest[] = [];
  for (const [identity, prompts] of promptsByIdentity) {
    const path = representative.get(identity)!;
    for (const prompt of prompts) requests.push({ prompt, image: { path }, key: keyFor(identity, prompt) });
  }
  return { requests, uniqueImages: promptsByIdentity.size, keyOf: (path, prompt) => keyFor(identityOf.get(path)!, prompt) };
}

/** SHA-256 of each file's bytes; a file that cannot be read keeps its own path as identity, and the engine reports why. */
async function contentIdentities(paths: string[]): Promise<Map<string, string>> {
  const identities = new Map<string, string>();
  const CONCURRENCY = 8;
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < paths.length) {
      const path = paths[next++];
      identities.set(path, await sha256File(path).then((hash) => `sha256:${hash}`, () => `path:${path}`));
    }
  };
  await Promise.all(Array.from({ length: Math.min(CONCURRENCY, paths.length) }, worker));
  return identities;
}

/** Each scorer's score of an item (several scorers only); none for an item that any scorer could not score, as its report reads it. */
function scorerScores(item: ScoredItem): Record<string, number | null> | undefined {
  if (item.scores === undefined) return undefined;
  return Object.fromEntries(Object.entries(item.scores).map(([name, value]) => [name, item.error === null ? value : null]));
}

interface ScoredRows { points: PointScore[]; pairs: PairScore[]; items: ItemRecord[]; notReached: number }

/** Joins rows with their scores; a row whose request was not reached (interrupted) is left out and counted. */
function scoreRows(rows: readonly ManifestRow[], lookup: (path: string, prompt: string) => ScoredItem | undefined): ScoredRows {
  const out: ScoredRows = { points: [], pairs: [], items: [], notReached: 0 };
  for (const row of rows) {
    if (row.kind === 'pointwise') scorePointwise(row, lookup, out);
    else scorePairwise(row, lookup, out);
  }
  return out;
}

function scorePointwise(row: PointwiseRow, lookup: (path: string, prompt: string) => ScoredItem | undefined, out: ScoredRows): void {
  const item = lookup(row.image.path, row.prompt);
  if (!item) { out.notReached++; return; }
  out.points.push({ model: row.model, prompt: row.prompt, image: row.image.given, path: row.image.path, score: item.score, error: item.error });
  out.items.push(pointwiseRecord(row, item.score, item.error, scorerScores(item)));
}

function scorePairwise(row: PairwiseRow, lookup: (path: string, prompt: string) => ScoredItem | undefined, out: ScoredRows): void {
  const first = lookup(row.image0.path, row.prompt);
  const second = lookup(row.image1.path, row.prompt);
  if (!first || !second) { out.notReached++; return; }
  const error = [first.error && `image_0: ${first.error}`, second.error && `image_1: ${second.error}`].filter(Boolean).join('; ') || null;
  out.pairs.push({
    prompt: row.prompt, image0: row.image0.given, image1: row.image1.given, path0: row.image0.path, path1: row.image1.path,
    label0: row.label0, score0: first.score, score1: second.score, error,
  });
  out.items.push(pairwiseRecord(row, first.score, second.score, error, scorerScores(first), scorerScores(second)));
}
