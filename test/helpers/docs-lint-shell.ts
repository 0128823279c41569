/**
 * Finds every `pickscore ...` invocation in shell text (scripts, YAML `run:`/`args:` blocks, Markdown
 * code blocks) as argument lists, split as the shell splits words. Enough of the shell for the
 * deployment docs: quotes, backslash-newline, comments, `;` `&&` `||` `|` `&` and `$(...)`, and
 * invocations nested in a quoted argument (`sbatch --wrap "pickscore merge ..."`). Variables stay as
 * written: `"$OUT/part-1.json"` is the word `$OUT/part-1.json`.
 */
export interface Invocation {
  args: string[]; // after `pickscore`
  text: string; // as written, for messages
}

const SEPARATORS = new Set([';', '&&', '||', '|', '&']);
/** Words after which the next word is again in command position. */
const PREFIXES = new Set(['exec', 'time', 'nice', 'then', 'do', 'else', 'if', 'while', 'until', '!', '{', '(']);

/** Splits shell text into simple commands, each a list of words. */
export function shellCommands(text: string): string[][] {
  const commands: string[][] = [[]];
  let word: string | null = null;
  const endWord = (): void => {
    if (word !== null) commands[commands.length - 1].push(word);
    word = null;
  };
  const endCommand = (): void => {
    endWord();
    if (commands[commands.length - 1].length > 0) commands.push([]);
  };
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === '\\' && text[i + 1] === '\n') {
      i++;
      continue;
    }
    if (c === '\\') {
      word = (word ?? '') + (text[i + 1] ?? '');
      i++;
    } else if (c === "'") {
      const end = text.indexOf("'", i + 1);
      if (end < 0) throw new Error(`unterminated single quote in: ${text.slice(i, i + 60)}`);
      word = (word ?? '') + text.slice(i + 1, end);
      i = end;
    } else if (c === '"') {
      let j = i + 1;
      let value = '';
      for (; j < text.length && text[j] !== '"'; j++) {
        if (text[j] === '\\' && '"\\$`\n'.includes(text[j + 1])) j++;
        value += text[j];
      }
      if (j >= text.length) throw new Error(`unterminated double quote in: ${text.slice(i, i + 60)}`);
      word = (word ?? '') + value;
      i = j;
    } else if (c === '$' && text[i + 1] === '(') {
      let depth = 0;
      let j = i + 1;
      for (; j < text.length; j++) {
        if (text[j] === '(') depth++;
        else if (text[j] === ')' && --depth === 0) break;
      }
      word = (word ?? '') + text.slice(i, j + 1);
      i = j;
    } else if (c === '#' && word === null) {
      while (i < text.length && text[i] !== '\n') i++;
      endCommand();
    } else if (c === '\n') {
      endCommand();
    } else if (c === ' ' || c === '\t') {
      endWord();
    } else if (SEPARATORS.has(text.slice(i, i + 2)) || SEPARATORS.has(c) || c === ')') {
      if (text.slice(i, i + 2) === '&&' || text.slice(i, i + 2) === '||') i++;
      endCommand();
    } else if (c === '>' || c === '<') {
      // A redirection: its target is not an argument.
      endWord();
      while (text[i + 1] === '>' || text[i + 1] === ' ') i++;
      let j = i + 1;
      while (j < text.length && !/[\s;&|)]/.test(text[j])) j++;
      i = j - 1;
    } else {
      word = (word ?? '') + c;
    }
  }
  endCommand();
  return commands.filter((command) => command.length > 0);
}

/** Every `pickscore` invocation in the text, including ones inside a quoted argument. */
export function findInvocations(text: string): Invocation[] {
  const found: Invocation[] = [];
  for (const words of shellCommands(text)) {
    let start = 0;
    while (start < words.length && (PREFIXES.has(words[start]) || /^[A-Za-z_][A-Za-z0-9_]*=/.test(words[start]))) start++;
    if (words[start] === 'npx') {
      start++;
      while (words[start]?.startsWith('-')) start++;
    }
    if (words[start] === 'pickscore') found.push({ args: words.slice(start + 1), text: words.slice(start).join(' ') });
    for (const word of words) {
      for (const nested of [...commandSubstitutions(word), ...(/^pickscore\s/.test(word) ? [word] : [])]) found.push(...findInvocations(nested));
    }
  }
  return found;
}

/** The commands inside each `$(...)` of a word. */
function commandSubstitutions(word: string): string[] {
  const inner: string[] = [];
  for (let i = word.indexOf('$('); i >= 0; i = word.indexOf('$(', i + 2)) {
    let depth = 0;
    for (let j = i + 1; j < word.length; j++) {
      if (word[j] === '(') depth++;
      else if (word[j] === ')' && --depth === 0) {
        inner.push(word.slice(i + 2, j));
        break;
      }
    }
  }
  return inner;
}

/** The fenced code blocks of a Markdown file whose language is a shell. */
export function markdownShellBlocks(markdown: string): string[] {
  const blocks: string[] = [];
  const fence = /^```(\w*)\n([\s\S]*?)^```$/gm;
  for (let match = fence.exec(markdown); match; match = fence.exec(markdown)) {
    if (['sh', 'bash', 'shell'].includes(match[1])) blocks.push(match[2]);
  }
  return blocks;
}
