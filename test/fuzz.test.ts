/**
 * Bounded, seeded fuzzing of the parsers that read what users hand pickscore: eval manifests, PNG text
 * chunks, and image bytes through decodeImage and the ImagePool. Random and mutated inputs must never
 * crash the process or hang, and must fail only with typed errors (or ok:false with a reason).
 *
 * Each target runs a fixed number of iterations (about half a second's worth on a 2-core machine when it
 * is idle), times PICKSCORE_FUZZ_SCALE (default 1), from PICKSCORE_FUZZ_SEED (default 1); a failure names
 * the seed and the iteration, so it can be replayed. Iterations, not a time budget: a loaded machine
 * takes longer over the same inputs instead of trying fewer.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { deflateSync } from 'node:zlib';
import sharp from 'sharp';
import { parseManifest } from '../src/io/manifest.js';
import { promptFromPngText, readPngTextChunks } from '../src/io/png-text.js';
import { decodeImage } from '../src/image/codec.js';
import { ImagePool } from '../src/image/pool.js';
import { CLIP_PREPROCESS } from '../src/image/preprocess.js';
import { InputError } from '../src/errors.js';
import { seededRandom } from './helpers/image-pillow.js';
import { itxtChunk, pngChunk, pngWithChunks, textChunk, ztxtChunk } from './helpers/image-files.js';

const SCALE = Number(process.env.PICKSCORE_FUZZ_SCALE ?? 1);
const SEED = Number(process.env.PICKSCORE_FUZZ_SEED ?? 1);
/** A call that takes this long is taken to hang: generous, so a loaded machine never trips it. */
const CALL_DEADLINE_MS = 20_000;
/** Small enough that a mutated header cannot make a decode allocate much; big enough for every seed image. */
const MAX_PIXELS = 1 << 20;

type Random = () => number;

/** Runs `body` for `iterations` × PICKSCORE_FUZZ_SCALE iterations (at least one); returns how many ran. */
async function fuzz(t: TestContext, name: string, iterations: number, body: (random: Random, iteration: number) => Promise<void> | void): Promise<number> {
  const random = seededRandom(SEED);
  const count = Math.max(1, Math.round(iterations * SCALE));
  let iteration = 0;
  for (; iteration < count; iteration++) {
    try {
      await body(random, iteration);
    } catch (err) {
      assert.fail(`${name}: seed ${SEED}, iteration ${iteration}: ${err instanceof Error ? err.stack ?? err.message : String(err)}`);
    }
  }
  t.diagnostic(`${name}: ${iteration} iterations from seed ${SEED}`);
  return iteration;
}

async function withinDeadline<T>(what: string, work: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not settle within ${CALL_DEADLINE_MS} ms`)), CALL_DEADLINE_MS);
  });
  try {
    return await Promise.race([work, deadline]);
  } finally {
    clearTimeout(timer);
  }
}

const pick = <T>(random: Random, items: readonly T[]): T => items[Math.floor(random() * items.length)];
const int = (random: Random, below: number): number => Math.floor(random() * below);

// ---- manifests ------------------------------------------------------------------------------------

const FIELDS = ['prompt', 'caption', 'image', 'model', 'id', 'image_0', 'image_1', 'label_0', 'extra'];
const STRINGS = ['', 'a cat', 'img.png', '../x.png', '/abs/y.png', 'ünï "q" \\ \n', '\u0000', 'a'.repeat(300)];

function randomValue(random: Random, depth = 0): unknown {
  switch (int(random, depth > 1 ? 6 : 8)) {
    case 0: return null;
    case 1: return random() < 0.5;
    case 2: return pick(random, [0, 0.5, 1, -1, 2, 1e308, -0, 3.25, Number.MAX_SAFE_INTEGER + 2]);
    case 3: case 4: return pick(random, STRINGS);
    case 5: return undefined;
    case 6: return Array.from({ length: int(random, 3) }, () => randomValue(random, depth + 1));
    default: return Object.fromEntries(Array.from({ length: int(random, 3) }, () => [pick(random, FIELDS), randomValue(random, depth + 1)]));
  }
}

/** One line: a random object over the schema's fields, a valid row, or either with its text damaged. */
function randomLine(random: Random): string {
  const valid = random() < 0.3;
  const obj: Record<string, unknown> = valid
    ? (random() < 0.5 ? { prompt: pick(random, STRINGS), image: 'img.png' } : { prompt: 'p', image_0: 'a.png', image_1: 'b.png', label_0: pick(random, [0, 0.5, 1]) })
    : Object.fromEntries(FIELDS.filter(() => random() < 0.4).map((f) => [f, randomValue(random)]));
  let text = random() < 0.1 ? JSON.stringify(randomValue(random)) ?? 'undefined' : JSON.stringify(obj);
  if (random() < 0.3) {
    const chars = [...text];
    for (let m = 1 + int(random, 4); m > 0; m--) {
      const at = int(random, chars.length + 1);
      if (random() < 0.5) chars.splice(at, 1);
      else chars.splice(at, 0, pick(random, ['{', '}', '"', ',', ':', '\\', '\uFEFF', '\r', ' ', 'x', '\u2028']));
    }
    text = chars.join('');
  }
  return text;
}

test('fuzz: the manifest parser reports every non-blank line as a row or as issues, and never throws', async (t) => {
  const file = '/fuzz/run.jsonl';
  await fuzz(t, 'parseManifest', 5000, (random) => {
    const lines = Array.from({ length: 1 + int(random, 8) }, () => (random() < 0.1 ? pick(random, ['', '  ', '\t']) : randomLine(random)));
    const text = (random() < 0.2 ? '\uFEFF' : '') + lines.join(random() < 0.3 ? '\r\n' : '\n');
    const { rows, issues } = parseManifest(text, file);
    const physical = text.replace(/^\uFEFF/, '').split(/\r?\n/);
    const nonBlank = physical.map((l, i) => (l.trim() === '' ? 0 : i + 1)).filter((n) => n > 0);
    const issueLines = new Set(issues.map((i) => i.line));
    for (const issue of issues) {
      assert.equal(issue.manifest, file);
      assert.ok(nonBlank.includes(issue.line), `issue on line ${issue.line}, which is blank or absent`);
      assert.ok(issue.field.length > 0 && issue.problem.length > 0, JSON.stringify(issue));
    }
    for (const row of rows) {
      assert.ok(!issueLines.has(row.line), `line ${row.line} is both a row and an issue`);
      assert.equal(typeof row.prompt, 'string');
      const images = row.kind === 'pointwise' ? [row.image] : [row.image0, row.image1];
      for (const image of images) assert.ok(image.given.length > 0 && image.path.startsWith('/'), JSON.stringify(image));
    }
    // Nothing is lost: every non-blank line is exactly one row or has its issues.
    assert.deepEqual([...rows.map((r) => r.line), ...issueLines].sort((a, b) => a - b), nonBlank);
  });
});

// ---- PNG text chunks ------------------------------------------------------------------------------

const SIGNATURE_LENGTH = 8;

/** The chunk boundaries of a well-formed PNG, for structure-aware mutations. */
function chunkSpans(png: Buffer): { start: number; end: number }[] {
  const spans: { start: number; end: number }[] = [];
  for (let at = SIGNATURE_LENGTH; at + 12 <= png.length;) {
    const end = at + 12 + png.readUInt32BE(at);
    spans.push({ start: at, end });
    at = end;
  }
  return spans;
}

/** Bit flips, truncation, a chunk duplicated or dropped, a length field rewritten, garbage appended. */
function mutate(random: Random, seed: Buffer): Buffer {
  let bytes = Buffer.from(seed);
  const spans = seed.subarray(1, 4).toString('latin1') === 'PNG' ? chunkSpans(seed) : [];
  for (let round = 1 + int(random, 3); round > 0; round--) {
    const kind = int(random, 6);
    if (kind === 0) {
      for (let flips = 1 + int(random, 8); flips > 0; flips--) bytes[int(random, bytes.length)] ^= 1 << int(random, 8);
    } else if (kind === 1) {
      bytes = bytes.subarray(0, int(random, bytes.length));
    } else if (kind === 2 && spans.length > 0 && bytes.length === seed.length) {
      const span = pick(random, spans);
      bytes = Buffer.concat([bytes.subarray(0, span.end), bytes.subarray(span.start, span.end), bytes.subarray(span.end)]);
    } else if (kind === 3 && spans.length > 1 && bytes.length === seed.length) {
      const span = pick(random, spans.slice(1));
      bytes = Buffer.concat([bytes.subarray(0, span.start), bytes.subarray(span.end)]);
    } else if (kind === 4 && spans.length > 0 && bytes.length === seed.length) {
      bytes.writeUInt32BE(pick(random, [0, 1, 0x7fffffff, 0xffffffff, int(random, 1 << 20)]), pick(random, spans).start);
    } else if (bytes.length > 0) {
      const start = int(random, bytes.length);
      const range = bytes.subarray(start, start + int(random, 64));
      bytes = Buffer.concat([bytes, range, Buffer.from(Array.from({ length: int(random, 16) }, () => int(random, 256)))]);
    }
  }
  return bytes;
}

test('fuzz: the PNG text-chunk prompt reader on structure-aware mutations throws only InputError', { timeout: 120_000 }, async (t) => {
  const graph = JSON.stringify({ '3': { class_type: 'KSampler', inputs: { positive: ['6', 0] } }, '6': { class_type: 'CLIPTextEncode', inputs: { text: 'a lighthouse' } } });
  const seeds = [
    pngWithChunks([textChunk('parameters', 'a cat\nNegative prompt: dog\nSteps: 20'), ztxtChunk('prompt', graph), itxtChunk('Title', '日本', true)]),
    pngWithChunks([itxtChunk('parameters', 'ünïcödé\nSteps: 1', false), pngChunk('zTXt', Buffer.concat([Buffer.from('prompt\0\0'), deflateSync(Buffer.from(graph))]))]),
  ];
  // The existing fuzz (image-png-text.test.ts) overwrites bytes; this one moves, repeats and resizes chunks.
  await fuzz(t, 'readPngTextChunks', 5000, (random) => {
    const bytes = mutate(random, pick(random, seeds));
    try {
      const chunks = readPngTextChunks(bytes);
      for (const [key, value] of Object.entries(chunks)) assert.ok(typeof key === 'string' && typeof value === 'string');
      const prompt = promptFromPngText(chunks);
      assert.ok(prompt === undefined || typeof prompt === 'string');
    } catch (err) {
      if (!(err instanceof InputError)) throw err;
    }
  });
});

// ---- image decoding -------------------------------------------------------------------------------

async function seedImages(): Promise<Buffer[]> {
  const rgb = Buffer.alloc(24 * 18 * 3);
  for (let i = 0; i < rgb.length; i++) rgb[i] = (i * 37) & 0xff;
  const image = () => sharp(rgb, { raw: { width: 24, height: 18, channels: 3 } });
  return Promise.all([
    image().png().toBuffer(),
    image().png({ palette: true }).toBuffer(),
    image().jpeg({ quality: 80 }).toBuffer(),
    image().jpeg({ progressive: true }).toBuffer(),
    image().webp({ lossless: true }).toBuffer(),
    image().webp({ quality: 50 }).toBuffer(),
    image().gif().toBuffer(),
    image().tiff({ compression: 'lzw' }).toBuffer(),
    image().withMetadata({ orientation: 6 }).jpeg().toBuffer(),
  ]);
}

test('fuzz: decodeImage on mutated images gives RGB of the stated size or an InputError, and never hangs', { timeout: 300_000 }, async (t) => {
  const seeds = await seedImages();
  let decoded = 0;
  const ran = await fuzz(t, 'decodeImage', 400, async (random) => {
    const bytes = mutate(random, pick(random, seeds));
    try {
      const image = await withinDeadline('decodeImage', decodeImage(bytes, { exif: random() < 0.5 ? 'apply' : 'ignore', maxPixels: MAX_PIXELS }));
      assert.equal(image.data.length, image.width * image.height * 3, `${image.format} ${image.width}x${image.height}`);
      decoded++;
    } catch (err) {
      if (!(err instanceof InputError)) throw err;
    }
  });
  assert.ok(decoded > 0 && decoded < ran, `${decoded} of ${ran} mutated images decoded: the mutations should leave some whole and break others`);
});

test('fuzz: the ImagePool prepares mutated images or answers ok:false with a reason, and keeps working', { timeout: 300_000 }, async (t) => {
  const seeds = await seedImages();
  const pool = new ImagePool({ threads: 2, preprocess: CLIP_PREPROCESS, image: { exif: 'apply', resize: 'exact', maxPixels: MAX_PIXELS } });
  const pixels = 3 * CLIP_PREPROCESS.cropHeight * CLIP_PREPROCESS.cropWidth;
  try {
    await fuzz(t, 'ImagePool.prepare', 100, async (random, iteration) => {
      const bytes = mutate(random, pick(random, seeds));
      const prepared = await withinDeadline('ImagePool.prepare', pool.prepare({ bytes, label: `mutant-${iteration}` }));
      if (prepared.ok) assert.equal(prepared.pixels.length, pixels);
      else assert.doesNotMatch(prepared.error, /internal error/, 'an untyped error escaped the decoder');
    });
    const after = await withinDeadline('ImagePool.prepare', pool.prepare({ bytes: seeds[0], label: 'intact' }));
    assert.ok(after.ok, 'the pool still prepares a good image after the mutants');
  } finally {
    await pool.close();
  }
});
