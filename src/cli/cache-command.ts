/**
 * `pickscore cache info | clear`: their flags. The actions (cache-action.ts) are loaded when a command
 * runs, so that `--help` and `--version` load no more than the declarations.
 */
import type { Command } from 'commander';

const actions = () => import('./cache-action.js');

export function registerCacheCommand(program: Command): void {
  const cache = program.command('cache').description('the embedding cache (text and image embeddings in SQLite)');

  cache.command('info')
    .description('where the cache is, its size, and its rows per kind and model')
    .option('--cache-dir <dir>', 'embedding cache folder (default: $PICKSCORE_HOME/embeddings)')
    .option('--json', 'print JSON', false)
    .action(async (flags: { cacheDir?: string; json: boolean }) => (await actions()).infoAction(flags));

  cache.command('clear')
    .description('delete every cached embedding')
    .option('--cache-dir <dir>', 'embedding cache folder (default: $PICKSCORE_HOME/embeddings)')
    .option('--json', 'print JSON', false)
    .action(async (flags: { cacheDir?: string; json: boolean }) => (await actions()).clearAction(flags));
}
