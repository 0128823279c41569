/**
 * A rank result (or a merge of shard results) written in a format: the one writer the CLI, the
 * library and the `cuda:all` workers share, so that a part written by a worker is byte for byte the
 * part `rank --shard` writes. JSON carries the provenance, the shard a part covers (which merge checks)
 * and, when given, the run's counters.
 */
import { openRankWriter, type OutputFormat, type WriterTarget } from '../io/writers/index.js';
import { formatShard } from '../shard.js';
import type { RankResult } from './rank.js';

export type RankOutput = Pick<RankResult, 'records' | 'provenance' | 'incomplete' | 'thumbnail'> & Partial<Pick<RankResult, 'shard' | 'run' | 'stats'>>;

export async function writeRankOutput(result: RankOutput, format: OutputFormat, target: WriterTarget): Promise<void> {
  const writer = await openRankWriter(format, target, { provenance: format === 'json' ? jsonProvenance(result) : result.provenance, thumbnail: result.thumbnail });
  for (const record of result.records) await writer.write(record);
  await writer.finish({ incomplete: result.incomplete });
}

function jsonProvenance(result: RankOutput): object {
  const hasStats = result.stats !== undefined && Object.keys(result.stats).length > 0;
  return {
    ...result.provenance,
    ...(result.shard ? { shard: formatShard(result.shard), run: result.run } : {}),
    ...(hasStats ? { stats: result.stats } : {}),
  };
}
