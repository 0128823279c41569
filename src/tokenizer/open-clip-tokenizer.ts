/**
 * open_clip's tokenizer (`SimpleTokenizer`, which HPSv2 uses), over the same CLIP vocabulary and merges
 * as the Hugging Face tokenizer: a mode a scorer can choose instead of ClipTokenizer's transformers
 * behaviour. It differs from it in what reaches the BPE:
 * - the text is cleaned first (src/tokenizer/open-clip-clean.ts: ftfy, html.unescape twice, whitespace,
 *   lowercase), so `&amp;` is `&` and curly quotes are straight;
 * - its special tokens are spelled `<start_of_text>` and `<end_of_text>` and are found by the split
 *   regex in the cleaned text (so `!<end_of_text>` is punctuation, not a special token), while
 *   transformers' `<|startoftext|>`, `<|endoftext|>` and the pad token `!` are plain text;
 * - ids are `[sot] + tokens + [eot]`, cut to the context length with the last kept id set to eot, padded
 *   with 0.
 * Pure.
 */
import { UsageError, expectedMessage } from '../errors.js';
import type { ClipTokenizer, TokenizedPrompt } from './clip-tokenizer.js';
import { openClipClean } from './open-clip-clean.js';

const START_OF_TEXT = '<start_of_text>';
const END_OF_TEXT = '<end_of_text>';
/** SimpleTokenizer's pattern (regex.IGNORECASE); `\s` is Unicode White_Space there, not JavaScript's \s. */
const SPLIT = /<start_of_text>|<end_of_text>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\p{White_Space}\p{L}\p{N}]+/giu;
const PAD_ID = 0;

export class OpenClipTokenizer {
  readonly contextLength: number;
  private readonly sotId: number;
  private readonly eotId: number;

  /** `bpe` supplies the vocabulary and merges (CLIP's, as in open_clip's bpe_simple_vocab_16e6.txt.gz). */
  constructor(private readonly bpe: ClipTokenizer) {
    this.contextLength = bpe.contextLength;
    // ClipTokenizer's BOS and EOS ids are open_clip's sot and eot: the encoding of nothing is [bos, eos, pad...].
    [this.sotId, this.eotId] = bpe.encode('').inputIds;
  }

  /** Token ids of `text` without sot and eot, untruncated. */
  tokenize(text: string): number[] {
    const ids: number[] = [];
    for (const [piece] of openClipClean(text).matchAll(SPLIT)) {
      const lower = piece.toLowerCase();
      if (lower === START_OF_TEXT) ids.push(this.sotId);
      else if (lower === END_OF_TEXT) ids.push(this.eotId);
      else for (const id of this.bpe.encodeWord(piece)) ids.push(id);
    }
    return ids;
  }

  encode(text: string): TokenizedPrompt {
    if (typeof text !== 'string') throw new UsageError(expectedMessage('a string', 'the prompt', text));
    const tokens = this.tokenize(text);
    const all = [this.sotId, ...tokens.slice(0, this.contextLength), this.eotId];
    const truncated = all.length > this.contextLength;
    const inputIds = all.slice(0, this.contextLength);
    if (truncated) inputIds[this.contextLength - 1] = this.eotId;
    const used = inputIds.length;
    while (inputIds.length < this.contextLength) inputIds.push(PAD_ID);
    const attentionMask = new Array<number>(this.contextLength).fill(0, used).fill(1, 0, used);
    return { inputIds, attentionMask, tokenCount: tokens.length + 2, truncated };
  }

  encodeBatch(texts: string[]): { inputIds: BigInt64Array; prompts: TokenizedPrompt[] } {
    const prompts = texts.map((text) => this.encode(text));
    const inputIds = new BigInt64Array(texts.length * this.contextLength);
    prompts.forEach((prompt, row) => prompt.inputIds.forEach((id, col) => { inputIds[row * this.contextLength + col] = BigInt(id); }));
    return { inputIds, prompts };
  }
}
