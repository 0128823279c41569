/**
 * The eval report's HTML page as a browser shows it: the fixture evals (checkpoints with a gate, and
 * pairs with a validation manifest) scored by the tiny model, rendered, and read back from headless
 * Chromium's DOM and layout over the DevTools protocol, at a laptop's width and a phone's, light and
 * dark. PICKSCORE_EVAL_SCREENSHOTS=<folder> keeps the screenshots (docs/ holds the README's).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { runEval } from '../src/commands/eval.js';
import { buildReport, type EvalReport, type PointScore } from '../src/eval/report.js';
import { renderHtml } from '../src/eval/render-html.js';
import { fileThumbnails } from '../src/eval/thumbnails.js';
import { DEFAULT_MAX_PIXELS } from '../src/image/image.js';
import { fixturesDir, skipWithoutReference } from './helpers/paths.js';
import { tinyModel } from './helpers/tiny-model.js';
import { skipWithoutChromium } from './helpers/chromium.js';
import { withPage, type Page } from './helpers/cdp.js';
import { withTempDir } from './helpers/temp-dir.js';

const evalDir = path.join(fixturesDir, 'eval');
/** The manifests as a user in the repository root names them (the page shows them; so do the README's screenshots). */
const relativeEvalDir = path.relative(process.cwd(), evalDir);
const skip = skipWithoutReference || skipWithoutChromium;
const WIDE = 1280;
const NARROW = 420;

/** The number a cell shows, as a number: the page writes a true minus sign. */
const shown = (text: string): number => Number(text.replace('−', '-').replace(/[+%\s]/g, ''));

async function scoreFixtures(kind: 'checkpoints' | 'pairs'): Promise<EvalReport> {
  const model = await tinyModel();
  const common = { model, device: 'cpu' as const, cacheDir: false as const, threads: 2 };
  const result = kind === 'checkpoints'
    ? await runEval({ ...common, manifests: [path.join(relativeEvalDir, 'checkpoints.jsonl')], baseline: 'ckpt-a', candidate: 'ckpt-b' })
    : await runEval({ ...common, manifests: [path.join(relativeEvalDir, 'pairs.jsonl')], validation: path.join(relativeEvalDir, 'validation.jsonl') });
  return result.report;
}

/** Loads the page at each width and colour scheme, checking that nothing overflows sideways; keeps screenshots when asked. */
async function lookAt(page: Page, file: string, name: string): Promise<void> {
  const keep = process.env.PICKSCORE_EVAL_SCREENSHOTS;
  if (keep) await mkdir(keep, { recursive: true });
  for (const width of [WIDE, NARROW]) {
    for (const colorScheme of ['light', 'dark'] as const) {
      await page.emulate({ width, height: 900, colorScheme });
      await page.load(pathToFileURL(file).href);
      const layout = await page.evaluate<{ overflow: number; background: string }>(`({
        overflow: document.documentElement.scrollWidth - document.documentElement.clientWidth,
        background: getComputedStyle(document.body).backgroundColor })`);
      assert.ok(layout.overflow <= 0, `${name} at ${width} px (${colorScheme}) is ${layout.overflow} px wider than the window`);
      assert.equal(layout.background, colorScheme === 'dark' ? 'rgb(18, 19, 22)' : 'rgb(255, 255, 255)', `${name} follows prefers-color-scheme: ${colorScheme}`);
      const png = await page.screenshot();
      assert.equal(png.subarray(1, 4).toString(), 'PNG');
      if (keep) await writeFile(path.join(keep, `${name}-${width}-${colorScheme}.png`), png);
    }
  }
  await page.emulate({ width: WIDE, height: 900 });
  await page.load(pathToFileURL(file).href);
}

interface PointwiseDom {
  order: string[];
  verdict: { word: string; top: number };
  table: { m: number; fields: Record<string, { text: string; value?: string; low?: string; high?: string; wins?: string; losses?: string; ties?: string }> }[];
  forest: { axes: number; ticks: { value: number; x: number }[]; marks: { m: number; value: number; x: number; baseline: boolean }[] };
  grid: { heads: number[]; rows: { prompt: string; diff: string; cells: { m: number; mean: string; best: boolean; image: number }[] }[]; width: number; window: number };
}

const READ_POINTWISE = `(() => {
  const fields = (tr) => Object.fromEntries([...tr.querySelectorAll('td[data-field]')].map((td) => [td.dataset.field, { text: td.textContent, ...td.dataset }]));
  const forest = document.getElementById('forest');
  const grid = document.getElementById('grid');
  return {
    order: [...document.querySelector('main').children].map((e) => e.id || e.tagName.toLowerCase()),
    verdict: { word: document.querySelector('#verdict .word').textContent, top: document.getElementById('verdict').getBoundingClientRect().top },
    table: [...document.querySelectorAll('#comparison tbody tr')].map((tr) => ({ m: Number(tr.dataset.m), fields: fields(tr) })),
    forest: {
      axes: forest.querySelectorAll('.axis').length,
      ticks: [...forest.querySelectorAll('.axis .tick')].map((g) => ({ value: Number(g.dataset.value), x: g.querySelector('line').x1.baseVal.value })),
      marks: [...forest.querySelectorAll('.mark')].map((c) => ({ m: Number(c.dataset.m), value: Number(c.dataset.value), x: c.cx.baseVal.value, baseline: c.classList.contains('baseline') })),
    },
    grid: {
      heads: [...grid.querySelectorAll('thead th.model')].map((th) => Number(th.dataset.m)),
      rows: [...grid.tBodies[0].rows].map((tr) => ({
        prompt: tr.querySelector('th').textContent,
        diff: tr.querySelector('td.diff').dataset.value,
        cells: [...tr.querySelectorAll('td.cell')].map((td) => ({ m: Number(td.dataset.m), mean: td.dataset.mean, best: td.classList.contains('best'), image: td.querySelector('img')?.naturalWidth ?? 0 })),
      })),
      width: grid.getBoundingClientRect().width,
      window: document.documentElement.clientWidth,
    },
  };
})()`;

test('the checkpoint report in Chromium: the verdict first, the table\'s numbers are the JSON\'s, one forest mark per model on one axis, a grid row per prompt and a column per model', { skip }, async () => {
  const report = await scoreFixtures('checkpoints');
  await withTempDir('eval-html', async (dir) => {
    const file = path.join(dir, 'report.html');
    await writeFile(file, await renderHtml(report, fileThumbnails({ exif: 'apply', maxPixels: DEFAULT_MAX_PIXELS })));
    await withPage(async (page) => {
      await lookAt(page, file, 'eval-checkpoints');
      const dom = await page.evaluate<PointwiseDom>(READ_POINTWISE);

      assert.deepEqual(dom.order.slice(0, 2), ['header', 'verdict'], 'the verdict comes right after the title');
      assert.ok(dom.verdict.top < 150, `the verdict is at the top of the page (${dom.verdict.top} px)`);
      assert.equal(dom.verdict.word, report.gate!.worse ? 'FAIL' : 'PASS');

      assert.deepEqual(dom.table.map((r) => r.m), report.models.map((_, i) => i));
      for (const row of dom.table) {
        const m = report.models[row.m];
        const f = row.fields;
        assert.equal(Number(f.n.value), m.n);
        assert.equal(Number(f.mean.value), m.mean, 'the exact mean');
        assert.ok(Math.abs(shown(f.mean.text) - m.mean!) <= 5e-4, `${f.mean.text} shows ${m.mean}`);
        assert.deepEqual([Number(f.modelCi95.low), Number(f.modelCi95.high)], [m.ci95.low, m.ci95.high]);
        assert.equal(Number(f.errors.value), m.errors);
        const c = report.comparisons.find((x) => x.candidate === m.model);
        if (!c) {
          assert.equal(m.model, report.gate!.baseline, 'only the baseline has no comparison');
          continue;
        }
        assert.equal(Number(f.meanDiff.value), c.meanDiff);
        assert.ok(Math.abs(shown(f.meanDiff.text) - c.meanDiff!) <= 5e-4, `${f.meanDiff.text} shows ${c.meanDiff}`);
        assert.deepEqual([Number(f.ci95.low), Number(f.ci95.high)], [c.ci95.low, c.ci95.high]);
        const [low, high] = f.ci95.text.slice(1, -1).split(', ').map(shown);
        assert.ok(Math.abs(low - c.ci95.low!) <= 5e-4 && Math.abs(high - c.ci95.high!) <= 5e-4, f.ci95.text);
        assert.equal(Number(f.winRate.value), c.winRate);
        assert.equal(shown(f.winRate.text), Number((100 * c.winRate!).toFixed(1)));
        assert.equal(Number(f.signTestP.value), c.signTestP);
        assert.equal(Number(f.prompts.value), c.prompts);
        assert.deepEqual([f.wlt.wins, f.wlt.losses, f.wlt.ties].map(Number), [c.wins, c.losses, c.ties]);
      }

      const { forest } = dom;
      assert.equal(forest.axes, 1, 'one axis');
      assert.deepEqual(forest.marks.map((k) => k.m).sort(), report.models.map((_, i) => i), 'one mark per model');
      assert.deepEqual(forest.marks.filter((k) => k.baseline).map((k) => report.models[k.m].model), ['ckpt-a']);
      assert.ok(forest.ticks.length >= 3);
      const [t0, t1] = [forest.ticks[0], forest.ticks.at(-1)!];
      const xOf = (value: number): number => t0.x + ((value - t0.value) / (t1.value - t0.value)) * (t1.x - t0.x);
      for (const tick of forest.ticks) assert.ok(Math.abs(tick.x - xOf(tick.value)) < 0.5, 'the ticks lie on one linear axis');
      for (const mark of forest.marks) {
        assert.equal(mark.value, report.models[mark.m].mean);
        assert.ok(Math.abs(mark.x - xOf(mark.value)) < 0.5, `${report.models[mark.m].model}'s mark sits at its mean on the axis`);
      }

      const prompts = new Set(report.models.flatMap((m) => m.perPrompt.map((p) => p.prompt)));
      assert.deepEqual(dom.grid.heads, report.models.map((_, i) => i), 'one column per model');
      assert.equal(dom.grid.rows.length, prompts.size, 'one row per prompt');
      assert.deepEqual(new Set(dom.grid.rows.map((r) => r.prompt)), prompts);
      const diffs = dom.grid.rows.map((r) => Number(r.diff));
      assert.deepEqual(diffs, [...diffs].sort((a, b) => a - b), 'the largest drop first');
      for (const row of dom.grid.rows) {
        assert.deepEqual(row.cells.map((c) => c.m), report.models.map((_, i) => i));
        const means = row.cells.map((c) => Number(c.mean));
        for (const [i, cell] of row.cells.entries()) {
          const summary = report.models[i].perPrompt.find((p) => p.prompt === row.prompt)!;
          assert.equal(Number(cell.mean), summary.mean);
          assert.equal(cell.best, summary.mean === Math.max(...means), 'the best cell of the row is marked');
          assert.ok(cell.image >= 48, 'the image is inlined and decoded');
        }
        assert.equal(Number(row.diff), means[1] - means[0]);
      }
      assert.ok(dom.grid.width > 0.9 * dom.grid.window, `the grid uses the page's width (${dom.grid.width} of ${dom.grid.window} px)`);

      // The script re-sorts the grid: largest gain first.
      const resorted = await page.evaluate<number[]>(`(() => {
        const select = document.querySelector('#grid-sort select');
        if (document.getElementById('grid-sort').hidden) return [];
        select.value = 'gain:1';
        select.dispatchEvent(new Event('change'));
        return [...document.querySelectorAll('#grid tbody td.diff')].map((td) => Number(td.dataset.value));
      })()`);
      assert.deepEqual(resorted, [...diffs].sort((a, b) => b - a));
      assert.deepEqual(page.problems, [], 'no script error and no Content-Security-Policy violation');
    });
  });
});

interface PairwiseDom {
  order: string[];
  accuracy: { protocol: string; value: string; text: string }[];
  mistakes: { prompt: string; points: string; images: number[]; preferred: number[]; text: string }[];
}

test('the pairwise report in Chromium: accuracy under both protocols as in the JSON, then each wrongly judged pair side by side', { skip }, async () => {
  const report = await scoreFixtures('pairs');
  const pw = report.pairwise!;
  assert.ok(pw.mistakes.length > 0, 'the fixture has pairs the tiny model gets wrong');
  await withTempDir('eval-html', async (dir) => {
    const file = path.join(dir, 'pairs.html');
    await writeFile(file, await renderHtml(report, fileThumbnails({ exif: 'apply', maxPixels: DEFAULT_MAX_PIXELS })));
    await withPage(async (page) => {
      await lookAt(page, file, 'eval-pairs');
      const dom = await page.evaluate<PairwiseDom>(`({
        order: [...document.querySelector('main').children].map((e) => e.id || e.tagName.toLowerCase()),
        accuracy: [...document.querySelectorAll('#pairwise-accuracy tbody tr')].map((tr) => ({ protocol: tr.dataset.protocol, value: tr.cells[1].dataset.value, text: tr.cells[1].textContent })),
        mistakes: [...document.querySelectorAll('.mistake')].map((li) => ({
          prompt: li.querySelector('.prompt').textContent, points: li.dataset.points,
          images: [...li.querySelectorAll('img')].map((img) => img.naturalWidth),
          preferred: [...li.querySelectorAll('figure')].map((f, i) => f.classList.contains('preferred') ? i : -1).filter((i) => i >= 0),
          text: li.textContent,
        })),
      })`);
      assert.deepEqual(dom.order.slice(0, 2), ['header', 'verdict']);
      assert.deepEqual(dom.accuracy.map((a) => [a.protocol, Number(a.value)]), [['paper', pw.paper.accuracy], ['ties-excluded', pw.tiesExcluded.accuracy]]);
      assert.equal(shown(dom.accuracy[0].text), Number((100 * pw.paper.accuracy!).toFixed(1)));
      assert.equal(dom.mistakes.length, pw.mistakes.length);
      for (const [i, card] of dom.mistakes.entries()) {
        const m = pw.mistakes[i];
        assert.equal(card.prompt, m.prompt);
        assert.equal(Number(card.points), m.points);
        assert.equal(card.images.length, 2, 'both images side by side');
        assert.ok(card.images.every((w) => w >= 48), 'both decoded');
        assert.deepEqual(card.preferred, m.label0 === 0.5 ? [] : [m.label0 === 1 ? 0 : 1], 'the image people preferred is framed');
        assert.ok(card.text.includes(`image 0: p ${m.prob0.toFixed(3)}`) && card.text.includes(`image 1: p ${m.prob1.toFixed(3)}`), card.text);
        assert.ok(card.text.includes(m.label0 === 0.5 ? 'people called it a tie' : `people preferred image ${m.label0 === 1 ? 0 : 1}`), card.text);
      }
      assert.deepEqual(page.problems, []);
    });
  });
});

test('hostile names and prompts in Chromium: text, never markup; no script but the page\'s; nothing wider than the window', { skip: skipWithoutChromium }, async () => {
  const hostile = '<img src=x onerror="document.title=\'pwned\'"><script>document.title="pwned"</script>';
  const image = path.join(evalDir, 'images', 'fox-a.png');
  const models = [hostile, '\u202Eevil-model', `${'m'.repeat(100_000)}`];
  const prompts = [`${hostile} a fox`, 'x'.repeat(100_000), 'مرحبا بالعالم \u202E reversed', `lone \ud800 surrogate ${'word '.repeat(20_000)}`];
  const points: PointScore[] = models.flatMap((model, k) => prompts.map((prompt, i) => ({ model, prompt, image: `${hostile}/${'\u202E'}${i}.png`, path: image, score: 20 + k - i * 0.1, error: null })));
  points.push({ model: models[0], prompt: prompts[0], image: `${hostile}.png`, path: path.join(evalDir, 'missing.png'), score: null, error: `cannot read ${hostile}` });
  const report = buildReport({
    points, pairs: [{ prompt: hostile, image0: hostile, image1: '\u202E1.png', path0: image, path1: image, label0: 1, score0: 20, score1: 21, error: null }],
    provenance: null, incomplete: true, manifests: [hostile], skippedLines: 0, notReached: 1, options: { baseline: models[0], candidate: models[1], resamples: 100 },
  });
  await withTempDir('eval-html', async (dir) => {
    const file = path.join(dir, 'hostile.html');
    const html = await renderHtml(report, fileThumbnails({ exif: 'apply', maxPixels: DEFAULT_MAX_PIXELS }));
    assert.ok(html.length < 300_000, `${html.length} characters: long names and prompts are shortened`);
    await writeFile(file, html);
    await withPage(async (page) => {
      await lookAt(page, file, 'eval-hostile');
      const dom = await page.evaluate<{ title: string; scripts: number; images: string[]; handlers: number; verdict: string; errors: string }>(`({
        title: document.title,
        scripts: document.scripts.length,
        images: [...document.images].map((img) => img.src.slice(0, 23)),
        handlers: [...document.querySelectorAll('*')].filter((e) => [...e.attributes].some((a) => a.name.startsWith('on'))).length,
        verdict: document.getElementById('verdict').textContent,
        errors: document.getElementById('errors').textContent,
      })`);
      assert.ok(!dom.title.includes('pwned'), dom.title);
      assert.equal(dom.scripts, 1);
      assert.equal(dom.handlers, 0);
      assert.ok(dom.images.length > 0 && dom.images.every((src) => src === 'data:image/webp;base64,'), dom.images.join(' '));
      assert.ok(dom.verdict.includes('<img src=x onerror='), 'the name shows as the text it is');
      assert.ok(dom.errors.includes('cannot read <img src=x'));
      assert.deepEqual(page.problems, []);
    });
  });
});

test('several scorers in Chromium: the Every scorer table holds each scorer\'s figures from its own report, escaped, within the window, light and dark', { skip: skipWithoutChromium }, async () => {
  const hostile = '<img src=x onerror="document.title=\'pwned\'">';
  // The 100,000-character name is not the baseline's or the candidate's: those are shown unbroken in headings (see the report).
  const models = [hostile, 'cand', 'm'.repeat(100_000)];
  const image = path.join(evalDir, 'images', 'fox-a.png');
  const scored = (scale: number): PointScore[] => models.flatMap((model, k) => Array.from({ length: 6 }, (_, i) => ({
    model, prompt: `prompt ${i}`, image: `${k}-${i}.png`, path: image, score: scale * (1 + k * ((i % 3) - 0.8) * 0.1 + i * 0.01), error: null,
  })));
  const build = (scale: number) => buildReport({ points: scored(scale), pairs: [], provenance: null, incomplete: false, manifests: ['m.jsonl'], skippedLines: 0, notReached: 0,
    options: { baseline: models[0], candidate: models[1], resamples: 100 } });
  // Values on a grid of 0.0005 round either way at three decimals: the shown figure is within half a unit, plus float error.
  const reports = { 'hpsv2.1': build(0.3), aesthetic: build(5.5) };
  const report: EvalReport = { ...reports.aesthetic, scorers: { gate: 'aesthetic', reports } };
  await withTempDir('eval-html', async (dir) => {
    const file = path.join(dir, 'scorers.html');
    await writeFile(file, await renderHtml(report, fileThumbnails({ exif: 'apply', maxPixels: DEFAULT_MAX_PIXELS })));
    await withPage(async (page) => {
      await lookAt(page, file, 'eval-scorers');
      const dom = await page.evaluate<{ title: string; handlers: number; after: boolean; rows: { scorer: string; m: number; head: string; fields: Record<string, { text: string; value?: string; low?: string; high?: string }> }[] }>(`(() => {
        const table = document.getElementById('every-scorer');
        const comparison = document.getElementById('comparison');
        return {
          title: document.title,
          handlers: [...document.querySelectorAll('*')].filter((e) => [...e.attributes].some((a) => a.name.startsWith('on'))).length,
          after: Boolean(comparison.compareDocumentPosition(table) & Node.DOCUMENT_POSITION_FOLLOWING),
          rows: [...table.tBodies[0].rows].map((tr) => ({ scorer: tr.dataset.scorer, m: Number(tr.dataset.m), head: tr.querySelector('th').textContent,
            fields: Object.fromEntries([...tr.querySelectorAll('td[data-field]')].map((td) => [td.dataset.field, { text: td.textContent, ...td.dataset }])) })),
        };
      })()`);
      assert.ok(!dom.title.includes('pwned'), dom.title);
      assert.equal(dom.handlers, 0);
      assert.ok(dom.after, 'the table follows the comparison table');
      assert.deepEqual(dom.rows.map((r) => [r.scorer, r.m]), [['hpsv2.1', 0], ['hpsv2.1', 1], ['hpsv2.1', 2], ['aesthetic', 0], ['aesthetic', 1], ['aesthetic', 2]]);
      for (const row of dom.rows) {
        const sub = reports[row.scorer as keyof typeof reports];
        const m = sub.models[row.m];
        assert.equal(row.head, row.scorer === 'aesthetic' ? 'aesthetic gate' : row.scorer);
        assert.equal(Number(row.fields.mean.value), m.mean);
        assert.ok(Math.abs(shown(row.fields.mean.text) - m.mean!) <= 5e-4 + 1e-12, row.fields.mean.text);
        assert.deepEqual([Number(row.fields.modelCi95.low), Number(row.fields.modelCi95.high)], [m.ci95.low, m.ci95.high]);
        if (row.m === 0) continue;
        const c = sub.comparisons.find((x) => x.candidate === m.model)!;
        assert.equal(Number(row.fields.meanDiff.value), c.meanDiff);
        assert.ok(Math.abs(shown(row.fields.meanDiff.text) - c.meanDiff!) <= 5e-4 + 1e-12, row.fields.meanDiff.text);
        assert.deepEqual([Number(row.fields.ci95.low), Number(row.fields.ci95.high)], [c.ci95.low, c.ci95.high]);
        assert.equal(Number(row.fields.winRate.value), c.winRate);
        assert.equal(Number(row.fields.signTestP.value), c.signTestP);
      }
      assert.deepEqual(page.problems, []);
    });
  });
});
