import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { combinePrompts, parsePromptsJsonl, parsePromptsText, promptForImage, readPromptsFile, sidecarPath } from '../src/io/prompts.js';
import { InputError } from '../src/errors.js';
import { makeTempDir, removeTempDirs } from './helpers/hub-temp.js';
import { pillowAvailable, pillowPython } from './helpers/image-pillow.js';

after(removeTempDirs);

const tempDir = (): Promise<string> => makeTempDir('prompts');

function image(dir: string, name: string): { path: string; absolute: string } {
  return { path: `./imgs/${name}`, absolute: path.join(dir, name) };
}

test('a plain prompts file: BOM, blank lines and CRLF are dropped, lines trimmed, duplicates kept once', async () => {
  assert.deepEqual(parsePromptsText('\uFEFFa cat\r\n\r\n  a dog  \n\t\na cat\nlast line without newline'), ['a cat', 'a dog', 'last line without newline']);
  const file = path.join(await tempDir(), 'prompts.txt');
  await writeFile(file, '\uFEFFfirst\n\nsecond\n');
  assert.deepEqual(await readPromptsFile(file), ['first', 'second']);
});

test('a .jsonl prompts file holds {"prompt"} objects, so prompts may span lines; a bad line names file:line', async () => {
  assert.deepEqual(parsePromptsJsonl('\uFEFF{"prompt":"two\\nlines","id":1}\n\n{"prompt":"x"}\r\n{"prompt":"x"}\n', 'p.jsonl'), ['two\nlines', 'x']);
  assert.throws(() => parsePromptsJsonl('{"prompt":"ok"}\n{"prompt": 3}\n', 'p.jsonl'), (e: unknown) =>
    e instanceof InputError && e.message === 'p.jsonl:2: prompt: Expected a non-empty string for field "prompt" but received number 3');
  assert.throws(() => parsePromptsJsonl('{"prompt":"ok"}\n\n{oops\n', 'p.jsonl'), (e: unknown) => e instanceof InputError && /^p\.jsonl:3: invalid JSON/.test(e.message));
  const file = path.join(await tempDir(), 'prompts.JSONL');
  await writeFile(file, '{"prompt":"from jsonl"}\n');
  assert.deepEqual(await readPromptsFile(file), ['from jsonl']);
});

test('an empty or missing prompts file is an InputError naming it', async () => {
  const dir = await tempDir();
  await writeFile(path.join(dir, 'empty.txt'), '\uFEFF\n  \n');
  await assert.rejects(readPromptsFile(path.join(dir, 'empty.txt')), (e: unknown) => e instanceof InputError && e.message.endsWith('empty.txt holds no prompts'));
  await assert.rejects(readPromptsFile(path.join(dir, 'nope.txt')), (e: unknown) => e instanceof InputError && /Cannot read prompts file .*nope\.txt \(ENOENT\)/.test(e.message));
});

test('--prompt values and a prompts file combine in order without duplicates; an empty --prompt is refused', () => {
  assert.deepEqual(combinePrompts(['b', 'a'], ['a', 'c']), ['b', 'a', 'c']);
  assert.throws(() => combinePrompts(['ok', '  ']), (e: unknown) => e instanceof InputError && e.message === 'Expected a non-empty prompt for --prompt but received "  "');
});

test('sidecar paths replace the extension and keep the folder as given', () => {
  assert.equal(sidecarPath('./imgs/a.png'), './imgs/a.txt');
  assert.equal(sidecarPath('imgs/v1.2/shot.final.JPG'), 'imgs/v1.2/shot.final.txt');
  assert.equal(sidecarPath('imgs/noext'), 'imgs/noext.txt');
});

test('--prompt-from sidecar: trimmed text, or a row error for a missing or empty sidecar', async () => {
  const dir = await tempDir();
  await writeFile(path.join(dir, 'a.txt'), '\uFEFF  a cat, on a "mat"\n\n');
  await writeFile(path.join(dir, 'empty.txt'), ' \n');
  assert.deepEqual(await promptForImage('sidecar', image(dir, 'a.png')), { ok: true, prompt: 'a cat, on a "mat"' });
  assert.deepEqual(await promptForImage('sidecar', image(dir, 'b.png')), { ok: false, error: 'no sidecar prompt file ./imgs/b.txt' });
  assert.deepEqual(await promptForImage('sidecar', image(dir, 'empty.png')), { ok: false, error: 'sidecar prompt file ./imgs/empty.txt is empty' });
});

test('--prompt-from sidecar: UTF-16 with a BOM is read; NUL bytes or invalid UTF-8 are a row error naming the file and line', async () => {
  const dir = await tempDir();
  await writeFile(path.join(dir, 'le.txt'), Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from('un chat\r\n', 'utf16le')]));
  await writeFile(path.join(dir, 'nul.txt'), Buffer.from('line one\nline\u0000two\n'));
  await writeFile(path.join(dir, 'latin1.txt'), Buffer.from('caf\xe9', 'latin1'));
  assert.deepEqual(await promptForImage('sidecar', image(dir, 'le.png')), { ok: true, prompt: 'un chat' });
  assert.deepEqual(await promptForImage('sidecar', image(dir, 'nul.png')),
    { ok: false, error: 'sidecar prompt file ./imgs/nul.txt, line 2: NUL byte: a binary file, or UTF-16 without a byte-order mark; save it as UTF-8, or as UTF-16 with a byte-order mark' });
  assert.deepEqual(await promptForImage('sidecar', image(dir, 'latin1.png')),
    { ok: false, error: 'sidecar prompt file ./imgs/latin1.txt, line 1: not valid UTF-8 (byte 0xE9); save it as UTF-8, or as UTF-16 with a byte-order mark' });
});

test('--prompt-from sidecar finds the sidecar of a non-UTF-8 name through its raw bytes', async () => {
  const dir = await tempDir();
  const stem = Buffer.concat([Buffer.from(`${dir}/bad`), Buffer.from([0xff])]);
  await writeFile(Buffer.concat([stem, Buffer.from('.txt')]), 'raw prompt');
  const entry = { path: 'bad\\xFF.png', absolute: `${dir}/bad\\xFF.png`, rawAbsolute: Buffer.concat([stem, Buffer.from('.png')]) };
  assert.deepEqual(await promptForImage('sidecar', entry), { ok: true, prompt: 'raw prompt' });
});

/** PNGs written by Pillow with the text chunks that AUTOMATIC1111 and ComfyUI write. */
async function generatorPngs(dir: string): Promise<void> {
  const comfy = JSON.stringify({
    '3': { class_type: 'KSampler', inputs: { positive: ['6', 0], negative: ['7', 0], seed: 1 } },
    '6': { class_type: 'CLIPTextEncode', inputs: { text: 'a red fox in snow', clip: ['4', 1] } },
    '7': { class_type: 'CLIPTextEncode', inputs: { text: 'blurry', clip: ['4', 1] } },
  });
  const script = `
import sys
from PIL import Image, PngImagePlugin
d, comfy = sys.argv[1], sys.argv[2]
def save(name, chunks):
    info = PngImagePlugin.PngInfo()
    for k, v in chunks.items(): info.add_text(k, v)
    Image.new("RGB", (4, 4), (200, 30, 30)).save(f"{d}/{name}", pnginfo=info)
save("a1111.png", {"parameters": "a cat on a mat, best quality\\nNegative prompt: blurry\\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 1, Size: 512x512"})
save("comfy.png", {"prompt": comfy})
save("plain.png", {"Software": "none"})
Image.new("RGB", (4, 4)).save(f"{d}/photo.jpg")
`;
  execFileSync(pillowPython, ['-c', script, dir, comfy]);
}

test('--prompt-from png reads AUTOMATIC1111 and ComfyUI prompts; other files get a row error', { skip: pillowAvailable() ? false : 'python3-pil is not installed' }, async () => {
  const dir = await tempDir();
  await generatorPngs(dir);
  assert.deepEqual(await promptForImage('png', image(dir, 'a1111.png')), { ok: true, prompt: 'a cat on a mat, best quality' });
  assert.deepEqual(await promptForImage('png', image(dir, 'comfy.png')), { ok: true, prompt: 'a red fox in snow' });
  assert.deepEqual(await promptForImage('png', image(dir, 'plain.png')), {
    ok: false,
    error: './imgs/plain.png has no embedded prompt (no AUTOMATIC1111 "parameters" or ComfyUI "prompt" text chunk)',
  });
  assert.deepEqual(await promptForImage('png', image(dir, 'photo.jpg')), { ok: false, error: './imgs/photo.jpg is not a PNG, so it has no embedded prompt' });
  assert.deepEqual(await promptForImage('png', image(dir, 'gone.png')), { ok: false, error: 'cannot read ./imgs/gone.png (ENOENT)' });
});
