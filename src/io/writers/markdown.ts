import { formatProb, formatScore, formatSize, scoreColumn, type RankRecord } from './record.js';
import type { StreamingFormat } from './format.js';

/**
 * A GitHub-flavoured Markdown table, one row per record, in the order the records arrive. A run of
 * several scorers adds a `score:<name>` column each after prob.
 */
export function markdownFormatWith(scorers: readonly string[]): StreamingFormat {
  const scorerHeads = scorers.map((name) => ` ${markdownCell(scoreColumn(name))} |`).join('');
  const scorerRule = scorers.map(() => ' ---: |').join('');
  return {
    header: () => `| rank | score | prob |${scorerHeads} size | path | prompt | error |\n| ---: | ---: | ---: |${scorerRule} --- | --- | --- | --- |\n`,
    row: (rec: RankRecord) =>
      `| ${[rec.rank === null ? '-' : String(rec.rank), formatScore(rec.score), formatProb(rec.prob),
        ...scorers.map((name) => formatScore(rec.scores?.[name] ?? null)), formatSize(rec), rec.path, rec.prompt, rec.error ?? '']
        .map(markdownCell)
        .join(' | ')} |\n`,
    footer: (incomplete: boolean) => (incomplete ? '\n**Incomplete:** the run was interrupted; rows above are what was done.\n' : ''),
  };
}

/** The table of a run of one scorer. */
export const markdownFormat: StreamingFormat = markdownFormatWith([]);

/**
 * A table cell holds one line of literal text: pipes, and the punctuation that would start emphasis,
 * code, links or HTML, are backslash-escaped (CommonMark allows it before any ASCII punctuation);
 * line breaks become `<br>`.
 */
export function markdownCell(text: string): string {
  return text.replace(/[\\`*_[\]<>|~&]/g, '\\$&').replace(/\r\n|\r|\n/g, '<br>');
}
