/** `pickscore cache info | clear`: flag parsing and printing; the work is in src/commands/cache.ts. */
import type { Command } from 'commander';
import { cacheClear, cacheInfo } from '../commands/cache.js';
import { createConsole, formatBytes, printJson, printText } from './output.js';

export function registerCacheCommand(program: Command): void {
  const cache = program.command('cache').description('the embedding cache (text and image embeddings in SQLite)');
  const warnings = createConsole({ quiet: false });
  const onWarning = (message: string) => warnings.log(`warning: ${message}`);

  cache.command('info')
    .description('where the cache is, its size, and its rows per kind and model')
    .option('--cache-dir <dir>', 'embedding cache folder (default: $PICKSCORE_HOME/embeddings)')
    .option('--json', 'print JSON', false)
    .action(async (flags: { cacheDir?: string; json: boolean }) => {
      const info = await cacheInfo({ cacheDir: flags.cacheDir, onWarning });
      if (flags.json) return printJson(info);
      if (!info.exists) return printText(`${info.path}: no cache yet`);
      await printText([
        `${info.path}  ${formatBytes(info.bytes)}`,
        `  text embeddings   ${info.textRows}`,
        `  image embeddings  ${info.imageRows}`,
        ...info.models.map((m) => `  model ${m.fingerprint}: ${m.textRows} text, ${m.imageRows} image`),
      ].join('\n'));
    });

  cache.command('clear')
    .description('delete every cached embedding')
    .option('--cache-dir <dir>', 'embedding cache folder (default: $PICKSCORE_HOME/embeddings)')
    .option('--json', 'print JSON', false)
    .action(async (flags: { cacheDir?: string; json: boolean }) => {
      const result = await cacheClear({ cacheDir: flags.cacheDir, onWarning });
      if (flags.json) return printJson(result);
      await printText(`${result.path}: removed ${result.textRows} text and ${result.imageRows} image embeddings (${formatBytes(result.bytesBefore)} -> ${formatBytes(result.bytesAfter)})`);
    });
}
