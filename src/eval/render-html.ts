/**
 * The eval report as one self-contained HTML page, the artefact a CI pipeline publishes for a person
 * comparing checkpoints: the gate's verdict first, then how each model compares with the baseline (a
 * table, a forest plot, the score distributions on one axis), the per-prompt grid of images with the
 * largest regressions first, the pairs a pairwise manifest got wrong, and the provenance last.
 *
 * The page makes no request: images are data URIs, styles and the one small script are inline, and a
 * Content-Security-Policy allows nothing else (the script only by its hash). Every string from the run
 * (prompts, model names, paths, errors) is escaped, isolated for right-to-left text, and shortened, and
 * images are bounded in size, count and bytes (PAGE_LIMITS, stated on the page), so a 10,000-item eval
 * stays a page a browser opens quickly. Without the script (a viewer that blocks it) everything shows;
 * only re-sorting the grid needs it.
 */
import { createHash } from 'node:crypto';
import { escapeHtml } from '../io/html-escape.js';
import { describeGate, type EvalReport, type GateDecision, type Interval95, type PairMistake } from './report.js';
import { scorerBlocks } from './scorers-view.js';
import {
  bestMean, extremesFirst, focusComparison, modelLabels, modelRows, niceTicks, promptGrid, shortenEnd, shortenMiddle,
  type GridRow, type ModelRow, type PromptGrid,
} from './report-view.js';

/**
 * Returns a data: URI for an image path, or null when it cannot be read (the page then says so).
 * `maxSide`, when the loader has one, is stated on the page as the thumbnails' bound.
 */
export type ThumbnailLoader = ((path: string) => Promise<string | null>) & { maxSide?: number };

/** What the page holds at most, so that its size and load time stay bounded whatever the run. */
export const PAGE_LIMITS = {
  /** Grid cells with an image: the rows with the largest differences (both ends) get them first. */
  gridImages: 400,
  /** Cells in the grid (rows × models shown), and bytes of its text: past them, rows with the smallest differences are left out. */
  gridCells: 20_000,
  gridTextBytes: 5 * 1024 * 1024,
  /** Models in the table, the plots and the grid. */
  models: 50,
  /** Scorers in the "Every scorer" table (each with up to `models` rows). */
  scorers: 8,
  /** Wrongly judged pairs shown, two images each. */
  pairMistakes: 40,
  /** Bytes of inlined images in all; past this, later images are left out. */
  imageBytes: 10 * 1024 * 1024,
  /** Rows of the table of rows that could not be scored. */
  errors: 200,
  /** Characters of a prompt, a model name and a path as shown (the JSON report has them whole). */
  promptChars: 300,
  nameChars: 80,
  pathChars: 120,
} as const;

/** Thumbnails made at once: enough to keep libuv's threads (file reads, sharp) busy. */
const THUMBNAILS_IN_FLIGHT = 8;

export async function renderHtml(report: EvalReport, thumbnail: ThumbnailLoader): Promise<string> {
  const labels = modelLabels(report.models.map((m) => m.model), PAGE_LIMITS.nameChars);
  const ctx: PageContext = { report, name: (model) => labels.get(model) ?? shortenMiddle(model, PAGE_LIMITS.nameChars), images: new ImagePlan() };
  const prompts = promptGrid(report);
  const rows = shownModels(modelRows(report), [prompts.baseline, prompts.candidate]);
  const grid = gridLayout(prompts, rows.length);
  // Images are claimed in the order they matter: the grid's extreme rows, then the pairs.
  for (const row of grid.withImages) {
    for (const { index } of rows) {
      const cell = row.cells[index];
      if (cell) ctx.images.claim(gridPlace(row, index), cell.best.path);
    }
  }
  const mistakes = report.pairwise?.mistakes.slice(0, PAGE_LIMITS.pairMistakes) ?? [];
  mistakes.forEach((p, i) => {
    ctx.images.claim(pairPlace(i, 0), p.path0);
    ctx.images.claim(pairPlace(i, 1), p.path1);
  });
  await ctx.images.load(thumbnail);

  const body = [
    header(ctx),
    verdict(ctx),
    metricBlock(ctx, rows, grid),
    pairwiseSection(ctx, mistakes),
    errorsSection(ctx),
    provenance(ctx, thumbnail.maxSide),
  ].filter((s) => s !== '');
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src '${SCRIPT_HASH}'">
<meta name="color-scheme" content="light dark">
<title>PickScore eval${report.gate ? ` · ${verdictWord(report.gate)}` : ''}</title>
<style>${STYLE}</style>
</head>
<body>
<main>
${body.join('\n')}
</main>
<script>${SCRIPT}</script>
</body>
</html>
`;
}

interface PageContext {
  report: EvalReport;
  /** A model's shown name: shortened, and distinct from every other model's. */
  name(model: string): string;
  images: ImagePlan;
}

/**
 * The images the page inlines. Each place on the page that shows one (a grid cell, a side of a pair)
 * claims it, in order of importance; each file is made into a thumbnail once, a few at a time; then
 * places keep their image in claim order while the page's images fit PAGE_LIMITS.imageBytes, counted
 * per place, since each place writes its own copy. The outcome depends on the claims alone, never on
 * which thumbnail finished first, and a place that claimed nothing shows no image.
 */
class ImagePlan {
  private readonly claims = new Map<string, string>();
  /** Per place: the data URI, null for an image that could not be made, 'bytes' for one past the bound. */
  private readonly shownAt = new Map<string, string | null | 'bytes'>();

  claim(place: string, path: string): void {
    if (!this.claims.has(place)) this.claims.set(place, path);
  }

  async load(thumbnail: ThumbnailLoader): Promise<void> {
    const paths = [...new Set(this.claims.values())];
    const made = new Map<string, string | null>();
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < paths.length) {
        const path = paths[next++];
        made.set(path, await thumbnail(path).catch(() => null));
      }
    };
    await Promise.all(Array.from({ length: Math.min(THUMBNAILS_IN_FLIGHT, paths.length) }, worker));
    let bytes = 0;
    for (const [place, path] of this.claims) {
      const uri = made.get(path) ?? null;
      if (uri !== null && bytes + uri.length > PAGE_LIMITS.imageBytes) {
        this.shownAt.set(place, 'bytes');
        continue;
      }
      bytes += uri?.length ?? 0;
      this.shownAt.set(place, uri);
    }
  }

  /**
   * The image of a place; or why there is none: it could not be made into a thumbnail, or the page's
   * byte bound left it out; or nothing, for a place that claimed none (a grid row past the bound).
   */
  figure(place: string, alt: string): string {
    const uri = this.shownAt.get(place);
    if (uri === undefined) return '';
    if (uri === 'bytes') return `<div class="no-image">not inlined: the page holds at most ${PAGE_LIMITS.imageBytes / 1024 / 1024} MiB of images</div>`;
    if (uri === null) return '<div class="no-image">no preview</div>';
    return `<img src="${escapeHtml(uri)}" alt="${escapeHtml(alt)}">`;
  }

  /** Bytes of the data URIs these places write. */
  bytesOf(places: string[]): number {
    let bytes = 0;
    for (const place of places) {
      const uri = this.shownAt.get(place);
      if (typeof uri === 'string' && uri !== 'bytes') bytes += uri.length;
    }
    return bytes;
  }

  /** Images written into the page. */
  get shown(): number {
    let n = 0;
    for (const uri of this.shownAt.values()) if (uri !== null && uri !== 'bytes') n++;
    return n;
  }
}

const gridPlace = (row: GridRow, model: number): string => `grid ${row.index} ${model}`;
const pairPlace = (pair: number, side: 0 | 1): string => `pair ${pair} ${side}`;

/** At most PAGE_LIMITS.models models, in report order, always with the baseline and the candidate. */
function shownModels(all: ModelRow[], needed: (number | null)[]): ModelRow[] {
  if (all.length <= PAGE_LIMITS.models) return all;
  const chosen = new Set(needed.filter((i): i is number => i !== null));
  for (const row of all) if (chosen.size < PAGE_LIMITS.models) chosen.add(row.index);
  return all.filter((row) => chosen.has(row.index));
}

/**
 * The grid's candidate rows, the most deserving first (largest differences at both ends): at most
 * PAGE_LIMITS.gridCells cells; the first of them get images. gridSection keeps them while their text
 * fits PAGE_LIMITS.gridTextBytes.
 */
interface GridLayout { grid: PromptGrid; candidates: GridRow[]; withImages: GridRow[]; total: number }

function gridLayout(grid: PromptGrid, models: number): GridLayout {
  const maxRows = Math.max(1, Math.floor(PAGE_LIMITS.gridCells / Math.max(1, models)));
  const candidates = extremesFirst(grid.rows).slice(0, maxRows);
  const imageRows = Math.floor(PAGE_LIMITS.gridImages / Math.max(1, models));
  return { grid, candidates, withImages: candidates.slice(0, imageRows), total: grid.rows.length };
}

// ---------------------------------------------------------------------------------------------------
// Sections

function header({ report }: PageContext): string {
  const prompts = new Set(report.models.flatMap((m) => m.perPrompt.map((p) => p.prompt))).size;
  const parts = [
    report.counts.pointwise > 0 ? `${count(report.counts.pointwise, 'image row')} over ${count(prompts, 'prompt')} and ${count(report.models.length, 'model')}` : '',
    report.counts.pairwise > 0 ? count(report.counts.pairwise, 'pair') : '',
    report.provenance ? `scored by ${escapeHtml(shortenMiddle(report.provenance.model, PAGE_LIMITS.nameChars))}` : '',
  ].filter((p) => p !== '');
  return `<header><h1>PickScore eval</h1><p class="muted">${parts.join(' · ')}</p></header>`;
}

function verdictWord(gate: GateDecision): string {
  return gate.meanDiff === null ? 'UNDECIDED' : gate.worse ? 'FAIL' : 'PASS';
}

/** The first thing on the page: the gate's verdict and the sentence that explains it, or what stands in for one. */
function verdict(ctx: PageContext): string {
  const { report } = ctx;
  const notes: string[] = [];
  if (report.incomplete) notes.push(`<p class="note">Incomplete: the run was interrupted; the figures cover the rows scored before it stopped${report.counts.notReached > 0 ? ` (${report.counts.notReached} rows not reached)` : ''}.</p>`);
  if (report.counts.errors > 0) notes.push(`<p class="note">${count(report.counts.errors, 'row')} could not be scored (<a href="#errors">listed below</a>)${report.incomplete ? '' : '; the run exits 3'}.</p>`);
  const gate = report.gate;
  if (gate) {
    const kind = gate.meanDiff === null ? 'undecided' : gate.worse ? 'fail' : 'pass';
    const margin = `Gate: ${bdi(ctx.name(gate.candidate))} against the baseline ${bdi(ctx.name(gate.baseline))}, max drop ${gate.maxDrop}.`;
    return `<section id="verdict" class="verdict ${kind}"><p class="word">${verdictWord(gate)}</p>
<p class="why">${escapeHtml(describeGate(gate, (model) => isolate(ctx.name(model))).replace(/^[A-Z]+: /, ''))}</p><p class="muted">${margin}</p>${notes.join('')}</section>`;
  }
  const focus = focusComparison(report);
  const lead = focus && focus.meanDiff !== null
    ? `<p class="why">${bdi(ctx.name(focus.candidate))} − ${bdi(ctx.name(focus.baseline))}: mean difference ${signed(focus.meanDiff)}, 95% CI ${ci(focus.ci95)}, over ${count(focus.prompts, 'prompt')}.</p>`
    : report.pairwise ? `<p class="why">Preference accuracy ${pct(report.pairwise.paper.accuracy)} (paper protocol) over ${count(report.pairwise.paper.n, 'pair')}.</p>` : '';
  return `<section id="verdict" class="verdict none"><p class="word">No gate</p>${lead}
<p class="muted">Pass <code>--baseline</code> and <code>--candidate</code> to gate a pipeline on a comparison.</p>${notes.join('')}</section>`;
}

/**
 * Sections 2 to 5 for one score: the comparison table, the forest plot, the distributions and the
 * grid. PickScore is the only score today; another metric would add its own block like this one.
 */
function metricBlock(ctx: PageContext, rows: ModelRow[], grid: GridLayout): string {
  if (rows.length === 0) return '';
  const more = ctx.report.models.length - rows.length;
  const capped = more > 0 ? `<p class="muted">The first ${rows.length} of ${ctx.report.models.length} models are shown; all are in the JSON report.</p>` : '';
  return `<section class="metric" data-metric="pickscore">
${comparisonTable(ctx, rows)}${capped}${scorersTable(ctx)}
${forestPlot(ctx, rows)}
${distributions(ctx, rows)}
${gridSection(ctx, rows, grid)}
</section>`;
}

function comparisonTable(ctx: PageContext, rows: ModelRow[]): string {
  const compared = ctx.report.comparisons.length > 0;
  const reference = rows.find((r) => r.isReference)?.model.model;
  const against = reference === undefined || !compared ? '' : ` against ${bdi(ctx.name(reference))}${ctx.report.gate ? ', the baseline' : ', the first model'}`;
  const body = rows.map(({ model: m, index, isReference, comparison: c }) => {
    const vs = !compared ? ''
      : isReference ? '<td class="ref" colspan="6" data-label="">the baseline</td>'
        : c === null ? '<td colspan="6" data-label="">–</td>'
          : `<td class="num" data-field="meanDiff" data-label="mean difference" data-value="${c.meanDiff ?? ''}">${signed(c.meanDiff)}</td>`
            + `<td class="num" data-field="ci95" data-label="paired 95% CI" data-low="${c.ci95.low ?? ''}" data-high="${c.ci95.high ?? ''}">${ci(c.ci95)}</td>`
            + `<td class="num" data-field="winRate" data-label="win rate" data-value="${c.winRate ?? ''}">${pct(c.winRate)}</td>`
            + `<td class="num" data-field="wlt" data-label="W / L / T" data-wins="${c.wins}" data-losses="${c.losses}" data-ties="${c.ties}">${c.wins} / ${c.losses} / ${c.ties}</td>`
            + `<td class="num" data-field="signTestP" data-label="sign test p" data-value="${c.signTestP}">${pValue(c.signTestP)}</td>`
            + `<td class="num" data-field="prompts" data-label="prompts shared" data-value="${c.prompts}">${c.prompts}</td>`;
    return `<tr data-m="${index}"${isReference && compared ? ' class="reference"' : ''}><th scope="row">${bdi(ctx.name(m.model))}</th>`
      + `<td class="num" data-field="n" data-label="images" data-value="${m.n}">${m.n}</td>`
      + `<td class="num" data-field="mean" data-label="mean" data-value="${m.mean ?? ''}">${num(m.mean)}</td>`
      + `<td class="num" data-field="modelCi95" data-label="95% CI" data-low="${m.ci95.low ?? ''}" data-high="${m.ci95.high ?? ''}">${ci(m.ci95)}</td>`
      + `<td class="num" data-field="std" data-label="std" data-value="${m.std ?? ''}">${num(m.std)}</td><td class="num" data-field="median" data-label="median" data-value="${m.median ?? ''}">${num(m.median)}</td>`
      + `<td class="num" data-field="errors" data-label="errors" data-value="${m.errors}">${m.errors}</td>${vs}</tr>`;
  });
  const groups = compared ? '<th colspan="6" class="group">score</th><th colspan="6" class="group">minus the baseline, per prompt</th>' : '<th colspan="6" class="group">score</th>';
  const vsHeads = compared
    ? '<th class="num">mean difference</th><th class="num">paired 95% CI</th><th class="num">win rate</th><th class="num">W / L / T</th><th class="num">sign test p</th><th class="num">prompts shared</th>'
    : '';
  const note = compared ? ' A comparison pairs prompts: each model\'s mean over its images for a prompt, on the prompts both have; a tie counts half a win.' : '';
  return `<h2>Models${against}</h2>
<div class="scroll"><table id="comparison" class="numbers">
<thead><tr><th rowspan="2">model</th>${groups}</tr>
<tr><th class="num">images</th><th class="num">mean</th><th class="num">95% CI</th><th class="num">std</th><th class="num">median</th><th class="num">errors</th>${vsHeads}</tr></thead>
<tbody>
${body.join('\n')}
</tbody></table></div>
<p class="muted">${note} Intervals are bootstraps of ${ctx.report.settings.bootstrapResamples.toLocaleString('en-US')} resamples (seed ${ctx.report.settings.seed}).</p>`;
}

/**
 * With several scorers: every scorer's figures per model, as each scorer's own report holds them, the
 * gate's scorer marked; '' for one scorer. Only the page's existing classes, so its style sheet (and a
 * one-scorer page) stays as it is.
 */
function scorersTable(ctx: PageContext): string {
  const blocks = scorerBlocks(ctx.report, PAGE_LIMITS.scorers, PAGE_LIMITS.models);
  if (blocks.length === 0) return '';
  const tag = ctx.report.gate ? 'gate' : 'shown above';
  const body = blocks.flatMap(({ scorer, isGate, compared, rows }) => rows.map(({ model: m, index, isReference, comparison: c }) => {
    const vs = !compared ? '<td class="ref" colspan="4" data-label="">no baseline</td>'
      : isReference ? '<td class="ref" colspan="4" data-label="">the baseline</td>'
        : c === null ? '<td class="num" colspan="4">–</td>'
          : `<td class="num" data-field="meanDiff" data-value="${c.meanDiff ?? ''}">${signed(c.meanDiff)}</td>`
            + `<td class="num" data-field="ci95" data-low="${c.ci95.low ?? ''}" data-high="${c.ci95.high ?? ''}">${ci(c.ci95)}</td>`
            + `<td class="num" data-field="winRate" data-value="${c.winRate ?? ''}">${pct(c.winRate)}</td>`
            + `<td class="num" data-field="signTestP" data-value="${c.signTestP}">${pValue(c.signTestP)}</td>`;
    // data-m indexes the scorer's own report's models (the name may be long; the cell shows it shortened).
    return `<tr data-scorer="${escapeHtml(scorer)}" data-m="${index}"${isReference && compared ? ' class="reference"' : ''}>`
      + `<th scope="row">${bdi(shortenMiddle(scorer, PAGE_LIMITS.nameChars))}${isGate ? ` <span class="tag">${tag}</span>` : ''}</th>`
      + `<td>${bdi(ctx.name(m.model))}</td>`
      + `<td class="num" data-field="mean" data-value="${m.mean ?? ''}">${num(m.mean)}</td>`
      + `<td class="num" data-field="modelCi95" data-low="${m.ci95.low ?? ''}" data-high="${m.ci95.high ?? ''}">${ci(m.ci95)}</td>${vs}</tr>`;
  }));
  const scorers = Object.keys(ctx.report.scorers!.reports).length;
  const hidden = blocks.reduce((sum, b) => sum + b.hidden, 0);
  const capped = scorers > blocks.length || hidden > 0
    ? ` Not every scorer or model is listed (${blocks.length} of ${scorers} scorers, ${hidden} model rows left out); all are in the JSON report under <code>scorers.reports</code>.` : '';
  return `
<h2>Every scorer</h2>
<div class="scroll"><table id="every-scorer" class="numbers">
<thead><tr><th>scorer</th><th>model</th><th class="num">mean</th><th class="num">95% CI</th><th class="num">mean difference</th><th class="num">paired 95% CI</th><th class="num">win rate</th><th class="num">sign test p</th></tr></thead>
<tbody>
${body.join('\n')}
</tbody></table></div>
<p class="muted">Each scorer's figures from its own report: the tables and plots on this page follow the one marked ${tag}.${capped}</p>`;
}

// Charts: SVG whose x coordinates are percentages of its width, so that it fills any width while its
// text keeps its size. The plot spans PLOT_LEFT% to PLOT_RIGHT%. Lines and bars carry colours of their
// own, which the style sheet overrides: a viewer that blocks inline styles still draws them.
const PLOT_LEFT = 1.5;
const PLOT_RIGHT = 98.5;

function xPercent(value: number, low: number, high: number): string {
  return `${(PLOT_LEFT + ((value - low) / (high - low)) * (PLOT_RIGHT - PLOT_LEFT)).toFixed(3)}%`;
}

/** The shared x axis at y: one line, one tick and label per round value. */
function axis(low: number, high: number, y: number): string {
  const { ticks, decimals } = niceTicks(low, high);
  const marks = ticks.filter((t) => t >= low && t <= high).map((t) => {
    const x = xPercent(t, low, high);
    return `<g class="tick" data-value="${t}"><line stroke="#8a8f96" x1="${x}" x2="${x}" y1="${y}" y2="${y + 5}"/><text x="${x}" y="${y + 18}" text-anchor="middle">${fixed(t, decimals)}</text></g>`;
  });
  return `<g class="axis" data-low="${low}" data-high="${high}"><line stroke="#8a8f96" x1="${PLOT_LEFT}%" x2="${PLOT_RIGHT}%" y1="${y}" y2="${y}"/>${marks.join('')}</g>`;
}

/** Each model's mean and its 95% CI as a mark and a line on one axis; the baseline's mean is a dashed line across. */
function forestPlot(ctx: PageContext, rows: ModelRow[]): string {
  const values = rows.flatMap(({ model: m }) => [m.mean, m.ci95.low, m.ci95.high]).filter((v): v is number => v !== null);
  if (values.length === 0) return '';
  const [low, high] = padded(Math.min(...values), Math.max(...values));
  const ROW = 36;
  const TOP = 6;
  const axisY = TOP + rows.length * ROW + 6;
  const reference = rows.find((r) => r.isReference)?.model;
  const marks = rows.map(({ model: m, index, isReference }, i) => {
    const y = TOP + i * ROW + 26;
    const label = `<text class="label" x="${PLOT_LEFT}%" y="${y - 11}">${plain(ctx.name(m.model))}${isReference ? ' (baseline)' : ''} · ${num(m.mean)} ${ci(m.ci95)}</text>`;
    if (m.mean === null) return `<g class="row">${label}</g>`;
    const interval = m.ci95.low === null || m.ci95.high === null ? ''
      : `<line stroke="#8a8f96" class="ci" x1="${xPercent(m.ci95.low, low, high)}" x2="${xPercent(m.ci95.high, low, high)}" y1="${y}" y2="${y}"/>`;
    return `<g class="row">${label}${interval}<circle class="mark${isReference ? ' baseline' : ''}" data-m="${index}" data-value="${m.mean}" cx="${xPercent(m.mean, low, high)}" cy="${y}" r="${isReference ? 6 : 5}"><title>${plain(ctx.name(m.model))}: mean ${num(m.mean)}, 95% CI ${ci(m.ci95)}</title></circle></g>`;
  });
  const refLine = reference?.mean != null
    ? `<line class="refline" stroke="#d56e00" stroke-dasharray="4 4" x1="${xPercent(reference.mean, low, high)}" x2="${xPercent(reference.mean, low, high)}" y1="${TOP}" y2="${axisY}"/>` : '';
  return `<h2>Mean score with its 95% CI</h2>
<figure class="chart"><svg id="forest" class="forest" role="img" aria-label="each model's mean score and its 95% confidence interval on one axis" width="100%" height="${axisY + 24}" xmlns="http://www.w3.org/2000/svg">
${refLine}${marks.join('\n')}
${axis(low, high, axisY)}</svg>
<figcaption class="muted">Mean score; the line is its 95% bootstrap CI; the dashed line is the baseline's mean.</figcaption></figure>`;
}

/** The score histograms of every model, one row each, on the report's shared range. */
function distributions(ctx: PageContext, rows: ModelRow[]): string {
  const first = rows[0].model.histogram;
  const { low, high } = first;
  const ROW = 78;
  const BARS = 46;
  const TOP = 4;
  const axisY = TOP + rows.length * ROW;
  const bins = first.counts.length;
  const width = (high - low) / bins;
  const body = rows.map(({ model: m, index, isReference }, i) => {
    const top = TOP + i * ROW;
    const base = top + 18 + BARS;
    const tallest = Math.max(1, ...m.histogram.counts);
    const bars = m.histogram.counts.map((n, b) => {
      if (n === 0) return '';
      const h = Math.max(1, (n / tallest) * BARS);
      const x0 = low + b * width;
      const x = xPercent(x0, low, high);
      const w = `${((PLOT_RIGHT - PLOT_LEFT) / bins * 0.9).toFixed(3)}%`;
      const mid = xPercent(x0 + width / 2, low, high);
      return `<rect class="bar" fill="#5b8def" x="${x}" y="${(base - h).toFixed(1)}" width="${w}" height="${h.toFixed(1)}"><title>${n} in [${x0.toFixed(3)}, ${(x0 + width).toFixed(3)})</title></rect>`
        + `<text class="count" x="${mid}" y="${(base - h - 3).toFixed(1)}" text-anchor="middle">${n}</text>`;
    });
    const mean = m.mean === null ? '' : `<line class="meanline" stroke="#8a8f96" stroke-dasharray="3 2" x1="${xPercent(m.mean, low, high)}" x2="${xPercent(m.mean, low, high)}" y1="${top + 16}" y2="${base}"/>`;
    return `<g class="dist" data-m="${index}"><text class="label" x="${PLOT_LEFT}%" y="${top + 12}">${plain(ctx.name(m.model))}${isReference && ctx.report.comparisons.length > 0 ? ' (baseline)' : ''} · ${count(m.n, 'image')}</text>`
      + `<line stroke="#8a8f96" class="baseline-axis" x1="${PLOT_LEFT}%" x2="${PLOT_RIGHT}%" y1="${base}" y2="${base}"/>${bars.join('')}${mean}</g>`;
  });
  return `<h2>Score distributions</h2>
<figure class="chart"><svg id="distributions" class="distributions" role="img" aria-label="score histograms of every model on one shared axis" width="100%" height="${axisY + 26}" xmlns="http://www.w3.org/2000/svg">
${body.join('\n')}
${axis(low, high, axisY + 2)}</svg>
<figcaption class="muted">Score; ${bins} bins of ${fixed(width, 3)} on the range of all scores; the number over a bar is its count; each row is scaled to its tallest bin; the dashed line is the model's mean.</figcaption></figure>`;
}

function gridSection(ctx: PageContext, models: ModelRow[], layout: GridLayout): string {
  const { grid } = layout;
  if (layout.candidates.length === 0) return '';
  const focus = grid.baseline !== null && grid.candidate !== null;
  const name = (index: number): string => bdi(ctx.name(ctx.report.models[index].model));
  const diffHead = focus ? `<th class="num">${name(grid.candidate!)} − ${name(grid.baseline!)}</th>` : '';
  const heads = models.map(({ model: m, index }) => `<th class="model" data-m="${index}">${bdi(ctx.name(m.model))}${index === grid.baseline ? ' <span class="tag">baseline</span>' : index === grid.candidate ? ' <span class="tag">candidate</span>' : ''}</th>`);
  // Rows are kept, the most deserving first, while their text (images aside, which have their own bound) fits.
  const kept = new Map<GridRow, string>();
  let textBytes = 0;
  for (const row of layout.candidates) {
    const html = gridRow(ctx, row, models, focus);
    const bytes = Buffer.byteLength(html) - ctx.images.bytesOf(models.map(({ index }) => gridPlace(row, index)));
    if (textBytes + bytes > PAGE_LIMITS.gridTextBytes) break;
    textBytes += bytes;
    kept.set(row, html);
  }
  const rows = grid.rows.filter((row) => kept.has(row));
  const body = rows.map((row) => kept.get(row)!);
  const sortOptions = focus ? gridSortOptions(ctx, models, grid) : '';
  const shown = rows.length < layout.total ? ` ${rows.length.toLocaleString('en-US')} of ${layout.total.toLocaleString('en-US')} prompts are shown, those with the largest differences at both ends; all are in the JSON report.` : '';
  const images = layout.withImages.length < rows.length ? ` Images are inlined for the ${layout.withImages.length.toLocaleString('en-US')} rows with the largest differences (the page's bound); the other rows show scores.` : '';
  const order = focus ? 'the largest drop first' : 'in the order the models list them';
  return `<h2>Per prompt</h2>
<p class="muted">One row per prompt, ${order}. Each cell shows the model's best image for the prompt and its score (the mean when it has several images); ★ marks the row's best.${shown}${images}</p>
${sortOptions}<div class="scroll"><table id="grid" class="grid">
<thead><tr><th>prompt</th>${diffHead}${heads.join('')}</tr></thead>
<tbody>
${body.join('\n')}
</tbody></table></div>`;
}

function gridRow(ctx: PageContext, row: GridRow, models: ModelRow[], focus: boolean): string {
  const best = bestMean(row);
  const cells = models.map(({ index: m }) => {
    const cell = row.cells[m];
    if (!cell) return `<td class="cell empty" data-m="${m}">–</td>`;
    const isBest = cell.mean === best;
    const score = cell.n > 1 ? `${fixed(cell.mean)} <span class="muted">mean of ${cell.n}, best ${fixed(cell.best.score)}</span>` : fixed(cell.mean);
    return `<td class="cell${isBest ? ' best' : ''}" data-m="${m}" data-mean="${cell.mean}"><figure>${ctx.images.figure(gridPlace(row, m), shortenMiddle(cell.best.image, PAGE_LIMITS.pathChars))}`
      + `<figcaption><span class="score">${isBest ? '<span class="star" title="best in this row">★</span> ' : ''}${score}</span> <span class="path">${escapeHtml(shortenMiddle(cell.best.image, PAGE_LIMITS.pathChars))}</span></figcaption></figure></td>`;
  });
  const diff = focus ? `<td class="num diff${row.diff === null ? '' : row.diff < 0 ? ' down' : row.diff > 0 ? ' up' : ''}" data-value="${row.diff ?? ''}">${signed(row.diff)}</td>` : '';
  return `<tr data-index="${row.index}"><th scope="row" class="prompt" dir="auto">${promptText(row.prompt)}</th>${diff}${cells.join('')}</tr>`;
}

/** The grid's other orders, for the script; hidden until the script runs. */
function gridSortOptions(ctx: PageContext, models: ModelRow[], grid: PromptGrid): string {
  const option = (index: number, how: 'drop' | 'gain'): string =>
    `<option value="${how}:${index}">${plain(ctx.name(ctx.report.models[index].model))}: largest ${how} first</option>`;
  const others = models.filter(({ index }) => index !== grid.baseline && index !== grid.candidate);
  const options = [
    option(grid.candidate!, 'drop'), option(grid.candidate!, 'gain'),
    ...others.flatMap(({ index }) => [option(index, 'drop'), option(index, 'gain')]),
    '<option value="order:0">prompt order</option>',
  ];
  return `<p id="grid-sort" class="controls" hidden data-baseline="${grid.baseline}"><label>Order the rows by the difference from the baseline: <select>${options.join('')}</select></label></p>\n`;
}

function pairwiseSection(ctx: PageContext, mistakes: PairMistake[]): string {
  const pw = ctx.report.pairwise;
  if (!pw) return '';
  const source = pw.validation ? 'chosen on the validation pairs' : pw.thresholdSource === 'flag' ? 'from --tie-threshold' : 'the default';
  const validation = pw.validation
    ? `<p class="muted">The tie threshold was chosen on ${escapeHtml(shortenMiddle(pw.validation.manifest, PAGE_LIMITS.pathChars))} (${count(pw.validation.n, 'pair')}) as the paper does, the first best of: ${pw.validation.table.map((t) => `${t.threshold} → ${pct(t.accuracy)}`).join(', ')}.</p>` : '';
  const total = pw.mistakes.length;
  const list = mistakes.map((p, index) => mistakeCard(ctx, p, index));
  const heading = total === 0 ? '<p>The scorer judged every pair as people did.</p>'
    : `<h3>Pairs the scorer got wrong or half right: ${total} of ${pw.paper.n}${total > mistakes.length ? `, the first ${mistakes.length} shown` : ''}</h3>
<p class="muted">Wrong calls first (0 points), then half-right ones (0.5: a tie on one side only); the most confident call first. The image people preferred has a green frame.</p>
<ol class="mistakes">${list.join('\n')}</ol>`;
  return `<section id="pairwise"><h2>Pairwise preference accuracy</h2>
<div class="scroll"><table id="pairwise-accuracy" class="numbers"><thead><tr><th>protocol</th><th class="num">accuracy</th><th>counts</th></tr></thead><tbody>
<tr data-protocol="paper"><td>paper (a tie when |p₁ − p₀| ≤ ${pw.threshold}, ${source})</td><td class="num" data-value="${pw.paper.accuracy ?? ''}">${pct(pw.paper.accuracy)}</td><td>${pw.paper.points} points / ${count(pw.paper.n, 'pair')}; ${pw.paper.tieLabels} tie labels; ${pw.paper.predictedTies} predicted ties</td></tr>
<tr data-protocol="ties-excluded"><td>ties excluded</td><td class="num" data-value="${pw.tiesExcluded.accuracy ?? ''}">${pct(pw.tiesExcluded.accuracy)}</td><td>${pw.tiesExcluded.correct} right of ${count(pw.tiesExcluded.n, 'pair')}</td></tr>
</tbody></table></div>${validation}${pw.errors > 0 ? `<p class="muted">${count(pw.errors, 'pair')} could not be scored and are not counted.</p>` : ''}
${heading}</section>`;
}

function mistakeCard(ctx: PageContext, p: PairMistake, index: number): string {
  const side = (i: 0 | 1): string => {
    const [image, prob, score] = i === 0 ? [p.image0, p.prob0, p.score0] : [p.image1, p.prob1, p.score1];
    const preferred = p.label0 === (i === 0 ? 1 : 0);
    const picked = p.predicted === (i === 0 ? 1 : 0);
    const tags = [preferred ? '<span class="tag good">people’s choice</span>' : '', picked ? '<span class="tag">scorer’s choice</span>' : ''].join(' ');
    return `<figure class="${preferred ? 'preferred' : ''}">${ctx.images.figure(pairPlace(index, i), shortenMiddle(image, PAGE_LIMITS.pathChars))}<figcaption><span class="score">image ${i}: p ${fixed(prob)}</span> <span class="muted">score ${fixed(score)}</span> ${tags} <span class="path">${escapeHtml(shortenMiddle(image, PAGE_LIMITS.pathChars))}</span></figcaption></figure>`;
  };
  const label = p.label0 === 0.5 ? 'people called it a tie' : `people preferred image ${p.label0 === 1 ? 0 : 1}`;
  const call = p.predicted === 0.5 ? 'the scorer called a tie' : `the scorer picked image ${p.predicted === 1 ? 0 : 1}`;
  return `<li class="mistake" data-points="${p.points}"><p class="prompt" dir="auto">${promptText(p.prompt)}</p><p class="muted">${label}; ${call}: ${p.points} points</p><div class="pair">${side(0)}${side(1)}</div></li>`;
}

function errorsSection({ report }: PageContext): string {
  if (report.errors.length === 0) return '';
  const shown = report.errors.slice(0, PAGE_LIMITS.errors);
  const rows = shown.map((e) => `<tr><td class="path">${escapeHtml(shortenMiddle(e.image, PAGE_LIMITS.pathChars))}</td><td dir="auto">${promptText(e.prompt)}</td><td>${escapeHtml(shortenEnd(e.error, 400))}</td></tr>`);
  const more = report.errors.length > shown.length ? `<p class="muted">The first ${shown.length} of ${report.errors.length} are listed; all are in the JSON report.</p>` : '';
  return `<section id="errors"><h2>Rows that could not be scored</h2><div class="scroll"><table><thead><tr><th>image</th><th>prompt</th><th>error</th></tr></thead><tbody>${rows.join('')}</tbody></table></div>${more}</section>`;
}

function provenance(ctx: PageContext, maxSide: number | undefined): string {
  const { report } = ctx;
  const p = report.provenance;
  const entries: [string, string][] = [];
  if (p) {
    entries.push(
      ['model', `${shortenMiddle(p.model, PAGE_LIMITS.pathChars)} (fingerprint ${p.fingerprint})`],
      ['source files', p.sourceFiles.map((f) => `${shortenMiddle(f.name, PAGE_LIMITS.pathChars)} sha256:${f.sha256.slice(0, 16)}…`).join(', ') || '–'],
      ['precision, attention', `${p.precision}, ${p.attention}`],
      ['execution provider', `${p.executionProvider} (${p.device})`],
      ['preprocessing', `exif ${p.exif}, resize ${p.resize}, max pixels ${p.maxPixels.toLocaleString('en-US')}`],
      ['versions', `pickscore ${p.pickscoreVersion}, onnxruntime ${p.onnxruntimeVersion}`],
    );
  }
  const manifests = report.manifests.slice(0, 20).map((m) => shortenMiddle(m, PAGE_LIMITS.pathChars)).join(', ') + (report.manifests.length > 20 ? `, and ${report.manifests.length - 20} more` : '');
  const c = report.counts;
  entries.push(
    ['manifests', manifests],
    ['rows', `${c.pointwise} pointwise, ${c.pairwise} pairwise, ${c.errors} with errors, ${c.skippedLines} invalid lines skipped, ${c.notReached} not reached`],
    ['statistics', `seed ${report.settings.seed}, ${report.settings.bootstrapResamples.toLocaleString('en-US')} bootstrap resamples, ${report.settings.confidenceLevel * 100}% intervals`],
    ['images on this page', `${ctx.images.shown} inlined; at most ${maxSide === undefined ? '' : `${maxSide} px a side, `}${PAGE_LIMITS.gridImages} grid cells (the rows with the largest differences first), ${PAGE_LIMITS.pairMistakes} pairs, and ${PAGE_LIMITS.imageBytes / 1024 / 1024} MiB in all`],
    ['report', `JSON schema version ${report.schemaVersion}; text on this page is shortened (prompts to ${PAGE_LIMITS.promptChars} characters, names to ${PAGE_LIMITS.nameChars}), the JSON report has it whole`],
  );
  const rows = entries.map(([k, v]) => `<dt>${escapeHtml(k)}</dt><dd>${escapeHtml(v)}</dd>`);
  return `<footer id="provenance"><h2>Provenance</h2><dl>${rows.join('')}</dl></footer>`;
}

// ---------------------------------------------------------------------------------------------------
// Text

/** A model name or other short user text, isolated so right-to-left or control characters cannot reorder what is around it. */
function bdi(text: string): string {
  return `<bdi>${escapeHtml(text)}</bdi>`;
}

/**
 * Short user text where no element can isolate it (SVG text, an option, a sentence): wrapped in
 * Unicode's first-strong isolate and pop (U+2068, U+2069), which end any override it opened.
 */
function isolate(text: string): string {
  return `\u2068${text}\u2069`;
}

function plain(text: string): string {
  return escapeHtml(isolate(text));
}

function promptText(prompt: string): string {
  const shown = shortenEnd(prompt, PAGE_LIMITS.promptChars);
  return shown === prompt ? escapeHtml(prompt) : `${escapeHtml(shown)} <span class="muted">(${Array.from(prompt).length.toLocaleString('en-US')} characters)</span>`;
}

function count(n: number, noun: string): string {
  return `${n.toLocaleString('en-US')} ${noun}${n === 1 ? '' : 's'}`;
}

/** A number as the page shows it: fixed decimals and a true minus sign (never "-0.000"). */
function fixed(x: number, decimals = 3): string {
  const text = x.toFixed(decimals);
  return /^-0\.?0*$/.test(text) ? text.slice(1) : text.replace('-', '−');
}

function num(x: number | null): string {
  return x === null ? '–' : fixed(x);
}

function signed(x: number | null): string {
  if (x === null) return '–';
  const text = fixed(x);
  return /^[−]|^0\.?0*$/.test(text) ? text : `+${text}`;
}

function pct(x: number | null): string {
  return x === null ? '–' : `${(100 * x).toFixed(1)}%`;
}

function ci(c: Interval95): string {
  return c.low === null || c.high === null ? '–' : `[${fixed(c.low)}, ${fixed(c.high)}]`;
}

function pValue(p: number): string {
  return p < 0.001 ? p.toExponential(1) : p.toFixed(3);
}

/** A range with a margin of 5% each side; a single value gets a unit-wide range. */
function padded(low: number, high: number): [number, number] {
  if (high <= low) return [low - 0.5, high + 0.5];
  const pad = (high - low) * 0.05;
  return [low - pad, high + pad];
}

// ---------------------------------------------------------------------------------------------------
// Style and script

const STYLE = `
:root { color-scheme: light dark; --bg: #ffffff; --fg: #1b1c1e; --muted: #5f6368; --line: #dadce0; --panel: #f4f6f8;
  --accent: #0b57d0; --good: #137333; --good-bg: #e6f4ea; --bad: #b3261e; --bad-bg: #fce8e6; --warn: #7a4f00; --warn-bg: #fef7e0;
  --bar: #5b8def; --base: #d56e00; }
@media (prefers-color-scheme: dark) { :root { --bg: #121316; --fg: #e8eaed; --muted: #a0a4aa; --line: #3c4043; --panel: #1d1f23;
  --accent: #8ab4f8; --good: #81c995; --good-bg: #132a1b; --bad: #f28b82; --bad-bg: #3b1714; --warn: #fdd663; --warn-bg: #332a00;
  --bar: #7aa7f7; --base: #fcad70; } }
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); color: var(--fg); font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; }
main { padding: 16px clamp(12px, 2.5vw, 40px) 40px; }
h1 { font-size: 1.4rem; margin: 0; }
h2 { font-size: 1.15rem; margin: 32px 0 10px; padding-top: 14px; border-top: 1px solid var(--line); }
h3 { font-size: 1rem; margin: 20px 0 8px; }
p { margin: 6px 0; } .muted { color: var(--muted); } code { font-size: 0.95em; }
a { color: var(--accent); }
header p { margin-top: 2px; }
.verdict { margin: 14px 0 8px; padding: 12px 18px; border-radius: 8px; border-left: 8px solid var(--line); background: var(--panel); }
.verdict .word { font-size: 1.7rem; font-weight: 750; letter-spacing: 0.02em; margin: 0; }
.verdict .why { font-size: 1.05rem; overflow-wrap: anywhere; }
.verdict.pass { background: var(--good-bg); border-color: var(--good); } .verdict.pass .word { color: var(--good); }
.verdict.fail { background: var(--bad-bg); border-color: var(--bad); } .verdict.fail .word { color: var(--bad); }
.verdict.undecided { background: var(--warn-bg); border-color: var(--warn); } .verdict.undecided .word { color: var(--warn); }
.note { font-weight: 600; color: var(--warn); }
.scroll { overflow-x: auto; max-width: 100%; }
table { border-collapse: collapse; width: 100%; }
th, td { padding: 6px 10px; border-bottom: 1px solid var(--line); text-align: left; vertical-align: top; }
thead th { background: var(--panel); font-weight: 600; position: sticky; top: 0; z-index: 1; }
th.group { text-align: center; border-left: 1px solid var(--line); }
.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
thead th.num { white-space: normal; }
tr.reference th, tr.reference td { background: var(--panel); }
td.ref { color: var(--muted); }
#comparison th[scope="row"] { overflow-wrap: anywhere; min-width: 8rem; }
.chart { margin: 0; padding: 0 12px; overflow: hidden; }
.chart svg { display: block; overflow: visible; font-size: 12px; }
svg text { fill: var(--fg); paint-order: stroke; stroke: var(--bg); stroke-width: 3px; stroke-linejoin: round; } svg .label { font-weight: 600; } svg .axis-label { fill: var(--muted); }
.axis line, .baseline-axis { stroke: var(--muted); stroke-width: 1; }
.ci { stroke: var(--fg); stroke-width: 2; } .mark { fill: var(--accent); stroke: var(--bg); stroke-width: 1.5; }
.mark.baseline { fill: var(--base); } .refline { stroke: var(--base); stroke-dasharray: 4 4; stroke-width: 1.5; }
.bar { fill: var(--bar); } .count { fill: var(--muted); font-size: 10px; } .meanline { stroke: var(--fg); stroke-width: 1.5; stroke-dasharray: 3 2; }
@media (max-width: 760px) { .count { display: none; } }
.controls { margin: 8px 0; } .controls label { display: flex; flex-wrap: wrap; align-items: center; gap: 4px 8px; }
.controls select { font: inherit; max-width: 100%; min-width: 0; }
.grid th.prompt { min-width: 14rem; max-width: 28rem; font-weight: 500; overflow-wrap: break-word; }
.grid .model { min-width: 172px; overflow-wrap: anywhere; }
.grid td.cell { width: 180px; min-width: 172px; }
.grid td.best { background: var(--good-bg); box-shadow: inset 0 0 0 2px var(--good); }
.grid td.empty { color: var(--muted); text-align: center; vertical-align: middle; }
.diff.down { color: var(--bad); font-weight: 600; } .diff.up { color: var(--good); }
figure { margin: 0; }
figure img, .no-image { display: block; width: 160px; max-width: 100%; height: auto; border-radius: 4px; background: var(--panel); }
.no-image { height: 90px; display: flex; align-items: center; justify-content: center; color: var(--muted); font-size: 12px; text-align: center; }
figcaption { margin-top: 4px; display: flex; flex-direction: column; gap: 1px; }
.score { font-weight: 600; font-variant-numeric: tabular-nums; } .star { color: var(--good); }
.path { color: var(--muted); font-size: 12px; overflow-wrap: anywhere; }
.tag { display: inline-block; align-self: flex-start; font-size: 11px; font-weight: 600; padding: 0 6px; border-radius: 8px; background: var(--panel); border: 1px solid var(--line); color: var(--muted); }
.tag.good { color: var(--good); border-color: var(--good); }
.mistakes { list-style: none; padding: 0; display: grid; grid-template-columns: repeat(auto-fill, minmax(360px, 1fr)); gap: 12px; }
.mistake { border: 1px solid var(--line); border-radius: 8px; padding: 10px 12px; background: var(--panel); }
.mistake .prompt { font-weight: 600; overflow-wrap: break-word; }
.pair { display: flex; gap: 12px; flex-wrap: wrap; } .pair figure { flex: 1 1 150px; max-width: 200px; padding: 4px; border-radius: 6px; border: 2px solid transparent; }
.pair figure.preferred { border-color: var(--good); }
#provenance dl { display: grid; grid-template-columns: max-content 1fr; gap: 4px 16px; margin: 0; }
#provenance dt { color: var(--muted); } #provenance dd { margin: 0; overflow-wrap: anywhere; }
@media (max-width: 700px) {
  #comparison thead { display: none; }
  #comparison tr { display: grid; grid-template-columns: repeat(auto-fill, minmax(9.5rem, 1fr)); border-bottom: 1px solid var(--line); padding: 6px 0; }
  #comparison th[scope="row"] { grid-column: 1 / -1; border: none; }
  #comparison td { border: none; text-align: left; padding: 2px 10px; }
  #comparison tr.reference { background: var(--panel); }
  #comparison td.ref { grid-column: 1 / -1; }
  #comparison td::before { content: attr(data-label); display: block; color: var(--muted); font-size: 12px; }
  .grid thead tr, .grid tbody tr { display: flex; flex-wrap: wrap; }
  .grid thead th:not(.model) { display: none; }
  .grid th.prompt { flex: 1 1 100%; max-width: none; min-width: 0; border-bottom: none; padding-bottom: 0; }
  .grid td.diff { flex: 1 1 100%; text-align: left; border-bottom: none; padding-top: 0; }
  .grid td.diff::before { content: "difference "; color: var(--muted); font-weight: normal; }
  .grid .model, .grid td.cell { flex: 1 1 0; min-width: 0; width: auto; }
}
@media (max-width: 600px) { #provenance dl { grid-template-columns: 1fr; } #provenance dd { margin-bottom: 6px; } .mistakes { grid-template-columns: 1fr; } }
`;

/**
 * Re-sorts the grid's rows by one model's difference from the baseline (drops or gains first) or back
 * to prompt order. It reads only the numbers in the cells' data attributes.
 */
const SCRIPT = `(() => {
  const bar = document.getElementById('grid-sort');
  const body = document.querySelector('#grid tbody');
  if (!bar || !body) return;
  const base = bar.dataset.baseline;
  const mean = (row, m) => { const v = row.querySelector('td[data-m="' + m + '"]')?.dataset.mean; return v === undefined || v === '' ? null : Number(v); };
  const sort = (value) => {
    const [how, m] = value.split(':');
    const key = (row) => { const a = mean(row, m), b = mean(row, base); return a === null || b === null ? null : a - b; };
    const rows = [...body.rows].map((row) => ({ row, index: Number(row.dataset.index), key: how === 'order' ? null : key(row) }));
    rows.sort((x, y) => x.key === null || y.key === null ? (x.key === y.key ? x.index - y.index : x.key === null ? 1 : -1)
      : (how === 'gain' ? y.key - x.key : x.key - y.key) || x.index - y.index);
    body.append(...rows.map((r) => r.row));
  };
  const select = bar.querySelector('select');
  select.addEventListener('change', () => sort(select.value));
  bar.hidden = false;
})();`;

const SCRIPT_HASH = `sha256-${createHash('sha256').update(SCRIPT).digest('base64')}`;
