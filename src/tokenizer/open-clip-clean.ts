/**
 * open_clip's text cleaning (`SimpleTokenizer(clean='lower')`, the default of every CLIP config, and
 * HPSv2's vendored copy): `whitespace_clean(basic_clean(text)).lower()`, where
 *   basic_clean      = ftfy.fix_text, then html.unescape twice, then strip();
 *   whitespace_clean = runs of whitespace to one space, then strip().
 * Whitespace is Python's (str.isspace / the `regex` module's \s, which agree on what ftfy leaves):
 * JavaScript's \s differs (it takes U+FEFF, which Python does not, and misses U+0085).
 * Pure.
 */
import { ftfyFixText } from './ftfy.js';
import { pythonHtmlUnescape } from './python-html.js';

/** The characters Python's str.isspace() accepts. */
const PYTHON_WHITESPACE = '\\t\\n\\x0b\\x0c\\r\\x1c-\\x1f \\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000';
const WHITESPACE_RUN = new RegExp(`[${PYTHON_WHITESPACE}]+`, 'g');
const WHITESPACE_CHAR = new RegExp(`^[${PYTHON_WHITESPACE}]$`);

/** str.strip(): a scan from each end (a trailing-whitespace regex backtracks quadratically on long inner runs). */
export function pythonStrip(text: string): string {
  let start = 0;
  let end = text.length;
  while (start < end && WHITESPACE_CHAR.test(text[start])) start++;
  while (end > start && WHITESPACE_CHAR.test(text[end - 1])) end--;
  return text.slice(start, end);
}

export function openClipClean(text: string): string {
  const basic = pythonStrip(pythonHtmlUnescape(pythonHtmlUnescape(ftfyFixText(text))));
  return pythonStrip(basic.replace(WHITESPACE_RUN, ' ')).toLowerCase();
}
