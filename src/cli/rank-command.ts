/**
 * `pickscore rank`: flags in, runRank, records out. Parsing and printing only; the work is in
 * src/commands/rank.ts.
 */
import { Command, Option } from 'commander';
import { runRank, type RankOptions, type RankResult } from '../commands/rank.js';
import { formatShard, shardFromEnv, type Shard } from '../shard.js';
import { UsageError } from '../errors.js';
import { openRankWriter } from '../io/writers/index.js';
import type { ThumbnailFn } from '../io/html-gallery.js';
import { exitCodeForRun } from './exit-codes.js';
import { runOnAllDevices } from './merge-command.js';
import { addScorerFlags, mergedOutputs, progressReporter, scorerOptionsFromFlags, type ScorerFlags } from './scorer-flags.js';
import {
  checkOutputTargets, chooseFormat, createConsole, parsePositiveInteger, withInterruptSignal, OUTPUT_FORMATS, type Console, type OutputFormat,
} from './output.js';

interface RankFlags extends ScorerFlags {
  prompt: string[];
  promptsFile?: string;
  promptFrom?: 'sidecar' | 'png';
  top?: number;
  format?: string;
  out?: string;
  stats: boolean;
}

const EXAMPLES = `
Examples:
  $ pickscore rank ./outputs --prompt "a watercolor fox in the snow"
  $ pickscore rank "runs/**/*.png" --prompt-from png --top 1 --out best.csv
  $ pickscore rank ./imgs --prompts-file prompts.txt --format html --out report.html
  $ pickscore rank ./imgs --prompt "a red bicycle" --exif ignore --format jsonl   # as the model card's code`;

export function registerRankCommand(program: Command): void {
  const rank = program
    .command('rank')
    .description('score images against prompts with PickScore and rank them per prompt')
    .argument('<paths...>', 'image files, folders (walked recursively) or glob patterns')
    .option('-p, --prompt <text>', 'prompt to score every image against (repeatable)', collect, [])
    .option('--prompts-file <file>', 'one prompt per line, or JSONL with a "prompt" field')
    .addOption(new Option('--prompt-from <source>', "each image's own prompt: a sidecar .txt, or the PNG's generator metadata").choices(['sidecar', 'png']))
    .option('--top <k>', 'keep the best K images per prompt', parsePositiveInteger)
    .addOption(new Option('-f, --format <format>', 'output format (default: from --out, else table on a terminal, jsonl in a pipe)').choices([...OUTPUT_FORMATS]))
    .option('-o, --out <file>', 'write to this file (atomically) instead of stdout');
  addScorerFlags(rank, '')
    .option('--stats', 'print encoder and cache counters as one JSON line on stderr (and into JSON output) at the end', false)
    .addHelpText('after', EXAMPLES)
    .action(async (paths: string[], flags: RankFlags, command: Command) => {
      if (flags.device === 'cuda:all') {
        process.exitCode = await runOnAllDevices(command);
        return;
      }
      const console = createConsole({ quiet: flags.quiet, verbose: flags.verbose });
      const shard = shardFromEnv(process.env, { shard: flags.shard, shardCount: flags.shardCount });
      const format = shard ? partFormat(shard, flags) : chooseFormat(flags.format, flags.out, process.stdout.isTTY === true);
      const outputs = [...await checkOutputTargets([{ flag: '--out', path: flags.out }]), ...mergedOutputs(flags)];
      process.exitCode = await withInterruptSignal(console, async (interrupt) => {
        const result = await runRank({ ...rankOptions(paths, flags, console, interrupt.signal), shard, outputs, galleryThumbnails: format === 'html' });
        interrupt.writing();
        // Counters hold timings, so they go into the JSON only when asked for: otherwise two runs of the same
        // command give the same document.
        await writeRankResult(flags.stats ? result : { ...result, stats: undefined }, format, { out: flags.out }, result.thumbnail);
        if (flags.stats) process.stderr.write(`${JSON.stringify({ stats: result.stats, counts: result.counts })}\n`);
        if (result.incomplete) console.log(`warning: interrupted; wrote ${result.counts.rows} rows, ${result.counts.notReached} were not reached`);
        else if (interrupt.signal.aborted) console.log(`warning: interrupted while the output was written; it is complete (${result.counts.rows} rows)`);
        else if (result.counts.errors > 0) console.log(`warning: ${result.counts.errors} of ${result.counts.rows} rows could not be scored; see their error field`);
        return exitCodeForRun({ incomplete: result.incomplete || interrupt.signal.aborted, errorRows: result.counts.errors });
      });
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

/**
 * Writes a rank result (or a merge of shard results) in the chosen format. JSON carries the provenance,
 * the shard a part covers (which merge checks) and, when given, the run's counters.
 */
export async function writeRankResult(
  result: Pick<RankResult, 'records' | 'provenance' | 'incomplete' | 'shard' | 'run'> & { stats?: RankResult['stats'] },
  format: OutputFormat,
  target: { out?: string },
  thumbnail?: ThumbnailFn,
): Promise<void> {
  const writer = await openRankWriter(format, target.out !== undefined ? { path: target.out } : { stream: process.stdout },
    { provenance: format === 'json' ? jsonProvenance(result) : result.provenance, thumbnail });
  for (const record of result.records) await writer.write(record);
  await writer.finish({ incomplete: result.incomplete });
}

function jsonProvenance(result: Pick<RankResult, 'provenance' | 'shard' | 'run'> & { stats?: object }): object {
  const hasStats = result.stats !== undefined && Object.keys(result.stats).length > 0;
  return {
    ...result.provenance,
    ...(result.shard ? { shard: formatShard(result.shard), run: result.run } : {}),
    ...(hasStats ? { stats: result.stats } : {}),
  };
}

function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}
