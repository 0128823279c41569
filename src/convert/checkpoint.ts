/**
 * The one view of a Hugging Face checkpoint that the converter and the ONNX writer use, whatever the
 * file format: a map of named tensors whose bytes are read one tensor at a time, on demand.
 */
import { stat } from 'node:fs/promises';
import path from 'node:path';
import { ModelError, expectedMessage } from '../errors.js';
import { openSafetensorsFile } from './safetensors.js';
import { openTorchFile } from './torch-pickle.js';
import type { TensorEntry, TensorFile } from './tensor-file.js';
import { readJsonFile } from '../io/json-file.js';
import { READ_LIMITS } from '../io/regular-file.js';

export type { DType, TensorEntry } from './tensor-file.js';

export interface Checkpoint {
  format: 'safetensors' | 'pytorch';
  /** Absolute paths of every file the tensors come from, the shard index included. */
  files: string[];
  tensors: Map<string, TensorEntry>;
  close(): Promise<void>;
}

interface Layout {
  format: Checkpoint['format'];
  single: string;
  index: string;
  open(filePath: string): Promise<TensorFile>;
}

/** Looked for in this order, as transformers does: safetensors first. */
const LAYOUTS: Layout[] = [
  { format: 'safetensors', single: 'model.safetensors', index: 'model.safetensors.index.json', open: openSafetensorsFile },
  { format: 'pytorch', single: 'pytorch_model.bin', index: 'pytorch_model.bin.index.json', open: openTorchFile },
];

export async function openCheckpoint(dir: string): Promise<Checkpoint> {
  const root = path.resolve(dir);
  for (const layout of LAYOUTS) {
    const single = path.join(root, layout.single);
    if (await isFile(single)) return assemble(layout.format, [single], [await layout.open(single)], undefined);
    const index = path.join(root, layout.index);
    if (await isFile(index)) return openSharded(layout, index);
  }
  const names = LAYOUTS.flatMap((l) => [l.single, l.index]).join(', ');
  throw new ModelError(`No weights found in ${root}: expected one of ${names}`);
}

async function openSharded(layout: Layout, indexPath: string): Promise<Checkpoint> {
  const weightMap = await readWeightMap(indexPath);
  const shardNames = [...new Set(weightMap.values())].sort();
  const opened: TensorFile[] = [];
  try {
    for (const shard of shardNames) opened.push(await layout.open(path.join(path.dirname(indexPath), shard)));
    const shardPaths = opened.map((s) => s.file.path);
    const checkpoint = assemble(layout.format, [indexPath, ...shardPaths], opened, indexPath);
    for (const [name, shard] of weightMap) {
      const entry = checkpoint.tensors.get(name);
      if (!entry || path.basename(entry.file) !== path.basename(shard)) {
        throw new ModelError(`${indexPath} maps tensor ${name} to ${shard}, but that shard does not hold it`);
      }
    }
    return checkpoint;
  } catch (err) {
    await Promise.all(opened.map((s) => s.file.close()));
    throw err;
  }
}

/** `weight_map` of a `*.index.json`: tensor name -> shard file name (in the index's folder). */
async function readWeightMap(indexPath: string): Promise<Map<string, string>> {
  const json = await readJsonFile(indexPath, {
    what: 'a shard index', maxBytes: READ_LIMITS.config, error: ModelError,
    unreadable: (reason) => `Cannot read shard index ${indexPath}: ${reason}`, notJson: (detail) => `Cannot read shard index ${indexPath}: ${detail}`,
  });
  const weightMap = (json as { weight_map?: unknown } | null)?.weight_map;
  if (typeof weightMap !== 'object' || weightMap === null || Array.isArray(weightMap)) {
    throw new ModelError(expectedMessage('an object', `weight_map in ${indexPath}`, weightMap));
  }
  const map = new Map<string, string>();
  for (const [name, shard] of Object.entries(weightMap)) {
    if (typeof shard !== 'string' || shard !== path.basename(shard)) {
      throw new ModelError(expectedMessage('a file name in the same folder', `weight_map["${name}"] in ${indexPath}`, shard));
    }
    map.set(name, shard);
  }
  return map;
}

function assemble(format: Checkpoint['format'], files: string[], opened: TensorFile[], indexPath: string | undefined): Checkpoint {
  const tensors = new Map<string, TensorEntry>();
  for (const { tensors: entries } of opened) {
    for (const entry of entries) {
      const earlier = tensors.get(entry.name);
      if (earlier) throw new ModelError(`Tensor ${entry.name} appears in both ${earlier.file} and ${entry.file}${indexPath ? ` (index ${indexPath})` : ''}`);
      tensors.set(entry.name, entry);
    }
  }
  return {
    format,
    files,
    tensors,
    close: async () => {
      await Promise.all(opened.map((s) => s.file.close()));
    },
  };
}

export async function isFile(filePath: string): Promise<boolean> {
  try {
    return (await stat(filePath)).isFile();
  } catch {
    return false;
  }
}
