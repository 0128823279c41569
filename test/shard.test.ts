import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { UsageError } from '../src/errors.js';
import { formatShard, inShard, parseShard, selectShard, shardFromEnv, shardOfKey } from '../src/shard.js';

const keys = Array.from({ length: 3000 }, (_, i) => `out/run-${Math.floor(i / 100)}/img_${String(i).padStart(5, '0')}.png`);

function shuffled<T>(items: T[], seed: number): T[] {
  const out = [...items];
  let state = seed;
  for (let i = out.length - 1; i > 0; i--) {
    state = (state * 1103515245 + 12345) % 2 ** 31;
    const j = state % (i + 1);
    [out[i], out[j]] = [out[j], out[i]];
  }
  return out;
}

test('parseShard reads 0-based K/N', () => {
  assert.deepEqual(parseShard('0/4'), { index: 0, count: 4 });
  assert.deepEqual(parseShard(' 3 / 4 '), { index: 3, count: 4 });
  assert.deepEqual(parseShard('0/1'), { index: 0, count: 1 });
  assert.equal(formatShard(parseShard('2/5')), '2/5');
});

test('parseShard rejects what is not a shard, naming the flag and the value', () => {
  assert.throws(() => parseShard('4/4'), (err: unknown) => err instanceof UsageError && /--shard/.test(err.message) && /from 0 to 3/.test(err.message) && /"4\/4"/.test(err.message));
  assert.throws(() => parseShard('1/0'), /Expected a shard count of at least 1 for --shard but received "1\/0"/);
  for (const bad of ['', '1', '-1/4', '1.5/4', 'a/b', '1/4/5']) {
    assert.throws(() => parseShard(bad), UsageError, bad);
  }
  assert.throws(() => parseShard('x', 'PICKSCORE_SHARD'), /for PICKSCORE_SHARD but/);
});

test('every key lands in exactly one shard', () => {
  for (const count of [1, 2, 3, 7]) {
    const seen = new Map<string, number>();
    for (let index = 0; index < count; index++) {
      for (const key of selectShard(keys, { index, count }, (k) => k)) {
        assert.equal(seen.has(key), false, `${key} in two shards`);
        seen.set(key, index);
      }
    }
    assert.equal(seen.size, keys.length, `N=${count}: some keys in no shard`);
  }
});

test('assignment depends on the key, not on the order the items are listed in', () => {
  const shard = { index: 1, count: 3 };
  const inOrder = selectShard(keys, shard, (k) => k);
  const fromShuffled = selectShard(shuffled(keys, 7), shard, (k) => k);
  assert.deepEqual([...fromShuffled].sort(), [...inOrder].sort());
  assert.ok(inOrder.length > 0);
});

test('selectShard keeps the original order and passes everything through without a shard', () => {
  const items = keys.map((key, position) => ({ key, position }));
  const selected = selectShard(items, { index: 0, count: 3 }, (item) => item.key);
  for (let i = 1; i < selected.length; i++) assert.ok(selected[i].position > selected[i - 1].position);
  assert.equal(selectShard(items, undefined, (item) => item.key).length, items.length);
});

test('shards are roughly balanced', () => {
  for (const count of [2, 3, 8]) {
    const sizes = new Array<number>(count).fill(0);
    for (const key of keys) sizes[shardOfKey(key, count)]++;
    const expected = keys.length / count;
    // Binomial spread: 4 standard deviations is a bound a fair hash practically never exceeds.
    const bound = 4 * Math.sqrt(keys.length * (1 / count) * (1 - 1 / count));
    for (const size of sizes) assert.ok(Math.abs(size - expected) < bound, `N=${count}: sizes ${sizes.join(',')}`);
  }
});

test('the hash is the documented one: first 6 bytes of SHA-256, big-endian, mod N', () => {
  // So that other tools (a Python pre-filter, a database query) can reproduce the split.
  const key = 'images/é cat.png';
  const expected = Number(BigInt(`0x${createHash('sha256').update(Buffer.from(key, 'utf8')).digest('hex').slice(0, 12)}`) % 5n);
  assert.equal(shardOfKey(key, 5), expected);
  assert.equal(inShard(key, { index: expected, count: 5 }), true);
});

test('shardFromEnv: no flags means no sharding, even inside a job array', () => {
  assert.equal(shardFromEnv({ SLURM_ARRAY_TASK_ID: '2', SLURM_ARRAY_TASK_COUNT: '4', JOB_COMPLETION_INDEX: '1' }), undefined);
});

test('shardFromEnv: an explicit --shard wins over the environment', () => {
  assert.deepEqual(shardFromEnv({ JOB_COMPLETION_INDEX: '3' }, { shard: '1/2' }), { index: 1, count: 2 });
  assert.throws(() => shardFromEnv({}, { shard: '1/2', shardCount: 3 }), /--shard 1\/2 names 2 shards but --shard-count is 3/);
});

test('shardFromEnv: Kubernetes Indexed Job with --shard-count', () => {
  assert.deepEqual(shardFromEnv({ JOB_COMPLETION_INDEX: '0' }, { shardCount: '4' }), { index: 0, count: 4 });
  assert.deepEqual(shardFromEnv({ JOB_COMPLETION_INDEX: '3' }, { shard: 'auto', shardCount: 4 }), { index: 3, count: 4 });
  assert.throws(() => shardFromEnv({ JOB_COMPLETION_INDEX: '4' }, { shardCount: '4' }), /from 0 to 3 .*for environment variable JOB_COMPLETION_INDEX but received number 4/);
  assert.throws(() => shardFromEnv({ JOB_COMPLETION_INDEX: '1' }, { shard: 'auto' }), /pass --shard-count N/);
  assert.throws(() => shardFromEnv({ JOB_COMPLETION_INDEX: 'x' }, { shardCount: '4' }), /environment variable JOB_COMPLETION_INDEX but received "x"/);
  assert.throws(() => shardFromEnv({ JOB_COMPLETION_INDEX: '1' }, { shardCount: '0' }), /for --shard-count but received "0"/);
});

test('shardFromEnv: Slurm arrays, normalised to start at 0', () => {
  assert.deepEqual(shardFromEnv({ SLURM_ARRAY_TASK_ID: '2', SLURM_ARRAY_TASK_COUNT: '4' }, { shard: 'auto' }), { index: 2, count: 4 });
  const fromOne = { SLURM_ARRAY_TASK_ID: '1', SLURM_ARRAY_TASK_MIN: '1', SLURM_ARRAY_TASK_MAX: '4', SLURM_ARRAY_TASK_COUNT: '4' };
  assert.deepEqual(shardFromEnv(fromOne, { shard: 'auto' }), { index: 0, count: 4 });
  assert.deepEqual(shardFromEnv({ ...fromOne, SLURM_ARRAY_TASK_ID: '4' }, { shardCount: 4 }), { index: 3, count: 4 });
  const stepped = { SLURM_ARRAY_TASK_ID: '20', SLURM_ARRAY_TASK_MIN: '10', SLURM_ARRAY_TASK_MAX: '40', SLURM_ARRAY_TASK_STEP: '10', SLURM_ARRAY_TASK_COUNT: '4' };
  assert.deepEqual(shardFromEnv(stepped, { shard: 'auto' }), { index: 1, count: 4 });
});

test('shardFromEnv: Slurm arrays that cannot map to shards are refused clearly', () => {
  const sparse = { SLURM_ARRAY_TASK_ID: '5', SLURM_ARRAY_TASK_MIN: '1', SLURM_ARRAY_TASK_MAX: '7', SLURM_ARRAY_TASK_COUNT: '3' };
  assert.throws(() => shardFromEnv(sparse, { shard: 'auto' }), /not part of an evenly spaced array/);
  assert.throws(() => shardFromEnv({ SLURM_ARRAY_TASK_ID: '1' }, { shard: 'auto' }), /SLURM_ARRAY_TASK_COUNT/);
  assert.throws(() => shardFromEnv({ SLURM_ARRAY_TASK_ID: '1', SLURM_ARRAY_TASK_COUNT: '4' }, { shardCount: 3 }), /--shard-count is 3 but SLURM_ARRAY_TASK_COUNT is 4/);
  assert.throws(() => shardFromEnv({}, { shard: 'auto' }), (err: unknown) => err instanceof UsageError && /neither JOB_COMPLETION_INDEX .* nor SLURM_ARRAY_TASK_ID/.test(err.message));
});
