/**
 * Image transforms computed by Debian's torchvision (0.14) and Pillow (9.4), the references for the
 * scorers' preprocessing: HPSv2's `preprocess_val`, written out from `hpsv2/src/open_clip/transform.py`,
 * and OpenAI `clip`'s `_transform` (`clip/clip.py`). Each returns raw float32 tensors, one per file.
 */
import { readFileSync } from 'node:fs';
import { runPython, pythonHas } from './torch-python.js';

export function torchvisionAvailable(): boolean {
  return pythonHas(['torch', 'torchvision', 'PIL', 'numpy'], 'torchvision transform parity tests');
}

const SCRIPT = String.raw`
import json, sys
import numpy as np
import torch
import torchvision.transforms.functional as F
from torchvision.transforms import CenterCrop, Compose, InterpolationMode, Normalize, Resize, ToTensor
from PIL import Image

MEAN = (0.48145466, 0.4578275, 0.40821073)
STD = (0.26862954, 0.26130258, 0.27577711)

def hps(path, antialias, pad_unresized):
    image = Image.open(path)
    image = image if image.mode == 'RGBA' else image.convert('RGB')   # _convert_to_rgb_or_rgba
    x = ToTensor()(image)
    height, width = x.shape[1:]
    scale = 224 / float(max(height, width))
    size = (height, width)
    if scale != 1.0:   # ResizeMaxSize.forward
        size = tuple(round(dim * scale) for dim in (height, width))
        x = F.resize(x, size, InterpolationMode.BICUBIC, antialias=antialias)
    if scale != 1.0 or pad_unresized:
        pad_h, pad_w = 224 - size[0], 224 - size[1]
        x = F.pad(x, padding=[pad_w // 2, pad_h // 2, pad_w - pad_w // 2, pad_h - pad_h // 2], fill=0)
    # MaskAwareNormalize: the first three channels are normalised, a fourth (RGBA's alpha) is passed through.
    return Normalize(MEAN, STD)(x[:3])

# OpenAI clip's _transform(224): the PIL image is resized and cropped in its own mode, converted to RGB after.
CLIP = Compose([Resize(224, interpolation=InterpolationMode.BICUBIC), CenterCrop(224), lambda im: im.convert('RGB'), ToTensor(), Normalize(MEAN, STD)])

job = json.load(sys.stdin)
if job['op'] == 'generate':
    for spec in job['images']:
        rng = np.random.default_rng(spec['seed'])
        mode = spec['mode']
        channels = {'RGB': 3, 'L': 1, 'RGBA': 4, 'LA': 2, 'P': 3}[mode]
        pixels = rng.integers(0, 256, size=(spec['height'], spec['width'], channels), dtype=np.uint8)
        if spec.get('smooth'):
            pixels = np.clip(np.cumsum(pixels.astype(np.int32) - 128, axis=1) // 8 + 128, 0, 255).astype(np.uint8)
        if mode == 'P':
            image = Image.fromarray(pixels, 'RGB').quantize(64)
        else:
            image = Image.fromarray(pixels[:, :, 0] if channels == 1 else pixels, mode)
        image.save(spec['path'])
    sys.exit(0)
with open(job['out'], 'wb') as out:
    for path in job['files']:
        if job['op'] == 'hps':
            x = hps(path, job['antialias'], job['pad_unresized'])
        else:
            x = CLIP(Image.open(path))
        out.write(x.contiguous().numpy().astype('<f4').tobytes())
`;

export interface GeneratedImage { path: string; width: number; height: number; mode: 'RGB' | 'L' | 'RGBA' | 'LA' | 'P'; seed: number; smooth?: boolean }

/** Random images saved as PNG by Pillow. */
export function generateImages(images: GeneratedImage[]): void {
  runPython(SCRIPT, [], JSON.stringify({ op: 'generate', images }));
}

function tensors(outFile: string, count: number, plane: number): Float32Array[] {
  const bytes = readFileSync(outFile);
  const all = new Float32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.length));
  return Array.from({ length: count }, (_, i) => all.subarray(i * 3 * plane, (i + 1) * 3 * plane));
}

/**
 * HPSv2's transform of each file as torchvision computes it. `padUnresized` also pads an image whose
 * longer side is already 224 (HPSv2 does not, and then fails on it).
 */
export function torchvisionHps(files: string[], opts: { antialias: boolean; padUnresized: boolean; outFile: string }): Float32Array[] {
  runPython(SCRIPT, [], JSON.stringify({ op: 'hps', files, antialias: opts.antialias, pad_unresized: opts.padUnresized, out: opts.outFile }));
  return tensors(opts.outFile, files.length, 224 * 224);
}

/** OpenAI clip's preprocessing of each file (resize and crop in the file's own mode, RGB after). */
export function torchvisionClip(files: string[], outFile: string): Float32Array[] {
  runPython(SCRIPT, [], JSON.stringify({ op: 'clip', files, out: outFile }));
  return tensors(outFile, files.length, 224 * 224);
}
