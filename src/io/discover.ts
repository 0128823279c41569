/**
 * Image discovery: turns the paths and globs a user typed into a sorted, duplicate-free list of image
 * files, each printed as the user gave it.
 *
 * - A file is taken if its extension is an image extension (case-insensitive). Anything else is
 *   skipped (reported through `onSkip`), so `pickscore rank out/*` ignores the `.txt` sidecars.
 * - A folder is walked recursively. Symbolic links are followed; within one input every folder is
 *   entered once (keyed by its real path), so a symlink loop ends at its second visit. Entries whose
 *   name starts with a dot are skipped, as globs skip them.
 * - Duplicates are removed by the file's real path: `imgs` and `./imgs/a.png`, or a symlink and its
 *   target, give one entry, under the spelling found first.
 * - Anything else that is a glob pattern goes to fast-glob. Globs do not follow symlinked folders
 *   (fast-glob would walk a loop until ELOOP); symlinks to files are matched.
 * - A broken symlink with an image extension is returned as an entry: reading it fails later and the
 *   pipeline reports it as an error row, so the run goes on and the row is not lost.
 * - A missing path, or a folder or pattern that yields no image, is an InputError naming it.
 *
 * Non-UTF-8 file names (Linux allows any bytes): Node decodes such names lossily to U+FFFD, and the
 * decoded string no longer opens the file. Folder walks read names as bytes. Such an entry's `path`
 * and `absolute` show each invalid byte as `\xNN` (unambiguous, and it survives CSV and JSON as
 * plain text), and `rawAbsolute` holds the exact bytes, which `fs` accepts as a path. Callers that
 * only use the strings get a read error row for that file, never a crash or a silent merge of two
 * names. Glob matches and names typed on the command line are strings already (Node decodes argv),
 * so this applies to folder walks only.
 */
import { lstat, readdir, realpath, stat } from 'node:fs/promises';
import type { Stats } from 'node:fs';
import path from 'node:path';
import fg from 'fast-glob';
import { InputError } from '../errors.js';
import { compareCodePoints } from '../score/rank.js';

export const IMAGE_EXTENSIONS: readonly string[] = ['jpg', 'jpeg', 'png', 'webp', 'gif', 'avif', 'tif', 'tiff', 'bmp'];

export interface DiscoveredImage {
  /** The path as the user gave it (`./imgs/a.png` stays `./imgs/a.png`). */
  path: string;
  absolute: string;
  /** The exact bytes of the absolute path, present only when the name is not valid UTF-8. */
  rawAbsolute?: Buffer;
}

export interface DiscoverOptions {
  /** Extensions to accept, without the dot; case-insensitive. Default IMAGE_EXTENSIONS. */
  extensions?: readonly string[];
  /** Folder that relative inputs are resolved against. Default process.cwd(). */
  cwd?: string;
  /** Told about each file or folder that was passed over, and why (for a warning line). */
  onSkip?: (path: string, reason: string) => void;
}

interface WalkContext {
  extensions: Set<string>;
  cwd: string;
  onSkip: (path: string, reason: string) => void;
  /** Real paths of the folders walked for the current input: a symlink loop ends at the second visit. */
  visitedDirs: Set<string>;
  found: { entry: DiscoveredImage; identity: string }[];
}

export async function discoverImages(inputs: string[], opts: DiscoverOptions = {}): Promise<DiscoveredImage[]> {
  const ctx: WalkContext = {
    extensions: new Set((opts.extensions ?? IMAGE_EXTENSIONS).map((e) => e.replace(/^\./, '').toLowerCase())),
    cwd: opts.cwd ?? process.cwd(),
    onSkip: opts.onSkip ?? (() => undefined),
    visitedDirs: new Set(),
    found: [],
  };
  for (const input of inputs) {
    ctx.visitedDirs.clear();
    const before = ctx.found.length;
    const kind = await discoverInput(input, ctx);
    if (kind !== 'file' && ctx.found.length === before) throw new InputError(`No image files (${extensionList(ctx)}) found in ${kind} ${input}`);
  }
  // A file typed by name with another extension is skipped, not an error (a shell's `out/*` names
  // sidecars too), unless nothing at all is left.
  if (ctx.found.length === 0) throw new InputError(`No image files (${extensionList(ctx)}) among the inputs ${inputs.join(', ')}`);
  return sortByPath(dedupeByIdentity(ctx.found));
}

async function discoverInput(input: string, ctx: WalkContext): Promise<'file' | 'folder' | 'pattern'> {
  if (input === '') throw new InputError('Expected a file, folder or glob pattern for an input path but received ""');
  const absolute = path.resolve(ctx.cwd, input);
  const linkStats = await lstatOrNull(absolute);
  if (linkStats) {
    const target = linkStats.isSymbolicLink() ? await statOrNull(absolute) : linkStats;
    if (!target?.isDirectory()) {
      await addFile({ path: input, absolute }, ctx);
      return 'file';
    }
    try {
      await walkFolder(Buffer.from(absolute), input, false, ctx);
    } catch (err) {
      throw new InputError(`Cannot read input folder ${input} (${(err as NodeJS.ErrnoException).code ?? String(err)})`, { cause: err });
    }
    return 'folder';
  }
  if (fg.isDynamicPattern(input)) {
    await globInput(input, ctx);
    return 'pattern';
  }
  throw new InputError(`Input path ${input} does not exist`);
}

function extensionList(ctx: WalkContext): string {
  return [...ctx.extensions].map((e) => `.${e}`).join(' ');
}

async function globInput(pattern: string, ctx: WalkContext): Promise<void> {
  let matches: string[];
  try {
    // onlyFiles would drop symlinks (unfollowed, they are not files), broken ones included; folders
    // are dropped below instead.
    matches = await fg(pattern, { cwd: ctx.cwd, onlyFiles: false, followSymbolicLinks: false, dot: false, unique: true });
  } catch (err) {
    throw new InputError(`Cannot expand the pattern ${pattern} (${(err as NodeJS.ErrnoException).code ?? String(err)})`, { cause: err });
  }
  for (const match of matches) {
    const absolute = path.resolve(ctx.cwd, match);
    const linkStats = await lstatOrNull(absolute);
    if (linkStats?.isDirectory()) continue; // a glob selects files; name the folder itself to walk it
    await addFile({ path: match, absolute }, ctx);
  }
}

/**
 * Walks one folder depth-first in byte order of the names, so which spelling of a file is found first
 * (and kept) is deterministic. Only the input folder itself throws when unreadable; nested ones are
 * skipped and reported.
 */
async function walkFolder(dirRaw: Buffer, shown: string, lossy: boolean, ctx: WalkContext, nested = false): Promise<void> {
  const real = await realpath(dirRaw, { encoding: 'buffer' }).catch(() => dirRaw);
  const key = real.toString('latin1');
  if (ctx.visitedDirs.has(key)) return;
  ctx.visitedDirs.add(key);

  let names: Buffer[];
  try {
    names = await readdir(dirRaw, { encoding: 'buffer' });
  } catch (err) {
    if (!nested) throw err;
    ctx.onSkip(shown, `cannot read folder (${(err as NodeJS.ErrnoException).code ?? String(err)})`);
    return;
  }
  const separator = shown.endsWith('/') ? '' : '/';
  for (const name of names.sort(Buffer.compare)) {
    if (name[0] === 0x2e /* '.' */) continue;
    const display = displayName(name);
    const childLossy = lossy || display.lossy;
    const childRaw = Buffer.concat([dirRaw, Buffer.from('/'), name]);
    const childShown = `${shown}${separator}${display.text}`;
    const linkStats = await lstatOrNull(childRaw);
    const target = linkStats?.isSymbolicLink() ? await statOrNull(childRaw) : linkStats;
    if (target?.isDirectory()) {
      await walkFolder(childRaw, childShown, childLossy, ctx, true);
    } else if (linkStats && hasImageExtension(display.text, ctx)) {
      // Files, and broken or looping symlinks: the latter fail when read, as an error row.
      const absolute = childLossy ? displayName(childRaw).text : childRaw.toString('utf8');
      const entry = childLossy ? { path: childShown, absolute, rawAbsolute: childRaw } : { path: childShown, absolute };
      ctx.found.push({ entry, identity: await fileIdentity(childRaw) });
    }
  }
}

async function addFile(entry: DiscoveredImage, ctx: WalkContext): Promise<void> {
  if (hasImageExtension(entry.path, ctx)) ctx.found.push({ entry, identity: await fileIdentity(Buffer.from(entry.absolute)) });
  else ctx.onSkip(entry.path, 'not an image file extension');
}

/**
 * The file's real path, so a file reached through a symlink is the same file. A broken or looping
 * link has none; its folder's real path and its own name stand in.
 */
async function fileIdentity(absoluteRaw: Buffer): Promise<string> {
  const real = await realpath(absoluteRaw, { encoding: 'buffer' }).catch(async () => {
    const slash = absoluteRaw.lastIndexOf(0x2f);
    const folder = absoluteRaw.subarray(0, Math.max(slash, 1));
    const realFolder = await realpath(folder, { encoding: 'buffer' }).catch(() => folder);
    return Buffer.concat([realFolder, absoluteRaw.subarray(slash)]);
  });
  return real.toString('latin1');
}

function hasImageExtension(name: string, ctx: WalkContext): boolean {
  return ctx.extensions.has(path.extname(name).slice(1).toLowerCase());
}

/** The first entry for each file wins, so the path shown is the first way the user named it. */
function dedupeByIdentity(found: { entry: DiscoveredImage; identity: string }[]): DiscoveredImage[] {
  const seen = new Set<string>();
  const unique: DiscoveredImage[] = [];
  for (const { entry, identity } of found) {
    if (seen.has(identity)) continue;
    seen.add(identity);
    unique.push(entry);
  }
  return unique;
}

function sortByPath(entries: DiscoveredImage[]): DiscoveredImage[] {
  return entries.sort((x, y) => compareCodePoints(x.path, y.path));
}

const strictUtf8 = new TextDecoder('utf-8', { fatal: true });

/** Decodes a file name; bytes that are not valid UTF-8 are shown as `\xNN`. */
export function displayName(bytes: Uint8Array): { text: string; lossy: boolean } {
  try {
    return { text: strictUtf8.decode(bytes), lossy: false };
  } catch {
    let text = '';
    let i = 0;
    while (i < bytes.length) {
      const length = utf8SequenceLength(bytes[i]);
      const decoded = length > 0 ? tryDecode(bytes.subarray(i, i + length)) : undefined;
      if (decoded !== undefined && i + length <= bytes.length) {
        text += decoded;
        i += length;
      } else {
        text += `\\x${bytes[i].toString(16).toUpperCase().padStart(2, '0')}`;
        i += 1;
      }
    }
    return { text, lossy: true };
  }
}

function utf8SequenceLength(lead: number): number {
  if (lead < 0x80) return 1;
  if (lead >= 0xc2 && lead <= 0xdf) return 2;
  if (lead >= 0xe0 && lead <= 0xef) return 3;
  if (lead >= 0xf0 && lead <= 0xf4) return 4;
  return 0;
}

function tryDecode(bytes: Uint8Array): string | undefined {
  try {
    return strictUtf8.decode(bytes);
  } catch {
    return undefined;
  }
}

async function lstatOrNull(p: string | Buffer): Promise<Stats | null> {
  return lstat(p).catch(() => null);
}

async function statOrNull(p: string | Buffer): Promise<Stats | null> {
  return stat(p).catch(() => null);
}
