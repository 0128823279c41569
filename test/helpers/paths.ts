import { existsSync } from 'node:fs';
import path from 'node:path';

/** Tests run from the repository root (npm test does so). */
export const repoRoot = process.cwd();

/** The reference outputs of the Python implementation, beside the checkout in development and in CI. */
export const referenceDir = path.resolve(repoRoot, '..', 'shared', 'reference');

export const fixturesDir = path.join(repoRoot, 'fixtures');

/**
 * The reference folder is absent outside the development and CI checkouts. Tests that need it skip
 * with a printed notice rather than pass silently.
 */
export function referenceAvailable(): boolean {
  const ok = existsSync(path.join(referenceDir, 'reference.json'));
  if (!ok) process.stderr.write(`notice: ${referenceDir} not found; reference parity tests are skipped\n`);
  return ok;
}

export const skipWithoutReference = referenceAvailable() ? false : 'reference folder ../shared/reference is missing';
