/**
 * `pickscore rank`: its flags. The action (rank-action.ts) is loaded when the command runs, so that
 * `--help` and `--version` load no more than the declarations.
 */
import { Command, Option } from 'commander';
import { OUTPUT_FORMATS } from './formats.js';
import { addScorerFlags, collect, parsePositiveInteger, type RankFlags } from './flags.js';

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
    .action(async (paths: string[], flags: RankFlags) => {
      const { rankAction } = await import('./rank-action.js');
      process.exitCode = await rankAction(paths, flags);
    });
}
