/**
 * CLIP's byte-level BPE, reproducing the Hugging Face fast tokenizer (`CLIPTokenizerFast`) id for id:
 * special tokens are split out of the raw text first, each remaining segment is normalised (NFC,
 * whitespace collapsed, lowercased), split by CLIP's regex, mapped to byte-level symbols and merged by
 * BPE with the `</w>` end-of-word suffix. Pure: no I/O except in `fromDir`.
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { ModelError, UsageError, expectedMessage } from '../errors.js';
import { readJsonFile } from '../io/json-file.js';
import { READ_LIMITS, readFailureText, readRegularTextFile } from '../io/regular-file.js';
import { toByteLevel } from './byte-level.js';
import { CLIP_NORMALIZER, field, normalizerFromJson, translateOnigurumaPattern, type NormalizeStep } from './normalize.js';

export interface TokenizedPrompt {
  inputIds: number[];        // exactly contextLength ids: BOS, tokens, EOS, then pad
  attentionMask: number[];
  tokenCount: number;        // untruncated length, BOS and EOS included
  truncated: boolean;
}

/** Special-token names (as strings of the vocabulary) and the context length; each overrides what the files say. */
export interface TokenizerOptions {
  bosToken?: string;
  eosToken?: string;
  /** PickScore's processor (laion/CLIP-ViT-H-14) pads with "!" (id 0); that is the default. */
  padToken?: string;
  unkToken?: string;
  contextLength?: number;
}

const CLIP_SPLIT_PATTERN = String.raw`<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+`;
/** GPT-2's split, which `tokenizers`' ByteLevel pre-tokenizer applies again when `use_regex` is set. */
const GPT2_SPLIT = /'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\p{White_Space}\p{L}\p{N}]+|\p{White_Space}+(?!\P{White_Space})|\p{White_Space}+/gu;
const DEFAULT_CONTEXT_LENGTH = 77;
const END_OF_WORD = '</w>';
/** Bounds the per-word BPE memo so that a long run over unique words cannot grow memory without limit. */
const BPE_MEMO_LIMIT = 100_000;
/** Longer words are not memoised (as in `tokenizers`' cache): a few long words would otherwise hold megabytes. */
const BPE_MEMO_MAX_WORD = 256;

interface PreTokenizer { split: RegExp; byteLevelRegex: boolean }

interface TokenizerParts {
  vocab: Map<string, number>;
  mergeRanks: Map<string, number>;
  endOfWordSuffix: string;
  normalizer: NormalizeStep[];
  preTokenizer: PreTokenizer;
  specialTokens: Map<string, number>;   // split out of the raw text before normalisation
  bosId: number;
  eosId: number;
  padId: number;
  unkId: number;
  contextLength: number;
}

export class ClipTokenizer {
  readonly contextLength: number;
  private readonly parts: TokenizerParts;
  private readonly specialSplit: RegExp | null;
  private readonly bpeMemo = new Map<string, number[]>();

  private constructor(parts: TokenizerParts) {
    if (!Number.isInteger(parts.contextLength) || parts.contextLength < 2) {
      throw new UsageError(expectedMessage('an integer of at least 2 (BOS and EOS)', 'the context length', parts.contextLength));
    }
    this.parts = parts;
    this.contextLength = parts.contextLength;
    const specials = [...parts.specialTokens.keys()].sort((a, b) => b.length - a.length);
    this.specialSplit = specials.length > 0 ? new RegExp(`(${specials.map(escapeRegExp).join('|')})`, 'u') : null;
  }

  /** tokenizer.json when the folder has it, else vocab.json + merges.txt; tokenizer_config.json names the special tokens. */
  static async fromDir(dir: string): Promise<ClipTokenizer> {
    const options = await readTokenizerConfig(dir);
    const tokenizerJson = path.join(dir, 'tokenizer.json');
    if (existsSync(tokenizerJson)) return ClipTokenizer.fromTokenizerJson(await readJson(tokenizerJson), options);
    const vocabPath = path.join(dir, 'vocab.json');
    const mergesPath = path.join(dir, 'merges.txt');
    if (!existsSync(vocabPath) || !existsSync(mergesPath)) {
      throw new ModelError(`No tokenizer in ${dir}: expected tokenizer.json, or vocab.json and merges.txt`);
    }
    const vocab = await readJson(vocabPath);
    if (!isNumberRecord(vocab)) throw new ModelError(expectedMessage('an object of token ids', vocabPath, vocab));
    const merges = (await readTokenizerFile(mergesPath)).split(/\r?\n/);
    return ClipTokenizer.fromVocabAndMerges(vocab, merges, options);
  }

  static fromTokenizerJson(json: unknown, options: TokenizerOptions = {}): ClipTokenizer {
    const model = field(json, 'model');
    if (field(model, 'type') !== 'BPE') throw new ModelError(expectedMessage('model.type "BPE"', 'tokenizer.json', field(model, 'type')));
    const vocabJson = field(model, 'vocab');
    if (!isNumberRecord(vocabJson)) throw new ModelError(expectedMessage('an object of token ids', 'tokenizer.json model.vocab', vocabJson));
    const vocab = new Map(Object.entries(vocabJson));
    const mergeRanks = mergeRanksFrom(field(model, 'merges'), 'tokenizer.json model.merges');
    const specialTokens = new Map<string, number>();
    const addedTokens = field(json, 'added_tokens');
    for (const token of Array.isArray(addedTokens) ? addedTokens : []) {
      const content = field(token, 'content');
      const id = field(token, 'id');
      if (field(token, 'special') === true && typeof content === 'string' && typeof id === 'number') specialTokens.set(content, id);
    }
    const postProcessor = field(json, 'post_processor');
    const bosToken = options.bosToken ?? tokenOf(field(postProcessor, 'cls')) ?? '<|startoftext|>';
    const eosToken = options.eosToken ?? tokenOf(field(postProcessor, 'sep')) ?? '<|endoftext|>';
    const unkToken = options.unkToken ?? stringOr(field(model, 'unk_token'), eosToken);
    const padToken = options.padToken ?? stringOr(field(field(json, 'padding'), 'pad_token'), undefined)
      ?? [...specialTokens.keys()].find((t) => t !== bosToken && t !== eosToken && t !== unkToken) ?? eosToken;
    const lookup = (token: string, role: string): number => {
      const id = specialTokens.get(token) ?? vocab.get(token);
      if (id === undefined) throw new ModelError(`tokenizer.json: the ${role} token ${JSON.stringify(token)} is not in the vocabulary`);
      return id;
    };
    return new ClipTokenizer({
      vocab, mergeRanks,
      endOfWordSuffix: stringOr(field(model, 'end_of_word_suffix'), END_OF_WORD),
      normalizer: normalizerFromJson(field(json, 'normalizer')),
      preTokenizer: preTokenizerFromJson(field(json, 'pre_tokenizer')),
      specialTokens,
      bosId: lookup(bosToken, 'BOS'), eosId: lookup(eosToken, 'EOS'), padId: lookup(padToken, 'pad'), unkId: lookup(unkToken, 'unknown'),
      contextLength: options.contextLength ?? DEFAULT_CONTEXT_LENGTH,
    });
  }

  /**
   * From the original CLIP files. As transformers does when it builds the fast tokenizer from them, the
   * special tokens (BOS, EOS, pad, unknown) become tokens that are split out of the raw text.
   */
  static fromVocabAndMerges(vocab: Record<string, number>, merges: string[], options: TokenizerOptions = {}): ClipTokenizer {
    const vocabMap = new Map(Object.entries(vocab));
    const mergeLines = merges.filter((line) => line.trim() !== '' && !line.startsWith('#version'));
    const names = {
      BOS: options.bosToken ?? '<|startoftext|>',
      EOS: options.eosToken ?? '<|endoftext|>',
      pad: options.padToken ?? '!',
      unknown: options.unkToken ?? options.eosToken ?? '<|endoftext|>',
    };
    const specialTokens = new Map<string, number>();
    for (const [role, token] of Object.entries(names)) {
      const id = vocabMap.get(token);
      if (id === undefined) throw new ModelError(`vocab.json: the ${role} token ${JSON.stringify(token)} is not in the vocabulary`);
      specialTokens.set(token, id);
    }
    return new ClipTokenizer({
      vocab: vocabMap,
      mergeRanks: mergeRanksFrom(mergeLines, 'merges.txt'),
      endOfWordSuffix: END_OF_WORD,
      normalizer: CLIP_NORMALIZER,
      preTokenizer: { split: translateOnigurumaPattern(CLIP_SPLIT_PATTERN, 'gu'), byteLevelRegex: true },
      specialTokens,
      bosId: specialTokens.get(names.BOS)!, eosId: specialTokens.get(names.EOS)!,
      padId: specialTokens.get(names.pad)!, unkId: specialTokens.get(names.unknown)!,
      contextLength: options.contextLength ?? DEFAULT_CONTEXT_LENGTH,
    });
  }

  /** BOS, the tokens (cut to contextLength - 2 so that EOS stays last), EOS, then padding. */
  encode(text: string): TokenizedPrompt {
    if (typeof text !== 'string') throw new UsageError(expectedMessage('a string', 'the prompt', text));
    const { bosId, eosId, padId } = this.parts;
    const tokens = this.tokenize(text);
    const kept = tokens.slice(0, this.contextLength - 2);
    const used = kept.length + 2;
    const inputIds = [bosId, ...kept, eosId];
    const attentionMask = new Array<number>(this.contextLength).fill(0, used).fill(1, 0, used);
    while (inputIds.length < this.contextLength) inputIds.push(padId);
    return { inputIds, attentionMask, tokenCount: tokens.length + 2, truncated: tokens.length + 2 > this.contextLength };
  }

  /** The ids of all prompts as one row-major [n, contextLength] tensor, as the text encoder takes them. */
  encodeBatch(texts: string[]): { inputIds: BigInt64Array; prompts: TokenizedPrompt[] } {
    const prompts = texts.map((text) => this.encode(text));
    const inputIds = new BigInt64Array(texts.length * this.contextLength);
    prompts.forEach((prompt, row) => {
      prompt.inputIds.forEach((id, col) => { inputIds[row * this.contextLength + col] = BigInt(id); });
    });
    return { inputIds, prompts };
  }

  /** Token ids of `text` without BOS and EOS, untruncated. */
  tokenize(text: string): number[] {
    const ids: number[] = [];
    const segments = this.specialSplit ? text.split(this.specialSplit) : [text];
    // String.split with a capturing group alternates: plain text at even indices, special tokens at odd ones.
    segments.forEach((segment, index) => {
      if (index % 2 === 1) ids.push(this.parts.specialTokens.get(segment)!);
      else if (segment !== '') this.tokenizePlain(segment, ids);
    });
    return ids;
  }

  /**
   * The BPE ids of one word as a pre-tokenizer gives it, with no normalisation and no special tokens:
   * for tokenizers that split the text their own way (open_clip's, src/tokenizer/open-clip-tokenizer.ts).
   */
  encodeWord(word: string): number[] {
    return word === '' ? [] : [...this.bpe(toByteLevel(word))];
  }

  private tokenizePlain(segment: string, ids: number[]): void {
    const normalized = this.parts.normalizer.reduce((text, step) => step(text), segment);
    for (const match of normalized.matchAll(this.parts.preTokenizer.split)) {
      const pieces = this.parts.preTokenizer.byteLevelRegex ? match[0].match(GPT2_SPLIT) ?? [] : [match[0]];
      // One push per id: spreading a 200,000-token word into push() overflowed the call stack.
      for (const piece of pieces) for (const id of this.bpe(toByteLevel(piece))) ids.push(id);
    }
  }

  /**
   * Byte-level BPE as `tokenizers` (Rust) runs it for CLIPTokenizerFast: every adjacent pair that has a
   * merge goes into a min-heap ordered by merge rank, then position; the lowest is merged, and the pairs
   * it forms with its neighbours go in. An entry whose pair has changed since it was pushed is skipped.
   * O(n log n) in the word's length, so a 200,000-character word (one run of punctuation, say) costs
   * milliseconds; the pass-per-merge loop of CLIP's Python code costs a pass over the word per merge.
   */
  private bpe(word: string): number[] {
    const memoised = word.length <= BPE_MEMO_MAX_WORD;
    const memo = memoised ? this.bpeMemo.get(word) : undefined;
    if (memo) return memo;
    const { mergeRanks, vocab, unkId, endOfWordSuffix } = this.parts;
    const symbols = [...word];
    symbols[symbols.length - 1] += endOfWordSuffix;
    const count = symbols.length;
    // A doubly linked list over the symbols; a symbol merged into its left neighbour is marked dead.
    const next = new Int32Array(count);
    const prev = new Int32Array(count);
    const dead = new Uint8Array(count);
    for (let i = 0; i < count; i++) {
      next[i] = i + 1 < count ? i + 1 : -1;
      prev[i] = i - 1;
    }
    const heap = new MergeHeap();
    const offer = (left: number, right: number): void => {
      const pair = `${symbols[left]} ${symbols[right]}`;
      const rank = mergeRanks.get(pair);
      if (rank !== undefined) heap.push(rank, left, pair);
    };
    for (let i = 0; i + 1 < count; i++) offer(i, i + 1);
    while (heap.size > 0) {
      const { position, pair } = heap.pop();
      const right = next[position];
      // Stale: the left symbol was merged into its own left neighbour, or either symbol has grown since.
      if (dead[position] === 1 || right === -1 || `${symbols[position]} ${symbols[right]}` !== pair) continue;
      symbols[position] += symbols[right];
      dead[right] = 1;
      next[position] = next[right];
      if (next[right] !== -1) prev[next[right]] = position;
      if (prev[position] !== -1) offer(prev[position], position);
      if (next[position] !== -1) offer(position, next[position]);
    }
    const ids: number[] = [];
    for (let i = 0; i !== -1; i = next[i]) ids.push(vocab.get(symbols[i]) ?? unkId);
    if (memoised) {
      if (this.bpeMemo.size >= BPE_MEMO_LIMIT) this.bpeMemo.clear();
      this.bpeMemo.set(word, ids);
    }
    return ids;
  }
}

/** A binary min-heap of candidate merges, ordered by merge rank and then by position (leftmost first). */
class MergeHeap {
  private readonly ranks: number[] = [];
  private readonly positions: number[] = [];
  private readonly pairs: string[] = [];

  get size(): number {
    return this.ranks.length;
  }

  push(rank: number, position: number, pair: string): void {
    this.ranks.push(rank);
    this.positions.push(position);
    this.pairs.push(pair);
    for (let child = this.ranks.length - 1; child > 0;) {
      const parent = (child - 1) >> 1;
      if (!this.before(child, parent)) break;
      this.swap(child, parent);
      child = parent;
    }
  }

  pop(): { rank: number; position: number; pair: string } {
    const top = { rank: this.ranks[0], position: this.positions[0], pair: this.pairs[0] };
    const last = this.ranks.length - 1;
    this.swap(0, last);
    this.ranks.pop();
    this.positions.pop();
    this.pairs.pop();
    for (let parent = 0; ;) {
      const left = 2 * parent + 1;
      let smallest = parent;
      if (left < last && this.before(left, smallest)) smallest = left;
      if (left + 1 < last && this.before(left + 1, smallest)) smallest = left + 1;
      if (smallest === parent) break;
      this.swap(parent, smallest);
      parent = smallest;
    }
    return top;
  }

  private before(a: number, b: number): boolean {
    return this.ranks[a] < this.ranks[b] || (this.ranks[a] === this.ranks[b] && this.positions[a] < this.positions[b]);
  }

  private swap(a: number, b: number): void {
    [this.ranks[a], this.ranks[b]] = [this.ranks[b], this.ranks[a]];
    [this.positions[a], this.positions[b]] = [this.positions[b], this.positions[a]];
    [this.pairs[a], this.pairs[b]] = [this.pairs[b], this.pairs[a]];
  }
}

/** Merges as "a b" lines (merges.txt, older tokenizer.json) or ["a", "b"] pairs (newer tokenizer.json); rank = position. */
function mergeRanksFrom(merges: unknown, source: string): Map<string, number> {
  if (!Array.isArray(merges)) throw new ModelError(expectedMessage('an array of merges', source, merges));
  const ranks = new Map<string, number>();
  merges.forEach((merge: unknown, rank) => {
    const key = typeof merge === 'string' ? merge
      : Array.isArray(merge) && merge.length === 2 && merge.every((s) => typeof s === 'string') ? `${merge[0]} ${merge[1]}` : undefined;
    if (key === undefined || key.split(' ').length !== 2) {
      throw new ModelError(expectedMessage('a merge "a b" or ["a", "b"]', `${source}[${rank}]`, merge));
    }
    if (!ranks.has(key)) ranks.set(key, rank);
  });
  return ranks;
}

/** CLIP's pre-tokenizer: Split (matches kept) followed by ByteLevel. */
function preTokenizerFromJson(json: unknown): PreTokenizer {
  const steps = field(json, 'type') === 'Sequence' ? field(json, 'pretokenizers') : [json];
  const split = Array.isArray(steps) ? steps.find((s) => field(s, 'type') === 'Split') : undefined;
  const byteLevel = Array.isArray(steps) ? steps.find((s) => field(s, 'type') === 'ByteLevel') : undefined;
  const pattern = field(field(split, 'pattern'), 'Regex');
  const keepsMatches = field(split, 'behavior') === 'Removed' && field(split, 'invert') === true;
  if (typeof pattern !== 'string' || !keepsMatches || byteLevel === undefined || field(byteLevel, 'add_prefix_space') === true) {
    throw new ModelError('tokenizer.json: unsupported pre_tokenizer (expected CLIP\'s Split regex then ByteLevel without a prefix space)');
  }
  return { split: translateOnigurumaPattern(pattern, 'gu'), byteLevelRegex: field(byteLevel, 'use_regex') !== false };
}

/** Special tokens and context length from tokenizer_config.json or special_tokens_map.json, when present. */
async function readTokenizerConfig(dir: string): Promise<TokenizerOptions> {
  const options: TokenizerOptions = {};
  for (const name of ['special_tokens_map.json', 'tokenizer_config.json']) {
    const file = path.join(dir, name);
    if (!existsSync(file)) continue;
    const config = await readJson(file);
    const bos = tokenName(field(config, 'bos_token'));
    const eos = tokenName(field(config, 'eos_token'));
    const pad = tokenName(field(config, 'pad_token'));
    const unk = tokenName(field(config, 'unk_token'));
    if (bos) options.bosToken = bos;
    if (eos) options.eosToken = eos;
    if (pad) options.padToken = pad;
    if (unk) options.unkToken = unk;
    const maxLength = field(config, 'model_max_length');
    // transformers writes a huge sentinel (1e30) when a tokenizer has no limit; only real lengths count.
    if (typeof maxLength === 'number' && Number.isInteger(maxLength) && maxLength >= 2 && maxLength <= 4096) options.contextLength = maxLength;
  }
  return options;
}

/** A tokenizer file's text: a regular file of at most READ_LIMITS.config bytes, else a ModelError naming it. */
async function readTokenizerFile(file: string): Promise<string> {
  try {
    return await readRegularTextFile(file, READ_LIMITS.config, 'a tokenizer file');
  } catch (err) {
    throw new ModelError(`Cannot read ${file}: ${readFailureText(err)}`, { cause: err });
  }
}

function readJson(file: string): Promise<unknown> {
  return readJsonFile(file, { what: 'a tokenizer file', maxBytes: READ_LIMITS.config, error: ModelError, notJson: (detail) => `${file}: not valid JSON (${detail})` });
}

function stringOr<T>(value: unknown, fallback: T): string | T {
  return typeof value === 'string' ? value : fallback;
}

/** A post_processor's `cls`/`sep`: [token, id]. */
function tokenOf(pair: unknown): string | undefined {
  return Array.isArray(pair) && typeof pair[0] === 'string' ? pair[0] : undefined;
}

/** tokenizer_config.json writes a special token as a string or as {"content": ...}. */
function tokenName(value: unknown): string | undefined {
  if (typeof value === 'string') return value;
  const content = field(value, 'content');
  return typeof content === 'string' ? content : undefined;
}

function isNumberRecord(value: unknown): value is Record<string, number> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
    && Object.values(value).every((v) => typeof v === 'number');
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
