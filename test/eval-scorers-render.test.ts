/**
 * The "Every scorer" table of eval's Markdown and HTML pages: every figure on it is the one the scorer's
 * own report holds, the gate's scorer is marked, names are made inert, the Markdown stays inside its
 * size bound, and a report of one scorer has no such table.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { buildReport, type EvalReport, type Interval95, type PointScore } from '../src/eval/report.js';
import { renderMarkdown } from '../src/eval/render-markdown.js';
import { renderHtml } from '../src/eval/render-html.js';

function points(models: string[], scale: number, prompts = 6): PointScore[] {
  return models.flatMap((model, k) => Array.from({ length: prompts }, (_, i) => ({
    model, prompt: `prompt ${i}`, image: `${k}/${i}.png`, path: `/d/${k}/${i}.png`, score: scale * (1 + k * ((i % 3) - 0.8) * 0.1 + i * 0.01), error: null,
  })));
}

/** Two scorers' reports as runEval joins them: the gate scorer's report, with every scorer's under `scorers`. */
function twoScorers(models: string[], gate: 'hpsv2.1' | 'aesthetic', options = { baseline: models[0], candidate: models[1] }): EvalReport {
  const common = { pairs: [], provenance: null, incomplete: false, manifests: ['m.jsonl'], skippedLines: 0, notReached: 0 };
  const reports = {
    'hpsv2.1': buildReport({ ...common, points: points(models, 0.3), options: { resamples: 200, ...options } }),
    aesthetic: buildReport({ ...common, points: points(models, 5.5).map((p, i) => ({ ...p, score: p.score! + (i % 4) * 0.05 })), options: { resamples: 200, ...options } }),
  };
  return { ...reports[gate], scorers: { gate, reports } };
}

const fixed3 = (x: number | null): string => (x === null ? '–' : x.toFixed(3));
const ci = (c: Interval95): string => `[${fixed3(c.low)}, ${fixed3(c.high)}]`;

test('Markdown: one row per scorer and model with the figures of that scorer\'s report, the gate scorer marked', () => {
  const report = twoScorers(['base', 'cand'], 'aesthetic');
  const md = renderMarkdown(report);
  const table = md.slice(md.indexOf('### Every scorer')).split('\n\n')[1].split('\n');
  assert.equal(table[0], '| scorer | model | mean | 95% CI | mean diff | paired 95% CI | win rate | sign test p |');
  const rows = table.slice(2).map((line) => line.split(' | ').map((c) => c.replace(/^\| |\s*\|$/g, '').trim()));
  assert.equal(rows.length, 4);
  for (const scorer of ['hpsv2.1', 'aesthetic']) {
    const sub = report.scorers!.reports[scorer];
    const label = scorer === 'aesthetic' ? 'aesthetic (gate)' : 'hpsv2.1';
    const base = rows.find((r) => r[0] === label && r[1] === 'base (baseline)')!;
    assert.ok(base, `${scorer} baseline row in\n${table.join('\n')}`);
    assert.deepEqual(base.slice(2, 4), [fixed3(sub.models[0].mean), ci(sub.models[0].ci95)]);
    const cand = rows.find((r) => r[0] === label && r[1] === 'cand')!;
    const c = sub.comparisons[0];
    assert.deepEqual(cand.slice(2), [fixed3(sub.models[1].mean), ci(sub.models[1].ci95),
      `${c.meanDiff! >= 0 ? '+' : ''}${c.meanDiff!.toFixed(3)}`, ci(c.ci95), `${(100 * c.winRate!).toFixed(1)}%`,
      c.signTestP < 0.001 ? c.signTestP.toExponential(1) : c.signTestP.toFixed(3)]);
  }
  // The scorers' figures differ (different scales), so a table that repeated one scorer's would fail above.
  assert.notEqual(report.scorers!.reports['hpsv2.1'].models[0].mean, report.scorers!.reports.aesthetic.models[0].mean);
  assert.ok(md.indexOf('### Every scorer') > md.indexOf('| model | images |'), 'right after the comparison table');
});

test('one scorer: no "Every scorer" table in either page', async () => {
  const report = twoScorers(['base', 'cand'], 'aesthetic');
  const { scorers: _, ...single } = report;
  assert.doesNotMatch(renderMarkdown(single), /Every scorer/);
  assert.doesNotMatch(await renderHtml(single, async () => null), /every-scorer/);
  assert.equal(renderMarkdown(report).replace(/### Every scorer\n\n[^]*?\n\n/, ''), renderMarkdown(single), 'the table is all that is added');
});

test('HTML: the table holds each scorer\'s figures, escaped, the gate scorer tagged', async () => {
  const hostile = '<img src=x onerror=alert(1)>&"';
  const report = twoScorers([hostile, 'cand'], 'hpsv2.1');
  const html = await renderHtml(report, async () => null);
  const start = html.indexOf('<table id="every-scorer"');
  assert.ok(start > html.indexOf('<table id="comparison"'), 'after the comparison table');
  const table = html.slice(start, html.indexOf('</table>', start));
  assert.doesNotMatch(table, /<img/);
  const rows = [...table.matchAll(/<tr data-scorer="([^"]*)" data-m="([^"]*)"[^>]*>(.*?)<\/tr>/g)];
  assert.equal(rows.length, 4);
  for (const [, scorer, m, cells] of rows) {
    const sub = report.scorers!.reports[scorer];
    const mean = Number(/data-field="mean" data-value="([^"]*)"/.exec(cells)![1]);
    assert.equal(mean, sub.models[Number(m)].mean, `${scorer}: ${mean}`);
    const diff = /data-field="meanDiff" data-value="([^"]*)"/.exec(cells);
    if (diff) assert.equal(Number(diff[1]), sub.comparisons[0].meanDiff);
    assert.equal(/<span class="tag">gate<\/span>/.test(cells), scorer === 'hpsv2.1');
  }
});

test('Markdown with several scorers of many hostile models stays inside the step-summary bound', () => {
  const names = Array.from({ length: 60 }, (_, k) => `${'|<&*'.repeat(25_000)}-${k}`);
  const report = twoScorers(names, 'aesthetic', { baseline: names[0], candidate: names[59] });
  const reports = { ...report.scorers!.reports, clipscore: report.scorers!.reports['hpsv2.1'], 'clipscore-l14': report.scorers!.reports.aesthetic, pickscore: report.scorers!.reports.aesthetic };
  const md = renderMarkdown({ ...report, scorers: { gate: 'aesthetic', reports } });
  const bytes = Buffer.byteLength(md);
  assert.ok(bytes < 64 * 1024, `${bytes} bytes`);
  const table = md.slice(md.indexOf('### Every scorer')).split('\n\n')[1].split('\n');
  assert.equal(table.length - 2, 5 * 6, 'six models for each of five scorers');
  assert.match(md, /5 of 5 scorers, 270 model rows left out/);
  assert.ok(table.slice(2).every((line) => line.replace(/\\\|/g, '').split('|').length - 2 === 8), 'no row broken');
});
