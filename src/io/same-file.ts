/**
 * Outputs that would destroy an input. `rank imgs --out imgs/a.png` would turn the image into CSV text,
 * `eval m.jsonl --scores m.jsonl` the manifest into scores, `merge p0.json p1.json --out p0.json` a part
 * into the merge. Such runs are refused before any work, naming both roles.
 *
 * Files are compared by identity, not by spelling: the device and inode of what is there (so a symlink,
 * a hard link, `./a/../a.png` or `/dev/fd/3` onto an input are caught), and, for outputs that do not
 * exist yet, the resolved path.
 */
import { realpath, stat } from 'node:fs/promises';
import path from 'node:path';
import { UsageError } from '../errors.js';
import { planOutput } from './atomic.js';

/** A file the run writes, named as the user named it: `--out`, `--scores`. */
export interface NamedOutput { flag: string; path: string }

/** A file the run reads. `role` names it in messages: `the input image imgs/a.png`, `--prompts-file p.txt`. */
export interface NamedInput { role: string; path: string | Buffer }

/** Where an output lands: the inode that is there now, else the resolved path its file will have. */
interface OutputIdentity { output: NamedOutput; inode: string | null; resolved: string | null }

async function outputIdentity(output: NamedOutput): Promise<OutputIdentity> {
  const plan = await planOutput(output.path);
  const inode = await inodeOf(plan.file);
  const resolved = plan.kind === 'file'
    ? await realpath(path.dirname(plan.file)).then((dir) => path.join(dir, path.basename(plan.file)), () => null)
    : null;
  return { output, inode, resolved };
}

async function inodeOf(file: string | Buffer): Promise<string | null> {
  try {
    const info = await stat(file, { bigint: true });
    return `${info.dev}:${info.ino}`;
  } catch {
    return null;
  }
}

/** Whether two outputs land in one file: the same inode now, or the same resolved path to come. */
function sameFile(a: OutputIdentity, b: OutputIdentity): boolean {
  return (a.inode !== null && a.inode === b.inode) || (a.resolved !== null && a.resolved === b.resolved);
}

/**
 * Refuses (UsageError, exit 2) two outputs that are one file, and an output that is one of the inputs.
 * Inputs are looked at only when an output already exists: a file that is not there yet cannot be an
 * input, so the common run (a new --out) costs no stat of its images.
 */
export async function refuseOutputsNamingInputs(outputs: readonly NamedOutput[], inputs: Iterable<NamedInput> = []): Promise<void> {
  const identities = await Promise.all(outputs.map(outputIdentity));
  for (let i = 0; i < identities.length; i++) {
    for (let j = 0; j < i; j++) {
      const [a, b] = [identities[i], identities[j]];
      if (sameFile(a, b)) {
        throw new UsageError(`${a.output.flag} names the same file as ${b.output.flag} (${b.output.path}): give each output its own file`);
      }
    }
  }
  const existing = new Map<string, NamedOutput>();
  for (const identity of identities) if (identity.inode !== null) existing.set(identity.inode, identity.output);
  if (existing.size === 0) return;
  const clash = await firstClash([...inputs], existing);
  if (clash) {
    throw new UsageError(`${clash.output.flag} names the same file as ${clash.input.role}: writing it would destroy that input; choose another output file`);
  }
}

/** An output that names an input or another output: which, in the words messages use (a role, or `--out report.md`). */
export interface OutputClash { output: NamedOutput; names: string }

/**
 * Outputs a run skips rather than be refused for (a job summary appended beside the report): each
 * that names one of `outputs` or an input, with what it names. Nothing is thrown; the caller warns.
 */
export async function outputsToSkip(optional: readonly NamedOutput[], outputs: readonly NamedOutput[], inputs: Iterable<NamedInput> = []): Promise<OutputClash[]> {
  if (optional.length === 0) return [];
  // An optional output that cannot be written at all (a folder, a missing folder) is its writer's to report.
  const lenient = (output: NamedOutput) => outputIdentity(output).catch(async () => ({ output, inode: await inodeOf(output.path), resolved: null }));
  const [mine, theirs] = await Promise.all([Promise.all(optional.map(lenient)), Promise.all(outputs.map(outputIdentity))]);
  const inputList = [...inputs];
  const clashes: OutputClash[] = [];
  for (const identity of mine) {
    const output = theirs.find((other) => sameFile(identity, other));
    if (output) {
      clashes.push({ output: identity.output, names: `${output.output.flag} (${output.output.path})` });
      continue;
    }
    if (identity.inode === null) continue;
    const clash = await firstClash(inputList, new Map([[identity.inode, identity.output]]));
    if (clash) clashes.push({ output: identity.output, names: clash.input.role });
  }
  return clashes;
}

/**
 * Stats inputs a few at a time (a folder may hold 100,000 images) and stops soon after a clash; of the
 * clashes found, the earliest input is named, so the message does not depend on timing.
 */
async function firstClash(inputs: NamedInput[], outputs: Map<string, NamedOutput>): Promise<{ input: NamedInput; output: NamedOutput } | null> {
  const CONCURRENCY = 16;
  let next = 0;
  const clashes: { index: number; output: NamedOutput }[] = [];
  const worker = async (): Promise<void> => {
    while (clashes.length === 0 && next < inputs.length) {
      const index = next++;
      const inode = await inodeOf(inputs[index].path);
      const output = inode === null ? undefined : outputs.get(inode);
      if (output) clashes.push({ index, output });
    }
  };
  await Promise.all(Array.from({ length: Math.min(CONCURRENCY, inputs.length) }, worker));
  if (clashes.length === 0) return null;
  const first = clashes.reduce((a, b) => (b.index < a.index ? b : a));
  return { input: inputs[first.index], output: first.output };
}
