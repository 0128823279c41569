/**
 * The eval report as one self-contained HTML page: no external requests, thumbnails inlined as data
 * URIs, and an inline SVG histogram of each model's scores on a shared axis.
 */
import { escapeHtml } from '../io/html-escape.js';
import type { EvalReport, Example, Histogram, Interval95, ModelSummary, SideBySide } from './report.js';

/** Returns a data: URI for an image path, or null when it cannot be read (the page shows the path instead). */
export type ThumbnailLoader = (path: string) => Promise<string | null>;

export async function renderHtml(report: EvalReport, thumbnail: ThumbnailLoader): Promise<string> {
  const memo = new Map<string, Promise<string | null>>();
  const thumb = (path: string): Promise<string | null> => {
    if (!memo.has(path)) memo.set(path, thumbnail(path).catch(() => null));
    return memo.get(path)!;
  };
  const sections = [
    report.incomplete ? '<p class="banner">Incomplete: the run was interrupted; the figures cover the rows scored before it stopped.</p>' : '',
    report.gate ? `<p class="gate ${report.gate.meanDiff === null ? 'undecided' : report.gate.worse ? 'fail' : 'pass'}" id="gate">${escapeHtml(report.gate.reason)}</p>` : '',
    modelsTable(report.models),
    ...(await Promise.all(report.models.map((m) => modelSection(m, thumb)))),
    ...(await Promise.all(report.comparisons.map(async (c) => `<section class="comparison">
<h2>${escapeHtml(c.candidate)} vs ${escapeHtml(c.baseline)}</h2>
<p>${c.prompts} shared prompts · win rate ${pct(c.winRate)} (${c.wins} wins, ${c.losses} losses, ${c.ties} ties) · mean difference ${num(c.meanDiff)}, 95% CI ${ci(c.ci95)} · sign test p = ${c.signTestP.toPrecision(3)}</p>
${await sideBySide('Largest gains', c.baseline, c.candidate, c.largestGains, thumb)}
${await sideBySide('Largest drops', c.baseline, c.candidate, c.largestDrops, thumb)}
</section>`))),
    pairwiseSection(report),
    errorsSection(report),
    `<details><summary>Provenance and settings</summary><pre>${escapeHtml(JSON.stringify({ provenance: report.provenance, settings: report.settings, manifests: report.manifests, counts: report.counts }, null, 2))}</pre></details>`,
  ];
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>PickScore eval</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>${STYLE}</style></head>
<body><h1>PickScore eval</h1>
${sections.filter((s) => s !== '').join('\n')}
</body></html>
`;
}

const STYLE = `body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#222}table{border-collapse:collapse;margin:8px 0}
td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}td.n{text-align:right;font-variant-numeric:tabular-nums}
.gate{font-weight:bold;padding:8px}.pass{background:#e6f4ea}.fail{background:#fce8e6}.undecided{background:#fff4ce}.banner{background:#fff4ce;padding:8px}
figure{display:inline-block;margin:4px;text-align:center;vertical-align:top;max-width:180px}figure img{max-width:160px;max-height:160px}
figcaption{font-size:12px;word-break:break-all}.pair{display:flex;gap:12px;align-items:flex-start;margin:6px 0}svg{background:#fafafa}`;

function modelsTable(models: ModelSummary[]): string {
  if (models.length === 0) return '';
  const rows = models.map((m) => `<tr><td>${escapeHtml(m.model)}</td><td class="n">${m.n}</td><td class="n">${num(m.mean)}</td><td class="n">${num(m.std)}</td><td class="n">${num(m.median)}</td><td>${ci(m.ci95)}</td><td class="n">${m.errors}</td></tr>`);
  return `<table id="models"><tr><th>model</th><th>n</th><th>mean</th><th>std</th><th>median</th><th>95% CI of the mean</th><th>errors</th></tr>
${rows.join('\n')}</table>`;
}

async function modelSection(m: ModelSummary, thumb: ThumbnailLoader): Promise<string> {
  return `<section class="model" data-model="${escapeHtml(m.model)}">
<h2>${escapeHtml(m.model)}</h2>
${histogramSvg(m.histogram, m.model)}
${await examples('Best', m.best, thumb)}
${await examples('Worst', m.worst, thumb)}
</section>`;
}

const SVG_WIDTH = 400;
const SVG_HEIGHT = 140;
const AXIS = 20;

function histogramSvg(h: Histogram, model: string): string {
  const tallest = Math.max(1, ...h.counts);
  const barWidth = SVG_WIDTH / h.counts.length;
  const plotHeight = SVG_HEIGHT - AXIS;
  const bars = h.counts.map((count, i) => {
    const height = (count / tallest) * (plotHeight - 4);
    return `<rect x="${(i * barWidth + 1).toFixed(1)}" y="${(plotHeight - height).toFixed(1)}" width="${(barWidth - 2).toFixed(1)}" height="${height.toFixed(1)}" fill="#4a7bd0"><title>${count}</title></rect>`;
  });
  return `<svg class="distribution" role="img" aria-label="score distribution of ${escapeHtml(model)}" width="${SVG_WIDTH}" height="${SVG_HEIGHT}" viewBox="0 0 ${SVG_WIDTH} ${SVG_HEIGHT}" xmlns="http://www.w3.org/2000/svg">
${bars.join('')}<line x1="0" y1="${plotHeight}" x2="${SVG_WIDTH}" y2="${plotHeight}" stroke="#555"/>
<text x="2" y="${SVG_HEIGHT - 4}" font-size="11">${h.low.toFixed(2)}</text><text x="${SVG_WIDTH - 2}" y="${SVG_HEIGHT - 4}" font-size="11" text-anchor="end">${h.high.toFixed(2)}</text></svg>`;
}

/** A titled row of examples; nothing when there are none (a model's few scores are all among its best). */
async function examples(title: string, list: Example[], thumb: ThumbnailLoader): Promise<string> {
  if (list.length === 0) return '';
  return `<h3>${title}</h3><div>${(await Promise.all(list.map((e) => figure(e, thumb)))).join('')}</div>`;
}

/** One image with its score; `model` labels a side of a comparison, whose row already names the prompt. */
async function figure(e: Example, thumb: ThumbnailLoader, model?: string): Promise<string> {
  const uri = await thumb(e.path);
  const picture = uri ? `<img src="${escapeHtml(uri)}" alt="${escapeHtml(e.image)}">` : `<div>(no preview)</div>`;
  const caption = model === undefined ? `${e.score.toFixed(3)} · ${escapeHtml(e.image)}<br>${escapeHtml(e.prompt)}` : `${escapeHtml(model)}: ${e.score.toFixed(3)}<br>${escapeHtml(e.image)}`;
  return `<figure>${picture}<figcaption>${caption}</figcaption></figure>`;
}

async function sideBySide(title: string, baseline: string, candidate: string, sides: SideBySide[], thumb: ThumbnailLoader): Promise<string> {
  if (sides.length === 0) return '';
  const rows = await Promise.all(sides.map(async (s) => `<div class="pair">${await figure(s.baseline, thumb, baseline)}${await figure(s.candidate, thumb, candidate)}<p>${escapeHtml(s.prompt)}<br>difference of prompt means ${s.diff >= 0 ? '+' : ''}${s.diff.toFixed(3)}</p></div>`));
  return `<h3>${title}</h3>${rows.join('\n')}`;
}

function pairwiseSection(report: EvalReport): string {
  const pw = report.pairwise;
  if (!pw) return '';
  const source = pw.validation ? `chosen on ${escapeHtml(pw.validation.manifest)} (${pw.validation.n} pairs)` : pw.thresholdSource;
  return `<section id="pairwise"><h2>Pairwise preference accuracy</h2><table>
<tr><th>protocol</th><th>accuracy</th><th>counts</th></tr>
<tr><td>paper (tie threshold ${pw.threshold}, ${source})</td><td class="n">${pct(pw.paper.accuracy)}</td><td>${pw.paper.points} points / ${pw.paper.n} pairs; ${pw.paper.tieLabels} tie labels; ${pw.paper.predictedTies} predicted ties</td></tr>
<tr><td>ties excluded</td><td class="n">${pct(pw.tiesExcluded.accuracy)}</td><td>${pw.tiesExcluded.correct} / ${pw.tiesExcluded.n} pairs</td></tr>
</table></section>`;
}

function errorsSection(report: EvalReport): string {
  if (report.errors.length === 0) return '';
  const rows = report.errors.map((e) => `<tr><td>${escapeHtml(e.image)}</td><td>${escapeHtml(e.error)}</td></tr>`);
  return `<section id="errors"><h2>Rows with errors</h2><table><tr><th>image</th><th>error</th></tr>${rows.join('')}</table></section>`;
}

function num(x: number | null): string {
  return x === null ? '–' : x.toFixed(3);
}

function pct(x: number | null): string {
  return x === null ? '–' : `${(100 * x).toFixed(1)}%`;
}

function ci(c: Interval95): string {
  return c.low === null || c.high === null ? '–' : `[${c.low.toFixed(3)}, ${c.high.toFixed(3)}]`;
}
