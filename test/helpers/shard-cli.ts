/**
 * Runs the real `pickscore` bin in child processes, as the scale-out tests need: shards are separate
 * processes, exactly as a job engine runs them.
 */
import { copyFile, mkdir, readdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { referenceDir, repoRoot } from './paths.js';
import { spawnCollecting } from './pipe-cli.js';

export const pickscoreBin = path.join(repoRoot, 'bin', 'pickscore.js');

export interface CliRun { code: number | null; stdout: string; stderr: string }

/** `node bin/pickscore.js ...args` in `cwd`, stdin closed, with `env` added to a clean environment. */
export function runCli(args: string[], opts: { cwd: string; env?: NodeJS.ProcessEnv }): Promise<CliRun> {
  return spawnCollecting(process.execPath, [pickscoreBin, ...args], { cwd: opts.cwd, env: { PATH: process.env.PATH, HOME: process.env.HOME, ...opts.env } }).done;
}

/**
 * An image folder under `dir`/imgs: the reference images, a byte-identical copy in a subfolder (its
 * score ties with the original, so the tie-break by path is exercised), and an unreadable file (an
 * error row). Returns the image paths relative to `dir`, as a user would type them.
 */
export async function makeImageFolder(dir: string): Promise<string[]> {
  const imgs = path.join(dir, 'imgs');
  await mkdir(path.join(imgs, 'sub'), { recursive: true });
  const names = (await readdir(path.join(referenceDir, 'images'))).sort();
  for (const name of names) await copyFile(path.join(referenceDir, 'images', name), path.join(imgs, name));
  await copyFile(path.join(imgs, 'astronaut.jpg'), path.join(imgs, 'sub', 'copy-of-astronaut.jpg'));
  await writeFile(path.join(imgs, 'sub', 'broken.png'), 'not an image');
  return [...names.map((n) => `imgs/${n}`), 'imgs/sub/copy-of-astronaut.jpg', 'imgs/sub/broken.png'];
}
