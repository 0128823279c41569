import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readFile, symlink, writeFile, chmod } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { BMP_SKIP_REASON, discoverImages, displayName, pathFromDisplay } from '../src/io/discover.js';
import { compareCodePoints } from '../src/score/rank.js';
import { InputError } from '../src/errors.js';

const ODD_NAME = 'odd, "quoted"\nname.png';
const NON_UTF8_NAME = Buffer.from([0x62, 0x61, 0x64, 0xff, 0x2e, 0x70, 0x6e, 0x67]); // "bad\xFF.png"

/**
 * tmp/imgs/{a.png, B.JPG, z.Webp, notes.txt, .hidden.png, broken.png -> missing, self.png -> self.png,
 * odd name, bad\xFF.png, sub/c.gif, sub/loop -> .., sub/link.png -> ../a.png}, tmp/empty/, tmp/alias -> imgs
 */
async function makeTree(): Promise<string> {
  const root = await mkdtemp(path.join(os.tmpdir(), 'pickscore-discover-'));
  const imgs = path.join(root, 'imgs');
  await mkdir(path.join(imgs, 'sub'), { recursive: true });
  await mkdir(path.join(root, 'empty'));
  for (const name of ['a.png', 'B.JPG', 'z.Webp', 'notes.txt', '.hidden.png', ODD_NAME, 'sub/c.gif']) await writeFile(path.join(imgs, name), name);
  await writeFile(Buffer.concat([Buffer.from(`${imgs}/`), NON_UTF8_NAME]), 'non-utf8');
  await symlink('missing.png', path.join(imgs, 'broken.png'));
  await symlink('self.png', path.join(imgs, 'self.png'));
  await symlink('..', path.join(imgs, 'sub', 'loop'));
  await symlink('../a.png', path.join(imgs, 'sub', 'link.png'));
  await symlink('imgs', path.join(root, 'alias'));
  return root;
}

test('a folder is walked recursively, sorted by code point, printed as given, loops and broken links safe', async () => {
  const root = await makeTree();
  const found = await discoverImages(['./imgs'], { cwd: root });
  assert.deepEqual(
    found.map((f) => f.path),
    // sub/loop -> .. leads back to imgs, already walked, so the loop ends there; sub/link.png is a.png
    // under a second name, so one entry. Broken and self-referencing links are entries (error rows later).
    ['./imgs/B.JPG', './imgs/a.png', './imgs/bad\\xFF.png', './imgs/broken.png', `./imgs/${ODD_NAME}`, './imgs/self.png', './imgs/sub/c.gif', './imgs/z.Webp'],
  );
  for (const f of found.filter((e) => !e.rawAbsolute)) assert.equal(f.absolute, path.join(root, f.path));
});

test('walking into a symlink loop visits each real folder once and lists each real file once', async () => {
  const root = await makeTree();
  const found = await discoverImages(['imgs/sub'], { cwd: root });
  assert.deepEqual(
    found.map((f) => f.path),
    [
      'imgs/sub/c.gif',
      'imgs/sub/link.png', // a.png, found first under this name; imgs/sub/loop/a.png is the same file
      'imgs/sub/loop/B.JPG',
      'imgs/sub/loop/bad\\xFF.png',
      'imgs/sub/loop/broken.png',
      `imgs/sub/loop/${ODD_NAME}`,
      'imgs/sub/loop/self.png',
      'imgs/sub/loop/z.Webp',
    ],
  );
});

test('a non-UTF-8 name is shown with \\xNN escapes and stays readable through rawAbsolute', async () => {
  const root = await makeTree();
  const entry = (await discoverImages(['imgs'], { cwd: root })).find((f) => f.rawAbsolute);
  assert.ok(entry?.rawAbsolute);
  assert.equal(entry.path, 'imgs/bad\\xFF.png');
  assert.equal(entry.absolute, path.join(root, 'imgs/bad\\xFF.png'));
  assert.equal(await readFile(entry.rawAbsolute, 'utf8'), 'non-utf8');
  // Node's own decoding would have turned the byte into U+FFFD, which opens nothing.
  await assert.rejects(readFile(path.join(root, 'imgs', NON_UTF8_NAME.toString('utf8'))), { code: 'ENOENT' });
});

test('displayName escapes only the invalid bytes and keeps valid multi-byte characters', () => {
  assert.deepEqual(displayName(Buffer.from('café.png')), { text: 'café.png', lossy: false });
  assert.deepEqual(displayName(Buffer.from([0xc3, 0xa9, 0xc3, 0x2e, 0xed, 0xa0, 0x80])), { text: 'é\\xC3.\\xED\\xA0\\x80', lossy: true });
});

test('files, globs and folders combine; duplicates are removed keeping the first spelling', async () => {
  const root = await makeTree();
  const found = await discoverImages(['imgs/a.png', 'imgs/*.png', './imgs/a.png', 'imgs/sub/c.gif', 'imgs/sub/link.png'], { cwd: root });
  assert.deepEqual(
    found.map((f) => f.path),
    ['imgs/a.png', 'imgs/bad\\xFF.png', 'imgs/broken.png', `imgs/${ODD_NAME}`, 'imgs/self.png', 'imgs/sub/c.gif'],
  );
});

test('a glob skips hidden files and folders it matches, and does not follow symlinked folders', async () => {
  const root = await makeTree();
  const found = await discoverImages(['imgs/**/*.{png,gif}'], { cwd: root });
  assert.deepEqual(
    found.map((f) => f.path),
    // Not imgs/sub/loop/**: the symlinked folder is not followed. sub/link.png is a.png again.
    ['imgs/a.png', 'imgs/bad\\xFF.png', 'imgs/broken.png', `imgs/${ODD_NAME}`, 'imgs/self.png', 'imgs/sub/c.gif'],
  );
});

test('a symlinked folder is walked under the name given; the same folder again adds nothing and is no error', async () => {
  const root = await makeTree();
  const once = await discoverImages(['alias/sub'], { cwd: root });
  const twice = await discoverImages(['alias/sub', 'imgs/sub'], { cwd: root });
  assert.ok(once.length === 8 && once.every((f) => f.path.startsWith('alias/sub/')));
  assert.deepEqual(twice, once);
});

test('a named file with another extension is skipped and reported; named images are kept whatever their case', async () => {
  const root = await makeTree();
  const skipped: string[] = [];
  const found = await discoverImages(['imgs/notes.txt', 'imgs/B.JPG'], { cwd: root, onSkip: (p, why) => skipped.push(`${p}: ${why}`) });
  assert.deepEqual(found.map((f) => f.path), ['imgs/B.JPG']);
  assert.deepEqual(skipped, ['imgs/notes.txt: not an image file extension']);
  await assert.rejects(discoverImages(['imgs/notes.txt'], { cwd: root }), (e: unknown) => e instanceof InputError && e.message.includes('imgs/notes.txt'));
});

test('custom extensions replace the default list', async () => {
  const root = await makeTree();
  const found = await discoverImages(['imgs'], { cwd: root, extensions: ['.GIF'] });
  assert.deepEqual(found.map((f) => f.path), ['imgs/sub/c.gif']);
});

test('a missing path, an empty folder and a pattern that matches nothing are InputErrors naming them', async () => {
  const root = await makeTree();
  const cases: [string, RegExp][] = [
    ['imgs/nope.png', /Input path imgs\/nope\.png does not exist/],
    ['empty', /No image files .* found in folder empty/],
    ['imgs/*.avif', /No image files .* found in pattern imgs\/\*\.avif/],
    ['', /Expected a file, folder or glob pattern/],
  ];
  for (const [input, message] of cases) {
    await assert.rejects(discoverImages(['imgs/a.png', input], { cwd: root }), (e: unknown) => e instanceof InputError && message.test(e.message), input);
  }
});

test('an unreadable input folder is an InputError; an unreadable subfolder is skipped and reported', { skip: process.getuid?.() === 0 ? 'root reads every folder' : false }, async () => {
  const root = await makeTree();
  const locked = path.join(root, 'imgs', 'sub');
  await chmod(locked, 0o000);
  try {
    const skipped: string[] = [];
    const found = await discoverImages(['imgs'], { cwd: root, onSkip: (p) => skipped.push(p) });
    assert.ok(!found.some((f) => f.path.startsWith('imgs/sub/')));
    assert.deepEqual(skipped, ['imgs/sub']);
    await assert.rejects(discoverImages(['imgs/sub'], { cwd: root }), (e: unknown) => e instanceof InputError && /Cannot read input folder imgs\/sub \(EACCES\)/.test(e.message));
  } finally {
    await chmod(locked, 0o755);
  }
});

test('compareCodePoints orders by code point, unlike UTF-16 code unit order', () => {
  const astral = '\u{1F600}.png'; // UTF-16 D83D DE00: sorts before U+FF5E by code unit, after it by code point
  const fullwidth = '\uFF5E.png';
  assert.deepEqual([astral, fullwidth].sort(), [astral, fullwidth]);
  assert.deepEqual([astral, fullwidth].sort(compareCodePoints), [fullwidth, astral]);
  assert.ok(compareCodePoints('a', 'ab') < 0 && compareCodePoints('ab', 'a') > 0 && compareCodePoints('x', 'x') === 0);
});

test('names that decode alike stay apart: byte 0xFF, byte 0xFE and a name that spells out \xFF each get their own path', async () => {
  const root = await mkdtemp(path.join(os.tmpdir(), 'pickscore-discover-'));
  const dir = path.join(root, 'imgs');
  await mkdir(dir);
  const names = [Buffer.from([0x62, 0xff, 0x2e, 0x70, 0x6e, 0x67]), Buffer.from([0x62, 0xfe, 0x2e, 0x70, 0x6e, 0x67]), Buffer.from('b\\xFF.png'), Buffer.from('b\\\\.png')];
  for (const [i, name] of names.entries()) await writeFile(Buffer.concat([Buffer.from(`${dir}/`), name]), `file ${i}`);
  const expected = ['imgs/b\\\\\\\\.png', 'imgs/b\\\\xFF.png', 'imgs/b\\xFE.png', 'imgs/b\\xFF.png'];
  // A folder walk reads the names as bytes; a glob's matches come back from fast-glob as U+FFFD (once
  // for both bytes) and are matched back to the names on disk.
  for (const input of ['imgs', 'imgs/*.png']) {
    const found = await discoverImages([input], { cwd: root });
    assert.deepEqual(found.map((f) => f.path), expected, input);
    const contents = await Promise.all(found.map((f) => readFile(f.rawAbsolute ?? f.absolute, 'utf8')));
    assert.deepEqual(contents, ['file 3', 'file 2', 'file 1', 'file 0'], input);
    // The shown path is the file's own: turned back into bytes, it opens that file.
    for (const [i, f] of found.entries()) assert.equal(await readFile(pathFromDisplayIn(root, f.path), 'utf8'), contents[i]);
  }
});

function pathFromDisplayIn(root: string, shown: string): string | Buffer {
  const file = pathFromDisplay(shown);
  return typeof file === 'string' ? path.join(root, file) : Buffer.concat([Buffer.from(`${root}/`), file]);
}

test('pathFromDisplay undoes displayName for any bytes', () => {
  let state = 7;
  for (let n = 0; n < 2000; n++) {
    const bytes = Buffer.alloc(1 + (n % 12));
    for (let i = 0; i < bytes.length; i++) {
      state = (state * 1103515245 + 12345) >>> 0;
      // Mostly backslashes, "x", hex digits and high bytes: the characters an escape could be confused with.
      bytes[i] = [0x5c, 0x78, 0x46, 0x41, 0x30, 0xff, 0xc3, 0xa9, 0xe2, 0x80, 0x61][state % 11];
    }
    const shown = displayName(bytes).text;
    const back = pathFromDisplay(shown);
    assert.deepEqual(Buffer.from(back), bytes, `${bytes.toString('hex')} -> ${shown}`);
  }
});

test('a typed path that Node decoded lossily is matched back to its file; two candidates are refused by name', async () => {
  const root = await mkdtemp(path.join(os.tmpdir(), 'pickscore-discover-'));
  await mkdir(path.join(root, 'imgs'));
  await writeFile(Buffer.concat([Buffer.from(`${root}/imgs/one`), Buffer.from([0xff]), Buffer.from('.png')]), 'one');
  const [entry] = await discoverImages(['imgs/one\uFFFD.png'], { cwd: root });
  assert.equal(entry.path, 'imgs/one\\xFF.png');
  assert.equal(await readFile(entry.rawAbsolute!, 'utf8'), 'one');
  await writeFile(Buffer.concat([Buffer.from(`${root}/imgs/one`), Buffer.from([0xfe]), Buffer.from('.png')]), 'two');
  await assert.rejects(discoverImages(['imgs/one\uFFFD.png'], { cwd: root }),
    (e: unknown) => e instanceof InputError && /could be any of 2 files .*imgs\/one\\xFE\.png, imgs\/one\\xFF\.png/.test(e.message));
});

test('a folder walk passes .bmp over (BMP cannot be decoded) and says so; a .bmp named on the command line is kept', async () => {
  const root = await mkdtemp(path.join(os.tmpdir(), 'pickscore-discover-'));
  await mkdir(path.join(root, 'imgs'));
  for (const name of ['a.png', 'b.bmp', 'C.BMP']) await writeFile(path.join(root, 'imgs', name), name);
  const skipped: string[] = [];
  const walked = await discoverImages(['imgs'], { cwd: root, onSkip: (p, why) => skipped.push(`${p}: ${why}`) });
  assert.deepEqual(walked.map((f) => f.path), ['imgs/a.png']);
  assert.deepEqual(skipped, [`imgs/C.BMP: ${BMP_SKIP_REASON}`, `imgs/b.bmp: ${BMP_SKIP_REASON}`]);
  const named = await discoverImages(['imgs/b.bmp', 'imgs/*.BMP'], { cwd: root });
  assert.deepEqual(named.map((f) => f.path), ['imgs/C.BMP', 'imgs/b.bmp']);
});
