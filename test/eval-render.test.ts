import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { buildReport, type PairScore, type PointScore, type ReportInput } from '../src/eval/report.js';
import { renderMarkdown } from '../src/eval/render-markdown.js';
import { PAGE_LIMITS, renderHtml, type ThumbnailLoader } from '../src/eval/render-html.js';
import { extremesFirst, modelLabels, niceTicks, promptGrid, shortenEnd, shortenMiddle } from '../src/eval/report-view.js';

function point(model: string | null, prompt: string, image: string, score: number | null, error: string | null = null): PointScore {
  return { model, prompt, image, path: `/data/${image}`, score, error };
}

function pair(prompt: string, score0: number, score1: number, label0: 0 | 0.5 | 1): PairScore {
  return { prompt, image0: `${prompt}-0.png`, image1: `${prompt}-1.png`, path0: `/d/${prompt}-0.png`, path1: `/d/${prompt}-1.png`, label0, score0, score1, error: null };
}

const points: PointScore[] = [
  point('a', 'p1', 'a1.png', 20), point('a', 'p1', 'a2.png', 22), point('a', 'p2', 'a3.png', 18),
  point('a', 'p3', 'broken.png', null, 'truncated PNG data'),
  point('b', 'p1', 'b1.png', 23), point('b', 'p2', 'b2.png', 17.5), point('b', 'p3', 'b3.png', 25),
];

function input(overrides: Partial<ReportInput> = {}, options: ReportInput['options'] = {}): ReportInput {
  return { points, pairs: [], provenance: null, incomplete: false, manifests: ['m.jsonl'], skippedLines: 2, notReached: 0, options: { resamples: 200, ...options }, ...overrides };
}

/** `prompts` prompts scored by `models` models; model k's score on prompt i drifts with i so differences spread both ways. */
function manyPoints(prompts: number, models: string[], promptText: (i: number) => string = (i) => `prompt ${i}`): PointScore[] {
  return models.flatMap((model, k) => Array.from({ length: prompts }, (_, i) =>
    point(model, promptText(i), `${k}/img-${i}.png`, 20 + k * ((i % 7) - 3) * 0.1 + (i % 5) * 0.01)));
}

const HOSTILE = '<script>alert(1)</script><img src=x onerror=alert(2)> & "quoted" \'single\' | *em* [link](http://evil.example) `code`';
const RTL_OVERRIDE = '\u202Eevil.png';

test('the grid: one row per prompt, cells aligned with the models, the largest drop first; prompts without a difference last', () => {
  const report = buildReport(input({}, { baseline: 'a', candidate: 'b' }));
  const grid = promptGrid(report);
  assert.deepEqual([grid.baseline, grid.candidate], [0, 1]);
  // Prompt means a: p1 21, p2 18; b: p1 23, p2 17.5, p3 25 (a has no score for p3).
  assert.deepEqual(grid.rows.map((r) => [r.prompt, r.diff]), [['p2', -0.5], ['p1', 2], ['p3', null]]);
  assert.deepEqual(grid.rows[1].cells.map((c) => c?.best.image), ['a2.png', 'b1.png']);
  assert.equal(grid.rows[2].cells[0], null);
  const comparison = report.comparisons[0];
  assert.equal(grid.rows.find((r) => r.prompt === comparison.largestDrops[0].prompt)!.diff, comparison.largestDrops[0].diff, 'the same subtraction as the comparison');
  assert.deepEqual(extremesFirst(grid.rows).map((r) => r.prompt), ['p2', 'p1', 'p3']);
  const five = [-3, -2, 0, 1, 4].map((diff, index) => ({ prompt: `q${index}`, index, cells: [], diff }));
  assert.deepEqual(extremesFirst(five).map((r) => r.diff), [-3, 4, -2, 1, 0]);
});

test('text is shortened by code point, names in the middle, and every model keeps a label of its own', () => {
  assert.equal(shortenEnd('abcdef', 4), 'abc…');
  assert.equal(shortenEnd('😀😀😀😀😀', 3), '😀😀…', 'no surrogate pair is cut in half');
  assert.equal(shortenMiddle('runs/checkpoint-001000', 12), 'runs/c…01000');
  assert.equal(shortenMiddle('short', 12), 'short');
  const long = 'x'.repeat(200);
  const labels = modelLabels([`${long}-1000`, `${long}-1200`, `${long.slice(0, 50)}a${long.slice(0, 50)}-1000`, 'b'], 20);
  assert.equal(new Set(labels.values()).size, 4, [...labels.values()].join(' / '));
  assert.equal(labels.get('b'), 'b');
  assert.ok([...labels.values()].every((l) => Array.from(l).length <= 40));
});

test('axis ticks are round numbers inside the range', () => {
  assert.deepEqual(niceTicks(17.3, 22.9), { ticks: [18, 19, 20, 21, 22], decimals: 0 });
  assert.deepEqual(niceTicks(0.05, 0.31), { ticks: [0.05, 0.1, 0.15, 0.2, 0.25, 0.3], decimals: 2 });
  assert.deepEqual(niceTicks(-1.2, 1.2).ticks, [-1, -0.5, 0, 0.5, 1]);
  assert.deepEqual(niceTicks(5, 5).ticks, [5]);
});

test('Markdown: the verdict first, then every model against the baseline, per-prompt means, accuracy with counts', () => {
  const md = renderMarkdown(buildReport(input({ incomplete: true, pairs: [pair('t', 20.1, 20, 0.5)] }, { baseline: 'a', candidate: 'b' })));
  const lines = md.split('\n');
  assert.equal(lines[0], '## PickScore eval');
  assert.match(lines[2], /^> \*\*Incomplete:\*\*/);
  assert.match(lines[4], /^\*\*Gate:\*\* ✅ PASS: b is not worse than a beyond 0: mean\(b - a\) = 0\.75 over 2 prompts, 95% CI \[-0\.5, 2\]/);
  assert.ok(md.indexOf('**Gate:**') < md.indexOf('| model |'), 'the verdict comes before the tables');
  // With three scores, a resample of all 18s (or all 22s) has chance 1/27 > 2.5%: the CI is the data's range.
  assert.ok(lines.includes('| a (baseline) | 3 | 20.000 | [18.000, 22.000] | | | | | | | 1 |'), md);
  assert.match(md, /\n\| b \| 3 \| 21\.833 \| \[[\d.]+, [\d.]+\] \| \+0\.750 \| \[-0\.500, 2\.000\] \| 50\.0% \| 1 \/ 1 \/ 0 \| 1\.000 \| 2 \| 0 \|\n/);
  assert.match(md, /### Per prompt: b − a\n\nEvery prompt both have, the largest drop first;[^\n]*\n\n\| prompt \| a \| b \| difference \|\n\| --- \| ---: \| ---: \| ---: \|\n\| p2 \| 18\.000 \| 17\.500 \| -0\.500 \|\n\| p1 \| 21\.000 \| 23\.000 \| \+2\.000 \|\n\n/);
  assert.match(md, /\| paper protocol \(tie threshold 0, default\) \| 50\.0% \| 0\.5 points \/ 1 pairs; 1 tie labels, 0 predicted ties \|/);
  assert.match(md, /1 pairs earned less than a point/);
  assert.match(md, /7 pointwise and 1 pairwise rows; 1 with errors; 2 invalid lines skipped\./);
});

test('Markdown: the 10 prompts with the lowest and the 10 with the highest differences, and how many lie between', () => {
  // 25 prompts; b - a on prompt i is (i - 12) / 10.
  const rows = Array.from({ length: 25 }, (_, i) => [point('a', `q${i}`, `a${i}.png`, 20), point('b', `q${i}`, `b${i}.png`, 20 + (i - 12) / 10)]).flat();
  const md = renderMarkdown(buildReport(input({ points: rows }, { baseline: 'a', candidate: 'b' })));
  const table = md.slice(md.indexOf('| prompt |')).split('\n\n')[0].split('\n').slice(2);
  assert.equal(table.length, 21);
  assert.deepEqual(table.slice(0, 10).map((l) => l.split(' | ')[0].slice(2)), Array.from({ length: 10 }, (_, i) => `q${i}`));
  assert.equal(table[10], '| _… 5 prompts between_ | | | |');
  assert.deepEqual(table.slice(11).map((l) => l.split(' | ')[0].slice(2)), Array.from({ length: 10 }, (_, i) => `q${i + 15}`));
  assert.match(md, /The 10 prompts where b fell furthest below a, then the 10 where it rose furthest \(of 25\)/);
});

test('Markdown: run text is inert, one line per table row, bidirectional controls shown', () => {
  const prompt = `first line\nsecond | line ${HOSTILE}`;
  const hostile = [point(HOSTILE, prompt, 'x.png', 20), point(RTL_OVERRIDE, prompt, 'y.png', 21)];
  const md = renderMarkdown(buildReport(input({ points: hostile }, { baseline: HOSTILE, candidate: RTL_OVERRIDE })));
  assert.doesNotMatch(md, /<script|<img|\u202E/);
  assert.ok(md.includes('&lt;script&gt;alert(1)&lt;/script&gt;&lt;img src=x onerror=alert(2)&gt; &amp; "quoted" \'single\' \\| \\*em\\* \\[link\\](http://evil.example) \\`code\\`'), md);
  assert.ok(md.includes('&lt;U+202E&gt;evil.png'), 'the override is shown, not applied');
  const cells = (line: string): number => line.replace(/\\\|/g, '').split('|').length - 2;
  const models = md.slice(md.indexOf('| model |')).split('\n\n')[0].split('\n');
  const prompts = md.slice(md.indexOf('| prompt |')).split('\n\n')[0].split('\n');
  assert.deepEqual([models.length, prompts.length], [4, 3], 'no row broken over lines');
  assert.ok(models.every((line) => cells(line) === 11), models.join('\n'));
  assert.ok(prompts.every((line) => cells(line) === 4), prompts.join('\n'));
});

test('Markdown of a large, hostile eval stays far inside GitHub\'s 1 MiB step summary', () => {
  // 12 models whose names are 100,000 characters of Markdown and HTML, 10,000 prompts of 2,000 characters each.
  const names = Array.from({ length: 12 }, (_, k) => `${HOSTILE}${'|<&*'.repeat(25_000)}-${k}`);
  const rows = manyPoints(10_000, names, (i) => `${'<|*_'.repeat(500)} ${i}`);
  const report = buildReport(input({ points: rows }, { baseline: names[0], candidate: names[11], resamples: 50 }));
  const md = renderMarkdown(report);
  const bytes = Buffer.byteLength(md);
  assert.ok(bytes < 64 * 1024, `${bytes} bytes`);
  assert.equal(md.split('\n').filter((l) => l.startsWith('| ') && !l.startsWith('| ---') && !l.startsWith('| model') && !l.startsWith('| prompt')).length, 12 + 21);
  const many = buildReport(input({ points: manyPoints(2, Array.from({ length: 5_000 }, (_, k) => `m${k}`)), options: { resamples: 20 } }));
  const manyMd = renderMarkdown(many);
  assert.ok(Buffer.byteLength(manyMd) < 64 * 1024, `${Buffer.byteLength(manyMd)} bytes for 5,000 models`);
  assert.match(manyMd, /_The first 50 of 5000 models are listed; all are in the JSON report\._/);
});

/** A loader that records what it was asked and returns a data URI of `bytes` characters. */
function recordingLoader(bytes: number, failing: (path: string) => boolean = () => false): ThumbnailLoader & { asked: string[] } {
  const asked: string[] = [];
  const load = async (path: string): Promise<string | null> => {
    asked.push(path);
    if (failing(path)) throw new Error('cannot decode');
    return `data:image/webp;base64,${Buffer.from(path).toString('base64').padEnd(bytes - 23, 'A')}`;
  };
  return Object.assign(load, { asked, maxSide: 160 });
}

test('a run that scored nothing renders: an interrupted gate is UNDECIDED, every row an error is listed, no chart is drawn', async () => {
  const failed = [point('a', 'p', 'x.png', null, 'unreadable'), point('b', 'p', 'y.png', null, 'unreadable')];
  const undecided = buildReport(input({ points: failed, incomplete: true, notReached: 3 }, { baseline: 'a', candidate: 'b' }));
  const html = await renderHtml(undecided, recordingLoader(100));
  assert.match(html, /<section id="verdict" class="verdict undecided"><p class="word">UNDECIDED<\/p>/);
  assert.match(html, /2 rows could not be scored \(<a href="#errors">listed below<\/a>\)\.<\/p>/, 'an interrupted run exits 130, not 3');
  assert.doesNotMatch(html, /id="forest"|id="grid"/);
  assert.match(renderMarkdown(undecided), /\*\*Gate:\*\* ⚠️ UNDECIDED: interrupted before any prompt was scored for both a and b/);
  const nothing = buildReport(input({ points: [], incomplete: true }));
  assert.match(await renderHtml(nothing, recordingLoader(100)), /<p class="word">No gate<\/p>/);
  assert.match(renderMarkdown(nothing), /0 pointwise and 0 pairwise rows/);
  const errorsOnly = await renderHtml(buildReport(input({ points: failed })), recordingLoader(100));
  assert.match(errorsOnly, /2 rows could not be scored \(<a href="#errors">listed below<\/a>\); the run exits 3\./);
});

test('HTML: self-contained, the script allowed by its hash alone, every string from the run escaped, isolated and shortened', async () => {
  const longPrompt = `${HOSTILE} ${'word '.repeat(20_000)}`;
  const hostile = [
    ...points,
    point(HOSTILE, longPrompt, `${HOSTILE}.png`, 21), point(HOSTILE, 'p1', 'h1.png', 19),
    point(RTL_OVERRIDE, longPrompt, `dir/${RTL_OVERRIDE}`, 22), point(RTL_OVERRIDE, 'p1', 'r1.png', 19),
    point('a', 'lone \ud800 surrogate', 'a9.png', 19),
  ];
  const loader = recordingLoader(100, (p) => p.endsWith('b1.png'));
  const html = await renderHtml(buildReport(input({ points: hostile, pairs: [pair(HOSTILE, 20, 23, 1)] }, { baseline: 'a', candidate: HOSTILE })), loader);
  const csp = /<meta http-equiv="Content-Security-Policy" content="default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src '(sha256-[^']+)'">/.exec(html);
  assert.ok(csp, 'a policy that allows nothing but data: images, inline style and the script by its hash');
  const scripts = [...html.matchAll(/<script>([\s\S]*?)<\/script>/g)];
  assert.equal(scripts.length, 1);
  assert.equal(csp[1], `sha256-${createHash('sha256').update(scripts[0][1]).digest('base64')}`);
  assert.equal((html.match(/<script/gi) ?? []).length, 1, 'no script but ours');
  assert.equal(html.match(/<img /g)?.length, html.match(/<img src="data:image\/webp;base64,/g)?.length, 'every image is one of ours');
  assert.doesNotMatch(html.replace(/="[^"]*"/g, '=""'), /<[a-z][^<>]*\sonerror=/i, 'markup from the run is text or an attribute value, never an attribute');
  assert.doesNotMatch(html, /(src|href)="(?!data:|#)/, 'no external resource');
  assert.ok(html.includes('&lt;script&gt;alert(1)&lt;/script&gt;&lt;img src=x onerror=alert(2)&gt; &amp; &quot;quoted&quot; &#39;single&#39;'));
  assert.ok(!html.includes('word '.repeat(PAGE_LIMITS.promptChars)), 'a 100,000-character prompt is shortened');
  assert.match(html, /\(100,\d{3} characters\)/, 'and says how long it is');
  assert.ok(html.includes(`<bdi>${RTL_OVERRIDE}</bdi>`), 'a model name is isolated, so an override cannot reorder the page around it');
  assert.ok(html.length < 200_000, `${html.length} characters`);
  assert.equal(new Set(loader.asked).size, loader.asked.length, 'each image is made once');
  assert.match(html, /<div class="no-image">no preview<\/div>/, 'an image that cannot be decoded says so');
  assert.match(html, /<section id="verdict" class="verdict fail"><p class="word">FAIL<\/p>/, 'the candidate scored lower on the one prompt it shares');
});

test('HTML: images bounded in count and bytes, the rows with the largest differences first, the bounds stated', async () => {
  // 1,000 prompts x 2 models, thumbnails of 40 kB: 400 grid cells are claimed, 262 fit in 10 MiB.
  const report = buildReport(input({ points: manyPoints(1_000, ['base', 'cand']), pairs: Array.from({ length: 100 }, (_, i) => pair(`pair ${i}`, 20, 21, 1)) }, { baseline: 'base', candidate: 'cand' }));
  const loader = recordingLoader(40_000);
  const html = await renderHtml(report, loader);
  const images = html.match(/<img src="data:/g)?.length ?? 0;
  assert.equal(loader.asked.length, PAGE_LIMITS.gridImages + 2 * PAGE_LIMITS.pairMistakes);
  assert.equal(images, Math.floor(PAGE_LIMITS.imageBytes / 40_000));
  assert.ok(html.length < PAGE_LIMITS.imageBytes + 2 * 1024 * 1024, `${html.length} characters`);
  assert.match(html, /not inlined: the page holds at most 10 MiB of images/);
  assert.match(html, /at most 160 px a side, 400 grid cells \(the rows with the largest differences first\), 40 pairs, and 10 MiB in all/);
  assert.match(html, /Images are inlined for the 200 rows with the largest differences/);
  const grid = promptGrid(report);
  const first = extremesFirst(grid.rows).slice(0, 200);
  for (const row of first) assert.ok(loader.asked.includes(row.cells[1]!.best.path), `the image of ${row.prompt} (difference ${row.diff}) is claimed`);
  assert.equal((html.match(/<tr data-index=/g) ?? []).length, 1_000, 'one row per prompt');
  assert.match(html, /Pairs the scorer got wrong or half right: 100 of 100, the first 40 shown/);
});

test('HTML: one image shown in every row is written only where it was given room, so the bytes bound holds', async () => {
  // Every prompt of both models shows the same file: each place that shows it writes its own copy.
  const same = manyPoints(2_000, ['base', 'cand']).map((p) => ({ ...p, path: '/data/same.png' }));
  const loader = recordingLoader(40_000);
  const html = await renderHtml(buildReport(input({ points: same }, { baseline: 'base', candidate: 'cand' })), loader);
  assert.deepEqual(loader.asked, ['/data/same.png'], 'made once');
  const written = html.match(/<img src="data:/g)?.length ?? 0;
  assert.equal(written, Math.floor(PAGE_LIMITS.imageBytes / 40_000));
  assert.ok(html.length < PAGE_LIMITS.imageBytes + 2 * 1024 * 1024, `${html.length} characters`);
});

test('HTML: the page stays under 20 MB whatever the run: 20,000 grid cells of the longest text that escapes the most, every image at its largest, errors and pairs', async () => {
  // A quote becomes the six characters &quot;: prompts and paths as long as the page shows, all quotes.
  const quotes = (n: number, i: number): string => `${'"'.repeat(n)}${i}`;
  const rows = ['base', 'cand'].flatMap((model, k) => Array.from({ length: 10_000 }, (_, i) =>
    ({ ...point(model, quotes(PAGE_LIMITS.promptChars, i), `${quotes(PAGE_LIMITS.pathChars, i)}-${k}.png`, 20 + ((i * 7919) % 1000) / 100 * (k ? 1 : -1)) })));
  const broken = Array.from({ length: 500 }, (_, i) => point('base', quotes(PAGE_LIMITS.promptChars, i), quotes(1000, i), null, quotes(1000, i)));
  const pairs = Array.from({ length: 100 }, (_, i) => ({ ...pair(quotes(PAGE_LIMITS.promptChars, i), 20, 21, 1 as const), image0: quotes(1000, i), image1: quotes(1000, -i) }));
  const loader = recordingLoader(200_000);
  const report = buildReport(input({ points: [...rows, ...broken], pairs }, { baseline: 'base', candidate: 'cand', resamples: 20 }));
  const html = await renderHtml(report, loader);
  const bytes = Buffer.byteLength(html);
  assert.ok(bytes < 20_000_000, `${bytes} bytes`);
  const shownRows = (html.match(/<tr data-index=/g) ?? []).length;
  assert.ok(shownRows > 1_000 && shownRows < 10_000, `${shownRows} rows: the grid's text bound left the smallest differences out`);
  assert.match(html, new RegExp(`${shownRows.toLocaleString('en-US')} of 10,000 prompts are shown, those with the largest differences at both ends`));
});

test('HTML: a run too large for one page keeps the rows with the largest differences, the baseline and the candidate, and says so', async () => {
  const models = Array.from({ length: 60 }, (_, k) => `m${k}`);
  const report = buildReport(input({ points: manyPoints(500, models) }, { baseline: 'm59', candidate: 'm58', resamples: 20 }));
  const html = await renderHtml(report, recordingLoader(100));
  assert.equal((html.match(/<th class="model"/g) ?? []).length, PAGE_LIMITS.models);
  assert.match(html, /<th class="model" data-m="59"><bdi>m59<\/bdi> <span class="tag">baseline<\/span>/);
  assert.match(html, /<th class="model" data-m="58"><bdi>m58<\/bdi> <span class="tag">candidate<\/span>/);
  assert.equal((html.match(/<tr data-index=/g) ?? []).length, PAGE_LIMITS.gridCells / PAGE_LIMITS.models);
  assert.match(html, /400 of 500 prompts are shown, those with the largest differences at both ends/);
  assert.match(html, /The first 50 of 60 models are shown; all are in the JSON report/);
  assert.equal((html.match(/<circle class="mark/g) ?? []).length, PAGE_LIMITS.models);
});
