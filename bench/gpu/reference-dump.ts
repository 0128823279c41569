/**
 * The dump that the GPU check's dry run compares against (DRY_RUN=1 bench/gpu/device-check.sh): the
 * tiny reference CLIP's distinct pixel tensors, its prompts' input ids, and PyTorch's fp32 embeddings of
 * both from ../shared/reference, in the layout bench/gpu/torch_baseline.py writes.
 *
 *   node build/bench/gpu/reference-dump.js OUT_DIR
 */
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { InputError } from '../../src/errors.js';
import {
  distinctReferencePixels, loadReference, referenceInputIds,
} from '../../test/helpers/graph-models.js';

export async function writeReferenceDump(outDir: string): Promise<void> {
  const ref = await loadReference();
  const { indices: distinct, pixels } = await distinctReferencePixels(ref);
  const imageEmbeds = Float32Array.from(distinct.flatMap((i) => ref.images[i].image_embeds));
  const textEmbeds = Float32Array.from(ref.prompts.flatMap((p) => p.text_embeds));
  const bytes = (a: Float32Array | BigInt64Array) => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
  await mkdir(outDir, { recursive: true });
  await writeFile(path.join(outDir, 'pixels.f32'), bytes(pixels));
  await writeFile(path.join(outDir, 'input_ids.i64'), bytes(referenceInputIds(ref)));
  await writeFile(path.join(outDir, 'image_torch_fp32.f32'), bytes(imageEmbeds));
  await writeFile(path.join(outDir, 'text_torch_fp32.f32'), bytes(textEmbeds));
  const meta = {
    images: distinct.length, prompts: ref.prompts.length, contextLength: 77, embedDim: textEmbeds.length / ref.prompts.length,
    logitScale: Math.exp(ref.logit_scale), pixels: 'pixels.f32', inputIds: 'input_ids.i64',
    references: { torch_fp32: { image: 'image_torch_fp32.f32', text: 'text_torch_fp32.f32' } },
  };
  await writeFile(path.join(outDir, 'meta.json'), `${JSON.stringify(meta, null, 2)}\n`);
}

if (process.argv[1] && path.resolve(process.argv[1]) === new URL(import.meta.url).pathname) {
  const outDir = process.argv[2];
  (outDir ? writeReferenceDump(outDir) : Promise.reject(new InputError('Usage: reference-dump.js OUT_DIR'))).catch((err: unknown) => {
    process.stderr.write(`reference dump: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = 1;
  });
}
