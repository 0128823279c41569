/**
 * File names as text. Linux allows any bytes in a name; Node decodes them lossily to U+FFFD, and the
 * decoded text opens nothing, and two names can decode the same. So pickscore shows every path in one
 * escaped form that gives each name its own text, and turns that text back into the exact bytes:
 * - a byte that is not part of valid UTF-8 is written `\xNN` (two upper-case hex digits);
 * - a backslash is written `\\`, so that a name that really contains the four characters `\xFF` is
 *   shown as `\\xFF` and never looks like the byte 0xFF;
 * - everything else is itself.
 * On Windows, where `\` separates folders and names are Unicode, paths are shown as they are.
 */
const strictUtf8 = new TextDecoder('utf-8', { fatal: true });

/** Windows separates folders with `\` and its names are Unicode: there, paths are shown as they are. */
const ESCAPES_BACKSLASH = process.platform !== 'win32';

/** A path that is text already (typed, or matched by a glob), in the escaped form: each `\` doubled. */
export function escapePathText(text: string): string {
  return ESCAPES_BACKSLASH && text.includes('\\') ? text.replaceAll('\\', '\\\\') : text;
}

/** Decodes a file name: a byte that is not valid UTF-8 is shown as `\xNN`, and a backslash as `\\`. */
export function displayName(bytes: Uint8Array): { text: string; lossy: boolean } {
  try {
    return { text: escapePathText(strictUtf8.decode(bytes)), lossy: false };
  } catch {
    let text = '';
    let i = 0;
    while (i < bytes.length) {
      const length = utf8SequenceLength(bytes[i]);
      const decoded = length > 0 && i + length <= bytes.length ? tryDecode(bytes.subarray(i, i + length)) : undefined;
      if (decoded !== undefined) {
        text += escapePathText(decoded);
        i += length;
      } else {
        text += `\\x${bytes[i].toString(16).toUpperCase().padStart(2, '0')}`;
        i += 1;
      }
    }
    return { text, lossy: true };
  }
}

/**
 * The path a shown path stands for (the inverse of displayName): `\\` is a backslash and `\xNN` the byte
 * NN. Text when the bytes are valid UTF-8, else a Buffer, which `fs` opens as it is.
 */
export function pathFromDisplay(text: string): string | Buffer {
  if (!ESCAPES_BACKSLASH || !text.includes('\\')) return text;
  const bytes: number[] = [];
  const utf8 = new TextEncoder();
  for (let i = 0; i < text.length;) {
    if (text[i] === '\\' && text[i + 1] === '\\') {
      bytes.push(0x5c);
      i += 2;
    } else if (text[i] === '\\' && text[i + 1] === 'x' && /^[0-9A-F]{2}$/.test(text.slice(i + 2, i + 4))) {
      bytes.push(parseInt(text.slice(i + 2, i + 4), 16));
      i += 4;
    } else {
      const char = String.fromCodePoint(text.codePointAt(i)!);
      bytes.push(...utf8.encode(char));
      i += char.length;
    }
  }
  const raw = Buffer.from(bytes);
  const decoded = tryDecode(raw);
  return decoded ?? raw;
}

function utf8SequenceLength(lead: number): number {
  if (lead < 0x80) return 1;
  if (lead >= 0xc2 && lead <= 0xdf) return 2;
  if (lead >= 0xe0 && lead <= 0xef) return 3;
  if (lead >= 0xf0 && lead <= 0xf4) return 4;
  return 0;
}

function tryDecode(bytes: Uint8Array): string | undefined {
  try {
    return strictUtf8.decode(bytes);
  } catch {
    return undefined;
  }
}
