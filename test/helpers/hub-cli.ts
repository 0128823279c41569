/**
 * Child process for the `model` and `cache` CLI tests: a commander program with only those two
 * commands registered, erroring as src/cli/main.ts does, so they can be tested before and apart from
 * the rest of the program. Usage: node hub-cli.js model list --json
 */
import { Command } from 'commander';
import { PickScoreError } from '../../src/errors.js';
import { registerCacheCommand } from '../../src/cli/cache-command.js';
import { exitCodeForError } from '../../src/cli/exit-codes.js';
import { registerModelCommand } from '../../src/cli/model-command.js';

const program = new Command('pickscore').exitOverride();
registerModelCommand(program);
registerCacheCommand(program);
for (const command of program.commands) command.exitOverride();
try {
  await program.parseAsync(process.argv);
} catch (err) {
  if (err instanceof PickScoreError) process.stderr.write(`error: ${err.message}\n`);
  process.exitCode = exitCodeForError(err);
}
