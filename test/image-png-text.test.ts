/** PNG text chunks and the prompts generators put in them; garbage in never crashes or hangs. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { deflateSync } from 'node:zlib';
import { InputError } from '../src/errors.js';
import { promptFromPngText, readPngTextChunks } from '../src/io/png-text.js';
import { itxtChunk, pngChunk, pngWithChunks, textChunk, ztxtChunk } from './helpers/image-files.js';
import { seededRandom } from './helpers/image-pillow.js';

const A1111 = 'a cat in a hat, (masterpiece:1.2)\nsecond line of prompt\nNegative prompt: blurry, lowres\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 1, Size: 512x512';

test('reads tEXt, zTXt and iTXt (plain and compressed)', () => {
  const png = pngWithChunks([textChunk('parameters', A1111), ztxtChunk('Comment', 'zipped café'), itxtChunk('Title', 'ünïcödé 日本', false), itxtChunk('Author', 'zipped 日本', true)]);
  assert.deepEqual(readPngTextChunks(png), { parameters: A1111, Comment: 'zipped café', Title: 'ünïcödé 日本', Author: 'zipped 日本' });
});

test('AUTOMATIC1111 parameters: the text before the negative prompt or the settings line', () => {
  assert.equal(promptFromPngText({ parameters: A1111 }), 'a cat in a hat, (masterpiece:1.2)\nsecond line of prompt');
  assert.equal(promptFromPngText({ parameters: 'just a dog\r\nSteps: 30, Sampler: DPM++ 2M' }), 'just a dog');
  assert.equal(promptFromPngText({ parameters: 'no settings at all ' }), 'no settings at all');
  assert.equal(promptFromPngText({ parameters: 'Negative prompt: only negative\nSteps: 1' }), undefined);
});

test('ComfyUI graph: follows the sampler\'s positive input, through conditioning and primitive nodes', () => {
  const graph = {
    '3': { class_type: 'KSampler', inputs: { positive: ['6', 0], negative: ['7', 0], model: ['4', 0] } },
    '7': { class_type: 'CLIPTextEncode', inputs: { text: 'ugly, blurry', clip: ['4', 1] } },
    '6': { class_type: 'ConditioningCombine', inputs: { conditioning_1: ['10', 0], conditioning_2: ['7', 0] } },
    '10': { class_type: 'CLIPTextEncode', inputs: { text: ['11', 0], clip: ['4', 1] } },
    '11': { class_type: 'PrimitiveString', inputs: { value: 'a lighthouse at dawn' } },
  };
  assert.equal(promptFromPngText({ prompt: JSON.stringify(graph) }), 'a lighthouse at dawn');
  const noSampler = { '1': { class_type: 'CLIPTextEncode', inputs: { text: 'only encoder' } } };
  assert.equal(promptFromPngText({ prompt: JSON.stringify(noSampler) }), 'only encoder');
  const ambiguous = { '1': { class_type: 'CLIPTextEncode', inputs: { text: 'a' } }, '2': { class_type: 'CLIPTextEncode', inputs: { text: 'b' } } };
  assert.equal(promptFromPngText({ prompt: JSON.stringify(ambiguous) }), undefined, 'two candidates and no sampler: no guess');
  const cycle = { '1': { class_type: 'KSampler', inputs: { positive: ['2', 0] } }, '2': { class_type: 'X', inputs: { conditioning: ['3', 0] } }, '3': { class_type: 'X', inputs: { conditioning: ['2', 0] } } };
  assert.equal(promptFromPngText({ prompt: JSON.stringify(cycle) }), undefined);
  assert.equal(promptFromPngText({ prompt: 'a plain text prompt' }), 'a plain text prompt');
  assert.equal(promptFromPngText({ Software: 'x' }), undefined);
});

test('not a PNG is an InputError; damaged chunks are skipped; truncation keeps what came before', () => {
  assert.throws(() => readPngTextChunks(Buffer.from('GIF89a....')), InputError);
  assert.throws(() => readPngTextChunks(new Uint8Array(0)), InputError);
  const badZlib = pngChunk('zTXt', Buffer.concat([Buffer.from('bad\0\0'), Buffer.from('not zlib')]));
  const noKeyword = pngChunk('tEXt', Buffer.from('\0text'));
  const png = pngWithChunks([badZlib, noKeyword, textChunk('ok', 'yes')]);
  assert.deepEqual(readPngTextChunks(png), { ok: 'yes' });
  const truncated = pngWithChunks([textChunk('first', '1'), textChunk('second', 'x'.repeat(100))]);
  assert.deepEqual(readPngTextChunks(truncated.subarray(0, truncated.length - 80)), { first: '1' });
});

test('a zTXt bomb is capped rather than inflated', () => {
  const bomb = pngChunk('zTXt', Buffer.concat([Buffer.from('parameters\0\0'), deflateSync(Buffer.alloc(16 << 20, 0x61))]));
  assert.deepEqual(readPngTextChunks(pngWithChunks([bomb])), {});
});

test('fuzz: random and mutated PNGs never throw anything but InputError', () => {
  const random = seededRandom(Number(process.env.PICKSCORE_FUZZ_SEED ?? 7));
  const iterations = Number(process.env.PICKSCORE_FUZZ_ITERATIONS ?? 3000);
  const seed = pngWithChunks([textChunk('parameters', A1111), ztxtChunk('prompt', '{"1":{"class_type":"KSampler","inputs":{"positive":["2",0]}},"2":{"inputs":{"text":"x"}}}'), itxtChunk('c', 'd', true)]);
  for (let i = 0; i < iterations; i++) {
    const bytes = Buffer.from(seed);
    const mutations = 1 + Math.floor(random() * 8);
    for (let m = 0; m < mutations; m++) bytes[8 + Math.floor(random() * (bytes.length - 8))] = Math.floor(random() * 256);
    const input = random() < 0.1 ? bytes.subarray(0, Math.floor(random() * bytes.length)) : bytes;
    try {
      promptFromPngText(readPngTextChunks(input));
    } catch (err) {
      assert.ok(err instanceof InputError, `iteration ${i}: ${String(err)}`);
    }
  }
});
