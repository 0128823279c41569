import { formatProb, formatScore, formatSize, type RankRecord } from './record.js';
import type { StreamingFormat } from './format.js';

/** A GitHub-flavoured Markdown table, one row per record, in the order the records arrive. */
export const markdownFormat: StreamingFormat = {
  header: () => '| rank | score | prob | size | path | prompt | error |\n| ---: | ---: | ---: | --- | --- | --- | --- |\n',
  row: (rec: RankRecord) =>
    `| ${[rec.rank === null ? '-' : String(rec.rank), formatScore(rec.score), formatProb(rec.prob), formatSize(rec), rec.path, rec.prompt, rec.error ?? '']
      .map(markdownCell)
      .join(' | ')} |\n`,
  footer: (incomplete: boolean) => (incomplete ? '\n**Incomplete:** the run was interrupted; rows above are what was done.\n' : ''),
};

/**
 * A table cell holds one line of literal text: pipes, and the punctuation that would start emphasis,
 * code, links or HTML, are backslash-escaped (CommonMark allows it before any ASCII punctuation);
 * line breaks become `<br>`.
 */
export function markdownCell(text: string): string {
  return text.replace(/[\\`*_[\]<>|~&]/g, '\\$&').replace(/\r\n|\r|\n/g, '<br>');
}
