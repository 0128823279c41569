/**
 * Prompts that generators embed in PNG text chunks. Pure (zlib from node:zlib, no sharp).
 * The reader is defensive: the bytes come from arbitrary files. Anything that is not a PNG is an
 * InputError; a damaged chunk is skipped and a truncated file yields the chunks before the damage.
 * Decompression is capped, so a zTXt bomb cannot exhaust memory.
 */
import { inflateSync } from 'node:zlib';
import { InputError } from '../errors.js';

const PNG_SIGNATURE = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];
const MAX_TEXT_BYTES = 4 << 20;
/** How deep a ComfyUI graph is followed from a sampler to its text; real graphs are a few links deep. */
const MAX_LINK_DEPTH = 32;

function inflateText(data: Uint8Array): Buffer | undefined {
  try {
    return inflateSync(data, { maxOutputLength: MAX_TEXT_BYTES });
  } catch {
    return undefined;
  }
}

/** Decodes one tEXt, zTXt or iTXt chunk into [keyword, text], or undefined when it is malformed. */
function decodeTextChunk(type: string, data: Buffer): [string, string] | undefined {
  const keywordEnd = data.indexOf(0);
  if (keywordEnd < 1) return undefined;
  const keyword = data.toString('latin1', 0, keywordEnd);
  if (type === 'tEXt') return [keyword, data.toString('latin1', keywordEnd + 1)];
  if (type === 'zTXt') {
    if (data[keywordEnd + 1] !== 0) return undefined;
    const text = inflateText(data.subarray(keywordEnd + 2));
    return text && [keyword, text.toString('latin1')];
  }
  // iTXt: keyword, compression flag, method, language tag, translated keyword, UTF-8 text.
  const compressed = data[keywordEnd + 1] === 1;
  const languageEnd = data.indexOf(0, keywordEnd + 3);
  const translatedEnd = languageEnd < 0 ? -1 : data.indexOf(0, languageEnd + 1);
  if (translatedEnd < 0) return undefined;
  const body = data.subarray(translatedEnd + 1);
  const text = compressed ? inflateText(body) : body;
  return text && [keyword, text.toString('utf8')];
}

/** The text chunks of a PNG, keyword -> text; a later chunk with the same keyword wins, as in Pillow. */
export function readPngTextChunks(bytes: Uint8Array): Record<string, string> {
  if (bytes.length < 8 || PNG_SIGNATURE.some((b, i) => bytes[i] !== b)) throw new InputError('not a PNG file (no PNG signature)');
  const buffer = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length);
  const chunks: Record<string, string> = {};
  let offset = 8;
  while (offset + 8 <= buffer.length) {
    const length = buffer.readUInt32BE(offset);
    const type = buffer.toString('latin1', offset + 4, offset + 8);
    const dataStart = offset + 8;
    if (type === 'IEND' || dataStart + length > buffer.length) break;
    if (type === 'tEXt' || type === 'zTXt' || type === 'iTXt') {
      const entry = decodeTextChunk(type, buffer.subarray(dataStart, dataStart + length));
      if (entry) chunks[entry[0]] = entry[1];
    }
    offset = dataStart + length + 4;
  }
  return chunks;
}

/** AUTOMATIC1111: the prompt, then optionally "Negative prompt: ...", then a "Steps: ..." settings line. */
function promptFromA1111(parameters: string): string | undefined {
  const lines = parameters.replace(/\r\n?/g, '\n').split('\n');
  const negative = lines.findIndex((l) => l.startsWith('Negative prompt:'));
  const settings = lines.findLastIndex((l) => l.startsWith('Steps: '));
  const end = negative >= 0 ? negative : settings >= 0 ? settings : lines.length;
  const prompt = lines.slice(0, end).join('\n').trim();
  return prompt || undefined;
}

type ComfyNode = { class_type?: unknown; inputs?: Record<string, unknown> };

function isLink(value: unknown): value is [string | number, number] {
  return Array.isArray(value) && value.length === 2 && (typeof value[0] === 'string' || typeof value[0] === 'number');
}

/** Inputs that carry text or conditioning towards a sampler, in the order they are tried. */
const TEXT_INPUTS = ['text', 'text_g', 'text_l', 'string', 'value', 'conditioning', 'conditioning_1', 'conditioning_to', 'conditioning_from'];

/** Follows a ComfyUI link back to the first text it reaches (through conditioning and primitive nodes). */
function textFromNode(graph: Record<string, ComfyNode>, id: string, seen: Set<string>): string | undefined {
  if (seen.has(id) || seen.size >= MAX_LINK_DEPTH) return undefined;
  seen.add(id);
  const inputs = graph[id]?.inputs;
  if (!inputs || typeof inputs !== 'object') return undefined;
  for (const name of TEXT_INPUTS) {
    const value = inputs[name];
    if (typeof value === 'string' && value.trim() && !name.startsWith('conditioning')) return value.trim();
    if (isLink(value)) {
      const text = textFromNode(graph, String(value[0]), seen);
      if (text) return text;
    }
  }
  return undefined;
}

/** ComfyUI's API-format graph: follow a sampler's `positive` input; else the one text encoder nobody uses as `negative`. */
function promptFromComfy(graph: Record<string, ComfyNode>): string | undefined {
  const ids = Object.keys(graph).sort((a, b) => Number(a) - Number(b) || a.localeCompare(b));
  const nodes = ids.map((id) => [id, graph[id]] as const).filter(([, node]) => node !== null && typeof node === 'object');
  for (const [, node] of nodes) {
    const positive = node.inputs?.positive;
    if (isLink(positive)) {
      const text = textFromNode(graph, String(positive[0]), new Set());
      if (text) return text;
    }
  }
  const negatives = new Set(nodes.map(([, node]) => node.inputs?.negative).filter(isLink).map((link) => String(link[0])));
  const encoders = nodes.filter(([id, node]) => !negatives.has(id) && typeof node.class_type === 'string' && node.class_type.startsWith('CLIPTextEncode'));
  return encoders.length === 1 ? textFromNode(graph, encoders[0][0], new Set()) : undefined;
}

function parseJsonObject(text: string): Record<string, ComfyNode> | undefined {
  try {
    const value: unknown = JSON.parse(text);
    return value !== null && typeof value === 'object' && !Array.isArray(value) ? (value as Record<string, ComfyNode>) : undefined;
  } catch {
    return undefined;
  }
}

/** The generation prompt from AUTOMATIC1111's `parameters` or ComfyUI's `prompt` chunk, if there is one. */
export function promptFromPngText(chunks: Record<string, string>): string | undefined {
  const parameters = chunks.parameters;
  if (typeof parameters === 'string') {
    const prompt = promptFromA1111(parameters);
    if (prompt) return prompt;
  }
  const comfy = chunks.prompt;
  if (typeof comfy !== 'string') return undefined;
  const graph = parseJsonObject(comfy);
  // Some tools write a plain-text `prompt` chunk rather than a ComfyUI graph.
  if (!graph) return comfy.trim() || undefined;
  return promptFromComfy(graph);
}
