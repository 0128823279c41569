/**
 * Where pickscore keeps what it makes: `$PICKSCORE_HOME`, else `$XDG_CACHE_HOME/pickscore`, else
 * `~/.cache/pickscore`, with converted models under models/ and the embedding cache under embeddings/.
 */
import os from 'node:os';
import path from 'node:path';

export function pickscoreHome(): string {
  if (process.env.PICKSCORE_HOME) return path.resolve(process.env.PICKSCORE_HOME);
  const cache = process.env.XDG_CACHE_HOME ? path.resolve(process.env.XDG_CACHE_HOME) : path.join(os.homedir(), '.cache');
  return path.join(cache, 'pickscore');
}

export function modelsHome(): string {
  return path.join(pickscoreHome(), 'models');
}

/** The default embedding cache folder (`--cache-dir` overrides it). */
export function embeddingsHome(): string {
  return path.join(pickscoreHome(), 'embeddings');
}

/** Files a known model needs that the Hub does not hold (the LAION aesthetic head): $PICKSCORE_HOME/heads. */
export function headsHome(): string {
  return path.join(pickscoreHome(), 'heads');
}
