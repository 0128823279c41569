/**
 * The commander program: one place where every command and flag is declared. Commands register
 * themselves from their own files; this file only assembles them.
 */
import { Command } from 'commander';
import { PICKSCORE_VERSION } from '../version.js';
import { registerRankCommand } from './rank-command.js';
import { registerEvalCommand } from './eval-command.js';
import { registerModelCommand } from './model-command.js';
import { registerCacheCommand } from './cache-command.js';
import { registerMergeCommand } from './merge-command.js';

const EXAMPLES = `
Examples:
  $ pickscore rank ./outputs --prompt "a watercolor fox in the snow"      rank a folder, best first
  $ pickscore rank "gen/*.png" --prompt-from png --top 1 --out best.csv   best image per embedded prompt
  $ pickscore eval pairs.jsonl --format md                                preference accuracy
  $ pickscore model pull                                                  fetch and convert PickScore v1
  $ pickscore cache info
  $ pickscore merge part-*.json --out ranked.csv                          combine --shard K/N outputs

Exit codes: 0 ok, 1 eval gate failed, 2 usage error, 3 some rows have errors, 4 input error,
5 model error, 70 internal error, 130 interrupted (output holds what was done, marked incomplete).`;

export function buildProgram(): Command {
  const program = new Command('pickscore')
    .description('Score and rank AI-generated images against their prompts with PickScore, without Python.')
    .version(PICKSCORE_VERSION, '-V, --version')
    .showHelpAfterError('(run with --help for usage)')
    .exitOverride()
    .configureOutput({ writeErr: (text) => process.stderr.write(text), writeOut: (text) => process.stdout.write(text) })
    .addHelpText('after', EXAMPLES);
  registerRankCommand(program);
  registerEvalCommand(program);
  registerModelCommand(program);
  registerCacheCommand(program);
  registerMergeCommand(program);
  for (const command of program.commands) command.exitOverride();
  return program;
}
