/**
 * Prompt sources for `rank`:
 * - `--prompt` (repeatable) and `--prompts-file`: the same prompts for every image;
 * - `--prompt-from sidecar`: `imgs/a.png` takes its prompt from `imgs/a.txt`, trimmed;
 * - `--prompt-from png`: the prompt a generator embedded in the PNG's text chunks
 *   (AUTOMATIC1111's `parameters`, ComfyUI's `prompt`).
 * A per-image prompt that cannot be found is an error for that image's row, never for the run.
 *
 * Prompts files: a `.jsonl` file holds one JSON object per line with a string `prompt` (so prompts
 * may contain newlines); any other file holds one prompt per line. In both, a UTF-8 BOM and blank
 * lines are skipped, plain lines are trimmed (which also drops the `\r` of CRLF files), and a prompt
 * that appears twice is kept once, in first-seen order, since each prompt ranks the images once.
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { InputError, expectedMessage } from '../errors.js';
import { promptFromPngText, readPngTextChunks } from '../image/png-text.js';

export type PerImagePromptSource = 'sidecar' | 'png';

/** A per-image prompt, or the reason there is none (which becomes that row's `error`). */
export type ImagePrompt = { ok: true; prompt: string } | { ok: false; error: string };

/** An image as discovery returns it; `rawAbsolute` is set for names that are not valid UTF-8. */
export interface PromptImage {
  path: string;
  absolute: string;
  rawAbsolute?: Buffer;
}

/** Reads `--prompts-file`; see the module comment for the two formats. */
export async function readPromptsFile(file: string): Promise<string[]> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    throw new InputError(`Cannot read prompts file ${file} (${(err as NodeJS.ErrnoException).code ?? String(err)})`, { cause: err });
  }
  const prompts = path.extname(file).toLowerCase() === '.jsonl' ? parsePromptsJsonl(text, file) : parsePromptsText(text);
  if (prompts.length === 0) throw new InputError(`Prompts file ${file} holds no prompts`);
  return prompts;
}

/** One prompt per line; BOM and blank lines skipped, lines trimmed, duplicates dropped. */
export function parsePromptsText(text: string): string[] {
  return uniquePrompts(stripBom(text).split('\n').map((line) => line.trim()));
}

/** One `{"prompt": "..."}` object per line; every bad line is an InputError naming `file:line`. */
export function parsePromptsJsonl(text: string, file: string): string[] {
  const prompts: string[] = [];
  stripBom(text)
    .split('\n')
    .forEach((line, index) => {
      if (line.trim() === '') return;
      const where = `${file}:${index + 1}`;
      let value: unknown;
      try {
        value = JSON.parse(line);
      } catch (err) {
        throw new InputError(`${where}: invalid JSON (${(err as Error).message})`);
      }
      const prompt = typeof value === 'object' && value !== null ? (value as Record<string, unknown>).prompt : undefined;
      if (typeof prompt !== 'string' || prompt.trim() === '') {
        throw new InputError(`${where}: prompt: ${expectedMessage('a non-empty string', 'field "prompt"', prompt)}`);
      }
      prompts.push(prompt);
    });
  return uniquePrompts(prompts);
}

/** Merges `--prompt` values and a prompts file into one list; at least one prompt must remain. */
export function combinePrompts(flagPrompts: readonly string[], filePrompts: readonly string[] = []): string[] {
  for (const prompt of flagPrompts) {
    if (prompt.trim() === '') throw new InputError(expectedMessage('a non-empty prompt', '--prompt', prompt));
  }
  return uniquePrompts([...flagPrompts, ...filePrompts]);
}

/** `imgs/a.png` -> `imgs/a.txt` (the extension replaced, the folder kept as given). */
export function sidecarPath(imagePath: string): string {
  const ext = path.extname(imagePath);
  return `${ext ? imagePath.slice(0, -ext.length) : imagePath}.txt`;
}

/** The prompt for one image from its sidecar `.txt` or its PNG text chunks. Never throws. */
export async function promptForImage(source: PerImagePromptSource, image: PromptImage): Promise<ImagePrompt> {
  return source === 'sidecar' ? promptFromSidecar(image) : promptFromPng(image);
}

async function promptFromSidecar(image: PromptImage): Promise<ImagePrompt> {
  const shown = sidecarPath(image.path);
  const file = image.rawAbsolute ? sidecarRawPath(image.rawAbsolute) : sidecarPath(image.absolute);
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    return { ok: false, error: code === 'ENOENT' ? `no sidecar prompt file ${shown}` : `cannot read sidecar prompt file ${shown} (${code ?? String(err)})` };
  }
  const prompt = stripBom(text).trim();
  return prompt === '' ? { ok: false, error: `sidecar prompt file ${shown} is empty` } : { ok: true, prompt };
}

async function promptFromPng(image: PromptImage): Promise<ImagePrompt> {
  let bytes: Uint8Array;
  try {
    bytes = await readFile(image.rawAbsolute ?? image.absolute);
  } catch (err) {
    return { ok: false, error: `cannot read ${image.path} (${(err as NodeJS.ErrnoException).code ?? String(err)})` };
  }
  if (!hasPngSignature(bytes)) return { ok: false, error: `${image.path} is not a PNG, so it has no embedded prompt` };
  let prompt: string | undefined;
  try {
    prompt = promptFromPngText(readPngTextChunks(bytes));
  } catch (err) {
    return { ok: false, error: `cannot read the PNG text chunks of ${image.path} (${(err as Error).message})` };
  }
  if (prompt === undefined || prompt.trim() === '') {
    return { ok: false, error: `${image.path} has no embedded prompt (no AUTOMATIC1111 "parameters" or ComfyUI "prompt" text chunk)` };
  }
  return { ok: true, prompt: prompt.trim() };
}

const PNG_SIGNATURE = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];

function hasPngSignature(bytes: Uint8Array): boolean {
  return bytes.length >= PNG_SIGNATURE.length && PNG_SIGNATURE.every((b, i) => bytes[i] === b);
}

function sidecarRawPath(rawImagePath: Buffer): Buffer {
  const slash = rawImagePath.lastIndexOf(0x2f);
  const dot = rawImagePath.lastIndexOf(0x2e);
  const stem = dot > slash + 1 ? rawImagePath.subarray(0, dot) : rawImagePath;
  return Buffer.concat([stem, Buffer.from('.txt')]);
}

function stripBom(text: string): string {
  return text.charCodeAt(0) === 0xfeff ? text.slice(1) : text;
}

function uniquePrompts(prompts: readonly string[]): string[] {
  return [...new Set(prompts.filter((p) => p !== ''))];
}
