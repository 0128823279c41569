/**
 * The self-contained HTML gallery: one section per prompt, thumbnails in rank order with rank, score
 * and probability. Thumbnails are data URIs and a Content-Security-Policy forbids every other source,
 * so the page makes no network request. It follows the reader's light or dark colour scheme.
 */
import { pathFromDisplay } from './path-text.js';
import { escapeHtml } from './html-escape.js';
import type { FilePath } from './regular-file.js';
import { groupBy } from '../score/rank.js';
import { formatProb, formatScore, formatSize, type RankRecord } from './writers/record.js';

/** Returns a `data:` URI for the image at this record's path; may throw (the card then has no preview). */
export type ThumbnailFn = (rec: RankRecord) => Promise<string>;

export interface GalleryOptions {
  title?: string;
  provenance?: object | null;
  incomplete?: boolean;
  thumbnail: ThumbnailFn;
}

/** The longest side of the gallery's thumbnails. */
export const THUMBNAIL_MAX_SIDE = 256;

/**
 * A thumbnail function over records from one over files (src/image/thumbnail.ts makes those): the path
 * is the shown form, so a name that is not UTF-8 opens by its bytes.
 */
export function recordThumbnails(make: (file: FilePath) => Promise<string>): ThumbnailFn {
  return (rec) => make(pathFromDisplay(rec.path));
}

/**
 * Renders the page, handing it to `emit` card by card as it goes, so the output streams to its file.
 * Thumbnails are made ahead of the cards, several at once (ThumbnailQueue), since making them one after
 * the other was most of the final write's time.
 */
export async function renderGallery(records: readonly RankRecord[], opts: GalleryOptions, emit: (html: string) => Promise<void>): Promise<void> {
  const title = opts.title ?? 'pickscore ranking';
  const groups = groupByPrompt(records);
  const thumbnails = new ThumbnailQueue([...groups.values()].flat(), opts.thumbnail);

  await emit(pageHead(title, opts.incomplete ?? false));
  for (const [prompt, group] of groups) {
    await emit(`<section class="prompt"><h2><span class="label">Prompt</span> ${escapeHtml(prompt)}</h2>\n<ol class="gallery">\n`);
    for (const rec of group) await emit(card(rec, await thumbnails.next()));
    await emit('</ol></section>\n');
  }
  await emit(`${provenanceFooter(opts.provenance ?? null)}</body>\n</html>\n`);
}

/** Thumbnails being made at once: enough to keep libuv's threads (file reads, sharp) busy. */
export const THUMBNAILS_IN_FLIGHT = 8;

/**
 * Bytes of finished thumbnails kept for an image's later cards (the same image under another prompt).
 * Past this, a thumbnail is made again when its next card comes, so memory stays bounded however many
 * images and prompts the page has.
 */
const KEPT_THUMBNAIL_BYTES = 64 * 1024 * 1024;

/**
 * The cards' thumbnails in card order: the current card's and those of the cards after it, up to
 * THUMBNAILS_IN_FLIGHT cards in all, are being made while the page waits for the current one. An image's thumbnail is made once for all its cards while it fits in the kept
 * budget, and dropped after its last card.
 */
class ThumbnailQueue {
  private readonly started = new Map<string, Promise<string | null>>();
  private readonly cardsLeft = new Map<string, number>();
  private readonly keptBytes = new Map<string, number>();
  private totalKeptBytes = 0;
  private nextCard = 0;
  private nextStart = 0;

  constructor(private readonly cards: readonly RankRecord[], private readonly make: ThumbnailFn) {
    for (const rec of cards) if (rec.error === null) this.cardsLeft.set(rec.path, (this.cardsLeft.get(rec.path) ?? 0) + 1);
  }

  /** The next card's thumbnail (null: an error row, or one that could not be made). */
  async next(): Promise<string | null> {
    const index = this.nextCard++;
    const rec = this.cards[index];
    for (; this.nextStart < Math.min(this.cards.length, index + THUMBNAILS_IN_FLIGHT); this.nextStart++) this.start(this.cards[this.nextStart]);
    if (rec.error !== null) return null;
    const uri = await this.start(rec);
    const left = this.cardsLeft.get(rec.path)! - 1;
    this.cardsLeft.set(rec.path, left);
    if (left === 0 || !this.keep(rec.path, uri)) this.drop(rec.path);
    return uri;
  }

  private start(rec: RankRecord): Promise<string | null> {
    let uri = this.started.get(rec.path);
    if (rec.error === null && !uri) {
      uri = this.make(rec).catch(() => null);
      this.started.set(rec.path, uri);
    }
    return uri ?? Promise.resolve(null);
  }

  /** Whether a thumbnail still needed by a later card fits in the budget. */
  private keep(file: string, uri: string | null): boolean {
    if (this.keptBytes.has(file)) return true;
    const bytes = uri?.length ?? 0;
    if (this.totalKeptBytes + bytes > KEPT_THUMBNAIL_BYTES) return false;
    this.keptBytes.set(file, bytes);
    this.totalKeptBytes += bytes;
    return true;
  }

  private drop(file: string): void {
    this.started.delete(file);
    this.totalKeptBytes -= this.keptBytes.get(file) ?? 0;
    this.keptBytes.delete(file);
  }
}

/** Prompts in first-seen order; within one, by rank, with unranked (error) rows last in arrival order. */
function groupByPrompt(records: readonly RankRecord[]): Map<string, RankRecord[]> {
  const groups = groupBy(records, (rec) => rec.prompt);
  for (const group of groups.values()) group.sort((a, b) => (a.rank ?? Infinity) - (b.rank ?? Infinity));
  return groups;
}

function card(rec: RankRecord, uri: string | null): string {
  const preview = uri ? `<img src="${escapeHtml(uri)}" alt="${escapeHtml(rec.path)}">` : `<div class="no-preview">${rec.error ? 'not scored' : 'no preview'}</div>`;
  const facts = rec.error === null
    ? `<span class="rank">#${rec.rank ?? '-'}</span> <span class="score" title="score">${formatScore(rec.score)}</span> <span class="prob" title="probability">p ${formatProb(rec.prob)}</span>${scorerScores(rec)} <span class="size">${formatSize(rec)}</span>`
    : `<span class="error">${escapeHtml(rec.error)}</span>`;
  const data = `data-rank="${rec.rank ?? ''}" data-score="${rec.score ?? ''}" data-prob="${rec.prob ?? ''}"`;
  return `<li class="card${rec.error === null ? '' : ' failed'}" ${data}><figure>${preview}<figcaption>${facts}<span class="path">${escapeHtml(rec.path)}</span></figcaption></figure></li>\n`;
}

/** With several scorers, each one's score, named (ranked by the first, which is also `score`); '' for one scorer. */
function scorerScores(rec: RankRecord): string {
  if (rec.scores === undefined) return '';
  return Object.entries(rec.scores)
    .map(([name, value]) => ` <span class="scorer" data-scorer="${escapeHtml(name)}" data-score="${value ?? ''}" title="${escapeHtml(name)} score">${escapeHtml(name)} ${formatScore(value)}</span>`)
    .join('');
}

function provenanceFooter(provenance: object | null): string {
  if (provenance === null) return '';
  const rows = Object.entries(provenance)
    .filter(([, value]) => value === null || typeof value !== 'object')
    .map(([key, value]) => `<dt>${escapeHtml(key)}</dt><dd>${escapeHtml(String(value))}</dd>`)
    .join('');
  return `<footer><details><summary>Provenance</summary><dl>${rows}</dl></details></footer>\n`;
}

function pageHead(title: string, incomplete: boolean): string {
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; img-src data:; style-src 'unsafe-inline'">
<meta name="color-scheme" content="light dark">
<title>${escapeHtml(title)}</title>
<style>${GALLERY_CSS}</style>
</head>
<body>
<header><h1>${escapeHtml(title)}</h1>${incomplete ? '<p class="incomplete">Incomplete: the run was interrupted; this page shows what was done.</p>' : ''}</header>
`;
}

const GALLERY_CSS = `
:root { color-scheme: light dark; --bg: #fafafa; --fg: #1b1b1b; --card: #ffffff; --muted: #5c5c5c; --accent: #0b57d0; --bad: #b3261e; --line: #d8d8d8; }
@media (prefers-color-scheme: dark) { :root { --bg: #121212; --fg: #ececec; --card: #1e1e1e; --muted: #b0b0b0; --accent: #8ab4f8; --bad: #f2b8b5; --line: #3a3a3a; } }
body { margin: 0 auto; max-width: 1400px; padding: 1rem 1.5rem; background: var(--bg); color: var(--fg); font: 14px/1.4 system-ui, sans-serif; }
h1 { font-size: 1.4rem; margin: 0.5rem 0; } h2 { font-size: 1.1rem; margin: 1.5rem 0 0.5rem; overflow-wrap: anywhere; }
h2 .label { color: var(--muted); font-weight: normal; }
.incomplete { color: var(--bad); font-weight: bold; }
.gallery { list-style: none; margin: 0; padding: 0; display: grid; grid-template-columns: repeat(auto-fill, minmax(200px, 1fr)); gap: 12px; }
.card figure { margin: 0; background: var(--card); border: 1px solid var(--line); border-radius: 8px; overflow: hidden; }
.card img, .no-preview { display: block; width: 100%; height: 200px; object-fit: contain; background: var(--line); }
.no-preview { display: flex; align-items: center; justify-content: center; color: var(--muted); }
figcaption { padding: 6px 8px; display: flex; flex-wrap: wrap; gap: 2px 8px; align-items: baseline; }
.rank { font-weight: bold; color: var(--accent); } .score { font-weight: bold; font-variant-numeric: tabular-nums; }
.prob, .size { color: var(--muted); font-variant-numeric: tabular-nums; }
.path { flex-basis: 100%; color: var(--muted); font-size: 12px; overflow-wrap: anywhere; white-space: pre-wrap; }
.error { color: var(--bad); overflow-wrap: anywhere; }
footer { margin-top: 2rem; color: var(--muted); } dl { display: grid; grid-template-columns: max-content 1fr; gap: 2px 12px; } dd { margin: 0; overflow-wrap: anywhere; }
`;

