/**
 * A Hub folder in which the tiny reference CLIP stands in for the real models, for tests that pull
 * through a loopback server (test/helpers/hub-server.ts) instead of the network.
 */
import { copyFile, mkdir, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { referenceDir } from './paths.js';

const CLIP_PREPROCESSOR = {
  crop_size: 224, do_center_crop: true, do_normalize: true, do_resize: true, feature_extractor_type: 'CLIPFeatureExtractor',
  image_mean: [0.48145466, 0.4578275, 0.40821073], image_std: [0.26862954, 0.26130258, 0.27577711], resample: 3, size: 224,
};

/** A Hub with the tiny reference CLIP standing in for PickScore: weights only as pytorch_model.bin, processor in the LAION repo. */
export async function buildHubRoot(root: string): Promise<void> {
  const put = async (repo: string, files: Record<string, string>) => {
    await mkdir(path.join(root, repo), { recursive: true });
    for (const [name, from] of Object.entries(files)) await copyFile(from, path.join(root, repo, name));
  };
  const tiny = (f: string) => path.join(referenceDir, 'tiny-clip', f);
  const tok = (f: string) => path.join(referenceDir, 'clip-tokenizer', f);
  const preprocessor = path.join(root, 'preprocessor_config.json');
  await mkdir(root, { recursive: true });
  await writeFile(preprocessor, JSON.stringify(CLIP_PREPROCESSOR));
  const tokenizer = { 'tokenizer.json': tok('tokenizer.json'), 'tokenizer_config.json': tok('tokenizer_config.json'), 'vocab.json': tok('vocab.json'), 'merges.txt': tok('merges.txt') };
  await put('yuvalkirstain/PickScore_v1', { 'config.json': tiny('config.json'), 'pytorch_model.bin': tiny('pytorch_model.bin') });
  await put('laion/CLIP-ViT-H-14-laion2B-s32B-b79K', { ...tokenizer, 'preprocessor_config.json': preprocessor });
  await put('acme/tiny-clip', { 'config.json': tiny('config.json'), 'model.safetensors': tiny('model.safetensors'), ...tokenizer });
  await rm(preprocessor);
}

