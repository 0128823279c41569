/**
 * `pickscore eval`: its flags. The action (eval-action.ts) is loaded when the command runs, so that
 * `--help` and `--version` load no more than the declarations.
 */
import { Command, Option } from 'commander';
import { EVAL_FORMATS } from './formats.js';
import { addScorerFlags, parseNonNegativeNumber, parseNumber, parseSeed, type EvalFlags } from './flags.js';

const EXAMPLES = `
Examples:
  $ pickscore eval prompts.jsonl --format md                                  per-model means with 95% CIs
  $ pickscore eval run.jsonl --baseline ckpt-100k --candidate ckpt-120k --max-drop 0.05
  $ pickscore eval pickapic-test.jsonl --validation pickapic-val.jsonl --format json --out report.json

"Worse" for the gate: the upper end of the paired 95% bootstrap CI of the mean per-prompt difference
(candidate - baseline) is below -max-drop. Exit 1 then, 0 otherwise; one line on stderr says why.`;

export function registerEvalCommand(program: Command): void {
  const evalCommand = program
    .command('eval')
    .description('score manifest rows: per-model statistics, paired comparisons, preference accuracy, and a CI gate')
    .argument('<manifests...>', 'JSON Lines manifests: pointwise {"prompt","image","model"} or pairwise {"prompt","image_0","image_1","label_0"}')
    .addOption(new Option('-f, --format <format>', 'report format (default: from --out, else md on a terminal, json in a pipe)').choices([...EVAL_FORMATS]))
    .option('-o, --out <file>', 'write the report to this file (atomically) instead of stdout')
    .option('--scores <file>', 'also write per-item scores: .csv, else JSON Lines')
    .option('--baseline <model>', 'the model the others are compared with; with --candidate, the gate')
    .option('--candidate <model>', 'the model the gate judges against --baseline')
    .option('--max-drop <x>', 'gate margin in score units (default 0)', parseNonNegativeNumber)
    .option('--gate-scorer <name>', 'with several --scorer, the one the report leads with and the gate follows (default: the first)')
    .option('--tie-threshold <t>', 'pairwise: a predicted tie when |prob_1 - prob_0| <= t (default 0)', parseNumber)
    .option('--validation <manifest>', 'pairwise manifest on which to choose the tie threshold (0, 0.1, ..., 1)')
    .option('--skip-invalid', 'skip bad manifest lines (reported and counted) instead of stopping', false)
    .option('--seed <n>', 'bootstrap seed, so reruns give the same intervals', parseSeed, 0);
  addScorerFlags(evalCommand, '; writes a part for merge')
    .addHelpText('after', EXAMPLES)
    .action(async (manifests: string[], flags: EvalFlags) => {
      const { evalAction } = await import('./eval-action.js');
      process.exitCode = await evalAction(manifests, flags);
    });
}
