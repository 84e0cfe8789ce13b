"""The 2025-26 encoders' cost: frames/s of each full-size architecture (random weights) as extraction runs it.

    .venv/bin/python bench/frontier.py                                  # SigLIP 2 so400m, V-JEPA 2, Qwen2.5-VL-3B
    .venv/bin/python bench/frontier.py --encoders siglip2-base-p16-224,videomae-base --seconds 10
    .venv/bin/python bench/frontier.py --device cuda                    # on a GPU: memory and % of bf16 peak too

Each encoder runs in a fresh process (its peak memory is its own), on what extraction gives it, already decoded and
resized from 640x360 frames (Memento10k's usual size): a batch of 64 frames for a frame encoder (SigLIP 2); one
clip for a clip-level encoder (V-JEPA 2: its 64-frame clip; VideoMAE 16; X-CLIP 8: each window of a video is
resampled to that, so a clip is what one window costs, whatever the stream's sampling; the VLM: 8 frames, sampling
uniform:8 as in configs/frontier/vlm.yaml). Normalisation and the forward run exactly as
extraction runs them (features/engine.py `_forward`, the same dtype and autocast). Figures per encoder:
  fps            frames/s of the model alone (the ceiling of extraction; decoding is bench/extract.py's)
  tflops         achieved TFLOP/s (FLOPs of one forward counted by torch's FlopCounterMode, attention included)
  peak_pct       % of the GPU's dense bf16 peak (CUDA only)
  peak_mem_mb    peak resident memory (CPU) or peak allocated GPU memory (CUDA)
  load_s         seconds to build the architecture
The LoRA regressor's training step is bench/vlm_lora.py's. The last line printed is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import peak_rss_mb, print_table, run_child  # noqa: E402

DEFAULT = "siglip2-so400m-p14-384,vjepa2-vitl-256,qwen2.5-vl-3b"
VLM_FRAMES = 8  # the VLM's stream samples uniform:8 (configs/frontier/vlm.yaml)
BF16_PEAK_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "A10": 125.0, "4090": 165.0}


def frames_640x360(n: int, transform):
    """uint8 (n, 3, h, w): smooth random 640x360 frames through the encoder's own resize (as extraction gives them)."""
    import torch

    g = torch.Generator().manual_seed(0)
    small = torch.rand(n, 3, 45, 80, generator=g)
    full = torch.nn.functional.interpolate(small, size=(360, 640), mode="bilinear")  # (n, 3, 360, 640) in [0, 1]
    return transform.resize_crop((full * 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous())


def flops_of(fn) -> float:
    """FLOPs of one call of `fn`, attention included (torch's table lacks the CPU's fused attention kernel: it is
    counted with the formula of the CUDA ones)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

    def cpu_sdpa(query, key, value, *args, out_val=None, **kwargs) -> int:  # q, k, v: (B, heads, tokens, head dim)
        return sdpa_flop_count(query.shape, key.shape, value.shape)

    cpu_sdpa._get_raw = True  # FlopCounterMode passes it the tensors themselves
    mapping = {torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: cpu_sdpa}
    with FlopCounterMode(display=False, custom_mapping=mapping) as counter:
        fn()
    return float(counter.get_total_flops())


def peak_tflops(device) -> float | None:
    import torch

    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((v for k, v in BF16_PEAK_TFLOPS.items() if k in name), None)


def child_encoder(args) -> None:
    import torch

    from mediaeval_mem.core.runtime import resolve_device, resolve_dtype
    from mediaeval_mem.core.threads import set_threads, usable_cores
    from mediaeval_mem.encoders import encoder_recipe
    from mediaeval_mem.features.engine import _forward

    set_threads(usable_cores())  # as extraction's encoding does
    device = resolve_device(args.device)
    dtype = resolve_dtype(args.dtype, device)
    t0 = time.perf_counter()
    enc = encoder_recipe(args.child, "random").load().to(device)
    load_s = time.perf_counter() - t0
    # a video transformer's clip length (each window is resampled to it), the VLM's 8 frames, a frame encoder's batch
    n = (getattr(enc, "frames", None) or VLM_FRAMES) if enc.clip_level else args.batch_size
    frames = frames_640x360(n, enc.transform)
    run = lambda: _forward(enc, frames, device, dtype)
    flops = flops_of(run)  # also the warm-up (the first CUDA kernels' compilation): a V-JEPA 2 clip is minutes on a CPU
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats(device)
    done, t0 = 0, time.perf_counter()
    while done == 0 or time.perf_counter() - t0 < args.seconds:
        run()
        done += 1
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    out = {"fps": done * n / seconds, "frames_per_forward": n, "forwards": done, "seconds": seconds,
           "tflops": flops * done / seconds / 1e12, "load_s": load_s, "dtype": dtype, "device": str(device),
           "input": list(frames.shape[1:]),
           "peak_mem_mb": (torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else peak_rss_mb())}
    if (peak := peak_tflops(device)) is not None:
        out["peak_pct"] = 100 * out["tflops"] / peak
    print(json.dumps(out))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--encoders", default=DEFAULT, help=f"comma-separated registered names (default {DEFAULT})")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--dtype", default="auto")
    ap.add_argument("--batch-size", type=int, default=64, help="frames per forward of a frame encoder")
    ap.add_argument("--seconds", type=float, default=20.0, help="how long each model runs after its warm-up")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child_encoder(args)
    common = ["--device", args.device, "--dtype", args.dtype, "--batch-size", str(args.batch_size),
              "--seconds", str(args.seconds)]
    results, rows = {}, []
    for name in [n for n in args.encoders.split(",") if n]:
        r = run_child([__file__, "--child", name, *common])
        results[name] = r
        print(name, json.dumps(r), flush=True)  # each as it comes: a later one may fail (memory)
        gpu = f", {r['peak_pct']:.1f}% of bf16 peak" if "peak_pct" in r else ""
        rows.append((name, f"{r['fps']:.2f} frames/s ({r['frames_per_forward']} per forward, input {r['input']}), "
                           f"{r['tflops']:.2f} TFLOP/s{gpu}, peak {r['peak_mem_mb']:.0f} MB, {r['dtype']} on {r['device']}"))
    print_table(rows)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
