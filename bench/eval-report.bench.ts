/**
 * The eval report at scale: a 10,000-item eval (2,250 prompts x 4 checkpoints and 1,000 pairs, over
 * 10,000 generated 192x192 PNGs) scored by the tiny model, rendered to HTML and Markdown, and the HTML
 * opened in headless Chromium over the DevTools protocol. Figures: the page's size, the inlined images,
 * the render time in Node, and in Chromium the time from navigation start to the end of the load event
 * and to the first animation frame after it (the page laid out and painted), at 1280 px, three loads.
 */
import { mkdir, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import type { BenchContext } from './run.js';
import { runEval } from '../src/commands/eval.js';
import { renderHtml } from '../src/eval/render-html.js';
import { renderMarkdown } from '../src/eval/render-markdown.js';
import { DEFAULT_MAX_PIXELS } from '../src/image/image.js';
import { fileThumbnails } from '../src/eval/thumbnails.js';
import { encodePng } from '../test/helpers/pipe-images.js';
import { tinyModel } from '../test/helpers/tiny-model.js';
import { chromiumPath } from '../test/helpers/chromium.js';
import { withPage, type LoadTiming } from '../test/helpers/cdp.js';

export const name = 'eval-report';

const PROMPTS = 2_250;
const MODELS = 4;
const PAIRS = 1_000;
const SIDE = 192;
const LOADS = 3;

/** A smooth picture with a little texture, different for every seed: PNGs of realistic size, thumbnails that are not flat. */
function picture(seed: number): Uint8Array {
  const rgb = new Uint8Array(SIDE * SIDE * 3);
  let state = seed * 2654435761 >>> 0;
  for (let y = 0; y < SIDE; y++) {
    for (let x = 0; x < SIDE; x++) {
      state = (state * 1664525 + 1013904223) >>> 0;
      const noise = state >>> 28;
      const i = (y * SIDE + x) * 3;
      rgb[i] = (128 + 100 * Math.sin((x + seed) / 17) + noise) & 0xff;
      rgb[i + 1] = (128 + 100 * Math.cos((y * 3 + seed) / 29) + noise) & 0xff;
      rgb[i + 2] = ((x * y) / 160 + seed * 13 + noise) & 0xff;
    }
  }
  return rgb;
}

function promptText(i: number): string {
  const subjects = ['a fox in a snowy forest', 'a bowl of ramen', 'a red sports car at night', 'an astronaut riding a horse', 'a lighthouse in a storm'];
  const styles = ['watercolor', 'studio ghibli style', 'ultra realistic photo, 8k, HDR', 'oil painting', 'isometric pixel art'];
  return `${subjects[i % 5]}, ${styles[Math.floor(i / 5) % 5]}, variation ${i}`;
}

export async function run(ctx: BenchContext): Promise<Record<string, unknown>> {
  if (!chromiumPath) return { skipped: 'chromium is not installed' };
  const dir = path.join(ctx.workDir, 'eval-report-10k');
  await rm(dir, { recursive: true, force: true });
  await mkdir(path.join(dir, 'images'), { recursive: true });
  ctx.log(`writing ${PROMPTS * MODELS + PAIRS} images`);
  const lines: string[] = [];
  let image = 0;
  const write = async (): Promise<string> => {
    const file = `images/${String(image).padStart(5, '0')}.png`;
    await writeFile(path.join(dir, file), encodePng(picture(image++), SIDE, SIDE));
    return file;
  };
  for (let p = 0; p < PROMPTS; p++) {
    for (let m = 0; m < MODELS; m++) lines.push(JSON.stringify({ prompt: promptText(p), image: await write(), model: `ckpt-${(m + 1) * 1000}` }));
  }
  // Each pair shows one of the checkpoints' images beside a new one.
  for (let q = 0; q < PAIRS; q++) {
    lines.push(JSON.stringify({ prompt: promptText(q), image_0: `images/${String(q * MODELS).padStart(5, '0')}.png`, image_1: await write(), label_0: q % 3 === 0 ? 0.5 : q % 2 }));
  }
  const manifest = path.join(dir, 'eval.jsonl');
  await writeFile(manifest, `${lines.join('\n')}\n`);

  ctx.log('scoring');
  let started = performance.now();
  const result = await runEval({ manifests: [manifest], model: await tinyModel(), device: 'cpu', cacheDir: false, baseline: 'ckpt-1000', candidate: 'ckpt-2000' });
  const scoreS = (performance.now() - started) / 1000;

  ctx.log('rendering');
  started = performance.now();
  const html = await renderHtml(result.report, fileThumbnails({ exif: 'apply', maxPixels: DEFAULT_MAX_PIXELS }));
  const renderHtmlMs = performance.now() - started;
  const markdown = renderMarkdown(result.report);
  const file = path.join(dir, 'report.html');
  await writeFile(file, html);

  ctx.log('loading in chromium');
  const loads: LoadTiming[] = [];
  const page = await withPage(async (browserPage) => {
    await browserPage.emulate({ width: 1280, height: 900 });
    for (let i = 0; i < LOADS; i++) loads.push(await browserPage.load(pathToFileURL(file).href));
    return browserPage.evaluate<{ nodes: number; images: number; decoded: number; rows: number; height: number }>(`({
      nodes: document.getElementsByTagName('*').length, images: document.images.length,
      decoded: [...document.images].filter((img) => img.complete && img.naturalWidth > 0).length,
      rows: document.querySelectorAll('#grid tbody tr').length, height: document.documentElement.scrollHeight })`);
  });
  const round = (x: number): number => Math.round(x);
  return {
    items: lines.length, pointwise: PROMPTS * MODELS, pairs: PAIRS, prompts: PROMPTS, models: MODELS, image_px: SIDE,
    score_s: scoreS,
    html_bytes: Buffer.byteLength(html), html_mib: Buffer.byteLength(html) / 2 ** 20,
    inlined_image_bytes: [...html.matchAll(/src="(data:[^"]*)"/g)].reduce((sum, m) => sum + m[1].length, 0),
    markdown_bytes: Buffer.byteLength(markdown),
    render_html_ms: round(renderHtmlMs),
    chromium: {
      viewport: '1280x900',
      dom_content_loaded_ms: loads.map((l) => round(l.domContentLoadedMs)),
      load_event_end_ms: loads.map((l) => round(l.loadMs)),
      first_frame_after_load_ms: loads.map((l) => round(l.firstFrameAfterLoadMs)),
      navigate_to_frame_wall_ms: loads.map((l) => round(l.wallMs)),
      ...page,
    },
  };
}
