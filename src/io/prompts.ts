/**
 * Prompt sources for `rank`:
 * - `--prompt` (repeatable) and `--prompts-file`: the same prompts for every image;
 * - `--prompt-from sidecar`: `imgs/a.png` takes its prompt from `imgs/a.txt`, trimmed;
 * - `--prompt-from png`: the prompt a generator embedded in the PNG's text chunks
 *   (AUTOMATIC1111's `parameters`, ComfyUI's `prompt`).
 * A per-image prompt that cannot be found is an error for that image's row, never for the run.
 *
 * Prompts files: a `.jsonl` file holds one JSON object per line with a string `prompt` (so prompts
 * may contain newlines); any other file holds one prompt per line. In both, blank lines are skipped,
 * plain lines are trimmed (which also drops the `\r` of CRLF files), and a prompt that appears twice
 * is kept once, in first-seen order, since each prompt ranks the images once.
 *
 * Encoding (prompts files and sidecars): UTF-8, with or without a BOM, or UTF-16 (little- or
 * big-endian) with a BOM. A NUL byte (a binary file, or UTF-16 without a BOM) or bytes that are not
 * valid UTF-8 are refused with the file and line, rather than read as garbage prompts.
 *
 * Every file is read through readRegularFile: a FIFO, device or folder is refused at once instead of
 * blocking the run, and a file over its size limit is refused instead of filling memory.
 */
import path from 'node:path';
import { InputError, expectedMessage } from '../errors.js';
import { promptFromPngText, readPngTextChunks } from './png-text.js';
import { FileReadError, READ_LIMITS, readFailureText, readRegularFile, type FilePath } from './regular-file.js';

export type PerImagePromptSource = 'sidecar' | 'png';

/** A per-image prompt, or the reason there is none (which becomes that row's `error`). */
export type ImagePrompt = { ok: true; prompt: string } | { ok: false; error: string };

/** An image as discovery returns it; `rawAbsolute` is set for names that are not valid UTF-8. */
export interface PromptImage {
  path: string;
  absolute: string;
  rawAbsolute?: Buffer;
}

/** Reads `--prompts-file`; see the module comment for the two formats and the encodings. */
export async function readPromptsFile(file: string): Promise<string[]> {
  let bytes: Buffer;
  try {
    bytes = await readRegularFile(file, READ_LIMITS.textList, 'a prompts file');
  } catch (err) {
    throw new InputError(`Cannot read prompts file ${file} (${readFailureText(err)})`, { cause: err });
  }
  const decoded = decodePromptText(bytes);
  if (!decoded.ok) throw new InputError(`${file}:${decoded.line}: ${decoded.problem}`);
  const prompts = path.extname(file).toLowerCase() === '.jsonl' ? parsePromptsJsonl(decoded.text, file) : parsePromptsText(decoded.text);
  if (prompts.length === 0) throw new InputError(`Prompts file ${file} holds no prompts`);
  return prompts;
}

/** Text, or the first line (1-based) that cannot be decoded and why. */
export type DecodedText = { ok: true; text: string } | { ok: false; line: number; problem: string };

const RESAVE = 'save it as UTF-8, or as UTF-16 with a byte-order mark';

/**
 * A prompt file's bytes as text: UTF-8 (a BOM dropped), or UTF-16 LE or BE when it starts with that
 * BOM. A NUL character or an invalid sequence is a problem on its line, never a garbage prompt.
 */
export function decodePromptText(bytes: Uint8Array): DecodedText {
  if (bytes[0] === 0xff && bytes[1] === 0xfe) return decodeUtf16(bytes.subarray(2), true);
  if (bytes[0] === 0xfe && bytes[1] === 0xff) return decodeUtf16(bytes.subarray(2), false);
  const body = bytes[0] === 0xef && bytes[1] === 0xbb && bytes[2] === 0xbf ? bytes.subarray(3) : bytes;
  const nul = body.indexOf(0);
  const invalid = firstInvalidUtf8(body);
  if (nul >= 0 && (invalid < 0 || nul < invalid)) {
    return { ok: false, line: lineAt(body, nul), problem: `NUL byte: a binary file, or UTF-16 without a byte-order mark; ${RESAVE}` };
  }
  if (invalid >= 0) {
    return { ok: false, line: lineAt(body, invalid), problem: `not valid UTF-8 (byte 0x${body[invalid].toString(16).toUpperCase().padStart(2, '0')}); ${RESAVE}` };
  }
  return { ok: true, text: Buffer.from(body.buffer, body.byteOffset, body.length).toString('utf8') };
}

function decodeUtf16(body: Uint8Array, littleEndian: boolean): DecodedText {
  const name = littleEndian ? 'UTF-16LE' : 'UTF-16BE';
  const units = body.length >> 1;
  const unit = (i: number): number => (littleEndian ? body[2 * i] | (body[2 * i + 1] << 8) : (body[2 * i] << 8) | body[2 * i + 1]);
  const isLow = (u: number): boolean => u >= 0xdc00 && u <= 0xdfff;
  let line = 1;
  for (let i = 0; i < units; i++) {
    const u = unit(i);
    if (u === 0x0a) line++;
    if (u === 0) return { ok: false, line, problem: `NUL character in ${name} text; a prompt file holds text` };
    if (u >= 0xd800 && u <= 0xdbff && i + 1 < units && isLow(unit(i + 1))) i++;
    else if (u >= 0xd800 && u <= 0xdfff) return { ok: false, line, problem: `not valid ${name} (a lone surrogate 0x${u.toString(16).toUpperCase()})` };
  }
  if (body.length % 2 !== 0) return { ok: false, line, problem: `${name} text ends in half a character` };
  return { ok: true, text: new TextDecoder(littleEndian ? 'utf-16le' : 'utf-16be').decode(body) };
}

/** The 1-based line of byte `offset`. */
function lineAt(bytes: Uint8Array, offset: number): number {
  let line = 1;
  for (let i = 0; i < offset; i++) if (bytes[i] === 0x0a) line++;
  return line;
}

/** The offset of the first byte that does not begin a well-formed UTF-8 sequence (Unicode Table 3-7), or -1. */
function firstInvalidUtf8(bytes: Uint8Array): number {
  for (let i = 0; i < bytes.length;) {
    const b = bytes[i];
    if (b < 0x80) { i++; continue; }
    let length: number;
    let low = 0x80;
    let high = 0xbf;
    if (b >= 0xc2 && b <= 0xdf) length = 2;
    else if (b >= 0xe0 && b <= 0xef) { length = 3; if (b === 0xe0) low = 0xa0; if (b === 0xed) high = 0x9f; }
    else if (b >= 0xf0 && b <= 0xf4) { length = 4; if (b === 0xf0) low = 0x90; if (b === 0xf4) high = 0x8f; }
    else return i;
    if (i + length > bytes.length) return i;
    if (bytes[i + 1] < low || bytes[i + 1] > high) return i;
    for (let k = 2; k < length; k++) if (bytes[i + k] < 0x80 || bytes[i + k] > 0xbf) return i;
    i += length;
  }
  return -1;
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
  let bytes: Buffer;
  try {
    bytes = await readRegularFile(file, READ_LIMITS.promptText, 'a sidecar prompt file');
  } catch (err) {
    return { ok: false, error: err instanceof FileReadError && err.code === 'ENOENT' ? `no sidecar prompt file ${shown}` : `cannot read sidecar prompt file ${shown} (${readFailureText(err)})` };
  }
  const decoded = decodePromptText(bytes);
  if (!decoded.ok) return { ok: false, error: `sidecar prompt file ${shown}, line ${decoded.line}: ${decoded.problem}` };
  const prompt = decoded.text.trim();
  return prompt === '' ? { ok: false, error: `sidecar prompt file ${shown} is empty` } : { ok: true, prompt };
}

async function promptFromPng(image: PromptImage): Promise<ImagePrompt> {
  const file: FilePath = image.rawAbsolute ?? image.absolute;
  let bytes: Uint8Array;
  try {
    bytes = await readRegularFile(file, READ_LIMITS.image, 'an image');
  } catch (err) {
    return { ok: false, error: `cannot read ${image.path} (${readFailureText(err)})` };
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
