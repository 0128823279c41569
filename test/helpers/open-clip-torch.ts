/**
 * open_clip checkpoints written by PyTorch, and open_clip's forward computed by PyTorch, for the
 * open_clip converter tests. The forward is written here from open_clip's source (model.py,
 * transformer.py: pre-LN blocks, nn.MultiheadAttention with q, k, v stacked, causal additive mask,
 * GELU or QuickGELU, class-token and argmax pooling, `x @ proj`), in float64; the tests check it
 * against the shared reference outputs before they trust it with checkpoints that have none.
 */
import { torchPython, runPython, pythonHas } from './torch-python.js';

export { torchPython };

export function torchAvailable(): boolean {
  return pythonHas(['torch'], 'open_clip checkpoint tests that need PyTorch');
}

const SCRIPT = String.raw`
import json, struct, sys
import torch
import torch.nn.functional as F

def read_weights(path):
    if path.endswith('.safetensors'):
        with open(path, 'rb') as f:
            n = struct.unpack('<Q', f.read(8))[0]
            header = json.loads(f.read(n))
            data = f.read()
        dtypes = {'F32': torch.float32, 'F16': torch.float16, 'BF16': torch.bfloat16}
        sd = {}
        for name, info in header.items():
            if name == '__metadata__':
                continue
            a, b = info['data_offsets']
            t = torch.frombuffer(bytearray(data[a:b]), dtype=dtypes[info['dtype']])
            sd[name] = t.reshape(info['shape'])
        return sd
    obj = torch.load(path, map_location='cpu')
    if isinstance(obj, dict) and 'state_dict' in obj:
        obj = obj['state_dict']
    keys = list(obj.keys())
    if keys and keys[0].startswith('module'):
        obj = {k[7:]: v for k, v in obj.items()}
    return obj

def layer_norm(x, sd, p):
    return F.layer_norm(x, (x.shape[-1],), sd[p + '.weight'], sd[p + '.bias'], 1e-5)

def act(x, quick):
    return x * torch.sigmoid(1.702 * x) if quick else F.gelu(x)

def block(x, sd, p, heads, quick, mask):
    b, n, w = x.shape
    h = layer_norm(x, sd, p + '.ln_1')
    q, k, v = (h @ sd[p + '.attn.in_proj_weight'].T + sd[p + '.attn.in_proj_bias']).split(w, dim=-1)
    d = w // heads
    q, k, v = (t.reshape(b, n, heads, d).transpose(1, 2) for t in (q, k, v))
    scores = (q * d ** -0.5) @ k.transpose(-1, -2)
    if mask is not None:
        scores = scores + mask
    o = (scores.softmax(-1) @ v).transpose(1, 2).reshape(b, n, w)
    x = x + o @ sd[p + '.attn.out_proj.weight'].T + sd[p + '.attn.out_proj.bias']
    h = act(layer_norm(x, sd, p + '.ln_2') @ sd[p + '.mlp.c_fc.weight'].T + sd[p + '.mlp.c_fc.bias'], quick)
    return x + h @ sd[p + '.mlp.c_proj.weight'].T + sd[p + '.mlp.c_proj.bias']

def encode_text(sd, cfg, ids):
    t = cfg['text_cfg']
    quick = cfg.get('quick_gelu', False)
    x = sd['token_embedding.weight'][ids] + sd['positional_embedding']
    n = ids.shape[1]
    mask = torch.full((n, n), float('-inf'), dtype=x.dtype).triu_(1)
    for i in range(t.get('layers', 12)):
        x = block(x, sd, 'transformer.resblocks.%d' % i, t.get('heads', 8), quick, mask)
    x = layer_norm(x, sd, 'ln_final')
    x = x[torch.arange(x.shape[0]), ids.argmax(dim=-1)]
    return x @ sd['text_projection']

def encode_image(sd, cfg, pixels):
    v = cfg['vision_cfg']
    quick = cfg.get('quick_gelu', False)
    width = v.get('width', 768)
    x = F.conv2d(pixels, sd['visual.conv1.weight'], stride=v.get('patch_size', 16))
    b = x.shape[0]
    x = x.reshape(b, width, -1).permute(0, 2, 1)
    x = torch.cat([sd['visual.class_embedding'].expand(b, 1, width), x], dim=1) + sd['visual.positional_embedding']
    x = layer_norm(x, sd, 'visual.ln_pre')
    for i in range(v.get('layers', 12)):
        x = block(x, sd, 'visual.transformer.resblocks.%d' % i, width // v.get('head_width', 64), quick, None)
    return layer_norm(x[:, 0], sd, 'visual.ln_post') @ sd['visual.proj']

def random_state_dict(cfg, seed):
    g = torch.Generator().manual_seed(seed)
    randn = lambda *shape, std=0.02: torch.randn(*shape, generator=g) * std
    t, v, e = cfg['text_cfg'], cfg['vision_cfg'], cfg['embed_dim']
    sd = {}
    def blocks(prefix, w, layers, mlp):
        for i in range(layers):
            p = '%s.%d.' % (prefix, i)
            for ln in ('ln_1', 'ln_2'):
                sd[p + ln + '.weight'] = 1 + randn(w, std=0.1)
                sd[p + ln + '.bias'] = randn(w, std=0.1)
            sd[p + 'attn.in_proj_weight'] = randn(3 * w, w, std=w ** -0.5)
            sd[p + 'attn.in_proj_bias'] = randn(3 * w, std=0.1)
            sd[p + 'attn.out_proj.weight'] = randn(w, w, std=w ** -0.5)
            sd[p + 'attn.out_proj.bias'] = randn(w, std=0.1)
            sd[p + 'mlp.c_fc.weight'] = randn(mlp, w, std=w ** -0.5)
            sd[p + 'mlp.c_fc.bias'] = randn(mlp, std=0.1)
            sd[p + 'mlp.c_proj.weight'] = randn(w, mlp, std=mlp ** -0.5)
            sd[p + 'mlp.c_proj.bias'] = randn(w, std=0.1)
    tw, vw = t['width'], v['width']
    sd['positional_embedding'] = randn(t.get('context_length', 77), tw, std=0.5)
    sd['text_projection'] = randn(tw, e, std=tw ** -0.5)
    sd['logit_scale'] = torch.tensor(4.6052)
    sd['token_embedding.weight'] = randn(t.get('vocab_size', 49408), tw, std=1.0)
    blocks('transformer.resblocks', tw, t['layers'], int(tw * t.get('mlp_ratio', 4.0)))
    sd['ln_final.weight'] = 1 + randn(tw, std=0.1)
    sd['ln_final.bias'] = randn(tw, std=0.1)
    patch, size = v['patch_size'], v['image_size']
    sd['visual.class_embedding'] = randn(vw, std=0.5)
    sd['visual.positional_embedding'] = randn((size // patch) ** 2 + 1, vw, std=0.5)
    sd['visual.proj'] = randn(vw, e, std=vw ** -0.5)
    sd['visual.conv1.weight'] = randn(vw, 3, patch, patch, std=(3 * patch * patch) ** -0.5)
    sd['visual.ln_pre.weight'] = 1 + randn(vw, std=0.1)
    sd['visual.ln_pre.bias'] = randn(vw, std=0.1)
    blocks('visual.transformer.resblocks', vw, v['layers'], int(vw * v.get('mlp_ratio', 4.0)))
    sd['visual.ln_post.weight'] = 1 + randn(vw, std=0.1)
    sd['visual.ln_post.bias'] = randn(vw, std=0.1)
    return sd

def save(sd, dst, layout, dtype, ddp):
    sd = {('module.' + k if ddp else k): (t.to(dtype) if t.is_floating_point() else t) for k, t in sd.items()}
    torch.save({'state_dict': sd, 'epoch': 1} if layout == 'pt' else sd, dst)

job = json.load(sys.stdin)
op = job['op']
if op == 'resave':
    save(read_weights(job['src']), job['dst'], job['layout'], getattr(torch, job['dtype']), job['ddp'])
elif op == 'random':
    save(random_state_dict(job['cfg'], job['seed']), job['dst'], job['layout'], getattr(torch, job['dtype']), job['ddp'])
elif op == 'forward':
    sd = {k: v.double() for k, v in read_weights(job['weights']).items()}
    cfg = job['cfg']
    with torch.no_grad():
        ids = torch.tensor(job['input_ids'], dtype=torch.long)
        size = cfg['vision_cfg']['image_size']
        pixels = torch.stack([torch.frombuffer(bytearray(open(p, 'rb').read()), dtype=torch.float32).reshape(3, size, size) for p in job['pixels']]).double()
        text = encode_text(sd, cfg, ids)
        image = encode_image(sd, cfg, pixels)
    json.dump({'text': text.flatten().tolist(), 'image': image.flatten().tolist()}, sys.stdout)
`;

export type Layout = 'bin' | 'pt';

/** Re-saves a checkpoint's state dict with torch.save: as a plain state dict (.bin) or HPSv2's {'state_dict'} (.pt). */
export function resaveCheckpoint(src: string, dst: string, opts: { layout: Layout; dtype?: 'float32' | 'float16'; ddp?: boolean }): void {
  runPython(SCRIPT, [], JSON.stringify({ op: 'resave', src, dst, layout: opts.layout, dtype: opts.dtype ?? 'float32', ddp: opts.ddp ?? false }));
}

/** A random open_clip state dict for `modelCfg`, saved by torch.save. */
export function writeRandomCheckpoint(modelCfg: object, dst: string, opts: { seed: number; layout: Layout; dtype?: 'float32' | 'float16'; ddp?: boolean }): void {
  runPython(SCRIPT, [], JSON.stringify({ op: 'random', cfg: modelCfg, seed: opts.seed, dst, layout: opts.layout, dtype: opts.dtype ?? 'float32', ddp: opts.ddp ?? false }));
}

/** open_clip's encode_text / encode_image (projected, not normalised) in float64, for the given ids and pixel files. */
export function torchOpenClipForward(weights: string, modelCfg: object, inputIds: number[][], pixelFiles: string[]): { text: number[]; image: number[] } {
  const out = runPython(SCRIPT, [], JSON.stringify({ op: 'forward', weights, cfg: modelCfg, input_ids: inputIds, pixels: pixelFiles }));
  return JSON.parse(out.toString('utf8')) as { text: number[]; image: number[] };
}
