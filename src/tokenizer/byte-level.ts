/**
 * GPT-2's byte-to-unicode table, which CLIP's byte-level BPE shares: every byte maps to one printable
 * code point, so that any UTF-8 string becomes a string over a 256-symbol alphabet that the vocabulary covers.
 * Printable Latin-1 bytes map to themselves; the others (controls, space, 0x7F-0xA0, 0xAD) map to U+0100 onwards.
 */
function buildByteToUnicode(): string[] {
  const table: string[] = new Array<string>(256);
  const keepsItself = (b: number): boolean =>
    (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
  let shifted = 0;
  for (let b = 0; b < 256; b++) {
    table[b] = String.fromCodePoint(keepsItself(b) ? b : 256 + shifted++);
  }
  return table;
}

const BYTE_TO_UNICODE = buildByteToUnicode();
const utf8 = new TextEncoder();

/** The UTF-8 bytes of `text`, each replaced by its byte-level symbol. */
export function toByteLevel(text: string): string {
  let out = '';
  for (const byte of utf8.encode(text)) out += BYTE_TO_UNICODE[byte];
  return out;
}
