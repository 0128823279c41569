/**
 * The self-contained HTML gallery: one section per prompt, thumbnails in rank order with rank, score
 * and probability. Thumbnails are data URIs and a Content-Security-Policy forbids every other source,
 * so the page makes no network request. It follows the reader's light or dark colour scheme.
 */
import { thumbnailDataUri } from '../image/codec.js';
import { pathFromDisplay } from './path-text.js';
import { escapeHtml } from './html-escape.js';
import { READ_LIMITS, readRegularFile } from './regular-file.js';
import { groupBy } from '../score/rank.js';
import { formatProb, formatScore, formatSize, type RankRecord } from './writers/record.js';

/** Returns a `data:` URI for the image at this record's path; may throw (the card then has no preview). */
export type ThumbnailFn = (rec: RankRecord) => Promise<string>;

export interface GalleryOptions {
  title?: string;
  provenance?: object | null;
  incomplete?: boolean;
  thumbnail?: ThumbnailFn;
}

export const THUMBNAIL_MAX_SIDE = 256;

/**
 * Reads the image and makes a JPEG thumbnail through the image codec (EXIF orientation applied). The
 * record's path is the shown form, so a name that is not UTF-8 opens by its bytes, and a FIFO or a
 * huge file is refused (regular-file.ts) rather than stall the page.
 */
export const codecThumbnail: ThumbnailFn = async (rec) =>
  thumbnailDataUri(await readRegularFile(pathFromDisplay(rec.path), READ_LIMITS.image, 'an image'), THUMBNAIL_MAX_SIDE, 'apply');

/**
 * Renders the page, handing it to `emit` a piece at a time: thumbnails are made one image at a time,
 * and each is made once even when the image appears under several prompts.
 */
export async function renderGallery(records: readonly RankRecord[], opts: GalleryOptions, emit: (html: string) => Promise<void>): Promise<void> {
  const title = opts.title ?? 'pickscore ranking';
  const thumbnail = opts.thumbnail ?? codecThumbnail;
  const thumbnails = new Map<string, string | null>();
  const uriFor = async (rec: RankRecord): Promise<string | null> => {
    if (!thumbnails.has(rec.path)) thumbnails.set(rec.path, await thumbnail(rec).catch(() => null));
    return thumbnails.get(rec.path) ?? null;
  };

  await emit(pageHead(title, opts.incomplete ?? false));
  for (const [prompt, group] of groupByPrompt(records)) {
    await emit(`<section class="prompt"><h2><span class="label">Prompt</span> ${escapeHtml(prompt)}</h2>\n<ol class="gallery">\n`);
    for (const rec of group) await emit(card(rec, rec.error === null ? await uriFor(rec) : null));
    await emit('</ol></section>\n');
  }
  await emit(`${provenanceFooter(opts.provenance ?? null)}</body>\n</html>\n`);
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
    ? `<span class="rank">#${rec.rank ?? '-'}</span> <span class="score" title="score">${formatScore(rec.score)}</span> <span class="prob" title="probability">p ${formatProb(rec.prob)}</span> <span class="size">${formatSize(rec)}</span>`
    : `<span class="error">${escapeHtml(rec.error)}</span>`;
  const data = `data-rank="${rec.rank ?? ''}" data-score="${rec.score ?? ''}" data-prob="${rec.prob ?? ''}"`;
  return `<li class="card${rec.error === null ? '' : ' failed'}" ${data}><figure>${preview}<figcaption>${facts}<span class="path">${escapeHtml(rec.path)}</span></figcaption></figure></li>\n`;
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

