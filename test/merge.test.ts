import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { InputError, UsageError } from '../src/errors.js';
import { mergeRankParts, readPart, runMerge, type MergeOptions, type MergedRank, type RankPart } from '../src/commands/merge.js';
import { rankRecords } from '../src/commands/rank.js';
import { jsonFormat } from '../src/io/writers/json.js';
import { csvFormat } from '../src/io/writers/csv.js';
import type { StreamingFormat } from '../src/io/writers/format.js';
import type { RankRecord } from '../src/io/writers/record.js';
import type { ScoredItem } from '../src/pipeline/scorer.js';
import { mulberry32 } from '../src/score/stats.js';
import { digestKeys, shardOfKey, type RankRunIdentity } from '../src/shard.js';

const provenance = {
  model: 'tiny-clip', fingerprint: 'f00d', sourceFiles: [{ name: 'model.safetensors', sha256: 'ab' }], precision: 'fp32', attention: 'plain',
  executionProvider: 'cpu', device: 'cpu', onnxruntimeVersion: '1.29.0', pickscoreVersion: '0.1.0', exif: 'apply', resize: 'exact', maxPixels: 178956970,
};
const prompts = ['a red fox', 'a blue car'];

/** What an unsharded rank feeds rankRecords: images sorted by path, each image's prompts in order. */
function syntheticItems(): ScoredItem[] {
  const random = mulberry32(42);
  const paths = Array.from({ length: 40 }, (_, i) => `imgs/${i % 3 === 0 ? 'b' : 'a'}/img-${String(i).padStart(3, '0')}.png`).sort();
  const items: ScoredItem[] = [];
  for (const [i, key] of paths.entries()) {
    for (const prompt of prompts) {
      const failed = i === 7;
      // Scores repeat (ties, broken by path) and carry full float64 precision.
      const score = failed ? null : i % 5 === 0 ? 20.5 : 18 + 6 * random();
      items.push({ key, prompt, score, width: failed ? null : 512, height: failed ? null : 512 + i, contentHash: failed ? null : `h${i}`, error: failed ? 'unreadable image' : null });
    }
  }
  return items;
}

const promptError: RankRecord = { path: 'imgs/a/no-prompt.png', prompt: '', score: null, prob: null, rank: null, width: null, height: null, error: 'no sidecar prompt', contentHash: null };

/** The identity every part of the synthetic run records: all its images (before sharding) and its prompts. */
function runOf(items: ScoredItem[], promptList = prompts): RankRunIdentity {
  return { command: 'rank', images: digestKeys([...items.map((item) => item.key), promptError.path]), prompts: { from: 'list', prompts: promptList } };
}

function render(records: RankRecord[], format: StreamingFormat, incomplete = false): string {
  return format.header() + records.map((r) => format.row(r)).join('') + format.footer(incomplete);
}

async function mergeRank(options: MergeOptions): Promise<MergedRank> {
  const merged = await runMerge(options);
  assert.equal(merged.kind, 'rank');
  return merged as MergedRank;
}

let dir: string;
before(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'pickscore-merge-test-'));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** Writes the parts an N-way sharded rank would write, as the CLI writes `--format json`. */
async function writeParts(items: ScoredItem[], count: number, tag: string, edit?: (i: number, prov: Record<string, unknown>) => void): Promise<string[]> {
  const files: string[] = [];
  for (let index = 0; index < count; index++) {
    const mine = items.filter((item) => shardOfKey(item.key, count) === index);
    const records = rankRecords(mine).concat(shardOfKey(promptError.path, count) === index ? [promptError] : []);
    const prov: Record<string, unknown> = { ...provenance, shard: `${index}/${count}`, run: runOf(items), stats: { imagesEncoded: mine.length, encoderBusyMs: 3.5 } };
    edit?.(index, prov);
    const file = path.join(dir, `${tag}-part-${index}.json`);
    await writeFile(file, render(records, jsonFormat(prov)));
    files.push(file);
  }
  return files;
}

test('merged shards equal the unsharded ranking, record for record and byte for byte', async () => {
  const items = syntheticItems();
  const unsharded = rankRecords(items).concat([promptError]);
  for (const count of [1, 2, 3]) {
    const files = await writeParts(items, count, `equal${count}`);
    const merged = await mergeRank({ parts: [...files].reverse() });
    assert.deepEqual(merged.records, unsharded, `N=${count}`);
    assert.equal(render(merged.records, csvFormat(false)), render(unsharded, csvFormat(false)));
    assert.equal(render(merged.records, jsonFormat({ ...merged.provenance })), render(unsharded, jsonFormat(provenance)));
    assert.equal(merged.shardCount, count);
    assert.deepEqual(merged.stats, { imagesEncoded: items.length, encoderBusyMs: 3.5 * count });
  }
});

test('probabilities are a softmax over all shards, not within one', async () => {
  const items = syntheticItems();
  const merged = await mergeRank({ parts: await writeParts(items, 3, 'softmax') });
  for (const prompt of prompts) {
    const probs = merged.records.filter((r) => r.prompt === prompt && r.prob !== null).map((r) => r.prob!);
    assert.ok(Math.abs(probs.reduce((a, b) => a + b, 0) - 1) < 1e-12);
    assert.deepEqual(merged.records.filter((r) => r.prompt === prompt && r.rank !== null).map((r) => r.rank), probs.map((_, i) => i + 1));
  }
});

test('--top on merge equals --top on one unsharded run', async () => {
  const items = syntheticItems();
  const merged = await mergeRank({ parts: await writeParts(items, 3, 'top'), top: 4 });
  assert.deepEqual(merged.records, rankRecords(items, 4).concat([promptError]));
});

test('a part written with --top is refused: it lacks rows the merged ranking needs', async () => {
  const items = syntheticItems();
  const file = path.join(dir, 'topped-part-0.json');
  await writeFile(file, render(rankRecords(items, 3), jsonFormat({ ...provenance, shard: '0/1', run: runOf(items) })));
  await assert.rejects(runMerge({ parts: [file] }), /topped-part-0\.json: the probabilities for prompt "a red fox" sum to 0\.\d+, not 1, so the part lacks rows \(was it written with --top\?\)/);
});

test('an interrupted shard makes the merged output incomplete', async () => {
  const files = await writeParts(syntheticItems(), 2, 'incomplete');
  const part = (await readPart(files[1])) as RankPart;
  const merged = mergeRankParts([(await readPart(files[0])) as RankPart, { ...part, incomplete: true }]);
  assert.equal(merged.incomplete, true);
});

test('merge refuses an incomplete, overlapping or mixed set of parts, naming the files', async () => {
  const items = syntheticItems();
  const three = await writeParts(items, 3, 'set3');
  const two = await writeParts(items, 2, 'set2');
  await assert.rejects(runMerge({ parts: [three[0], three[2]] }), (err: unknown) => err instanceof InputError && /Missing shard 1\/3/.test(err.message));
  await assert.rejects(runMerge({ parts: [...three, three[1]] }), /set3-part-1\.json and .*set3-part-1\.json are both shard 1\/3/);
  await assert.rejects(runMerge({ parts: [three[0], two[1]] }), /split 3 and 2 ways/);
  const relabelled = await writeParts(items, 2, 'relabel', (i, prov) => {
    prov.shard = `${1 - i}/2`;
  });
  await assert.rejects(runMerge({ parts: [two[0], relabelled[0]] }), /is in both .*set2-part-0\.json and .*relabel-part-0\.json: the parts overlap/);
});

test('merge refuses parts from different models or preprocessing', async () => {
  const items = syntheticItems();
  const files = await writeParts(items, 2, 'model', (i, prov) => {
    if (i === 1) prov.fingerprint = 'beef';
  });
  await assert.rejects(runMerge({ parts: files }), /model-part-0\.json and .*model-part-1\.json differ in provenance\.fingerprint \("f00d" vs "beef"\)/);
});

test('per-process provenance fields are not compared: devices are listed, shard and stats dropped', async () => {
  const files = await writeParts(syntheticItems(), 2, 'devices', (i, prov) => {
    prov.device = `cuda:${i}`;
  });
  const merged = await mergeRank({ parts: files });
  assert.equal((merged.provenance as { device: string }).device, 'cuda:0,cuda:1');
  assert.equal('shard' in merged.provenance, false);
  assert.equal('stats' in merged.provenance, false);
});

test('bad part files are errors that name the file and the field', async () => {
  const jsonl = path.join(dir, 'rows.jsonl');
  await writeFile(jsonl, '{"path":"a.png"}\n{"path":"b.png"}\n');
  await assert.rejects(runMerge({ parts: [jsonl] }), /rows\.jsonl is not a JSON document: write rank shard parts with --format json/);
  const unsharded = path.join(dir, 'unsharded.json');
  await writeFile(unsharded, render([], jsonFormat(provenance)));
  await assert.rejects(runMerge({ parts: [unsharded] }), /Expected provenance\.shard "K\/N" for .*unsharded\.json but received undefined/);
  const badRow = path.join(dir, 'bad-row.json');
  await writeFile(badRow, JSON.stringify({ provenance: { ...provenance, shard: '0/1', run: runOf([]) }, rows: [{ path: 'a.png', prompt: 'p', score: 'high', prob: null, rank: null, width: 1, height: 1, error: null }] }));
  await assert.rejects(runMerge({ parts: [badRow] }), /Expected a number or null for .*bad-row\.json: rows\[0\]\.score but received "high"/);
  await assert.rejects(runMerge({ parts: [path.join(dir, 'missing.json')] }), /Cannot read part .*missing\.json \(ENOENT\)/);
  await assert.rejects(runMerge({ parts: [] }), UsageError);
  await assert.rejects(runMerge({ parts: [badRow], top: 0 }), /for --top/);
});

test('parts of runs with other prompts are refused, naming the prompts and the parts', async () => {
  const items = syntheticItems();
  // The parts of `rank --prompt "a fox" --shard 0/2` and `rank --prompt "a cat" --shard 1/2`.
  const fox = items.filter((item) => item.prompt === prompts[0]);
  const cat = items.filter((item) => item.prompt === prompts[1]).map((item) => ({ ...item, prompt: 'a cat' }));
  const files = [path.join(dir, 'fox-part-0.json'), path.join(dir, 'cat-part-1.json')];
  for (const [index, [own, list]] of ([[fox, ['a red fox']], [cat, ['a cat']]] as const).entries()) {
    const records = rankRecords(own.filter((item) => shardOfKey(item.key, 2) === index)).concat(shardOfKey(promptError.path, 2) === index ? [promptError] : []);
    await writeFile(files[index], render(records, jsonFormat({ ...provenance, shard: `${index}/2`, run: runOf(items, [...list]) })));
  }
  await assert.rejects(runMerge({ parts: files }), (err: unknown) => err instanceof InputError
    && /^The parts come from different runs/.test(err.message)
    && /\n {2}prompts: .*fox-part-0\.json: 1 prompt \("a red fox"\); .*cat-part-1\.json: 1 prompt \("a cat"\)\n/.test(err.message));
  // Lists that read alike (the same length and first prompts) are told apart by a hash.
  const long = ['p1', 'p2', 'p3', 'p4'];
  const alike = await writeParts(items, 3, 'alike', (i, prov) => {
    prov.run = runOf(items, i === 2 ? [...long.slice(0, 3), 'p5'] : long);
  });
  await assert.rejects(runMerge({ parts: alike }), /prompts: .*alike-part-0\.json, .*alike-part-1\.json: 4 prompts \("p1", "p2", "p3", \.\.\.\) \(sha256 [0-9a-f]{12}\); .*alike-part-2\.json: 4 prompts \("p1", "p2", "p3", \.\.\.\) \(sha256 [0-9a-f]{12}\)/);
});

test('parts of runs given other images are refused, as are parts whose rows do not cover the run', async () => {
  const items = syntheticItems();
  const subset = items.filter((item) => !item.key.endsWith('img-039.png'));
  const files = await writeParts(items, 2, 'inputs', (i, prov) => {
    if (i === 1) prov.run = runOf(subset);
  });
  await assert.rejects(runMerge({ parts: files }), (err: unknown) => err instanceof InputError
    && /images \(the inputs before sharding\): .*inputs-part-0\.json: 41 images; .*inputs-part-1\.json: 40 images/.test(err.message));
  // A part that lost the rows of one image (an unreadable one, so the probabilities still add up).
  const lossy = await writeParts(items, 2, 'lossy');
  const failed = items.find((item) => item.error !== null)!.key;
  const holder = lossy[shardOfKey(failed, 2)];
  const doc = JSON.parse(await readFile(holder, 'utf8')) as { rows: RankRecord[] };
  await writeFile(holder, JSON.stringify({ ...doc, rows: doc.rows.filter((row) => row.path !== failed) }));
  await assert.rejects(runMerge({ parts: lossy }), /The rows of .*lossy-part-0\.json, .*lossy-part-1\.json are for 40 images, but their run was given 41/);
});

test('parts without a run identity (from an earlier pickscore) are refused with what to do', async () => {
  const files = await writeParts(syntheticItems(), 2, 'legacy', (_, prov) => {
    delete prov.run;
  });
  await assert.rejects(runMerge({ parts: files }), (err: unknown) => err instanceof InputError
    && /legacy-part-0\.json has no provenance\.run, the identity of the run it is a part of .*Run the shards again/.test(err.message));
  const malformed = await writeParts(syntheticItems(), 1, 'malformed', (_, prov) => {
    prov.run = { command: 'rank', images: { count: 1, sha256: 'short' }, prompts: { from: 'list', prompts } };
  });
  await assert.rejects(runMerge({ parts: malformed }), /Expected \{"count", "sha256"\} for .*malformed-part-0\.json: provenance\.run\.images/);
});

test('the merged provenance leaves out the run identity, as an unsharded run writes none', async () => {
  const merged = await mergeRank({ parts: await writeParts(syntheticItems(), 2, 'noid') });
  assert.equal('run' in merged.provenance, false);
});
