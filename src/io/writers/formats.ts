/** The rank output formats and the `--out` extensions they are told by: names only, so the CLI can list them without loading a writer. */
export const OUTPUT_FORMATS = ['csv', 'json', 'jsonl', 'md', 'html', 'table'] as const;
export type OutputFormat = (typeof OUTPUT_FORMATS)[number];

/** The `--out` extensions each format is recognised by. */
export const FORMAT_BY_EXTENSION: Readonly<Record<string, OutputFormat>> = {
  '.csv': 'csv', '.json': 'json', '.jsonl': 'jsonl', '.ndjson': 'jsonl', '.md': 'md', '.markdown': 'md',
  '.html': 'html', '.htm': 'html', '.txt': 'table',
};
