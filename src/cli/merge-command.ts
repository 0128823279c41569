/**
 * `pickscore merge`: its flags. The action (merge-action.ts) is loaded when the command runs, so that
 * `--help` and `--version` load no more than the declarations.
 */
import { Command, Option } from 'commander';
import { EVAL_FORMATS, OUTPUT_FORMATS } from './formats.js';
import { parsePositiveInteger, type MergeFlags } from './flags.js';

const EXAMPLES = `
Examples:
  $ pickscore rank ./imgs --prompt "a fox" --shard 0/2 --format json --out part-0.json   # on machine A
  $ pickscore rank ./imgs --prompt "a fox" --shard 1/2 --format json --out part-1.json   # on machine B
  $ pickscore merge part-*.json --out ranked.csv    # the same bytes as one unsharded run

  $ pickscore eval run.jsonl --baseline a --candidate b --shard 0/2 --out part-0.json      # likewise
  $ pickscore merge part-*.json --format md     # the report, intervals and gate of one unsharded run

A shard writes a JSON part (full-precision scores, provenance, shard, and the identity of its run:
prompts, inputs before sharding); other formats and --top are refused at shard time: pass them to
merge, since the best K of a prompt need every shard's scores. Merge refuses (exit 4) parts of
different runs, naming what differs. Exit codes are those of the unsharded command.`;

export function registerMergeCommand(program: Command): void {
  program
    .command('merge')
    .description('combine the outputs of sharded runs (--shard K/N) into the output of one unsharded run')
    .argument('<parts...>', 'the JSON outputs of every shard of one run')
    .addOption(new Option('-f, --format <format>', 'output format, as rank or eval takes it (default: from --out, else as the command does)').choices([...new Set([...OUTPUT_FORMATS, ...EVAL_FORMATS])]))
    .option('-o, --out <file>', 'write to this file (atomically) instead of stdout')
    .option('--top <k>', 'rank: keep the best K images per prompt', parsePositiveInteger)
    .option('--scores <file>', 'eval: also write per-item scores: .csv, else JSON Lines')
    .option('-q, --quiet', 'no informational lines; warnings and errors still print', false)
    .option('-v, --verbose', 'informational lines on stderr even when it is not a terminal', false)
    .addHelpText('after', EXAMPLES)
    .action(async (parts: string[], flags: MergeFlags) => {
      const { mergeAction } = await import('./merge-action.js');
      process.exitCode = await mergeAction(parts, flags);
    });
}
