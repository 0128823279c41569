/** Scores and statistics: pure numeric code shared by rank, eval and the library API. */
export { l2normalize, scoreMatrix, softmax } from './similarity.js';
export { rankDescending, kendallTau, groupBy, type Rankable } from './rank.js';
export { embeddingDrift, rankingAgreement, relativeError, type EmbeddingDrift, type RankingAgreement } from './agreement.js';
export {
  mean, std, median, quantileSorted, mulberry32, bootstrapMeanCI, pairedDifferences, pairedBootstrapCI, signTestP, winRate,
  DEFAULT_BOOTSTRAP, type BootstrapOptions, type Interval, type WinRate,
} from './stats.js';
export { pairwiseAccuracy, chooseTieThreshold, PAPER_THRESHOLDS, type PairLabel, type ScoredPair, type PairwiseAccuracy } from './pairwise.js';
