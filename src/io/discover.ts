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
 * File names that are not valid UTF-8 (Linux allows any bytes): folder walks read names as bytes, and
 * every path is shown in the escaped form of src/io/path-text.ts (`\xNN` for such a byte, `\\` for a
 * backslash), so two names never share a text. Such an entry also carries `rawAbsolute`, its exact
 * bytes, which `fs` opens. Glob matches and typed paths reach pickscore as lossy text (U+FFFD); one
 * that holds U+FFFD is matched back to the names on disk that decode to it.
 */
import { lstat, readdir, realpath, stat } from 'node:fs/promises';
import type { Stats } from 'node:fs';
import path from 'node:path';
import fg from 'fast-glob';
import { InputError } from '../errors.js';
import { compareCodePoints } from '../score/rank.js';
import { displayName, escapePathText } from './path-text.js';

export { displayName, pathFromDisplay } from './path-text.js';

export const IMAGE_EXTENSIONS: readonly string[] = ['jpg', 'jpeg', 'png', 'webp', 'gif', 'avif', 'tif', 'tiff'];

/**
 * BMP cannot be decoded (sharp's libvips has no BMP loader). A folder walk passes .bmp files over with
 * this reason; a .bmp file named on the command line (or matched by a glob) is kept, so that its row
 * says why it was not scored.
 */
export const BMP_SKIP_REASON = 'BMP is not supported';
const NAMED_ONLY_EXTENSIONS: readonly string[] = ['bmp'];

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
  /** Listed only when named: the entry becomes an error row that says why (BMP). */
  namedOnly: Set<string>;
  cwd: string;
  onSkip: (path: string, reason: string) => void;
  /** Real paths of the folders walked for the current input: a symlink loop ends at the second visit. */
  visitedDirs: Set<string>;
  found: { entry: DiscoveredImage; identity: string }[];
}

export async function discoverImages(inputs: string[], opts: DiscoverOptions = {}): Promise<DiscoveredImage[]> {
  const ctx: WalkContext = {
    extensions: new Set((opts.extensions ?? IMAGE_EXTENSIONS).map((e) => e.replace(/^\./, '').toLowerCase())),
    namedOnly: new Set(opts.extensions ? [] : NAMED_ONLY_EXTENSIONS),
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
  if (await lstatOrNull(absolute)) return discoverPath({ path: escapePathText(input), absolute }, input, ctx);
  if (fg.isDynamicPattern(input)) {
    await globInput(input, ctx);
    return 'pattern';
  }
  if (input.includes(REPLACEMENT)) {
    // Node decoded a name that is not UTF-8; the user meant one of the names on disk that decode to it.
    const found = await undecodedPaths(input, ctx.cwd);
    if (found.length > 1) {
      throw new InputError(`Input path ${input} could be any of ${found.length} files whose names are not valid UTF-8 (${found.map((f) => f.path).join(', ')}); name their folder or a glob instead`);
    }
    if (found.length === 1) return discoverPath(found[0], input, ctx);
  }
  throw new InputError(`Input path ${input} does not exist`);
}

/** A typed path that exists: a file entry, or a folder walked. */
async function discoverPath(entry: DiscoveredImage, input: string, ctx: WalkContext): Promise<'file' | 'folder'> {
  const raw = entry.rawAbsolute ?? Buffer.from(entry.absolute);
  const linkStats = await lstatOrNull(raw);
  const target = linkStats?.isSymbolicLink() ? await statOrNull(raw) : linkStats;
  if (!target?.isDirectory()) {
    await addFile(entry, ctx);
    return 'file';
  }
  try {
    await walkFolder(raw, entry.path, entry.rawAbsolute !== undefined, ctx);
  } catch (err) {
    throw new InputError(`Cannot read input folder ${input} (${(err as NodeJS.ErrnoException).code ?? String(err)})`, { cause: err });
  }
  return 'folder';
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
    // fast-glob reads names as lossy text: `a\xFF.png` and `a\xFE.png` both come back as `a\uFFFD.png`,
    // once (unique). Each name on disk that decodes to the match is an entry of its own.
    const entries = match.includes(REPLACEMENT) ? await undecodedPaths(match, ctx.cwd) : [{ path: escapePathText(match), absolute: path.resolve(ctx.cwd, match) }];
    for (const entry of entries) {
      const linkStats = await lstatOrNull(entry.rawAbsolute ?? entry.absolute);
      if (linkStats?.isDirectory()) continue; // a glob selects files; name the folder itself to walk it
      await addFile(entry, ctx);
    }
  }
}

const REPLACEMENT = '\uFFFD';

/**
 * The paths on disk that `text` (a path Node or fast-glob decoded lossily, relative to `cwd` or absolute)
 * could stand for: each component holding U+FFFD is matched against the folder's names read as bytes.
 */
async function undecodedPaths(text: string, cwd: string): Promise<DiscoveredImage[]> {
  const absolute = path.isAbsolute(text);
  const components = text.split('/');
  let found: { raw: Buffer; shown: string[] }[] = [{ raw: Buffer.from(absolute ? '/' : path.resolve(cwd)), shown: [] }];
  for (const component of components) {
    const next: typeof found = [];
    for (const { raw, shown } of found) {
      const join = (name: Buffer): Buffer => Buffer.concat([raw, raw[raw.length - 1] === 0x2f ? Buffer.alloc(0) : Buffer.from('/'), name]);
      if (!component.includes(REPLACEMENT)) {
        next.push({ raw: component === '' ? raw : join(Buffer.from(component)), shown: [...shown, escapePathText(component)] });
        continue;
      }
      const names = await readdir(raw, { encoding: 'buffer' }).catch(() => [] as Buffer[]);
      for (const name of names.sort(Buffer.compare)) {
        if (name.toString('utf8') === component) next.push({ raw: join(name), shown: [...shown, displayName(name).text] });
      }
    }
    found = next;
  }
  return found.map(({ raw, shown }) => {
    const display = displayName(raw);
    return display.lossy ? { path: shown.join('/'), absolute: display.text, rawAbsolute: raw } : { path: shown.join('/'), absolute: raw.toString('utf8') };
  });
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
    } else if (linkStats && ctx.namedOnly.has(extensionOf(display.text))) {
      ctx.onSkip(childShown, BMP_SKIP_REASON);
    }
  }
}

async function addFile(entry: DiscoveredImage, ctx: WalkContext): Promise<void> {
  if (hasImageExtension(entry.path, ctx) || ctx.namedOnly.has(extensionOf(entry.path))) ctx.found.push({ entry, identity: await fileIdentity(entry.rawAbsolute ?? Buffer.from(entry.absolute)) });
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

function extensionOf(name: string): string {
  return path.extname(name).slice(1).toLowerCase();
}

function hasImageExtension(name: string, ctx: WalkContext): boolean {
  return ctx.extensions.has(extensionOf(name));
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

async function lstatOrNull(p: string | Buffer): Promise<Stats | null> {
  return lstat(p).catch(() => null);
}

async function statOrNull(p: string | Buffer): Promise<Stats | null> {
  return stat(p).catch(() => null);
}
