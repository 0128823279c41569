import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { ClipTokenizer } from '../src/tokenizer/clip-tokenizer.js';
import { toByteLevel } from '../src/tokenizer/byte-level.js';
import { fixturesDir, referenceDir, skipWithoutReference } from './helpers/paths.js';

interface ReferencePrompt { prompt: string; input_ids: number[]; attention_mask: number[]; untruncated_len: number }

const tokenizerDir = path.join(referenceDir, 'clip-tokenizer');

async function referencePrompts(): Promise<ReferencePrompt[]> {
  const reference = JSON.parse(await readFile(path.join(referenceDir, 'reference.json'), 'utf8')) as { prompts: ReferencePrompt[] };
  return reference.prompts;
}

function assertMatchesReference(tokenizer: ClipTokenizer, prompts: ReferencePrompt[]): void {
  for (const ref of prompts) {
    const got = tokenizer.encode(ref.prompt);
    assert.deepEqual(got.inputIds, ref.input_ids, `input_ids of ${JSON.stringify(ref.prompt)}`);
    assert.deepEqual(got.attentionMask, ref.attention_mask, `attention_mask of ${JSON.stringify(ref.prompt)}`);
    assert.equal(got.tokenCount, ref.untruncated_len, `untruncated length of ${JSON.stringify(ref.prompt)}`);
    assert.equal(got.truncated, ref.untruncated_len > 77, `truncated flag of ${JSON.stringify(ref.prompt)}`);
  }
}

test('tokenizer.json: every reference prompt gives the ids, mask and untruncated length of transformers', { skip: skipWithoutReference }, async () => {
  const prompts = await referencePrompts();
  assert.ok(prompts.length >= 20, 'the reference table is present');
  const tokenizer = await ClipTokenizer.fromDir(tokenizerDir);
  assert.equal(tokenizer.contextLength, 77);
  assertMatchesReference(tokenizer, prompts);
});

test('vocab.json + merges.txt give the same ids as tokenizer.json', { skip: skipWithoutReference }, async () => {
  const vocab = JSON.parse(await readFile(path.join(tokenizerDir, 'vocab.json'), 'utf8')) as Record<string, number>;
  const merges = (await readFile(path.join(tokenizerDir, 'merges.txt'), 'utf8')).split('\n');
  const tokenizer = ClipTokenizer.fromVocabAndMerges(vocab, merges);
  assertMatchesReference(tokenizer, await referencePrompts());
});

test('truncation keeps EOS last and reports the untruncated count; encodeBatch lays rows out [n, 77]', { skip: skipWithoutReference }, async () => {
  const tokenizer = await ClipTokenizer.fromDir(tokenizerDir);
  const long = Array.from({ length: 100 }, () => 'cat').join(' ');
  const encoded = tokenizer.encode(long);
  assert.equal(encoded.tokenCount, 102);
  assert.equal(encoded.truncated, true);
  assert.equal(encoded.inputIds.length, 77);
  assert.equal(encoded.inputIds[0], 49406);
  assert.equal(encoded.inputIds[76], 49407);
  assert.ok(encoded.attentionMask.every((m) => m === 1));

  const batch = tokenizer.encodeBatch(['x', long]);
  assert.equal(batch.inputIds.length, 2 * 77);
  assert.deepEqual(Array.from(batch.inputIds.subarray(0, 4), Number), [49406, 343, 49407, 0]);
  assert.equal(batch.inputIds[77 + 76], 49407n);
});

test('normalisation follows tokenizers: per-character lowercase (no final sigma) and Unicode whitespace', { skip: skipWithoutReference }, async () => {
  const tokenizer = await ClipTokenizer.fromDir(tokenizerDir);
  // Rust's char::to_lowercase maps Σ to σ wherever it stands; a whole-string toLowerCase would give ς at the end.
  assert.deepEqual(tokenizer.encode('ΟΔΟΣ').inputIds, tokenizer.encode('οδοσ').inputIds);
  // U+3000 (ideographic space) is White_Space, so it separates words like a space does.
  assert.deepEqual(tokenizer.encode('red\u3000car').inputIds, tokenizer.encode('red car').inputIds);
  // Decomposed é (e + U+0301) becomes the composed form under NFC.
  assert.deepEqual(tokenizer.encode('cafe\u0301').inputIds, tokenizer.encode('café').inputIds);
});

test('a non-string prompt is a usage error that names what it received', { skip: skipWithoutReference }, async () => {
  const tokenizer = await ClipTokenizer.fromDir(tokenizerDir);
  assert.throws(() => tokenizer.encode(42 as unknown as string), /Expected a string for the prompt but received number 42/);
});

test('a context length below 2 cannot hold BOS and EOS', { skip: skipWithoutReference }, async () => {
  const vocab = JSON.parse(await readFile(path.join(tokenizerDir, 'vocab.json'), 'utf8')) as Record<string, number>;
  assert.throws(() => ClipTokenizer.fromVocabAndMerges(vocab, [], { contextLength: 1 }), /Expected an integer of at least 2 \(BOS and EOS\) for the context length but received number 1/);
  const short = ClipTokenizer.fromVocabAndMerges(vocab, [], { contextLength: 4 });
  // No merges: "ab cd" is a, b</w>, c, d</w>; six ids with BOS and EOS, cut to four with EOS kept last.
  assert.deepEqual(short.encode('ab cd').inputIds, [49406, vocab.a, vocab['b</w>'], 49407]);
  assert.equal(short.encode('ab cd').tokenCount, 6);
});

test('fromTokenizerJson rejects a model that is not BPE', () => {
  assert.throws(() => ClipTokenizer.fromTokenizerJson({ model: { type: 'WordPiece' } }), /Expected model.type "BPE" for tokenizer.json but received "WordPiece"/);
});

/** A seeded word over `alphabet` (mulberry32), the generator fixtures/tokenizer/long-words.json was made with. */
function seededWord(alphabet: string, length: number, seed: number): string {
  const chars = [...alphabet];
  let state = seed >>> 0;
  let out = '';
  for (let i = 0; i < length; i++) {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    out += chars[((t ^ (t >>> 14)) >>> 0) % chars.length];
  }
  return out;
}

/** The prompts of fixtures/tokenizer/long-words.json, by case name. */
const LONG_WORDS: Record<string, () => string> = {
  brackets: () => '['.repeat(100_000) + ']'.repeat(100_000),
  exclamations: () => '!'.repeat(100_000),
  letters: () => seededWord('abcdefghijklmnopqrstuvwxyz', 60_000, 1),
  'few-letters': () => seededWord('aabeenrst', 60_000, 2),
  'accents-and-cjk': () => seededWord('éèàçñßøœ猫犬日本', 20_000, 3),
};

test('long single words (200,000 brackets, 100,000 "!") give the ids of the Rust tokenizers library, every one of them', { skip: skipWithoutReference }, async () => {
  const fixture = JSON.parse(await readFile(path.join(fixturesDir, 'tokenizer', 'long-words.json'), 'utf8')) as
    { cases: { name: string; untruncated_len: number; input_ids: number[]; token_ids_sha256: string }[] };
  assert.deepEqual(fixture.cases.map((c) => c.name), Object.keys(LONG_WORDS));
  const tokenizer = await ClipTokenizer.fromDir(tokenizerDir);
  for (const expected of fixture.cases) {
    const prompt = LONG_WORDS[expected.name]();
    const encoded = tokenizer.encode(prompt);
    assert.deepEqual(encoded.inputIds, expected.input_ids, expected.name);
    assert.equal(encoded.tokenCount, expected.untruncated_len, expected.name);
    assert.equal(encoded.truncated, true);
    const all = tokenizer.tokenize(prompt);
    assert.equal(createHash('sha256').update(all.join(',')).digest('hex'), expected.token_ids_sha256, `every token id of ${expected.name}`);
  }
});

/** CLIP's own BPE loop (its Python code): merge every occurrence of the lowest-ranked pair, pass after pass. */
function passPerMergeBpe(word: string, ranks: Map<string, number>): string[] {
  let symbols = [...word];
  symbols[symbols.length - 1] += '</w>';
  for (;;) {
    let best: string | undefined;
    let bestRank = Infinity;
    for (let i = 0; i + 1 < symbols.length; i++) {
      const rank = ranks.get(`${symbols[i]} ${symbols[i + 1]}`);
      if (rank !== undefined && rank < bestRank) [best, bestRank] = [`${symbols[i]} ${symbols[i + 1]}`, rank];
    }
    if (best === undefined) return symbols;
    const merged: string[] = [];
    for (let i = 0; i < symbols.length; i++) {
      if (i + 1 < symbols.length && `${symbols[i]} ${symbols[i + 1]}` === best) merged.push(symbols[i] + symbols[i++ + 1]);
      else merged.push(symbols[i]);
    }
    symbols = merged;
  }
}

test('the heap-ordered BPE merges as CLIP\'s pass-per-merge loop does, over the real merges, on 1,000 seeded words', { skip: skipWithoutReference }, async () => {
  const vocab = JSON.parse(await readFile(path.join(tokenizerDir, 'vocab.json'), 'utf8')) as Record<string, number>;
  const merges = (await readFile(path.join(tokenizerDir, 'merges.txt'), 'utf8')).split('\n').filter((l) => l !== '' && !l.startsWith('#version'));
  const ranks = new Map(merges.map((merge, rank) => [merge, rank]));
  const tokenizer = ClipTokenizer.fromVocabAndMerges(vocab, merges);
  // Letters only, so that each word is one pre-token and reaches the BPE whole.
  const alphabets = ['abcdefghijklmnopqrstuvwxyz', 'aabeenrsttt', 'éèàçñßøœ', '猫犬日本語', 'qxzj'];
  for (let i = 0; i < 1000; i++) {
    const word = seededWord(alphabets[i % alphabets.length], 1 + (i % 97) * 3, 100 + i);
    const expected = passPerMergeBpe(toByteLevel(word), ranks).map((symbol) => vocab[symbol]);
    assert.deepEqual(tokenizer.tokenize(word), expected, JSON.stringify(word));
  }
});
