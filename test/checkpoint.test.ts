import assert from 'node:assert/strict';
import { copyFile, mkdir, mkdtemp, readFile, rm, stat, truncate, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { ModelError } from '../src/errors.js';
import { openCheckpoint, type Checkpoint } from '../src/convert/checkpoint.js';
import { gatherStrided, isContiguous, unpickleStateDict } from '../src/convert/torch-pickle.js';
import { f32, stateDictPickle, storedZip, writeSafetensors, writeTorchCheckpoint, type TorchTensor } from './helpers/checkpoint-writers.js';
import { referenceDir, skipWithoutReference } from './helpers/paths.js';

let scratch: string;
before(async () => {
  scratch = await mkdtemp(path.join(os.tmpdir(), 'pickscore-ckpt-'));
});
after(async () => {
  await rm(scratch, { recursive: true, force: true });
});

async function folderWith(name: string, files: Record<string, Buffer | string>): Promise<string> {
  const dir = path.join(scratch, name);
  await rm(dir, { recursive: true, force: true });
  await mkdir(dir, { recursive: true });
  for (const [file, data] of Object.entries(files)) await writeFile(path.join(dir, file), data);
  return dir;
}

async function readAll(checkpoint: Checkpoint): Promise<Map<string, Buffer>> {
  const out = new Map<string, Buffer>();
  for (const [name, entry] of checkpoint.tensors) out.set(name, await entry.read());
  return out;
}

async function withCheckpoint<T>(dir: string, use: (c: Checkpoint) => Promise<T>): Promise<T> {
  const checkpoint = await openCheckpoint(dir);
  try {
    return await use(checkpoint);
  } finally {
    await checkpoint.close();
  }
}

describe('reference checkpoints', { skip: skipWithoutReference }, () => {
  test('safetensors, PyTorch 2.11 .bin and PyTorch 1.13 .bin hold identical tensors', async () => {
    const tiny = path.join(referenceDir, 'tiny-clip');
    const safetensors = await withCheckpoint(tiny, async (c) => {
      assert.equal(c.format, 'safetensors');
      return readAll(c);
    });
    // tiny-clip has both files; copy the .bin alone to read it through openCheckpoint's .bin path.
    const binOnly = await folderWith('tiny-bin', {});
    await copyFile(path.join(tiny, 'pytorch_model.bin'), path.join(binOnly, 'pytorch_model.bin'));
    const bin = await withCheckpoint(binOnly, async (c) => {
      assert.equal(c.format, 'pytorch');
      return readAll(c);
    });
    const legacy = await withCheckpoint(path.join(referenceDir, 'tiny-clip-legacy'), readAll);

    assert.equal(safetensors.size, 78);
    assert.deepEqual([...bin.keys()].sort(), [...safetensors.keys()].sort());
    for (const [name, bytes] of safetensors) {
      assert.ok(bytes.equals(bin.get(name)!), `${name}: .bin differs from safetensors`);
      assert.ok(bytes.equals(legacy.get(name)!), `${name}: legacy .bin differs from safetensors`);
    }
    // The legacy file adds the int64 position_ids buffers: [[0, 1, ..., n-1]].
    const ids = legacy.get('text_model.embeddings.position_ids')!;
    assert.equal(ids.length, 77 * 8);
    assert.deepEqual(Array.from({ length: 77 }, (_, i) => Number(ids.readBigInt64LE(i * 8))), Array.from({ length: 77 }, (_, i) => i));
    assert.equal(legacy.get('vision_model.embeddings.position_ids')!.readBigInt64LE(256 * 8), 256n);
  });

  test('tensor metadata agrees between formats', async () => {
    await withCheckpoint(path.join(referenceDir, 'tiny-clip-legacy'), async (legacy) => {
      const entry = legacy.tensors.get('vision_model.embeddings.patch_embedding.weight')!;
      assert.deepEqual([entry.dtype, entry.shape, entry.byteLength], ['F32', [48, 3, 14, 14], 48 * 3 * 14 * 14 * 4]);
      const ids = legacy.tensors.get('text_model.embeddings.position_ids')!;
      assert.deepEqual([ids.dtype, ids.shape], ['I64', [1, 77]]);
    });
  });

  test('a truncated .bin names the file', async () => {
    const dir = await folderWith('truncated-bin', {});
    const target = path.join(dir, 'pytorch_model.bin');
    await copyFile(path.join(referenceDir, 'tiny-clip', 'pytorch_model.bin'), target);
    await truncate(target, 4_000_000);
    await assert.rejects(openCheckpoint(dir), (err: unknown) => err instanceof ModelError && err.message.includes(target) && /truncated/.test(err.message));
  });
});

describe('safetensors', () => {
  const tensors = [
    { name: 'a', dtype: 'F32' as const, shape: [2, 3], data: f32([1, 2, 3, 4, 5, 6]) },
    { name: 'b', dtype: 'I64' as const, shape: [2], data: Buffer.from(new BigInt64Array([7n, -8n]).buffer) },
    { name: 'c', dtype: 'F16' as const, shape: [1], data: Buffer.from([0x00, 0x3c]) },
  ];

  test('reads each tensor by its own byte range', async () => {
    const dir = await folderWith('st', {});
    await writeSafetensors(path.join(dir, 'model.safetensors'), tensors);
    await withCheckpoint(dir, async (c) => {
      assert.deepEqual(c.files, [path.join(dir, 'model.safetensors')]);
      assert.deepEqual([...c.tensors.keys()], ['a', 'b', 'c']);
      assert.deepEqual(new Float32Array(new Uint8Array(await c.tensors.get('a')!.read()).buffer), new Float32Array([1, 2, 3, 4, 5, 6]));
      assert.equal((await c.tensors.get('b')!.read()).readBigInt64LE(8), -8n);
      assert.equal((await c.tensors.get('c')!.read()).readUInt16LE(0), 0x3c00);
      assert.equal(c.tensors.get('b')!.byteLength, 16);
    });
  });

  test('a truncated file names the file and the first tensor past its end', async () => {
    const dir = await folderWith('st-trunc', {});
    const file = path.join(dir, 'model.safetensors');
    await writeSafetensors(file, tensors);
    const { size } = await stat(file);
    await truncate(file, size - 10);
    await assert.rejects(openCheckpoint(dir), (err: unknown) => {
      assert.ok(err instanceof ModelError);
      assert.match(err.message, /truncated: tensor b ends at byte/);
      assert.ok(err.message.includes(file));
      return true;
    });
  });

  test('a byte range that disagrees with dtype and shape is refused', async () => {
    const dir = await folderWith('st-bad-range', {});
    await writeSafetensors(path.join(dir, 'model.safetensors'), [{ name: 'w', dtype: 'F32', shape: [3], data: f32([1, 2]) }]);
    await assert.rejects(openCheckpoint(dir), /tensor w spans 8 bytes but its dtype F32 and shape \[3\] need 12/);
  });

  test('an unsupported dtype is named', async () => {
    const dir = await folderWith('st-dtype', {});
    await writeSafetensors(path.join(dir, 'model.safetensors'), [{ name: 'w', dtype: 'F8_E4M3' as never, shape: [1], data: Buffer.alloc(1) }]);
    await assert.rejects(openCheckpoint(dir), /Expected a supported dtype .* for the dtype of tensor w in .* but received "F8_E4M3"/);
  });

  test('garbage is not taken for a header', async () => {
    const dir = await folderWith('st-garbage', { 'model.safetensors': Buffer.from('not a safetensors file at all') });
    await assert.rejects(openCheckpoint(dir), (err: unknown) => err instanceof ModelError && err.message.includes('model.safetensors'));
  });

  test('shards listed in model.safetensors.index.json are read as one checkpoint', async () => {
    const dir = await folderWith('st-sharded', {
      'model.safetensors.index.json': JSON.stringify({ metadata: {}, weight_map: { a: 'model-00001-of-00002.safetensors', c: 'model-00002-of-00002.safetensors' } }),
    });
    await writeSafetensors(path.join(dir, 'model-00001-of-00002.safetensors'), [tensors[0]]);
    await writeSafetensors(path.join(dir, 'model-00002-of-00002.safetensors'), [tensors[2]]);
    await withCheckpoint(dir, async (c) => {
      assert.deepEqual([...c.tensors.keys()].sort(), ['a', 'c']);
      assert.equal(c.tensors.get('c')!.file, path.join(dir, 'model-00002-of-00002.safetensors'));
      assert.equal(c.files.length, 3);
      assert.ok((await c.tensors.get('a')!.read()).equals(tensors[0].data));
    });
  });

  test('an index that maps a tensor to a shard without it is refused, naming both', async () => {
    const dir = await folderWith('st-bad-index', {
      'model.safetensors.index.json': JSON.stringify({ weight_map: { a: 's1.safetensors', zz: 's1.safetensors' } }),
    });
    await writeSafetensors(path.join(dir, 's1.safetensors'), [tensors[0]]);
    await assert.rejects(openCheckpoint(dir), /maps tensor zz to s1\.safetensors, but that shard does not hold it/);
  });

  test('a folder without weights says which files it looked for', async () => {
    const dir = await folderWith('empty', {});
    await assert.rejects(openCheckpoint(dir), /No weights found in .*model\.safetensors, model\.safetensors\.index\.json, pytorch_model\.bin/);
  });
});

describe('torch.save zip+pickle', () => {
  const storages = {
    '0': f32([0, 1, 2, 3, 4, 5]),
    '1': Buffer.from([0x00, 0x3c, 0x00, 0xc0]), // float16 1, -2
    '2': Buffer.from([0x80, 0x3f, 0x40, 0x40]), // bfloat16 1, 3
    '3': Buffer.from(new BigInt64Array([5n, 6n, 7n]).buffer),
  };
  const tensors: TorchTensor[] = [
    { name: 'matrix', storageKey: '0', storageClass: 'torch.FloatStorage', storageNumel: 6, offset: 0, shape: [2, 3], stride: [3, 1] },
    { name: 'transposed', storageKey: '0', storageClass: 'torch.FloatStorage', storageNumel: 6, offset: 0, shape: [3, 2], stride: [1, 3] },
    { name: 'tail', storageKey: '0', storageClass: 'torch.FloatStorage', storageNumel: 6, offset: 4, shape: [2], stride: [1] },
    { name: 'half', storageKey: '1', storageClass: 'torch.HalfStorage', storageNumel: 2, offset: 0, shape: [2], stride: [1] },
    { name: 'bf16', storageKey: '2', storageClass: 'torch.BFloat16Storage', storageNumel: 2, offset: 0, shape: [2], stride: [1] },
    { name: 'ids', storageKey: '3', storageClass: 'torch.LongStorage', storageNumel: 3, offset: 1, shape: [1, 2], stride: [3, 1] },
    { name: 'scalar', storageKey: '0', storageClass: 'torch.FloatStorage', storageNumel: 6, offset: 5, shape: [], stride: [] },
  ];

  async function expectTensors(dir: string): Promise<void> {
    await withCheckpoint(dir, async (c) => {
      const floats = async (name: string) => Array.from(new Float32Array(new Uint8Array(await c.tensors.get(name)!.read()).buffer));
      assert.deepEqual(await floats('matrix'), [0, 1, 2, 3, 4, 5]);
      assert.deepEqual(await floats('transposed'), [0, 3, 1, 4, 2, 5]);
      assert.deepEqual(await floats('tail'), [4, 5]);
      assert.deepEqual(await floats('scalar'), [5]);
      assert.deepEqual([c.tensors.get('half')!.dtype, [...(await c.tensors.get('half')!.read())]], ['F16', [0x00, 0x3c, 0x00, 0xc0]]);
      assert.equal(c.tensors.get('bf16')!.dtype, 'BF16');
      const ids = await c.tensors.get('ids')!.read();
      assert.deepEqual([c.tensors.get('ids')!.dtype, ids.readBigInt64LE(0), ids.readBigInt64LE(8)], ['I64', 6n, 7n]);
      assert.equal(c.tensors.get('transposed')!.byteLength, 24);
    });
  }

  test('reads dtypes, storage offsets and strided views', async () => {
    const dir = await folderWith('bin', {});
    await writeTorchCheckpoint(path.join(dir, 'pytorch_model.bin'), tensors, storages);
    await expectTensors(dir);
  });

  test('reads an archive with zip64 records', async () => {
    const dir = await folderWith('bin64', {});
    await writeTorchCheckpoint(path.join(dir, 'pytorch_model.bin'), tensors, storages, { zip64: true, archive: 'pytorch_model' });
    const bytes = await readFile(path.join(dir, 'pytorch_model.bin'));
    assert.ok(bytes.includes(Buffer.from([0x50, 0x4b, 0x06, 0x06])), 'the fixture has a zip64 end record');
    await expectTensors(dir);
  });

  test('shards listed in pytorch_model.bin.index.json are read as one checkpoint', async () => {
    const dir = await folderWith('bin-sharded', {
      'pytorch_model.bin.index.json': JSON.stringify({ weight_map: { matrix: 'pytorch_model-00001.bin', half: 'pytorch_model-00002.bin' } }),
    });
    await writeTorchCheckpoint(path.join(dir, 'pytorch_model-00001.bin'), [tensors[0]], { '0': storages['0'] });
    await writeTorchCheckpoint(path.join(dir, 'pytorch_model-00002.bin'), [tensors[3]], { '1': storages['1'] });
    await withCheckpoint(dir, async (c) => {
      assert.equal(c.format, 'pytorch');
      assert.deepEqual([...c.tensors.keys()].sort(), ['half', 'matrix']);
      assert.ok((await c.tensors.get('half')!.read()).equals(storages['1']));
    });
  });

  test('a storage too small for its tensor is refused, naming the tensor', async () => {
    const dir = await folderWith('bin-short', {});
    await writeTorchCheckpoint(path.join(dir, 'pytorch_model.bin'), [tensors[0]], { '0': f32([0, 1, 2]) });
    await assert.rejects(openCheckpoint(dir), /tensor matrix needs 24 bytes of storage 0, but its entry holds 12/);
  });

  test('a missing storage entry is named', async () => {
    const dir = await folderWith('bin-missing', {});
    await writeTorchCheckpoint(path.join(dir, 'pytorch_model.bin'), [tensors[0]], {});
    await assert.rejects(openCheckpoint(dir), /tensor matrix uses storage 0, but the archive has no entry archive\/data\/0/);
  });

  test('a corrupt pickle is refused with the file and the offending byte', async () => {
    const good = stateDictPickle([tensors[0]]);
    const corrupt = Buffer.from(good);
    corrupt[2] = 0xff; // the GLOBAL opcode becomes an unknown one
    const dir = await folderWith('bin-corrupt', {});
    const file = path.join(dir, 'pytorch_model.bin');
    await writeTorchCheckpoint(file, [], { '0': storages['0'] }, { pickle: corrupt });
    await assert.rejects(openCheckpoint(dir), (err: unknown) => {
      assert.ok(err instanceof ModelError);
      assert.ok(err.message.startsWith(`${file} (archive/data.pkl): unsupported pickle opcode 0xff at byte 2`), err.message);
      return true;
    });
  });

  test('a pickle cut short is refused', async () => {
    const good = stateDictPickle([tensors[0]]);
    assert.throws(() => unpickleStateDict(good.subarray(0, good.length - 20), 'x.pkl'), /x\.pkl: .*(cut short|truncated|STOP)/);
  });

  test('globals outside the state-dict subset are refused, never called', () => {
    const evil = Buffer.concat([Buffer.from([0x80, 0x02]), Buffer.from('cos\nsystem\n'), Buffer.from([0x2e])]);
    assert.throws(() => unpickleStateDict(evil, 'evil.pkl'), (err: unknown) => {
      assert.ok(err instanceof ModelError);
      assert.equal(err.message, 'evil.pkl: the pickle refers to os.system, which is not part of a state dict; refusing to load it');
      return true;
    });
  });

  test('compressed entries are refused', async () => {
    const zip = storedZip([{ name: 'archive/data.pkl', data: stateDictPickle([tensors[2]]) }, { name: 'archive/data/0', data: storages['0'] }]);
    // Mark the storage entry as deflated in its central directory record (method field at offset 10).
    const central = zip.lastIndexOf(Buffer.from('PK\x01\x02', 'latin1'));
    zip.writeUInt16LE(8, central + 10);
    const dir = await folderWith('bin-deflated', { 'pytorch_model.bin': zip });
    await withCheckpoint(dir, async (c) => {
      await assert.rejects(c.tensors.get('tail')!.read(), /entry archive\/data\/0 is compressed \(method 8\)/);
    });
  });

  test('a file that is not a zip is refused', async () => {
    const dir = await folderWith('bin-notzip', { 'pytorch_model.bin': Buffer.from('PK but not really a zip archive') });
    await assert.rejects(openCheckpoint(dir), /is not a zip archive or is truncated/);
  });

  test('the pre-1.6 torch.save format is named as unsupported', async () => {
    const dir = await folderWith('bin-legacy-format', { 'pytorch_model.bin': Buffer.from([0x80, 0x02, 0x8a, 0x0a]) });
    await assert.rejects(openCheckpoint(dir), /legacy \(before PyTorch 1\.6\) torch\.save format/);
  });
});

describe('strided copies', () => {
  test('contiguity ignores the strides of size-1 dimensions', () => {
    assert.equal(isContiguous([1, 77], [77, 1]), true);
    assert.equal(isContiguous([1, 77], [1, 1]), true);
    assert.equal(isContiguous([2, 3], [1, 2]), false);
    assert.equal(isContiguous([], []), true);
  });

  test('a 3-d permuted view is gathered in row-major order', () => {
    // Storage holds a [2, 3, 4] tensor; the view is its permutation to [4, 2, 3].
    const storage = Buffer.from(Uint8Array.from({ length: 24 }, (_, i) => i));
    const out = gatherStrided(storage, [4, 2, 3], [1, 12, 4], 1);
    const expected: number[] = [];
    for (let c = 0; c < 4; c++) for (let a = 0; a < 2; a++) for (let b = 0; b < 3; b++) expected.push(a * 12 + b * 4 + c);
    assert.deepEqual([...out], expected);
  });
});
