/**
 * open_clip's tokenizer cleaning and tokenizer mode: cases from ftfy's own test data and docstrings
 * (rspeer/python-ftfy @74dd045, Apache-2.0), with the outputs of ftfy 6.3.1 and of HPSv2's
 * `whitespace_clean(basic_clean(text)).lower()`; Python's html tables and html.unescape against the
 * Python on the machine; and the ids of HPSv2's own SimpleTokenizer (fixtures/tokenizer/open-clip-ids.json).
 */
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, test } from 'node:test';
import { InputError } from '../src/errors.js';
import { ClipTokenizer } from '../src/tokenizer/clip-tokenizer.js';
import { ftfyFixText } from '../src/tokenizer/ftfy.js';
import { FTFY_UPPERCASE_ENTITIES, HTML5_ENTITIES, INVALID_CHARREFS, INVALID_CODEPOINT_RANGES } from '../src/tokenizer/html-entities.js';
import { openClipClean, pythonStrip } from '../src/tokenizer/open-clip-clean.js';
import { OpenClipTokenizer } from '../src/tokenizer/open-clip-tokenizer.js';
import { pythonHtmlUnescape } from '../src/tokenizer/python-html.js';
import { fixturesDir, referenceDir, skipWithoutReference } from './helpers/paths.js';
import { pythonHas, runPython } from './helpers/torch-python.js';

interface Case { source: string; input: string; fixText: string; clean: string; withoutEncodingFix?: string }

/** `source` is a path in rspeer/python-ftfy @74dd045; fixText is ftfy 6.3.1's output, clean HPSv2's cleaning. */
const FTFY_CASES: Case[] = [
  { source: "tests/test-cases/negative.json \"Negative: Don't fix a multiplication symbol in quotes\"", input: "higher values (\u201c+\u201d and \u201c\u00d7\u201d curves) in the superficial region", fixText: "higher values (\"+\" and \"\u00d7\" curves) in the superficial region", clean: "higher values (\"+\" and \"\u00d7\" curves) in the superficial region" },
  { source: "tests/test-cases/negative.json \"Negative: '\u00e9' preceded by curly apostrophe\"", input: "L\u2019\u00e9pisode 8 est trop fou ouahh", fixText: "L'\u00e9pisode 8 est trop fou ouahh", clean: "l'\u00e9pisode 8 est trop fou ouahh" },
  { source: "tests/test-cases/negative.json \"Negative: '\u00c9' followed by a curly apostrophe\"", input: "Join ZZAJ\u00c9\u2019s Official Fan List and receive news, events, and more!", fixText: "Join ZZAJ\u00c9's Official Fan List and receive news, events, and more!", clean: "join zzaj\u00e9's official fan list and receive news, events, and more!" },
  { source: "tests/test-cases/synthetic.json \"Synthetic, negative: Bront\u00eb's name does not end with a Korean syllable\"", input: "I'm not such a fan of Charlotte Bront\u00eb\u2026\u201d", fixText: "I'm not such a fan of Charlotte Bront\u00eb\u2026\"", clean: "i'm not such a fan of charlotte bront\u00eb\u2026\"" },
  { source: "tests/test-cases/synthetic.json \"Synthetic, negative: U+1A on its own\"", input: "Here's a control character: \u001a", fixText: "Here's a control character: ", clean: "here's a control character:" },
  { source: "tests/test-cases/synthetic.json \"Synthetic, negative: don't leak our internal use of byte 0x1A\"", input: "These control characters \u001a are apparently intentional \u0081", fixText: "These control characters  are apparently intentional \u0081", clean: "these control characters are apparently intentional \u0081" },
  { source: "tests/test-cases/in-the-wild.json \"Handle Afrikaans 'n character\"", input: "\u0149 Chloroplas is \u0149 organel wat in fotosinterende plante voorkom.", fixText: "'n Chloroplas is 'n organel wat in fotosinterende plante voorkom.", clean: "'n chloroplas is 'n organel wat in fotosinterende plante voorkom." },
  { source: "tests/test-cases/in-the-wild.json \"Handle Croatian single-codepoint digraphs\"", input: "izum \u201ebootstrap load\u201c koji je kori\u0161te\u01ccem polisilicijskog sloja proizveo dovo\u01c9no dobre kondenzatore na \u010dipu", fixText: "izum \"bootstrap load\" koji je kori\u0161tenjem polisilicijskog sloja proizveo dovoljno dobre kondenzatore na \u010dipu", clean: "izum \"bootstrap load\" koji je kori\u0161tenjem polisilicijskog sloja proizveo dovoljno dobre kondenzatore na \u010dipu" },
  { source: "tests/test-cases/negative.json \"Negative: math in Unicode\"", input: "(-1/2)! = \u221a\u03c0", fixText: "(-1/2)! = \u221a\u03c0", clean: "(-1/2)! = \u221a\u03c0" },
  { source: "tests/test-cases/negative.json \"Negative: en dash and infinity sign\"", input: "2012\u2014\u221e", fixText: "2012\u2014\u221e", clean: "2012\u2014\u221e" },
  { source: "tests/test-cases/negative.json \"Negative: copyright sign preceded by non-breaking space\"", input: "[x]\u00a0\u00a9", fixText: "[x]\u00a0\u00a9", clean: "[x] \u00a9" },
  { source: "tests/test-cases/negative.json \"Mostly negative: we only need to fix C1 control characters\"", input: "C'est vrai que nous n'en avons pas encore beaucoup parl\u00e9\u0085 Tu sais, \u00e7a fait de nombreuses ann\u00e9es", fixText: "C'est vrai que nous n'en avons pas encore beaucoup parl\u00e9\u2026 Tu sais, \u00e7a fait de nombreuses ann\u00e9es", clean: "c'est vrai que nous n'en avons pas encore beaucoup parl\u00e9\u2026 tu sais, \u00e7a fait de nombreuses ann\u00e9es" },
  { source: "tests/test-cases/in-the-wild.json \"Latin-1 / Windows-1252 mixup in German\"", input: "\u0084Handwerk bringt dich \u00fcberall hin\u0093: Von der YOU bis nach Monaco", fixText: "\"Handwerk bringt dich \u00fcberall hin\": Von der YOU bis nach Monaco", clean: "\"handwerk bringt dich \u00fcberall hin\": von der you bis nach monaco" },
  { source: "ftfy/__init__.py fix_text docstring", input: "Broken text&hellip; it&#x2019;s \ufb02ubberi\ufb01c!", fixText: "Broken text\u2026 it's flubberific!", clean: "broken text\u2026 it's flubberific!" },
  { source: "ftfy/__init__.py fix_text docstring", input: "\uff2c\uff2f\uff35\uff24\u3000\uff2e\uff2f\uff29\uff33\uff25\uff33", fixText: "LOUD NOISES", clean: "loud noises" },
  { source: "ftfy/__init__.py fix_text docstring", input: "\u00e2\u0153\u201d No problems", fixText: "\u2714 No problems", clean: "\u2714 no problems", withoutEncodingFix: "\u00e2\u0153\" No problems" },
  { source: "ftfy/fixes.py fix_latin_ligatures docstring", input: "\ufb02u\ufb03e\ufb06", fixText: "fluffiest", clean: "fluffiest" },
  { source: "ftfy/fixes.py fix_character_width docstring", input: "\uff35\uff80\uff70\uff9d", fixText: "U\u30bf\u30fc\u30f3", clean: "u\u30bf\u30fc\u30f3" },
  { source: "ftfy/fixes.py uncurl_quotes docstring", input: "\u201chere\u2019s a test\u201d", fixText: "\"here's a test\"", clean: "\"here's a test\"" },
  { source: "ftfy/fixes.py fix_line_breaks docstring", input: "This string is made of two things:\u20291. Unicode\u20282. Spite", fixText: "This string is made of two things:\n1. Unicode\n2. Spite", clean: "this string is made of two things: 1. unicode 2. spite" },
  { source: "ftfy/fixes.py fix_line_breaks docstring (input only)", input: "What is this \u0085 I don't even", fixText: "What is this \u2026 I don't even", clean: "what is this \u2026 i don't even" },
  { source: "tests/test_characters.py test_control_chars", input: "\ufeffSometimes, \ufffcbad ideas \u007f\ufffalike these characters\ufffb \u206aget standardized.\r\n", fixText: "Sometimes, bad ideas like these characters get standardized.\n", clean: "sometimes, bad ideas like these characters get standardized." },
  { source: "tests/test_characters.py test_color_escapes", input: "\u0001\u001b[36;44mfoo", fixText: "foo", clean: "foo" },
  { source: "tests/test_entities.py", input: "&amp;\n<html>\n&amp;", fixText: "&\n<html>\n&amp;", clean: "& <html> &" },
  { source: "tests/test_entities.py", input: "&lt;&gt;", fixText: "<>", clean: "<>" },
  { source: "tests/test_entities.py", input: "jednocze&sacute;nie", fixText: "jednocze\u015bnie", clean: "jednocze\u015bnie" },
  { source: "tests/test_entities.py", input: "JEDNOCZE&Sacute;NIE", fixText: "JEDNOCZE\u015aNIE", clean: "jednocze\u015bnie" },
  { source: "tests/test_entities.py", input: "&amp;amp;amp;", fixText: "&", clean: "&" },
  { source: "tests/test_entities.py", input: "this is just informal english &not html", fixText: "this is just informal english &not html", clean: "this is just informal english \u00ac html" },
  { source: "tests/test_entities.py", input: "EURO &EURO;", fixText: "EURO \u20ac", clean: "euro \u20ac" },
  { source: "tests/test_entities.py", input: "broken&#x81;", fixText: "broken\u0081", clean: "broken\u0081" },
  { source: "tests/test_entities.py", input: "euro &#x80;", fixText: "euro \u20ac", clean: "euro \u20ac" },
  { source: "tests/test_entities.py", input: "not an entity &#20x6;", fixText: "not an entity &#20x6;", clean: "not an entity x6;" },
  { source: "tests/test_entities.py", input: "V&SCARON;ICHNI", fixText: "V\u0160ICHNI", clean: "v\u0161ichni" },
  { source: "tests/test_entities.py", input: "&#xffff;", fixText: "", clean: "" },
  { source: "tests/test_entities.py", input: "&#xffffffff;", fixText: "\ufffd", clean: "\ufffd" },
  { source: "ftfy/fixes.py unescape_html docstring", input: "P&EACUTE;REZ", fixText: "P\u00c9REZ", clean: "p\u00e9rez" },
  { source: "ftfy/fixes.py unescape_html docstring", input: "BUNDESSTRA&SZLIG;E", fixText: "BUNDESSTRASSE", clean: "bundesstrasse" },
  { source: "ftfy/fixes.py unescape_html docstring", input: "&ntilde; &Ntilde; &NTILDE; &nTILDE;", fixText: "\u00f1 \u00d1 \u00d1 &nTILDE;", clean: "\u00f1 \u00f1 \u00f1 &ntilde;" },
  { source: "ftfy/fixes.py unescape_html docstring", input: "&Jscr;ohn &HilbertSpace;ancock", fixText: "\ud835\udca5ohn \u210bancock", clean: "\ud835\udca5ohn \u210bancock" },
  { source: "ftfy/fixes.py unescape_html docstring", input: "&checkmark;", fixText: "\u2713", clean: "\u2713" },
];

describe("ftfy's fix_text, as far as prompts meet it", () => {
  for (const c of FTFY_CASES) {
    test(`${c.source}: ${JSON.stringify(c.input).slice(0, 60)}`, () => {
      if (c.withoutEncodingFix === undefined) {
        assert.equal(ftfyFixText(c.input), c.fixText);
        assert.equal(openClipClean(c.input), c.clean);
      } else {
        // Mojibake repair (fix_encoding) is not reproduced: the rest of fix_text still is.
        assert.notEqual(ftfyFixText(c.input), c.fixText);
        assert.equal(ftfyFixText(c.input), c.withoutEncodingFix);
      }
    });
  }

  test('html unescaping is off in a line holding "<" and in every line after it, as ftfy\'s "auto" sticks', () => {
    assert.equal(ftfyFixText('&amp;\n<b>&amp;\n&amp;'), '&\n<b>&amp;\n&amp;');
    assert.equal(openClipClean('&amp;\n<b>&amp;amp;\n&amp;'), '& <b>& &');   // html.unescape twice does the rest
  });

  test('a 100,000-character prompt of whitespace, entities and escapes is cleaned in linear time', () => {
    const long = `${' '.repeat(50_000)}x${'\u3000 \t'.repeat(10_000)}&amp;${'\x1b['.repeat(5000)}`;
    const started = process.hrtime.bigint();
    const cleaned = openClipClean(long);
    assert.ok(cleaned.startsWith('x &'), cleaned.slice(0, 20));
    // Not a performance bound: a quadratic strip or escape scan here takes minutes, not this test's seconds.
    assert.ok(process.hrtime.bigint() - started < 60_000_000_000n);
  });

  test("str.strip() and whitespace are Python's: U+0085 and U+001C are whitespace, U+FEFF is not", () => {
    assert.equal(pythonStrip('\x85\x1c a \ufeff\u3000'), 'a \ufeff');
    // ftfy decodes and then removes U+FEFF; behind a "<", html.unescape brings it back and it is not whitespace.
    assert.equal(openClipClean('a&#xfeff;b'), 'ab');
    assert.equal(openClipClean('<a&#xfeff;b'), '<a\ufeffb');
    assert.equal(openClipClean('<a&#x2028;b&#x85;c'), '<a b\u2026c');
  });
});

const pythonHtml = pythonHas(['html'], "Python's html module cross-checks") ? false : 'no python3';

describe("Python's html.unescape", () => {
  test('the tables are the ones of the Python on this machine', { skip: pythonHtml }, () => {
    const py = JSON.parse(runPython(String.raw`
import html, html.entities, json, sys
up = {}
for name, char in html.entities.html5.items():
    if name.endswith(';') and name == name.lower():
        u = '&' + name.upper()
        if html.unescape(u) == u:
            up[name.upper()] = char.upper()
json.dump({'html5': html.entities.html5, 'charrefs': {str(k): v for k, v in html._invalid_charrefs.items()}, 'codepoints': sorted(html._invalid_codepoints), 'upper': up}, sys.stdout)
`).toString()) as { html5: Record<string, string>; charrefs: Record<string, string>; codepoints: number[]; upper: Record<string, string> };
    assert.deepEqual({ ...HTML5_ENTITIES }, py.html5);
    assert.deepEqual(Object.fromEntries([...INVALID_CHARREFS].map(([k, v]) => [String(k), v])), py.charrefs);
    assert.deepEqual(INVALID_CODEPOINT_RANGES.flatMap(([a, b]) => Array.from({ length: b - a + 1 }, (_, i) => a + i)), py.codepoints);
    assert.deepEqual({ ...FTFY_UPPERCASE_ENTITIES }, py.upper);
  });

  const tricky = [
    '&amp &amp; &AMP; &ampx &notin; &notit; &not', '&#65&#x41;&#X41 &#0; &#13; &#128; &#x81; &#xD800; &#x110000; &#99999999999999999999;',
    '&#1; &#11; &#x1c; &#xfdd0; &#xffff; &#x10fffe; &#x10ffff; &#x10fffd;', '&lt;&gt;&quot;&apos;&nbsp;&hellip;&NotNestedGreaterGreater;&nGt;',
    '&&&; &; &#; &#x; &#xg; & amp; &a&b', `&${'a'.repeat(40)};`, '&Jscr;&fjlig;&ThickSpace;&bne;', '&eacuteé &Eacute; &EACUTE; &eacute', 'no ampersand',
  ];
  test('named and numeric references, with and without semicolons, invalid and unknown ones', { skip: pythonHtml }, () => {
    const expected = JSON.parse(runPython('import html, json, sys; json.dump([html.unescape(s) for s in json.load(sys.stdin)], sys.stdout)', [], JSON.stringify(tricky)).toString()) as string[];
    assert.deepEqual(tricky.map(pythonHtmlUnescape), expected);
  });

  test('a decimal reference longer than Python converts is an InputError (html.unescape raises there)', () => {
    assert.throws(() => pythonHtmlUnescape(`&#${'1'.repeat(4301)};`), (err: unknown) => err instanceof InputError && /4301 digits/.test(err.message));
    assert.equal(pythonHtmlUnescape(`&#${'1'.repeat(4300)};`), '\ufffd');
    assert.equal(pythonHtmlUnescape(`&#x${'1'.repeat(5000)};`), '\ufffd');
  });
});

describe("open_clip's tokenizer mode", { skip: skipWithoutReference }, () => {
  test("HPSv2's SimpleTokenizer ids for the reference prompts and prompts chosen for the cleaning's corners", async () => {
    const hf = await ClipTokenizer.fromDir(path.join(referenceDir, 'clip-tokenizer'));
    const tokenizer = new OpenClipTokenizer(hf);
    const fixture = JSON.parse(await readFile(path.join(fixturesDir, 'tokenizer', 'open-clip-ids.json'), 'utf8')) as { prompts: { prompt: string; input_ids: number[] }[] };
    assert.ok(fixture.prompts.length > 60);
    for (const { prompt, input_ids: expected } of fixture.prompts) assert.deepEqual(tokenizer.encode(prompt).inputIds, expected, JSON.stringify(prompt));
    // Where transformers and open_clip disagree, on the same vocabulary.
    assert.notDeepEqual(hf.encode('a tiny robot &amp; a giant flower').inputIds, tokenizer.encode('a tiny robot &amp; a giant flower').inputIds);
    assert.equal(hf.encode('hello!').inputIds[2], 0);                    // transformers: "!" is the pad token
    assert.equal(tokenizer.encode('hello!').inputIds[2], 256);           // open_clip: the word "!"
    const batch = tokenizer.encodeBatch(['a cat', 'cat '.repeat(80)]);
    assert.equal(batch.inputIds.length, 2 * 77);
    assert.equal(batch.inputIds[2 * 77 - 1], 49407n);
    assert.equal(batch.prompts[1].truncated, true);
  });
});
