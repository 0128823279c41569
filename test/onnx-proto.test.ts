/**
 * The hand-written ONNX writer: protobuf varints, half-precision rounding, weight layouts and
 * quantisation, and whole files (inline and with external data) loaded and run by onnxruntime.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import * as ort from 'onnxruntime-node';
import { InternalError } from '../src/errors.js';
import { GraphBuilder } from '../src/convert/onnx-builder.js';
import { encodeVarint, writeOnnxModel } from '../src/convert/onnx-proto.js';
import { concatColumns, decodeFloatTensor, float16BitsToFloat32, float32ToFloat16Bits, transpose2d } from '../src/convert/onnx-tensors.js';
import { dequantize, quantizePerColumn } from '../src/convert/quantize.js';
import { tempDir } from './helpers/graph-models.js';

describe('protobuf varints', () => {
  const cases: [number, number[]][] = [
    [0, [0x00]], [1, [0x01]], [127, [0x7f]], [128, [0x80, 0x01]], [300, [0xac, 0x02]],
    [2 ** 32, [0x80, 0x80, 0x80, 0x80, 0x10]],
    [-1, [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]],
  ];
  for (const [value, bytes] of cases) {
    it(`encodes ${value}`, () => assert.deepEqual([...encodeVarint(value)], bytes));
  }
});

describe('float16 conversion', () => {
  const cases: [number, number][] = [
    [0, 0x0000], [-0, 0x8000], [1, 0x3c00], [-2, 0xc000], [1 / 3, 0x3555], [65504, 0x7bff],
    [65519, 0x7bff], [65520, 0x7c00], [Infinity, 0x7c00], [-Infinity, 0xfc00],
    [2 ** -14, 0x0400], [2 ** -24, 0x0001], [2 ** -25, 0x0000], [1.5 * 2 ** -25, 0x0001],
    [1 + 2 ** -11, 0x3c00], [1 + 3 * 2 ** -11, 0x3c02],   // ties go to the even mantissa
  ];
  for (const [value, bits] of cases) {
    it(`rounds ${value} to 0x${bits.toString(16).padStart(4, '0')}`, () => assert.equal(float32ToFloat16Bits(value), bits));
  }

  it('keeps NaN a NaN', () => assert.ok(Number.isNaN(float16BitsToFloat32(float32ToFloat16Bits(NaN)))));

  it('round-trips every finite half value exactly', () => {
    for (let bits = 0; bits < 0x10000; bits++) {
      if ((bits & 0x7c00) === 0x7c00) continue;   // inf and NaN
      assert.equal(float32ToFloat16Bits(float16BitsToFloat32(bits)), bits, `0x${bits.toString(16)}`);
    }
  });
});

describe('checkpoint tensor decoding and layouts', () => {
  it('decodes BF16 and F16 little-endian', () => {
    assert.deepEqual([...decodeFloatTensor(Uint8Array.of(0x80, 0x3f, 0x00, 0xc0), 'BF16', 'w')], [1, -2]);
    assert.deepEqual([...decodeFloatTensor(Uint8Array.of(0x00, 0x3c, 0x00, 0xc0), 'F16', 'w')], [1, -2]);
  });

  it('rejects integer tensors as weights, naming the tensor', () => {
    assert.throws(() => decodeFloatTensor(new Uint8Array(8), 'I64', 'text_model.embeddings.position_ids'), /position_ids has dtype I64/);
  });

  it('transposes a Linear weight [out, in] to [in, out]', () => {
    assert.deepEqual([...transpose2d(Float32Array.of(1, 2, 3, 4, 5, 6), 2, 3)], [1, 4, 2, 5, 3, 6]);
  });

  it('packs [rows, n] blocks side by side', () => {
    assert.deepEqual([...concatColumns([Float32Array.of(1, 2), Float32Array.of(3, 4)], 2)], [1, 3, 2, 4]);
  });
});

describe('per-column int8 quantisation', () => {
  it('maps each column maximum to 127 and stays within half a step', () => {
    const rows = 3;
    const cols = 3;
    const w = Float32Array.of(0.3, -4, 0, -1, 2, 0, 0.2, 1, 0);
    const q = quantizePerColumn(w, rows, cols);
    assert.deepEqual([...q.values.filter((_, i) => i % cols === 0)], [38, -127, 25]);
    assert.equal(q.values[1], -127);
    assert.equal(q.scales[2], 1, 'an all-zero column keeps scale 1');
    const back = dequantize(q, rows, cols);
    w.forEach((v, i) => assert.ok(Math.abs(back[i] - v) <= q.scales[i % cols] / 2 + 1e-7, `element ${i}`));
  });
});

/**
 * y = reshape(x @ W + b, [-1, 16, 16]) with W [3, 256] (W[i][j] = 256 i + j) and b[j] = j / 2: the weights
 * are large enough to go to external data, the reshape target is a constant shape inference must read.
 */
function tinyModel(order: string[]) {
  const g = new GraphBuilder('tiny');
  const x = g.input('x', 'float32', ['batch', 3]);
  const w = g.weight('w', 'float32', [3, 256], async () => {
    order.push('w');
    return new Uint8Array(Float32Array.from({ length: 768 }, (_, i) => i).buffer);
  });
  const b = g.weight('b', 'float32', [256], async () => {
    order.push('b');
    return new Uint8Array(Float32Array.from({ length: 256 }, (_, j) => j / 2).buffer);
  });
  const y = g.op('Reshape', [g.op('Add', [g.op('MatMul', [x, w]), b]), g.constInt64('shape', [-1, 16, 16])]);
  g.output(y, 'y', 'float32', ['batch', 16, 16]);
  return g.build('test');
}

/** Rows [1, 0, 0] and [0, 1, 1]: y0[j] = 1.5 j, y1[j] = 768 + 2.5 j. */
const EXPECTED_Y = [...Array.from({ length: 256 }, (_, j) => 1.5 * j), ...Array.from({ length: 256 }, (_, j) => 768 + 2.5 * j)];

async function runTiny(file: string): Promise<number[]> {
  const session = await ort.InferenceSession.create(file);
  try {
    const out = await session.run({ x: new ort.Tensor('float32', Float32Array.of(1, 0, 0, 0, 1, 1), [2, 3]) });
    assert.deepEqual(out.y.dims, [2, 16, 16]);
    return [...(out.y.data as Float32Array)];
  } finally {
    await session.release();
  }
}

describe('writeOnnxModel', () => {
  it('writes a model onnxruntime runs, producing each weight once and in order', async () => {
    const scratch = await tempDir('onnx-inline');
    try {
      const order: string[] = [];
      const file = path.join(scratch.dir, 'tiny.onnx');
      const result = await writeOnnxModel(tinyModel(order), file);
      assert.deepEqual(order, ['w', 'b']);
      assert.equal(result.externalData, false);
      assert.equal(result.bytes, (await stat(file)).size);
      assert.deepEqual(await runTiny(file), EXPECTED_Y);
    } finally {
      await scratch.remove();
    }
  });

  it('streams weights to page-aligned external data that onnxruntime reads back, keeping small constants inline', async () => {
    const scratch = await tempDir('onnx-external');
    try {
      const file = path.join(scratch.dir, 'tiny.onnx');
      const result = await writeOnnxModel(tinyModel([]), file, { externalData: true });
      assert.equal(result.externalData, true);
      const data = await readFile(`${file}.data`);
      assert.equal(data.length, 4096 + 1024, 'W fills 3072 bytes, then b starts on the next page');
      assert.deepEqual([...new Float32Array(data.buffer, data.byteOffset + 4096, 3)], [0, 0.5, 1]);
      assert.equal(result.bytes, (await stat(file)).size + data.length);
      assert.ok((await stat(file)).size < 1024, 'the graph file holds no weights');
      assert.deepEqual(await runTiny(file), EXPECTED_Y);
    } finally {
      await scratch.remove();
    }
  });

  it('refuses an initializer whose bytes disagree with its dims', async () => {
    const scratch = await tempDir('onnx-bad');
    try {
      const g = new GraphBuilder('bad');
      const x = g.input('x', 'float32', [2]);
      g.output(g.op('Add', [x, g.weight('w', 'float32', [2], async () => new Uint8Array(4))]), 'y', 'float32', [2]);
      await assert.rejects(writeOnnxModel(g.build('test'), path.join(scratch.dir, 'bad.onnx')),
        (err: unknown) => err instanceof InternalError && /w produced 4 bytes, expected 8/.test(err.message));
    } finally {
      await scratch.remove();
    }
  });
});
