/**
 * A strict parser for the subset of YAML that the deployment docs use (no YAML library is a
 * dependency): block mappings and sequences, plain and quoted scalars, `|`/`|-` literal blocks,
 * one-line flow sequences, comments and `---` document separators. Anything outside the subset
 * (anchors, tags, folded blocks, tabs, multi-line flow collections, duplicate keys) is an error with
 * its line number, so a doc edited beyond what this checks fails loudly instead of passing unread.
 * Scalars resolve as YAML 1.2's core schema does (true/false only; `on` stays a string).
 */
export type YamlValue = string | number | boolean | null | YamlValue[] | { [key: string]: YamlValue };

interface Line {
  number: number; // 1-based, in the file
  indent: number;
  text: string; // without indentation and trailing comment
  raw: string;
}

export class YamlSubsetError extends Error {}

function fail(line: { number: number }, message: string): never {
  throw new YamlSubsetError(`line ${line.number}: ${message}`);
}

/** Removes a trailing `# comment` that is outside quotes. */
function stripComment(text: string): string {
  let quote: string | null = null;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (quote) {
      if (c === '\\' && quote === '"') i++;
      else if (c === quote) quote = null;
    } else if (c === '"' || c === "'") {
      if (i === 0 || /[\s:[{,-]/.test(text[i - 1])) quote = c;
    } else if (c === '#' && (i === 0 || /\s/.test(text[i - 1]))) {
      return text.slice(0, i).trimEnd();
    }
  }
  return text.trimEnd();
}

export function parseYamlDocuments(source: string): YamlValue[] {
  const documents: string[][] = [[]];
  for (const raw of source.split('\n')) {
    if (/^---\s*$/.test(raw)) documents.push([]);
    else documents[documents.length - 1].push(raw);
  }
  let offset = 0;
  const out: YamlValue[] = [];
  for (const rawLines of documents) {
    const parser = new Parser(rawLines, offset);
    offset += rawLines.length + 1;
    const value = parser.parseDocument();
    if (value !== undefined) out.push(value);
  }
  return out;
}

class Parser {
  private readonly lines: (Line | null)[];
  private pos = 0;

  constructor(
    private readonly raw: string[],
    offset: number,
  ) {
    this.lines = raw.map((text, i) => {
      const number = offset + i + 1;
      if (/^\s*\t/.test(text)) fail({ number }, 'tab in indentation');
      const indent = text.length - text.trimStart().length;
      const body = stripComment(text.slice(indent));
      return body === '' ? null : { number, indent, text: body, raw: text };
    });
  }

  parseDocument(): YamlValue | undefined {
    const first = this.peek();
    if (!first) return undefined;
    const value = this.parseBlock(first.indent);
    const rest = this.peek();
    if (rest) fail(rest, `unexpected content at indent ${rest.indent}: ${rest.text}`);
    return value;
  }

  private peek(): Line | null {
    while (this.pos < this.lines.length && this.lines[this.pos] === null) this.pos++;
    return this.pos < this.lines.length ? this.lines[this.pos] : null;
  }

  private parseBlock(indent: number): YamlValue {
    const line = this.peek();
    if (!line) throw new YamlSubsetError('unexpected end of document');
    if (line.indent !== indent) fail(line, `expected indent ${indent}, found ${line.indent}`);
    return line.text === '-' || line.text.startsWith('- ') ? this.parseSequence(indent) : this.parseMapping(indent);
  }

  private parseSequence(indent: number): YamlValue[] {
    const items: YamlValue[] = [];
    for (let line = this.peek(); line && line.indent === indent && (line.text === '-' || line.text.startsWith('- ')); line = this.peek()) {
      const rest = line.text.slice(1).trimStart();
      if (rest === '') {
        this.pos++;
        const next = this.peek();
        if (!next || next.indent <= indent) fail(line, 'empty sequence item');
        items.push(this.parseBlock(next.indent));
        continue;
      }
      // The item's content starts after "- ": re-read this line as if it began at that column.
      const column = indent + (line.text.length - rest.length);
      this.lines[this.pos] = { ...line, indent: column, text: rest };
      if (isMappingEntry(rest)) items.push(this.parseMapping(column));
      else {
        this.pos++;
        // A block scalar here belongs to the item: its lines are indented beyond the dash.
        items.push(this.inlineValue(rest, line, indent));
      }
    }
    return items;
  }

  private parseMapping(indent: number): { [key: string]: YamlValue } {
    const map: { [key: string]: YamlValue } = {};
    for (let line = this.peek(); line && line.indent === indent; line = this.peek()) {
      if (line.text.startsWith('- ') || line.text === '-') fail(line, 'sequence item where a mapping key was expected');
      const entry = splitMappingEntry(line);
      if (Object.prototype.hasOwnProperty.call(map, entry.key)) fail(line, `duplicate key "${entry.key}"`);
      this.pos++;
      if (entry.value !== '') {
        map[entry.key] = this.inlineValue(entry.value, line, indent);
        continue;
      }
      const next = this.peek();
      if (next && next.indent > indent) map[entry.key] = this.parseBlock(next.indent);
      else if (next && next.indent === indent && (next.text.startsWith('- ') || next.text === '-')) map[entry.key] = this.parseSequence(indent);
      else map[entry.key] = null;
    }
    const line = this.peek();
    if (line && line.indent > indent) fail(line, `unexpected indent ${line.indent} inside a mapping at indent ${indent}`);
    return map;
  }

  /** A value on the same line as its key or dash: a scalar, a flow sequence, or a block scalar header. */
  private inlineValue(text: string, line: Line, indent: number): YamlValue {
    if (/^[|>][+-]?$/.test(text)) {
      if (text.startsWith('>')) fail(line, 'folded block scalars (>) are outside the supported subset; use |');
      return this.literalBlock(indent, text.endsWith('-'), line);
    }
    if (text.startsWith('[')) return parseFlowSequence(text, line);
    if (text.startsWith('{')) {
      if (text === '{}') return {};
      fail(line, 'flow mappings are outside the supported subset');
    }
    if (/^[&*!]/.test(text)) fail(line, 'anchors, aliases and tags are outside the supported subset');
    return parseScalar(text, line);
  }

  /** Lines of a `|` block: everything more indented than its key, raw (comments are content here). */
  private literalBlock(parentIndent: number, strip: boolean, header: Line): string {
    const collected: string[] = [];
    let blockIndent = -1;
    while (this.pos < this.raw.length) {
      const raw = this.raw[this.pos];
      if (raw.trim() === '') {
        collected.push('');
        this.pos++;
        continue;
      }
      const indent = raw.length - raw.trimStart().length;
      if (indent <= parentIndent) break;
      if (blockIndent < 0) blockIndent = indent;
      if (indent < blockIndent) fail({ number: header.number + collected.length + 1 }, 'literal block line less indented than its first line');
      collected.push(raw.slice(blockIndent));
      this.pos++;
    }
    while (collected.length > 0 && collected[collected.length - 1] === '') collected.pop();
    if (collected.length === 0) fail(header, 'empty literal block');
    const body = collected.join('\n');
    return strip ? body : `${body}\n`;
  }
}

function isMappingEntry(text: string): boolean {
  if (text.startsWith('"') || text.startsWith("'")) return /^("[^"]*"|'[^']*')\s*:(\s|$)/.test(text);
  return /^[^\s:[\]{},#&*!|>'"%@`][^:]*?:(\s|$)/.test(text);
}

function splitMappingEntry(line: Line): { key: string; value: string } {
  if (!isMappingEntry(line.text)) fail(line, `expected "key: value", found ${line.text}`);
  const quoted = /^("[^"]*"|'[^']*')\s*:/.exec(line.text);
  const keyText = quoted ? quoted[1] : line.text.slice(0, line.text.search(/:(\s|$)/));
  const key = quoted ? String(parseScalar(keyText, line)) : keyText.trim();
  const value = line.text.slice(line.text.indexOf(':', keyText.length) + 1).trim();
  return { key, value };
}

function parseFlowSequence(text: string, line: Line): YamlValue[] {
  if (!text.endsWith(']')) fail(line, 'flow sequences must close on their own line');
  const inner = text.slice(1, -1).trim();
  if (inner === '') return [];
  if (/[[\]{}]/.test(inner)) fail(line, 'nested flow collections are outside the supported subset');
  const parts: string[] = [];
  let current = '';
  let quote: string | null = null;
  for (const c of inner) {
    if (quote) {
      if (c === quote) quote = null;
    } else if (c === '"' || c === "'") quote = c;
    else if (c === ',') {
      parts.push(current.trim());
      current = '';
      continue;
    }
    current += c;
  }
  parts.push(current.trim());
  return parts.map((part) => parseScalar(part, line));
}

function parseScalar(text: string, line: Line): YamlValue {
  if (text.startsWith('"')) {
    if (!/^"(?:[^"\\]|\\.)*"$/.test(text)) fail(line, `unterminated or trailing text after a double-quoted string: ${text}`);
    try {
      return JSON.parse(text) as string;
    } catch {
      fail(line, `escape outside the supported subset in ${text}`);
    }
  }
  if (text.startsWith("'")) {
    if (!/^'(?:[^']|'')*'$/.test(text)) fail(line, `unterminated or trailing text after a single-quoted string: ${text}`);
    return text.slice(1, -1).replace(/''/g, "'");
  }
  if (/^[&*!%@`]/.test(text)) fail(line, `indicator character at the start of a plain scalar: ${text}`);
  if (/:\s/.test(text)) fail(line, `": " inside a plain scalar (quote it): ${text}`);
  if (/^(null|Null|NULL|~)$/.test(text)) return null;
  if (/^(true|True|TRUE)$/.test(text)) return true;
  if (/^(false|False|FALSE)$/.test(text)) return false;
  if (/^[-+]?[0-9]+$/.test(text)) return Number(text);
  if (/^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$/.test(text)) return Number(text);
  return text;
}
