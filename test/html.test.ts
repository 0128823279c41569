import { test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFile, mkdtemp, readFile, readdir } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import { openRankWriter, type RankRecord } from '../src/io/writers/index.js';
import { THUMBNAIL_MAX_SIDE, THUMBNAILS_IN_FLIGHT, recordThumbnails, renderGallery } from '../src/io/html-gallery.js';
import { fileThumbnailer } from '../src/image/thumbnail.js';
import { DEFAULT_MAX_PIXELS } from '../src/image/image.js';
import { decodeImage } from '../src/image/codec.js';
import { referenceDir, skipWithoutReference } from './helpers/paths.js';
import { dumpDom, screenshot, skipWithoutChromium } from './helpers/chromium.js';
import { runCli } from './helpers/pipe-cli.js';
import { withTempDir } from './helpers/temp-dir.js';
import { tinyModel } from './helpers/tiny-model.js';

const HOSTILE_PROMPT = 'a <script>alert(1)</script> & "dog"';
const GALLERY_PROMPTS = ['an astronaut riding a horse', HOSTILE_PROMPT];

function record(over: Partial<RankRecord> & { path: string }): RankRecord {
  return { prompt: 'p', score: 20, prob: 0.5, rank: 1, width: 10, height: 10, error: null, ...over };
}

async function renderToString(records: RankRecord[], incomplete = false): Promise<string> {
  let html = '';
  await renderGallery(records, { incomplete, provenance: { model: 'tiny-clip', precision: 'fp32', nested: { skipped: true } }, thumbnail: async (rec) => `data:image/png;base64,${Buffer.from(rec.path).toString('base64')}` }, async (piece) => {
    html += piece;
  });
  return html;
}

test('the gallery is self-contained: data URIs only, a CSP that forbids every other source, text escaped', async () => {
  const html = await renderToString([
    record({ path: 'imgs/<b>"x".png', prompt: HOSTILE_PROMPT, rank: 2, score: 19 }),
    record({ path: 'imgs/top.png', prompt: HOSTILE_PROMPT, rank: 1, score: 21 }),
    record({ path: 'imgs/bad.png', prompt: HOSTILE_PROMPT, rank: null, score: null, prob: null, error: 'truncated <PNG>' }),
  ], true);
  assert.match(html, /<meta http-equiv="Content-Security-Policy" content="default-src 'none'; img-src data:; style-src 'unsafe-inline'">/);
  assert.doesNotMatch(html, /<script/i);
  assert.doesNotMatch(html, /(src|href)="(?!data:)/);
  assert.match(html, /a &lt;script&gt;alert\(1\)&lt;\/script&gt; &amp; &quot;dog&quot;/);
  assert.match(html, /imgs\/&lt;b&gt;&quot;x&quot;\.png/);
  assert.match(html, /<span class="error">truncated &lt;PNG&gt;<\/span>/);
  assert.match(html, /class="incomplete"/);
  assert.match(html, /<dt>model<\/dt><dd>tiny-clip<\/dd><dt>precision<\/dt><dd>fp32<\/dd><\/dl>/);
  assert.equal(html.match(/<img /g)?.length, 2, 'the error row has no thumbnail');
  assert.ok(html.indexOf('imgs/top.png') < html.indexOf('imgs/&lt;b&gt;') && html.indexOf('imgs/&lt;b&gt;') < html.indexOf('imgs/bad.png'), 'rank order, errors last');
});

test('each image is thumbnailed once even when it appears under several prompts; a failed thumbnail shows no preview', async () => {
  const calls: string[] = [];
  let html = '';
  const records = ['p1', 'p2', 'p3'].flatMap((prompt) => [record({ path: 'a.png', prompt }), record({ path: 'broken.png', prompt, rank: 2 })]);
  await renderGallery(records, {
    thumbnail: async (rec) => {
      calls.push(rec.path);
      if (rec.path === 'broken.png') throw new Error('cannot decode');
      return 'data:image/jpeg;base64,AAAA';
    },
  }, async (piece) => {
    html += piece;
  });
  assert.deepEqual(calls, ['a.png', 'broken.png']);
  assert.equal(html.match(/<section class="prompt">/g)?.length, 3);
  assert.equal(html.match(/<div class="no-preview">no preview<\/div>/g)?.length, 3);
});

test('thumbnails are made several at once ahead of the cards, yet the cards come in rank order and stream out one by one', async () => {
  const records = Array.from({ length: 40 }, (_, i) => record({ path: `img-${String(i).padStart(2, '0')}.png`, rank: i + 1 }));
  let inFlight = 0;
  let mostInFlight = 0;
  const pieces: string[] = [];
  await renderGallery(records, {
    thumbnail: async (rec) => {
      inFlight++;
      mostInFlight = Math.max(mostInFlight, inFlight);
      // Later images finish first, so the order of the page cannot come from the order of completion.
      await new Promise((resolve) => setTimeout(resolve, 40 - Number(/\d+/.exec(rec.path)![0])));
      inFlight--;
      return `data:image/webp;base64,${Buffer.from(rec.path).toString('base64')}`;
    },
  }, async (piece) => {
    pieces.push(piece);
  });
  assert.equal(mostInFlight, THUMBNAILS_IN_FLIGHT, 'as many thumbnails at once as the queue allows, and no more');
  const cards = pieces.filter((piece) => piece.startsWith('<li class="card"'));
  assert.equal(cards.length, 40, 'one piece per card: the page is handed over as it is made');
  cards.forEach((piece, i) => assert.ok(piece.includes(`alt="${records[i].path}"`) && piece.includes(Buffer.from(records[i].path).toString('base64')), `card ${i}`));
});

test('an image under several prompts is thumbnailed once while kept thumbnails fit their budget (64 MB), and made again past it', async () => {
  const made: string[] = [];
  const records = ['p1', 'p2'].flatMap((prompt) => Array.from({ length: 3 }, (_, i) => record({ path: `img-${i}.png`, prompt, rank: i + 1 })));
  const big = `data:image/webp;base64,${'A'.repeat(30 * 1024 * 1024)}`;
  await renderGallery(records, {
    thumbnail: async (rec) => {
      made.push(rec.path);
      return rec.path === 'img-2.png' ? big : `data:image/webp;base64,${'A'.repeat(1000)}`;
    },
  }, async () => undefined);
  assert.deepEqual(made, ['img-0.png', 'img-1.png', 'img-2.png'], 'small thumbnails are kept for the second prompt');

  const bigMade: string[] = [];
  await renderGallery(records, {
    thumbnail: async (rec) => {
      bigMade.push(rec.path);
      return big;
    },
  }, async () => undefined);
  assert.deepEqual(bigMade, ['img-0.png', 'img-1.png', 'img-2.png', 'img-2.png'], 'two 30 MB thumbnails fit the budget, the third is made again when its second card comes');
});

interface DomCard { rank: string; score: string; path: string; src: string | undefined }

/** The cards of each prompt section, in document order, from Chromium's serialised DOM. */
function cardsBySection(dom: string): { prompt: string; cards: DomCard[] }[] {
  return dom.split('<section class="prompt">').slice(1).map((section) => ({
    prompt: /<h2><span class="label">Prompt<\/span> (.*?)<\/h2>/s.exec(section)?.[1] ?? '',
    cards: [...section.matchAll(/<li class="card[^"]*" data-rank="([^"]*)"[^>]*>(.*?)<\/li>/gs)].map((m) => ({
      rank: m[1],
      score: /<span class="score"[^>]*>([^<]*)<\/span>/.exec(m[2])?.[1] ?? '',
      path: /<span class="path">([^<]*)<\/span>/.exec(m[2])?.[1] ?? '',
      src: /<img src="([^"]*)"/.exec(m[2])?.[1],
    })),
  }));
}

/** Reference images with made-up scores, handed to the writer out of rank order. */
async function galleryRecords(): Promise<RankRecord[]> {
  const files = (await readdir(path.join(referenceDir, 'images'))).sort();
  const records: RankRecord[] = [];
  for (const [p, prompt] of GALLERY_PROMPTS.entries()) {
    const scored = files.map((file, i) => ({ file, score: 18 + ((i * 7 + p * 3) % files.length) * 0.5 }));
    const ranked = [...scored].sort((a, b) => b.score - a.score);
    for (const { file, score } of scored) {
      records.push({ path: path.join(referenceDir, 'images', file), prompt, score, prob: 1 / files.length, rank: ranked.findIndex((r) => r.file === file) + 1, width: 1, height: 1, error: null });
    }
  }
  records.push({ path: path.join(referenceDir, 'images', 'missing.png'), prompt: HOSTILE_PROMPT, score: null, prob: null, rank: null, width: null, height: null, error: 'no such file' });
  return records;
}

test('in headless Chromium the gallery shows every image in rank order with its score', { skip: skipWithoutReference || skipWithoutChromium }, async () => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'pickscore-gallery-'));
  const htmlFile = path.join(dir, 'gallery.html');
  const records = await galleryRecords();
  const thumbnail = recordThumbnails(fileThumbnailer({ exif: 'apply', maxPixels: DEFAULT_MAX_PIXELS }, THUMBNAIL_MAX_SIDE));
  const writer = await openRankWriter('html', { path: htmlFile }, { title: 'gallery test', thumbnail });
  for (const rec of records) await writer.write(rec);
  await writer.finish({ incomplete: false });

  const sections = cardsBySection(await dumpDom(htmlFile));
  assert.deepEqual(sections.map((s) => s.prompt), ['an astronaut riding a horse', 'a &lt;script&gt;alert(1)&lt;/script&gt; &amp; "dog"']);
  sections.forEach(({ cards }, p) => {
    const expected = records.filter((r) => r.prompt === GALLERY_PROMPTS[p] && r.rank !== null).sort((a, b) => a.rank! - b.rank!);
    const ranked = cards.filter((c) => c.rank !== '');
    assert.deepEqual(ranked.map((c) => c.rank), expected.map((r) => String(r.rank)));
    assert.deepEqual(ranked.map((c) => c.path), expected.map((r) => r.path));
    assert.deepEqual(ranked.map((c) => c.score), expected.map((r) => r.score!.toFixed(4)));
    for (const card of ranked) assert.match(card.src ?? '', /^data:image\/(jpeg|png|webp);base64,[A-Za-z0-9+/]{100,}={0,2}$/);
  });
  assert.deepEqual(sections[1].cards.at(-1), { rank: '', score: '', path: path.join(referenceDir, 'images', 'missing.png'), src: undefined });

  for (const colorScheme of ['light', 'dark'] as const) {
    const png = path.join(dir, `gallery-${colorScheme}.png`);
    await screenshot(htmlFile, png, { width: 1200, height: 900, colorScheme });
    const shot = await decodeImage(await readFile(png), { exif: 'ignore', maxPixels: 1e8 });
    assert.deepEqual([shot.width, shot.height], [1200, 900]);
    const corner = shot.data[0] + shot.data[1] + shot.data[2];
    assert.ok(colorScheme === 'light' ? corner > 600 : corner < 120, `${colorScheme} background (corner sum ${corner})`);
    // Photographs, not grey placeholders: decoded thumbnails bring thousands of distinct colours.
    const colours = new Set<number>();
    for (let i = 0; i < shot.data.length; i += 3) colours.add((shot.data[i] << 16) | (shot.data[i + 1] << 8) | shot.data[i + 2]);
    assert.ok(colours.size > 5_000, `${colorScheme}: ${colours.size} distinct colours`);
    process.stderr.write(`gallery screenshot (${colorScheme}): ${png}\n`);
  }
});

/** The width and height of each card's thumbnail in a gallery page, by the card's path. */
async function thumbnailSizes(html: string): Promise<Map<string, [number, number]>> {
  const sizes = new Map<string, [number, number]>();
  for (const card of html.split('<li class="card').slice(1)) {
    const uri = /<img src="data:image\/webp;base64,([^"]+)"/.exec(card)?.[1];
    const file = /<span class="path">([^<]+)<\/span>/.exec(card)?.[1];
    if (!uri || !file) continue;
    const meta = await sharp(Buffer.from(uri, 'base64')).metadata();
    sizes.set(file, [meta.width ?? 0, meta.height ?? 0]);
  }
  return sizes;
}

test('the gallery shows each image as the run read it: --exif ignore leaves an EXIF-rotated photo unrotated, in rank and in merge', { skip: skipWithoutReference }, async () => {
  await withTempDir('gallery-exif', async (dir) => {
    await copyFile(path.join(referenceDir, 'images', 'rocket-exif6.jpg'), path.join(dir, 'rocket.jpg'));
    const scoring = ['--prompt', 'a rocket', '--model', await tinyModel(), '--device', 'cpu', '--no-cache', '--threads', '1'];
    const sizeOf = async (args: string[]) => {
      const run = await runCli(args, { cwd: dir });
      assert.equal(run.code, 0, run.stderr);
      return (await thumbnailSizes(run.stdout)).get('rocket.jpg');
    };
    // The file holds 640x427 pixels with orientation 6: a viewer shows it 427 wide and 640 high.
    assert.deepEqual(await sizeOf(['rank', 'rocket.jpg', ...scoring, '--format', 'html']), [171, 256]);
    assert.deepEqual(await sizeOf(['rank', 'rocket.jpg', ...scoring, '--exif', 'ignore', '--format', 'html']), [256, 171]);
    const part = await runCli(['rank', 'rocket.jpg', ...scoring, '--exif', 'ignore', '--shard', '0/1', '--out', 'part.json'], { cwd: dir });
    assert.equal(part.code, 0, part.stderr);
    assert.deepEqual(await sizeOf(['merge', 'part.json', '--format', 'html']), [256, 171]);
  });
});
