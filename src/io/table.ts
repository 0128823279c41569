/**
 * The readable table `rank` prints on a terminal: one block per prompt, fixed-width numeric columns,
 * the path last so a long path never pushes the numbers out of line. Control characters in paths,
 * prompts and errors are shown escaped, so a file name cannot move the cursor or inject colours.
 */
import { formatProb, formatScore, formatSize, scoreColumn, recordScorers, type RankRecord } from './writers/record.js';

const HEADINGS = ['rank', 'score', 'prob', 'size', 'path'] as const;

export function renderTable(records: readonly RankRecord[], opts: { incomplete?: boolean } = {}): string {
  // With several scorers, a `score:<name>` column each after prob (the first is `score` too, which ranks).
  const scorers = recordScorers(records);
  const headings = [...HEADINGS.slice(0, 3), ...scorers.map((name) => terminalSafe(scoreColumn(name))), ...HEADINGS.slice(3)];
  const numeric = 3 + scorers.length;
  const cells = records.map((rec) => [rec.rank === null ? '-' : String(rec.rank), formatScore(rec.score), formatProb(rec.prob),
    ...scorers.map((name) => formatScore(rec.scores?.[name] ?? null)), formatSize(rec), terminalSafe(rec.path)]);
  const widths = headings.map((heading, column) => Math.max(heading.length, ...cells.map((row) => row[column].length)));
  const line = (row: readonly string[]): string =>
    row
      .map((cell, column) => (column < numeric ? cell.padStart(widths[column]) : column === row.length - 1 ? cell : cell.padEnd(widths[column])))
      .join('  ');

  const out: string[] = [];
  let currentPrompt: string | undefined;
  records.forEach((rec, i) => {
    if (rec.prompt !== currentPrompt) {
      if (currentPrompt !== undefined) out.push('');
      currentPrompt = rec.prompt;
      out.push(`prompt: ${terminalSafe(rec.prompt)}`, line(headings));
    }
    out.push(line(cells[i]) + (rec.error === null ? '' : `  error: ${terminalSafe(rec.error)}`));
  });
  if (opts.incomplete) out.push('', 'incomplete: the run was interrupted; the rows above are what was done');
  return out.length === 0 ? '' : `${out.join('\n')}\n`;
}

const CONTROL_ESCAPES: Record<string, string> = { '\n': '\\n', '\r': '\\r', '\t': '\\t' };

/** C0 and C1 control characters (newlines, ESC) shown as `\n` or `\xNN`. */
export function terminalSafe(text: string): string {
  return text.replace(/[\u0000-\u001f\u007f-\u009f]/g, (c) => CONTROL_ESCAPES[c] ?? `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`);
}
