/**
 * The parts of ftfy's `fix_text` (ftfy 6.3.1, default TextFixerConfig) that prompts meet, which
 * open_clip's tokenizer runs on every prompt. Like `fix_text`, the text is fixed one line at a time
 * (segments end after `\n`, or at 1,000,000 code points), and each segment goes through these steps,
 * repeated until it stops changing:
 *   1. unescape_html: `&name;` for the HTML5 names ending in `;`, ftfy's all-caps variants
 *      (`&EACUTE;` -> É), and `&#...;` numeric references; not in a segment holding `<`, nor in any
 *      segment after one (ftfy's "auto" setting sticks);
 *   2. fix_c1_controls: U+0080..U+009F read as Windows-1252 (U+0085 becomes `…`, U+0093 `“`), the five
 *      bytes Windows-1252 leaves undefined kept;
 *   3. fix_latin_ligatures: ﬁ -> fi, ĳ -> ij, ǆ -> dž and the rest of ftfy's table;
 *   4. fix_character_width: U+3000 -> space, every U+FF01..U+FFEF -> its NFKC form (full-width ASCII,
 *      half-width katakana and Hangul);
 *   5. uncurl_quotes: ʼ ‘ ’ ‚ ‛ -> ', “ ” „ ‟ -> ";
 *   6. fix_line_breaks: \r\n, \r, U+2028, U+2029, U+0085 -> \n;
 *   7. fix_surrogates: a lone surrogate -> U+FFFD;
 *   8. remove_terminal_escapes: ESC [ digits/; letter;
 *   9. remove_control_chars: U+0000..U+0008, U+000B, U+000E..U+001F, U+007F, U+206A..U+206F, U+FEFF,
 *      U+FFF9..U+FFFC;
 *  10. NFC.
 * Not reproduced: `fix_encoding` (mojibake repair: re-decoding text that looks like UTF-8 read as
 * Windows-1252, Latin-1, MacRoman and other single-byte encodings, with ftfy's "badness" heuristic and
 * tables), so `cafÃ©` stays as it is where ftfy would write `café`. Its C1 repair, the one part plain
 * prompts meet, gives the same characters as step 2. See docs/scorers.md.
 * Pure.
 */
import { FTFY_UPPERCASE_ENTITIES, HTML5_ENTITIES, INVALID_CHARREFS } from './html-entities.js';
import { pythonHtmlUnescape } from './python-html.js';

/** ftfy's `max_decode_length`: a longer line is fixed in pieces of this many code points. */
const MAX_SEGMENT = 1_000_000;

const HTML_ENTITY = /&#?[0-9A-Za-z]{1,24};/g;

/** `_unescape_fixup`: a known name, else a numeric reference that html.unescape consumes whole, else as it was. */
function unescapeEntity(entity: string): string {
  const name = entity.slice(1);
  if (name.endsWith(';') && Object.hasOwn(HTML5_ENTITIES, name)) return HTML5_ENTITIES[name];
  if (Object.hasOwn(FTFY_UPPERCASE_ENTITIES, name)) return FTFY_UPPERCASE_ENTITIES[name];
  if (entity.startsWith('&#')) {
    const unescaped = pythonHtmlUnescape(entity);
    return unescaped.includes(';') ? entity : unescaped;
  }
  return entity;
}

const C1_CONTROL = /[\x80-\x9f]/g;

const LIGATURES: Readonly<Record<string, string>> = {
  'Ĳ': 'IJ', 'ĳ': 'ij', 'ŉ': 'ʼn', 'Ǳ': 'DZ', 'ǲ': 'Dz', 'ǳ': 'dz', 'Ǆ': 'DŽ', 'ǅ': 'Dž', 'ǆ': 'dž',
  'Ǉ': 'LJ', 'ǈ': 'Lj', 'ǉ': 'lj', 'Ǌ': 'NJ', 'ǋ': 'Nj', 'ǌ': 'nj',
  'ﬀ': 'ff', 'ﬁ': 'fi', 'ﬂ': 'fl', 'ﬃ': 'ffi', 'ﬄ': 'ffl', 'ﬅ': 'ſt', 'ﬆ': 'st',
};
const LIGATURE = new RegExp(`[${Object.keys(LIGATURES).join('')}]`, 'g');

/** ftfy's `_build_width_map`: U+3000 and the U+FF01..U+FFEF characters that NFKC changes. */
const WIDTH_MAP: ReadonlyMap<string, string> = (() => {
  const map = new Map<string, string>([['\u3000', ' ']]);
  for (let code = 0xff01; code < 0xfff0; code++) {
    const char = String.fromCharCode(code);
    const alternate = char.normalize('NFKC');
    if (alternate !== char) map.set(char, alternate);
  }
  return map;
})();
const WIDE = /[\u3000\uff01-\uffef]/g;

const SINGLE_QUOTE = /[\u02bc\u2018-\u201b]/g;
const DOUBLE_QUOTE = /[\u201c-\u201f]/g;
const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g;
/** Python's `\d` in a str pattern is any decimal digit, not only ASCII's. */
const TERMINAL_ESCAPE = /\x1b\[(?:\p{Nd}|;)*[a-zA-Z]/gu;
const CONTROL_CHARS = /[\x00-\x08\x0b\x0e-\x1f\x7f\u206a-\u206f\ufeff\ufff9-\ufffc]/g;

function fixSegmentOnce(text: string, unescapeHtml: boolean): string {
  let out = unescapeHtml ? text.replace(HTML_ENTITY, unescapeEntity) : text;
  out = out.replace(C1_CONTROL, (c) => INVALID_CHARREFS.get(c.charCodeAt(0)) ?? c);
  out = out.replace(LIGATURE, (c) => LIGATURES[c]);
  out = out.replace(WIDE, (c) => WIDTH_MAP.get(c) ?? c);
  out = out.replace(SINGLE_QUOTE, "'").replace(DOUBLE_QUOTE, '"');
  out = out.replace(/\r\n/g, '\n').replace(/[\r\u2028\u2029\u0085]/g, '\n');
  out = out.replace(LONE_SURROGATE, '\ufffd');
  out = out.replace(TERMINAL_ESCAPE, '');
  out = out.replace(CONTROL_CHARS, '');
  return out.normalize('NFC');
}

/** `fix_and_explain`: the steps, repeated until the text stops changing. */
function fixSegment(text: string, unescapeHtml: boolean): string {
  let current = text;
  for (;;) {
    const fixed = fixSegmentOnce(current, unescapeHtml);
    if (fixed === current) return fixed;
    current = fixed;
  }
}

/** Where the segment starting at `pos` ends: after the next `\n`, or MAX_SEGMENT code points on. */
function segmentEnd(text: string, pos: number): number {
  const newline = text.indexOf('\n', pos);
  const end = newline < 0 ? text.length : newline + 1;
  if (end - pos <= MAX_SEGMENT) return end;   // UTF-16 units >= code points: within the limit either way
  let at = pos;
  for (let points = 0; points < MAX_SEGMENT && at < end; points++) at += (text.codePointAt(at) ?? 0) > 0xffff ? 2 : 1;
  return at;
}

/** ftfy.fix_text(text) with the default configuration, less `fix_encoding` (see the module comment). */
export function ftfyFixText(text: string): string {
  let out = '';
  let unescapeHtml = true;
  for (let pos = 0; pos < text.length;) {
    const end = segmentEnd(text, pos);
    const segment = text.slice(pos, end);
    if (segment.includes('<')) unescapeHtml = false;
    out += fixSegment(segment, unescapeHtml);
    pos = end;
  }
  return out;
}
