/**
 * Python's `html.unescape` (CPython 3.11, `Lib/html/__init__.py`), character for character: the HTML5
 * rules for named references (longest known prefix when the full name is unknown, names without a
 * semicolon included) and for numeric ones (Windows-1252 for 0x80-0x9F, U+FFFD for NUL, surrogates and
 * values past U+10FFFF, nothing for the code points HTML forbids). open_clip's tokenizer applies it twice.
 * Pure.
 */
import { InputError } from '../errors.js';
import { HTML5_ENTITIES, INVALID_CHARREFS, INVALID_CODEPOINT_RANGES } from './html-entities.js';

/** `_charref`; the `u` flag makes `{1,32}` count code points, as Python's str does. */
const CHARREF = /&(#[0-9]+;?|#[xX][0-9a-fA-F]+;?|[^\t\n\f <&#;]{1,32};?)/gu;

/** CPython's default limit on the digits int() converts from a decimal string (sys.int_info.default_max_str_digits). */
const PYTHON_MAX_STR_DIGITS = 4300;

function isInvalidCodepoint(code: number): boolean {
  return INVALID_CODEPOINT_RANGES.some(([from, to]) => code >= from && code <= to);
}

function numericReference(body: string): string {
  const hex = body[1] === 'x' || body[1] === 'X';
  const digits = body.slice(hex ? 2 : 1).replace(/;$/, '');
  if (!hex && digits.length > PYTHON_MAX_STR_DIGITS) {
    // Python's int() refuses the reference, so html.unescape raises on such a prompt: there is no result to reproduce.
    throw new InputError(`the prompt holds a numeric character reference of ${digits.length} digits, on which Python's html.unescape (in open_clip's tokenizer) fails`);
  }
  const value = BigInt(hex ? `0x${digits}` : digits);
  const code = value > 0x10ffffn ? -1 : Number(value);
  const replaced = code >= 0 ? INVALID_CHARREFS.get(code) : undefined;
  if (replaced !== undefined) return replaced;
  if (code < 0 || (code >= 0xd800 && code <= 0xdfff)) return '\ufffd';
  if (isInvalidCodepoint(code)) return '';
  return String.fromCodePoint(code);
}

function namedReference(body: string): string {
  if (Object.hasOwn(HTML5_ENTITIES, body)) return HTML5_ENTITIES[body];
  const chars = Array.from(body);
  for (let length = chars.length - 1; length > 1; length--) {
    const prefix = chars.slice(0, length).join('');
    if (Object.hasOwn(HTML5_ENTITIES, prefix)) return HTML5_ENTITIES[prefix] + chars.slice(length).join('');
  }
  return `&${body}`;
}

export function pythonHtmlUnescape(text: string): string {
  if (!text.includes('&')) return text;
  return text.replace(CHARREF, (_, body: string) => (body[0] === '#' ? numericReference(body) : namedReference(body)));
}
