/** `pickscore cache info | clear` runs: the work is in src/commands/cache.ts; this prints its results. */
import { cacheClear, cacheInfo } from '../commands/cache.js';
import { createConsole, formatBytes, printJson, printText } from './output.js';

function onWarning(message: string): void {
  createConsole({ quiet: false }).log(`warning: ${message}`);
}

export async function infoAction(flags: { cacheDir?: string; json: boolean }): Promise<void> {
  const info = await cacheInfo({ cacheDir: flags.cacheDir, onWarning });
  if (flags.json) return printJson(info);
  if (!info.exists) return printText(`${info.path}: no cache yet`);
  await printText([
    `${info.path}  ${formatBytes(info.bytes)}`,
    `  text embeddings   ${info.textRows}`,
    `  image embeddings  ${info.imageRows}`,
    ...info.models.map((m) => `  model ${m.fingerprint}: ${m.textRows} text, ${m.imageRows} image`),
  ].join('\n'));
}

export async function clearAction(flags: { cacheDir?: string; json: boolean }): Promise<void> {
  const result = await cacheClear({ cacheDir: flags.cacheDir, onWarning });
  if (flags.json) return printJson(result);
  await printText(`${result.path}: removed ${result.textRows} text and ${result.imageRows} image embeddings (${formatBytes(result.bytesBefore)} -> ${formatBytes(result.bytesAfter)})`);
}
