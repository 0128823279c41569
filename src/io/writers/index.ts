/**
 * Rank output writers. `openRankWriter(format, target, meta)` returns `{ write, finish, abort }`.
 *
 * Records arrive complete and in their final order. Ranks and probabilities need every score of a
 * prompt, so the caller (the `rank` command) collects the numeric records first (about 100 bytes
 * each, no pixels), ranks them per prompt, and then writes them. csv, jsonl, json and md are written
 * row by row as they arrive, so the writer holds no rows; the terminal table and the HTML gallery
 * need all rows (column widths, grouping) and hold them until `finish`.
 *
 * A file target appears only through an atomic rename at `finish`; `abort` (or a failure such as a
 * full disk) leaves any previous file untouched. A stream target (stdout) is written as rows arrive
 * and never ended here.
 */
import { InternalError } from '../../errors.js';
import { renderGallery, type ThumbnailFn } from '../html-gallery.js';
import { renderTable } from '../table.js';
import { csvFormat } from './csv.js';
import type { StreamingFormat } from './format.js';
import { jsonFormat, jsonlFormat } from './json.js';
import { markdownFormatWith } from './markdown.js';
import type { RankRecord } from './record.js';
import { openSink, type OutputSink, type WriterTarget } from './sink.js';

export type { RankRecord } from './record.js';
export type { WriterTarget } from './sink.js';
export { JSON_SCHEMA_VERSION } from './json.js';

import type { OutputFormat } from './formats.js';

export { FORMAT_BY_EXTENSION, OUTPUT_FORMATS, type OutputFormat } from './formats.js';

export interface WriterMeta {
  /** Written into the JSON document and the gallery footer; see Provenance in src/pipeline. */
  provenance?: object | null;
  /** Adds a `contentHash` column to csv (json and jsonl carry it whenever a record has one). */
  contentHash?: boolean;
  /** Gallery page title. */
  title?: string;
  /** Gallery thumbnails: needed by the html format (src/image/thumbnail.ts makes them as the run read the images). */
  thumbnail?: ThumbnailFn;
}

export interface RankWriter {
  write(rec: RankRecord): Promise<void>;
  /** Ends the output; `incomplete` marks an interrupted run (json field, md/html/table note). */
  finish(opts: { incomplete: boolean }): Promise<void>;
  /** Drops the output: a file target keeps its previous content. Safe after a failed write. */
  abort(): Promise<void>;
}

export async function openRankWriter(format: OutputFormat, target: WriterTarget, meta: WriterMeta = {}): Promise<RankWriter> {
  if (format === 'html' && !meta.thumbnail) throw new InternalError('The HTML gallery was asked for without a thumbnail function');
  const sink = await openSink(target);
  const streaming = streamingFormat(format, meta);
  return streaming ? streamingWriter(streaming, sink) : bufferedWriter(format as 'html' | 'table', sink, meta);
}

function streamingFormat(format: OutputFormat, meta: WriterMeta): StreamingFormat | undefined {
  switch (format) {
    case 'csv':
      return csvFormat(meta.contentHash ?? false, scorerNames(meta.provenance));
    case 'json':
      return jsonFormat(meta.provenance ?? null);
    case 'jsonl':
      return jsonlFormat;
    case 'md':
      return markdownFormatWith(scorerNames(meta.provenance));
    default:
      return undefined;
  }
}

/** The scorers of a run of several (provenance.scorers), whose scores csv and md write one column each. */
function scorerNames(provenance: object | null | undefined): string[] {
  const scorers = (provenance as { scorers?: unknown } | null | undefined)?.scorers;
  return Array.isArray(scorers) ? scorers.map((s) => String((s as { scorer?: unknown }).scorer)) : [];
}

function streamingWriter(format: StreamingFormat, sink: OutputSink): RankWriter {
  let started = false;
  const start = async (): Promise<void> => {
    if (!started) await sink.write(format.header());
    started = true;
  };
  return guarded(sink, {
    async write(rec) {
      await start();
      await sink.write(format.row(rec));
    },
    async finish({ incomplete }) {
      await start();
      await sink.write(format.footer(incomplete));
      await sink.commit();
    },
  });
}

function bufferedWriter(format: 'html' | 'table', sink: OutputSink, meta: WriterMeta): RankWriter {
  const records: RankRecord[] = [];
  return guarded(sink, {
    async write(rec) {
      records.push(rec);
    },
    async finish({ incomplete }) {
      if (format === 'table') await sink.write(renderTable(records, { incomplete }));
      else await renderGallery(records, { title: meta.title, provenance: meta.provenance, incomplete, thumbnail: meta.thumbnail! }, (html) => sink.write(html));
      await sink.commit();
    },
  });
}

/** Any failure while writing aborts the sink, so no temporary file outlives the error. */
function guarded(sink: OutputSink, writer: Omit<RankWriter, 'abort'>): RankWriter {
  let closed = false;
  const run = async (step: () => Promise<void>): Promise<void> => {
    if (closed) throw new InternalError('The rank writer was already finished or aborted');
    try {
      await step();
    } catch (err) {
      closed = true;
      await sink.abort();
      throw err;
    }
  };
  return {
    write: (rec) => run(() => writer.write(rec)),
    finish: (opts) =>
      run(async () => {
        await writer.finish(opts);
        closed = true;
      }),
    async abort() {
      closed = true;
      await sink.abort();
    },
  };
}
