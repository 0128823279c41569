import { ModelError } from '../errors.js';

/** One normalisation step of a Hugging Face `tokenizers` normalizer. */
export type NormalizeStep = (text: string) => string;

/**
 * `tokenizers` regexes are Oniguruma's, where `\s` is Unicode White_Space. JavaScript's `\s` differs
 * (it adds U+FEFF and lacks U+0085), so the translation spells the property out.
 */
export function translateOnigurumaPattern(pattern: string, flags: string): RegExp {
  const translated = pattern.replace(/\\s/g, '\\p{White_Space}');
  try {
    return new RegExp(translated, flags);
  } catch (err) {
    throw new ModelError(`Unsupported tokenizer regex ${JSON.stringify(pattern)}: ${(err as Error).message}`);
  }
}

/**
 * `tokenizers`' Lowercase maps each character on its own (Rust's `char::to_lowercase`), with no
 * final-sigma rule, unlike `String.prototype.toLowerCase` on a whole string.
 */
export function lowercasePerCharacter(text: string): string {
  if (/^[\x00-\x7f]*$/.test(text)) return text.toLowerCase();
  let out = '';
  for (const ch of text) out += ch.toLowerCase();
  return out;
}

const collapseWhitespace: NormalizeStep = (text) => text.replace(/\p{White_Space}+/gu, ' ');

/** CLIPTokenizerFast's normalizer: NFC, runs of whitespace to one space, lowercase. */
export const CLIP_NORMALIZER: NormalizeStep[] = [(text) => text.normalize('NFC'), collapseWhitespace, lowercasePerCharacter];

/** `obj[key]` when obj is an object, else undefined: reading untrusted tokenizer JSON without casts everywhere. */
export function field(obj: unknown, key: string): unknown {
  return typeof obj === 'object' && obj !== null ? (obj as Record<string, unknown>)[key] : undefined;
}

/** Builds the steps of a tokenizer.json `normalizer` (the kinds CLIP tokenizers use). */
export function normalizerFromJson(json: unknown): NormalizeStep[] {
  if (json === null || json === undefined) return [];
  const type = field(json, 'type');
  switch (type) {
    case 'Sequence': {
      const parts = field(json, 'normalizers');
      if (!Array.isArray(parts)) throw new ModelError('tokenizer.json: normalizer Sequence without a normalizers array');
      return parts.flatMap(normalizerFromJson);
    }
    case 'NFC':
    case 'NFD':
    case 'NFKC':
    case 'NFKD':
      return [(text) => text.normalize(type)];
    case 'Lowercase':
      return [lowercasePerCharacter];
    case 'Replace': {
      const pattern = field(json, 'pattern');
      const content = String(field(json, 'content') ?? '');
      const regex = field(pattern, 'Regex');
      const literal = field(pattern, 'String');
      if (typeof regex === 'string') {
        const compiled = translateOnigurumaPattern(regex, 'gu');
        return [(text) => text.replace(compiled, () => content)];
      }
      if (typeof literal === 'string') return [(text) => text.split(literal).join(content)];
      throw new ModelError('tokenizer.json: Replace normalizer without a Regex or String pattern');
    }
    default:
      throw new ModelError(`tokenizer.json: unsupported normalizer type ${JSON.stringify(type)}`);
  }
}
