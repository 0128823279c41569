"""The PyTorch CPU peer of pickscore's `npm run bench -- cpu-peer` (bench/cpu-peer.bench.ts).

Builds the CLIP towers with PickScore v1's geometry (CLIP-ViT-H/14: image 1280 wide, 32 layers, 16 heads, MLP
5120, 224 px, 14 px patches; text 1024 wide, 24 layers, 16 heads, MLP 4096, 77 tokens; projection 1024) in
plain PyTorch with random weights, as a Python user would run them on a CPU:
  fp32: nn.TransformerEncoderLayer (norm_first, batch_first, GELU), whose inference fast path
        (torch._transformer_encoder_layer_fwd: fused QKV projection, native attention) serves the image
        tower; the text tower's causal mask is not supported by that fast path, so it takes the ordinary one.
  int8: transformers' CLIP layout (q, k, v, out, fc1 and fc2 each an nn.Linear) through
        torch.ao.quantization.quantize_dynamic on every nn.Linear (int8 weights, activations quantised per call).

It serves one command per stdin line and answers one JSON line on stdout, so that the bench can time it in
turns with pickscore's encoder in the same minutes:
  {"cmd": "load", "tower": "image"|"text", "precision": "fp32"|"int8", "batch": N, "threads": T, "geometry"?: {...}}
      -> {"ok": true, "load_s", "fast_path", "engine", "blas"}   builds the model and runs it once (warm-up)
  {"cmd": "run"}                                          -> {"ok": true, "seconds"}   one timed batch
  {"cmd": "unload"} -> {"ok": true};  {"cmd": "quit"} ends the process.
Errors answer {"ok": false, "error"}. "geometry" (width, layers, heads, mlp) replaces CLIP-H's, for the tests only.
"""
import gc
import json
import math
import sys
import time

import torch
from torch import nn
import torch.nn.functional as F

CONTEXT = 77
VOCAB = 49408
EOS = 49407
GEOMETRY = {
    "image": dict(width=1280, layers=32, heads=16, mlp=5120),
    "text": dict(width=1024, layers=24, heads=16, mlp=4096),
}
PROJECTION = 1024
PATCH = 14
IMAGE_SIZE = 224
EPS = 1e-5

fast_path_calls = 0


def blas_in_use():
    """The OpenBLAS this process loaded and the kernels it picked: OPENBLAS_CORETYPE, where set, forces older ones."""
    import ctypes
    with open("/proc/self/maps") as maps:
        paths = {line.split()[-1] for line in maps if "libopenblas" in line}
    for path in sorted(paths):
        try:
            lib = ctypes.CDLL(path)
            lib.openblas_get_corename.restype = ctypes.c_char_p
            lib.openblas_get_config.restype = ctypes.c_char_p
            return f"{path}: {lib.openblas_get_config().decode()}; kernels for {lib.openblas_get_corename().decode()}"
        except (OSError, AttributeError) as err:
            return f"{path}: cannot ask it ({err})"
    return "no OpenBLAS loaded"


def count_fast_path():
    """Counts calls of the encoder layer's fused inference kernel, to report whether the fast path ran."""
    original = torch._transformer_encoder_layer_fwd

    def counted(*args, **kwargs):
        global fast_path_calls
        fast_path_calls += 1
        return original(*args, **kwargs)

    torch._transformer_encoder_layer_fwd = counted


class ClipLayer(nn.Module):
    """transformers' CLIPEncoderLayer: pre-LN, separate q/k/v/out projections, exact GELU."""

    def __init__(self, width, heads, mlp):
        super().__init__()
        self.heads = heads
        self.scale = (width // heads) ** -0.5
        self.layer_norm1 = nn.LayerNorm(width, eps=EPS)
        self.q_proj = nn.Linear(width, width)
        self.k_proj = nn.Linear(width, width)
        self.v_proj = nn.Linear(width, width)
        self.out_proj = nn.Linear(width, width)
        self.layer_norm2 = nn.LayerNorm(width, eps=EPS)
        self.fc1 = nn.Linear(width, mlp)
        self.fc2 = nn.Linear(mlp, width)

    def forward(self, x, mask=None):
        b, s, d = x.shape
        h = self.layer_norm1(x)
        split = lambda t: t.view(b, s, self.heads, d // self.heads).transpose(1, 2)
        q, k, v = split(self.q_proj(h) * self.scale), split(self.k_proj(h)), split(self.v_proj(h))
        scores = q @ k.transpose(-1, -2)
        if mask is not None:
            scores = scores + mask
        context = (scores.softmax(-1) @ v).transpose(1, 2).reshape(b, s, d)
        x = x + self.out_proj(context)
        return x + self.fc2(F.gelu(self.fc1(self.layer_norm2(x))))


def encoder_layers(geometry, fast):
    width, layers, heads, mlp = geometry["width"], geometry["layers"], geometry["heads"], geometry["mlp"]
    if fast:
        make = lambda: nn.TransformerEncoderLayer(width, heads, mlp, dropout=0.0, activation="gelu", layer_norm_eps=EPS,
                                                  batch_first=True, norm_first=True)
    else:
        make = lambda: ClipLayer(width, heads, mlp)
    return nn.ModuleList(make() for _ in range(layers))


def run_layers(layers, x, mask, fast):
    for layer in layers:
        x = layer(x, src_mask=mask) if fast else layer(x, mask)
    return x


class ImageTower(nn.Module):
    def __init__(self, fast, g):
        super().__init__()
        self.fast = fast
        self.patch_embedding = nn.Conv2d(3, g["width"], PATCH, PATCH, bias=False)
        self.class_embedding = nn.Parameter(torch.randn(g["width"]) * 0.02)
        self.position_embedding = nn.Parameter(torch.randn((IMAGE_SIZE // PATCH) ** 2 + 1, g["width"]) * 0.02)
        self.pre_layrnorm = nn.LayerNorm(g["width"], eps=EPS)
        self.layers = encoder_layers(g, fast)
        self.post_layernorm = nn.LayerNorm(g["width"], eps=EPS)
        self.visual_projection = nn.Linear(g["width"], PROJECTION, bias=False)

    def forward(self, pixels):
        patches = self.patch_embedding(pixels).flatten(2).transpose(1, 2)
        cls = self.class_embedding.expand(pixels.shape[0], 1, -1)
        x = self.pre_layrnorm(torch.cat([cls, patches], dim=1) + self.position_embedding)
        x = run_layers(self.layers, x, None, self.fast)
        return self.visual_projection(self.post_layernorm(x[:, 0]))


class TextTower(nn.Module):
    def __init__(self, fast, g):
        super().__init__()
        self.fast = fast
        self.token_embedding = nn.Embedding(VOCAB, g["width"])
        self.position_embedding = nn.Parameter(torch.randn(CONTEXT, g["width"]) * 0.01)
        self.layers = encoder_layers(g, fast)
        self.final_layer_norm = nn.LayerNorm(g["width"], eps=EPS)
        self.text_projection = nn.Linear(g["width"], PROJECTION, bias=False)
        self.register_buffer("causal_mask", torch.full((CONTEXT, CONTEXT), torch.finfo(torch.float32).min).triu(1))

    def forward(self, ids):
        x = self.token_embedding(ids) + self.position_embedding
        x = run_layers(self.layers, x, self.causal_mask, self.fast)
        pooled = x[torch.arange(ids.shape[0]), ids.argmax(dim=-1)]
        return self.text_projection(self.final_layer_norm(pooled))


def inputs(tower, batch):
    gen = torch.Generator().manual_seed(1)
    if tower == "image":
        return torch.randn(batch, 3, IMAGE_SIZE, IMAGE_SIZE, generator=gen).clamp_(-1.8, 2.1)
    ids = torch.zeros(batch, CONTEXT, dtype=torch.int64)
    for p in range(batch):
        n = int(torch.randint(3, 60, (1,), generator=gen))
        ids[p, 0] = 49406
        ids[p, 1:n + 1] = torch.randint(256, 49406, (n,), generator=gen)
        ids[p, n + 1] = EOS
    return ids


class Peer:
    def __init__(self):
        self.model = None
        self.batch = None

    def load(self, tower, precision, batch, threads, geometry=None):
        # Checked before the current model goes, so that a refused load leaves the peer as it was.
        if tower not in GEOMETRY:
            raise ValueError(f"unknown tower {tower}")
        if precision not in ("fp32", "int8"):
            raise ValueError(f"unknown precision {precision}")
        self.unload()
        torch.set_num_threads(threads)
        torch.manual_seed(0)
        started = time.perf_counter()
        fast = precision == "fp32"
        model = (ImageTower if tower == "image" else TextTower)(fast, {**GEOMETRY[tower], **(geometry or {})}).eval()
        if precision == "int8":
            # In place: a copy would hold the fp32 weights (2.5 GB for the image tower) beside the int8 ones.
            model = torch.ao.quantization.quantize_dynamic(model, {nn.Linear}, dtype=torch.qint8, inplace=True)
        self.model, self.batch = model, inputs(tower, batch)
        global fast_path_calls
        fast_path_calls = 0
        self.run()  # warm-up: first-call allocations and weight reorders
        return {"load_s": time.perf_counter() - started, "fast_path": fast_path_calls > 0,
                "engine": torch.backends.quantized.engine if precision == "int8" else "fp32", "blas": blas_in_use()}

    def run(self):
        if self.model is None:
            raise RuntimeError("no model is loaded")
        with torch.inference_mode():
            started = time.perf_counter()
            self.model(self.batch)
            return {"seconds": time.perf_counter() - started}

    def unload(self):
        self.model = self.batch = None
        gc.collect()
        return {}


def main():
    torch.set_num_interop_threads(1)
    count_fast_path()
    peer = Peer()
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            request = json.loads(line)
            cmd = request["cmd"]
            if cmd == "quit":
                break
            if cmd == "load":
                reply = peer.load(request["tower"], request["precision"], int(request["batch"]), int(request["threads"]),
                                  request.get("geometry"))
            elif cmd == "run":
                reply = peer.run()
            elif cmd == "unload":
                reply = peer.unload()
            else:
                raise ValueError(f"unknown command {cmd}")
            reply = {"ok": True, **reply}
        except Exception as err:  # answered, so the bench reports it instead of waiting
            reply = {"ok": False, "error": f"{type(err).__name__}: {err}"}
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
