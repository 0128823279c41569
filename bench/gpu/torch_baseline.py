"""PyTorch baseline for the GPU check (bench/gpu/device-check.sh), run on the device machine.

Builds a CLIPModel with PickScore v1's geometry and random weights (seed 0) on CUDA, saves it as an fp32
safetensors checkpoint for pickscore's converter, times the fp16 SDPA image tower (batch 128) and text
tower (batch 256), and dumps the embeddings of a seeded input batch in fp32 (TF32 off) and fp16, so
that bench/gpu/encoder.ts can compare pickscore's encoder against both. Prints one JSON object.

  python3 bench/gpu/torch_baseline.py --checkpoint DIR --dump DIR [--iterations 20]
"""
import argparse, json, math, os, time

import torch
import transformers
from transformers import CLIPConfig, CLIPModel

CONTEXT = 77


def pickscore_config():
    text = dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096, vocab_size=49408,
                max_position_embeddings=CONTEXT, hidden_act="gelu", bos_token_id=49406, eos_token_id=2, pad_token_id=1)
    vision = dict(hidden_size=1280, num_hidden_layers=32, num_attention_heads=16, intermediate_size=5120, image_size=224,
                  patch_size=14, hidden_act="gelu")
    config = CLIPConfig(text_config=text, vision_config=vision, projection_dim=1024, logit_scale_init_value=math.log(100))
    for c in (config, config.text_config, config.vision_config):
        c._attn_implementation = "sdpa"
    return config


def seeded_inputs(images, prompts, device):
    """Pixels in the normalised range of real images; ids BOS, random tokens, EOS (49407, the argmax), pad 0."""
    gen = torch.Generator().manual_seed(1)
    pixels = torch.randn(images, 3, 224, 224, generator=gen).clamp_(-1.8, 2.1)
    ids = torch.zeros(prompts, CONTEXT, dtype=torch.int64)
    for p in range(prompts):
        n = int(torch.randint(3, 60, (1,), generator=gen))
        ids[p, 0] = 49406
        ids[p, 1:n + 1] = torch.randint(256, 49406, (n,), generator=gen)
        ids[p, n + 1] = 49407
    return pixels.to(device), ids.to(device)


def timed(fn, iterations, warmup=3):
    with torch.inference_mode():
        for _ in range(warmup):
            fn()
        torch.cuda.synchronize()
        started = time.perf_counter()
        for _ in range(iterations):
            fn()
        torch.cuda.synchronize()
    return (time.perf_counter() - started) / iterations


def features(output):
    """get_*_features return the projected embeddings; transformers 5 may wrap them as pooler_output."""
    return output if torch.is_tensor(output) else output.pooler_output


def save_f32(tensor, path):
    tensor.detach().float().contiguous().cpu().numpy().tofile(path)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--dump", required=True)
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument("--dump-images", type=int, default=64)
    parser.add_argument("--dump-prompts", type=int, default=16)
    args = parser.parse_args()
    torch.manual_seed(0)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    cuda = torch.device("cuda")

    started = time.perf_counter()
    with cuda:  # random init on the GPU: seconds rather than a minute on the CPU
        model = CLIPModel(pickscore_config()).eval()
    model.save_pretrained(args.checkpoint)  # safetensors, fp32
    save_s = time.perf_counter() - started

    os.makedirs(args.dump, exist_ok=True)
    pixels, ids = seeded_inputs(args.dump_images, args.dump_prompts, cuda)
    save_f32(pixels, os.path.join(args.dump, "pixels.f32"))
    ids.cpu().numpy().astype("<i8").tofile(os.path.join(args.dump, "input_ids.i64"))
    references = {}
    with torch.inference_mode():
        for name, dtype in (("torch_fp32", torch.float32), ("torch_fp16", torch.float16)):
            model.to(dtype)
            save_f32(features(model.get_image_features(pixel_values=pixels.to(dtype))), os.path.join(args.dump, f"image_{name}.f32"))
            save_f32(features(model.get_text_features(input_ids=ids)), os.path.join(args.dump, f"text_{name}.f32"))
            references[name] = {"image": f"image_{name}.f32", "text": f"text_{name}.f32"}
    logit_scale = float(model.logit_scale.float().exp())
    meta = {"images": args.dump_images, "prompts": args.dump_prompts, "contextLength": CONTEXT, "embedDim": 1024,
            "logitScale": logit_scale, "pixels": "pixels.f32", "inputIds": "input_ids.i64", "references": references}
    with open(os.path.join(args.dump, "meta.json"), "w") as f:
        json.dump(meta, f, indent=2)

    # model is fp16 now: time the towers as the model card's users run them on a GPU
    image_batch = torch.randn(128, 3, 224, 224, device=cuda, dtype=torch.float16)
    text_batch = ids.repeat(256 // args.dump_prompts + 1, 1)[:256]
    image_s = timed(lambda: model.get_image_features(pixel_values=image_batch), args.iterations)
    text_s = timed(lambda: model.get_text_features(input_ids=text_batch), args.iterations)
    print(json.dumps({
        "gpu": torch.cuda.get_device_name(0), "torch": torch.__version__, "transformers": transformers.__version__,
        "attn_implementation": model.config._attn_implementation, "parameters": sum(p.numel() for p in model.parameters()),
        "build_and_save_s": save_s, "iterations": args.iterations,
        "image_fp16_sdpa": {"batch": 128, "seconds_per_batch": image_s, "images_per_s": 128 / image_s},
        "text_fp16_sdpa": {"batch": 256, "seconds_per_batch": text_s, "prompts_per_s": 256 / text_s},
    }, indent=2))


if __name__ == "__main__":
    main()
