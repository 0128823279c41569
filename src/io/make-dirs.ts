/**
 * `mkdir -p` without Node's recursive mkdir. Node's `mkdir(dir, { recursive: true })` reads ENOENT as
 * "the parent is missing", makes the parent, and tries again; where mkdir answers ENOENT although the
 * parent exists (procfs: `/proc/nope`), it loops for ever at full CPU, deaf to signals, since the loop
 * never yields. Here each missing level is made once, from the deepest folder that exists, and any
 * failure names the folder.
 */
import { mkdirSync, statSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';

function exists(p: string): boolean {
  try {
    statSync(p);
    return true;
  } catch {
    return false;
  }
}

/** The folders to make, outermost first: `dir` and each of its missing ancestors. Stat is cheap and the chain short, so this is synchronous. */
function missingLevels(dir: string): string[] {
  const levels: string[] = [];
  for (let current = path.resolve(dir); !exists(current); current = path.dirname(current)) {
    levels.unshift(current);
    if (path.dirname(current) === current) break;
  }
  return levels;
}

function isAlreadyThere(err: unknown): boolean {
  return (err as NodeJS.ErrnoException).code === 'EEXIST';
}

export function makeDirsSync(dir: string): void {
  for (const level of missingLevels(dir)) {
    try {
      mkdirSync(level);
    } catch (err) {
      // Another process may have made it meanwhile; a file there fails at the next level or at use.
      if (!isAlreadyThere(err)) throw err;
    }
  }
}

export async function makeDirs(dir: string): Promise<void> {
  for (const level of missingLevels(dir)) {
    try {
      await mkdir(level);
    } catch (err) {
      if (!isAlreadyThere(err)) throw err;
    }
  }
}
