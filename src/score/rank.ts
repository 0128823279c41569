/** Ranking and rank agreement. Pure. */
import { UsageError, expectedMessage } from '../errors.js';

export interface Rankable { key: string; score: number }                          // key: the path, breaks ties

/** Items grouped by `key`, groups in first-seen order and items in arrival order within each. */
export function groupBy<T>(items: Iterable<T>, key: (item: T) => string): Map<string, T[]> {
  const groups = new Map<string, T[]>();
  for (const item of items) {
    const k = key(item);
    const group = groups.get(k);
    if (group) group.push(item);
    else groups.set(k, [item]);
  }
  return groups;
}

/**
 * The one order for paths and keys everywhere (discovery, ranking ties, merged shards): by code point,
 * not locale, so every machine agrees, and not by UTF-16 code unit, which misplaces astral characters.
 */
export function compareCodePoints(a: string, b: string): number {
  const ia = a[Symbol.iterator]();
  const ib = b[Symbol.iterator]();
  for (;;) {
    const ca = ia.next();
    const cb = ib.next();
    if (ca.done || cb.done) return (ca.done ? 0 : 1) - (cb.done ? 0 : 1);
    const diff = (ca.value.codePointAt(0) as number) - (cb.value.codePointAt(0) as number);
    if (diff !== 0) return diff;
  }
}

/**
 * Best first, ranks 1..n. Equal scores are ordered by key, so every item gets its own rank and reruns
 * agree. NaN scores sort last.
 */
export function rankDescending<T extends Rankable>(items: T[]): (T & { rank: number })[] {
  const sorted = [...items].sort((a, b) => {
    const aNaN = Number.isNaN(a.score);
    const bNaN = Number.isNaN(b.score);
    if (aNaN !== bNaN) return aNaN ? 1 : -1;
    if (!aNaN && a.score !== b.score) return b.score - a.score;
    return compareCodePoints(a.key, b.key);
  });
  return sorted.map((item, index) => ({ ...item, rank: index + 1 }));
}

/**
 * Kendall's tau-b between two score lists over the same items: (concordant - discordant) /
 * sqrt((pairs - ties in a) * (pairs - ties in b)). Tau-b counts ties, which fp16 scores produce.
 * NaN when either list is constant. O(n^2), meant for per-prompt lists.
 */
export function kendallTau(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new UsageError(expectedMessage(`two lists of equal length (${a.length})`, 'kendallTau', b.length));
  let concordant = 0;
  let discordant = 0;
  let tiesA = 0;
  let tiesB = 0;
  for (let i = 0; i < a.length; i++) {
    for (let j = i + 1; j < a.length; j++) {
      const da = Math.sign(a[i] - a[j]);
      const db = Math.sign(b[i] - b[j]);
      if (da === 0) tiesA++;
      if (db === 0) tiesB++;
      if (da * db > 0) concordant++;
      else if (da * db < 0) discordant++;
    }
  }
  const pairs = (a.length * (a.length - 1)) / 2;
  return (concordant - discordant) / Math.sqrt((pairs - tiesA) * (pairs - tiesB));
}
