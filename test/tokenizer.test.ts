import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { ClipTokenizer } from '../src/tokenizer/clip-tokenizer.js';
import { referenceDir, skipWithoutReference } from './helpers/paths.js';

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
