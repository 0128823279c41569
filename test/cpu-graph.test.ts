/**
 * The CPU's fused graphs and what a graph change does to converted folders: int8's fused attention runs
 * in onnxruntime's MultiHeadAttention over three quantised projections, and a variant whose graph
 * changed gets a new fingerprint (so an embedding cache never serves the earlier graph's numbers),
 * while the variants whose graphs did not change keep theirs.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { openCheckpoint, type Checkpoint } from '../src/convert/checkpoint.js';
import { readClipConfig, type ClipConfig } from '../src/convert/clip-config.js';
import { buildClipTowerModel } from '../src/convert/clip-graph.js';
import type { AttentionImpl, Precision } from '../src/model-format.js';
import { fingerprint } from '../src/convert/convert.js';
import { referenceDir, skipWithoutReference } from './helpers/paths.js';

const tinyClipDir = path.join(referenceDir, 'tiny-clip');

function opCounts(config: ClipConfig, checkpoint: Checkpoint, tower: 'text' | 'image', precision: Precision, attention: AttentionImpl): Map<string, number> {
  const counts = new Map<string, number>();
  for (const node of buildClipTowerModel({ tower, config, checkpoint, precision, attention }).nodes) {
    const key = node.domain ? `${node.domain}.${node.opType}` : node.opType;
    counts.set(key, (counts.get(key) ?? 0) + 1);
  }
  return counts;
}

describe('int8 fused graph', { skip: skipWithoutReference }, () => {
  let config: ClipConfig;
  let checkpoint: Checkpoint;
  before(async () => {
    config = await readClipConfig(tinyClipDir);
    checkpoint = await openCheckpoint(tinyClipDir);
  });
  after(async () => checkpoint?.close());

  for (const tower of ['text', 'image'] as const) {
    it(`${tower}: MultiHeadAttention over three projections of one quantised input, no standard attention ops`, () => {
      const layers = tower === 'text' ? config.text.numLayers : config.vision.numLayers;
      const ops = opCounts(config, checkpoint, tower, 'int8', 'fused');
      assert.equal(ops.get('com.microsoft.MultiHeadAttention'), layers);
      // q, k and v from one quantised input; out, fc1 and fc2 each quantise their own
      assert.equal(ops.get('DynamicQuantizeLinear'), layers);
      assert.equal(ops.get('com.microsoft.MatMulIntegerToFloat'), 3 * layers);
      assert.equal(ops.get('com.microsoft.DynamicQuantizeMatMul'), 3 * layers);
      for (const op of ['Softmax', 'Split']) assert.equal(ops.get(op), undefined, op);
      assert.equal(ops.get('MatMul'), 1, 'only the output projection stays in float');
      assert.equal(ops.get('com.microsoft.SkipLayerNormalization'), 2 * layers - 1);
    });
  }

  it('the causal mask of the text tower is MultiHeadAttention\'s own, and the image tower has none', () => {
    for (const tower of ['text', 'image'] as const) {
      const model = buildClipTowerModel({ tower, config, checkpoint, precision: 'int8', attention: 'fused' });
      const attention = model.nodes.filter((n) => n.opType === 'MultiHeadAttention');
      assert.ok(attention.every((n) => n.attributes?.unidirectional?.value === (tower === 'text' ? 1 : 0)), tower);
      assert.ok(attention.every((n) => n.attributes?.scale?.value === 1), 'the scale is folded into the q weights');
      assert.ok(!model.initializers.some((i) => i.name === 'causal_mask'), tower);
    }
  });
});

describe('fingerprints and graph revisions', () => {
  const files = [{ name: 'config.json', size: 10, sha256: '1'.repeat(64) }, { name: 'model.safetensors', size: 20, sha256: '2'.repeat(64) }];
  // What these sources gave before int8/fused's attention moved into MultiHeadAttention.
  const earlier: Record<string, string> = {
    'fp32 plain': 'e5224d3a725f565f61caab31bb8150985fc05d0d303c6d91ef668798b713892a',
    'fp32 fused': 'b8225c876db32e3eae1424543628baf4e3c00b22fd9a344987aa53247af437c2',
    'fp16 plain': 'eda9505c2c107735feb3978bbfd14f7db25a68fe460afbd968aaa12b3ee7bdc6',
    'fp16 fused': '1ea25fc276b0dc759927936e15cc9c416cae894ed54dc6b624453ff145451ee7',
    'int8 plain': '1552812cf7eefa6b60f88fb8acb676754f7599ee4e247643444ff94132f6690b',
    'int8 fused': 'e7b03681e0159fcd767bc549c270af63ffbe1944e70000fd14da2de9522587ad',
  };

  it('int8 fused, whose numbers changed, gets a new fingerprint, so cached embeddings of its earlier graph are not served', () => {
    const now = fingerprint(files, 'int8', 'fused');
    assert.notEqual(now, earlier['int8 fused']);
    assert.ok(!Object.values(earlier).includes(now));
  });

  it('the variants whose graphs did not change keep their fingerprints, and their caches', () => {
    for (const [label, value] of Object.entries(earlier)) {
      if (label === 'int8 fused') continue;
      const [precision, attention] = label.split(' ') as [Precision, AttentionImpl];
      assert.equal(fingerprint(files, precision, attention), value, label);
    }
  });
});
