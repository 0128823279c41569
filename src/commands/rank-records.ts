/**
 * Rows ranked per prompt, as `rank` writes them and `merge` recomputes them from shards' parts. Pure.
 */
import { softmax } from '../score/similarity.js';
import { compareCodePoints, groupBy, rankDescending } from '../score/rank.js';
import type { RankRecord } from '../io/writers/record.js';
import type { ScoredItem } from '../pipeline/scorer.js';

/**
 * Groups items by prompt (first-seen order), ranks each group by score with ties broken by path, and
 * turns scores into the model card's probabilities. Rows that failed follow their prompt's ranked
 * rows, by path; `top` keeps the best K scored rows of each prompt and every failed one.
 */
export function rankRecords(items: ScoredItem[], top?: number, opts: { probabilities?: boolean } = {}): RankRecord[] {
  // The model card's probabilities are a softmax of PickScore's logit-scaled scores; of another score
  // (a cosine, an aesthetic rating) they would be a number that means nothing, so they are left empty.
  const withProbabilities = opts.probabilities ?? true;
  const byPrompt = groupBy(items, (item) => item.prompt);
  const records: RankRecord[] = [];
  for (const [prompt, group] of byPrompt) {
    const scored = group.filter((item): item is ScoredItem & { score: number } => item.score !== null);
    const probs = softmax(scored.map((item) => item.score));
    const ranked = rankDescending(scored.map((item, i) => ({ key: item.key, score: item.score, prob: probs[i], item })));
    for (const { rank, prob, item } of ranked.slice(0, top ?? ranked.length)) {
      records.push({ path: item.key, prompt, score: item.score, prob: withProbabilities ? prob : null, rank, width: item.width, height: item.height, error: null,
        contentHash: item.contentHash, ...(item.scores ? { scores: item.scores } : {}) });
    }
    const failed = group.filter((item) => item.score === null).sort((a, b) => compareCodePoints(a.key, b.key));
    for (const item of failed) {
      records.push({ path: item.key, prompt, score: null, prob: null, rank: null, width: item.width, height: item.height, error: item.error,
        contentHash: item.contentHash, ...(item.scores ? { scores: item.scores } : {}) });
    }
  }
  return records;
}
