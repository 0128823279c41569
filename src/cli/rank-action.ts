/** `pickscore rank` runs: flags in, runRank, records out. Translating and printing only; the work is in src/commands/rank.ts. */
import { runRank, type RankOptions } from '../commands/rank.js';
import { UsageError } from '../errors.js';
import { formatShard, shardFromEnv, type Shard } from '../shard.js';
import { exitCodeForRun, type ExitCodeValue } from './exit-codes.js';
import { chooseFormat, type OutputFormat } from './formats.js';
import type { RankFlags } from './flags.js';
import { checkOutputTargets, createConsole, withInterruptSignal, type Console } from './output.js';
import { progressReporter, reportWorkers, scorerOptionsFromFlags } from './scoring.js';
import { writeRankResult } from './write-results.js';

export async function rankAction(paths: string[], flags: RankFlags): Promise<ExitCodeValue> {
  const console = createConsole({ quiet: flags.quiet, verbose: flags.verbose });
  const shard = shardFromEnv(process.env, { shard: flags.shard, shardCount: flags.shardCount });
  const format = shard ? partFormat(shard, flags) : chooseFormat(flags.format, flags.out, process.stdout.isTTY === true);
  const outputs = await checkOutputTargets([{ flag: '--out', path: flags.out }]);
  return withInterruptSignal(console, async (interrupt) => {
    const result = await runRank({ ...rankOptions(paths, flags, console, interrupt.signal), shard, outputs, galleryThumbnails: format === 'html' });
    interrupt.writing();
    // Counters hold timings, so they go into the JSON only when asked for: otherwise two runs of the same
    // command give the same document.
    await writeRankResult(flags.stats ? result : { ...result, stats: undefined }, format, { out: flags.out });
    if (flags.stats) process.stderr.write(`${JSON.stringify({ stats: result.stats, counts: result.counts })}\n`);
    if (result.workers) {
      reportWorkers(console, result.workers, {
        interrupted: (counts) => `warning: interrupted; wrote ${counts.rows} rows, ${counts.notReached} were not reached`,
        rowErrors: (counts) => `warning: ${counts.errors} of ${counts.rows} rows could not be scored; see their error field`,
      });
      console.log(`merged ${result.workers.length} shards: ${result.counts.rows} rows, ${result.counts.errors} with errors`);
    } else if (result.incomplete) console.log(`warning: interrupted; wrote ${result.counts.rows} rows, ${result.counts.notReached} were not reached`);
    else if (interrupt.signal.aborted) console.log(`warning: interrupted while the output was written; it is complete (${result.counts.rows} rows)`);
    else if (result.counts.errors > 0) console.log(`warning: ${result.counts.errors} of ${result.counts.rows} rows could not be scored; see their error field`);
    return exitCodeForRun({ incomplete: result.incomplete || interrupt.signal.aborted, errorRows: result.counts.errors });
  });
}

function rankOptions(paths: string[], flags: RankFlags, console: Console, signal: AbortSignal): RankOptions {
  return {
    ...scorerOptionsFromFlags(flags, console),
    inputs: paths,
    prompts: flags.prompt,
    promptsFile: flags.promptsFile,
    promptFrom: flags.promptFrom,
    top: flags.top,
    signal,
    onProgress: progressReporter(console, 'rank'),
  };
}

/**
 * A shard writes a part for merge, which only JSON can be (full-precision scores, provenance, the shard
 * and the run's identity): JSON by default, and any other format asked for is refused before any work.
 */
function partFormat(shard: Shard, flags: Pick<RankFlags, 'format' | 'out'>): OutputFormat {
  if (flags.format === undefined && flags.out === undefined) return 'json';
  const format = chooseFormat(flags.format, flags.out, false);
  if (format !== 'json') {
    const asked = flags.format !== undefined ? `--format ${flags.format}` : `--out ${flags.out}`;
    throw new UsageError(`--shard ${formatShard(shard)} writes a JSON part for merge, but ${asked} asks for ${format}, which merge cannot read: write the part as JSON and pass the format to merge`);
  }
  return format;
}
