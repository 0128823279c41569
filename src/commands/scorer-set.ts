/**
 * Several scorers over one set of requests (`--scorer pickscore,hpsv2.1,aesthetic`): the scorers run
 * over the requests side by side, each with its own model, transform and cache keys, and the rows are
 * joined in input order. Scorers that prepare images alike share one image pool, so such an image is
 * decoded once for all of them (src/image/shared-pool.ts). The first scorer's score is the row's
 * `score`; every scorer's is in `scores`. A row that any scorer could not score is an error row naming
 * that scorer, so no row holds a partial set.
 */
import { InternalError } from '../errors.js';
import type { ResolvedScorerOptions } from '../pipeline/options.js';
import { Scorer, type Provenance, type ScoreRequest, type ScoredItem, type ScorerStats } from '../pipeline/scorer.js';
import type { ImagePool } from '../image/pool.js';
import { SharedImagePool } from '../image/shared-pool.js';
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
  let shared: SharedGroup[] = [];
  try {
    for (const scoring of scorings) scorers.push(await Scorer.open(scoring));
    shared = await shareImagePools(scorers);
  } catch (err) {
    await Promise.allSettled(scorers.map((scorer) => scorer.close()));
    throw err;
  }
  return {
    scorers,
    provenance: () => setProvenance(scorers),
    stats: () => {
      const total = sumStats(scorers.map((scorer) => scorer.stats()));
      if (shared.length === 0) return total;
      // A shared pool decodes once for all its scorers, which each count the images they asked for.
      const sharing = new Set(shared.flatMap((pool) => pool.scorers));
      const alone = scorers.filter((scorer) => !sharing.has(scorer)).reduce((sum, scorer) => sum + scorer.stats().imagesDecoded, 0);
      return { ...total, imagesDecoded: alone + shared.reduce((sum, pool) => sum + pool.shared.decodes, 0) };
    },
    close: async () => {
      const results = await Promise.allSettled(scorers.map((scorer) => scorer.close()));
      const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
      if (failed) throw failed.reason;
    },
  };
}

interface SharedGroup { shared: SharedImagePool; scorers: Scorer[] }

/**
 * Scorers that prepare images alike (the same transform, preprocessing and reading options) take their
 * images from the first one's pool, through a SharedImagePool; the others' pools close.
 */
async function shareImagePools(scorers: Scorer[]): Promise<SharedGroup[]> {
  const groups = new Map<string, Scorer[]>();
  for (const scorer of scorers) groups.set(scorer.imagePreparation, [...(groups.get(scorer.imagePreparation) ?? []), scorer]);
  const shared: SharedGroup[] = [];
  for (const group of groups.values()) {
    if (group.length < 2) continue;
    const pool = new SharedImagePool(group[0].imagePool as ImagePool, group.length);
    await Promise.all(group.map((scorer, i) => scorer.useImages(pool.view(), { closeOwn: i > 0 })));
    shared.push({ shared: pool, scorers: group });
  }
  return shared;
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
  // Side by side, one row from each at a time: scorers that share an image pool ask for each image
  // together, and none runs far ahead of the others, so what the shared pool holds stays bounded.
  const done = scorers.map(() => 0);
  const streams = scorers.map((scorer, i) => scorer.scoreStream(requests(), {
    signal: opts.signal,
    onProgress: (n) => {
      done[i] = n;
      opts.onProgress?.(done.reduce((sum, d) => sum + d, 0));
    },
  }));
  try {
    for (let index = 0; ; index++) {
      const next = await Promise.all(streams.map((stream) => stream.next()));
      if (next.some((result) => result.done)) {
        if (!next.every((result) => result.done) && !opts.signal?.aborted) throw new InternalError(`The scorers ended at different rows (${index})`);
        return;
      }
      const [item, ...others] = next.map((result) => result.value as ScoredItem);
      if (others.some((other) => other.key !== item.key || other.prompt !== item.prompt)) {
        throw new InternalError(`The scorers were given different requests at row ${index}`);
      }
      yield joinItem(item, others, scorers);
    }
  } finally {
    await Promise.allSettled(streams.map((stream) => stream.return(undefined)));
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
