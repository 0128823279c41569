/**
 * Several scorers over one set of requests (`--scorer pickscore,hpsv2.1,aesthetic`): each scorer runs
 * over the requests in turn, with its own model, transform and cache keys, and the rows are joined in
 * input order. The first scorer's score is the row's `score`; every scorer's is in `scores`. A row that
 * any scorer could not score is an error row naming that scorer, so no row holds a partial set.
 */
import { InternalError } from '../errors.js';
import type { ResolvedScorerOptions } from '../pipeline/options.js';
import { Scorer, type Provenance, type ScoreRequest, type ScoredItem, type ScorerStats } from '../pipeline/scorer.js';
import type { ScorerName } from '../scorers/scorers.js';

/** The provenance of a run of several scorers: the first's, and each scorer's own. */
export type SetProvenance = Provenance & { scorers?: (Provenance & { scorer: ScorerName })[] };

export interface ScorerSet {
  readonly scorers: Scorer[];
  provenance(): SetProvenance;
  stats(): ScorerStats;
  close(): Promise<void>;
}

/** Opens one scorer per resolved option set, in order; a failure closes those already open. */
export async function openScorerSet(scorings: ResolvedScorerOptions[]): Promise<ScorerSet> {
  const scorers: Scorer[] = [];
  try {
    for (const scoring of scorings) scorers.push(await Scorer.open(scoring));
  } catch (err) {
    await Promise.allSettled(scorers.map((scorer) => scorer.close()));
    throw err;
  }
  return {
    scorers,
    provenance: () => setProvenance(scorers),
    stats: () => sumStats(scorers.map((scorer) => scorer.stats())),
    close: async () => {
      const results = await Promise.allSettled(scorers.map((scorer) => scorer.close()));
      const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
      if (failed) throw failed.reason;
    },
  };
}

export function setProvenance(scorers: readonly Pick<Scorer, 'provenance' | 'description'>[]): SetProvenance {
  const first = scorers[0].provenance();
  if (scorers.length === 1) return first;
  return { ...first, scorers: scorers.map((scorer) => ({ ...scorer.provenance(), scorer: scorer.description.name })) };
}

export function sumStats(all: (ScorerStats | undefined)[]): ScorerStats {
  const total: Record<string, number> = {};
  for (const stats of all) for (const [key, value] of Object.entries(stats ?? {})) total[key] = (total[key] ?? 0) + value;
  return total as unknown as ScorerStats;
}

/**
 * Scores `requests()` with every scorer, one after the other, and joins the items. `requests` is called
 * once per scorer and must give the same requests in the same order each time. With one scorer the items
 * are its own, unchanged. Stops early (the joined items so far) when the signal aborts.
 */
export async function* scoreWithEach(
  scorers: readonly Pick<Scorer, 'scoreStream' | 'description'>[],
  requests: () => AsyncIterable<ScoreRequest> | Iterable<ScoreRequest>,
  opts: { signal?: AbortSignal; onProgress?: (done: number) => void } = {},
): AsyncGenerator<ScoredItem> {
  if (scorers.length === 1) {
    yield* scorers[0].scoreStream(requests(), opts);
    return;
  }
  // The later scorers run first, their items held (numbers only); the first scorer's stream then yields
  // joined rows as it goes, so a caller sees rows in order as with one scorer.
  const later: ScoredItem[][] = [];
  let done = 0;
  for (const scorer of scorers.slice(1)) {
    const items: ScoredItem[] = [];
    for await (const item of scorer.scoreStream(requests(), { signal: opts.signal, onProgress: (n) => opts.onProgress?.(done + n) })) items.push(item);
    done += items.length;
    later.push(items);
    if (opts.signal?.aborted) return;
  }
  let index = 0;
  for await (const item of scorers[0].scoreStream(requests(), { signal: opts.signal, onProgress: (n) => opts.onProgress?.(done + n) })) {
    const others = later.map((items) => items[index]);
    if (others.some((other) => other === undefined || other.key !== item.key || other.prompt !== item.prompt)) {
      throw new InternalError(`The scorers were given different requests at row ${index}`);
    }
    index++;
    yield joinItem(item, others, scorers);
  }
}

function joinItem(first: ScoredItem, others: ScoredItem[], scorers: readonly Pick<Scorer, 'description'>[]): ScoredItem {
  const all = [first, ...others];
  const failed = all.findIndex((item) => item.score === null);
  const scores = Object.fromEntries(all.map((item, i) => [scorers[i].description.name, item.score]));
  const sized = all.find((item) => item.width !== null) ?? first;
  const base = { ...first, width: sized.width, height: sized.height, contentHash: first.contentHash ?? sized.contentHash, scores };
  if (failed < 0) return base;
  return { ...base, score: null, error: `${scorers[failed].description.name}: ${all[failed].error ?? 'not scored'}` };
}
