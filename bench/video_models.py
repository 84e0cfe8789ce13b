"""What a clip costs the video foundation encoders (V-JEPA 2, VideoMAE, X-CLIP), full size, random weights.

    .venv/bin/python bench/video_models.py                                   # all three, the extraction's dtype
    .venv/bin/python bench/video_models.py --encoders videomae-base --repeats 5 --dtype fp32
    .venv/bin/python bench/video_models.py --peak-tflops 989                 # a GPU: the share of its bf16 peak

Each encoder sees one clip per window of a video (at most 256 sampled frames; a 3 s Memento10k video is one),
resampled to its checkpoint's clip length, so its cost is per clip, whatever the stream's sampling. Figures per
encoder, the model run exactly as extraction runs it (features/engine.py `_forward`: normalisation on the
device, the extraction's autocast dtype), on a clip already decoded and cropped:
  clip_s          seconds per clip (mean of --repeats, after one warm-up)
  clip_frames     frames per clip (the checkpoint's)
  frames_per_s    clip frames the model takes in per second (clip_frames / clip_s)
  videos_per_h    videos of one window per hour (3600 / clip_s)
  gflop_per_clip  forward FLOPs of one clip (torch's FlopCounterMode, attention included), and achieved_gflops
  pct_of_peak     achieved FLOP/s over --peak-tflops (only when given)
  peak_mem_mb     peak resident memory (CPU) or peak allocated device memory (CUDA)
The last line printed is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench._common import peak_rss_mb, print_table  # noqa: E402

FULL_SIZE = ("vjepa2-vitl-256", "videomae-base", "xclip-base-p32")


def measure(name: str, weights: str, device, dtype: str, repeats: int, peak_tflops: float | None) -> dict:
    import torch
    from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

    from mediaeval_mem.encoders import build_encoder
    from mediaeval_mem.features.engine import _forward

    enc = build_encoder(name, weights).to(device)
    crop = enc.transform.crop
    window = torch.randint(0, 256, (enc.frames, 3, crop, crop), dtype=torch.uint8)  # one clip, decoded and cropped

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    # The CPU's fused attention kernel is not in torch's FLOP table: count it with the formula of the CUDA ones.
    def cpu_sdpa(query, key, value, *args, out_val=None, **kwargs) -> int:  # q, k, v: (B, heads, tokens, head dim)
        return sdpa_flop_count(query.shape, key.shape, value.shape)

    cpu_sdpa._get_raw = True  # FlopCounterMode passes it the tensors themselves
    cpu_attention = {torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: cpu_sdpa}
    with FlopCounterMode(display=False, custom_mapping=cpu_attention) as counter:
        _forward(enc, window, device, dtype)  # also the warm-up
    sync()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    for _ in range(repeats):
        _forward(enc, window, device, dtype)
    sync()
    clip_s = (time.perf_counter() - t0) / repeats
    gflop = counter.get_total_flops() / 1e9
    out = {"clip_s": round(clip_s, 4), "clip_frames": enc.frames, "size": crop,
           "frames_per_s": round(enc.frames / clip_s, 2), "videos_per_h": round(3600 / clip_s, 1),
           "gflop_per_clip": round(gflop, 3), "achieved_gflops": round(gflop / clip_s, 2),
           "peak_mem_mb": round(torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else peak_rss_mb())}
    if peak_tflops:
        out["pct_of_peak"] = round(100 * gflop / 1e3 / clip_s / peak_tflops, 1)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--encoders", default=",".join(FULL_SIZE), help="comma-separated registered names")
    ap.add_argument("--weights", default="random", help="random (default), or a save_pretrained folder (one encoder)")
    ap.add_argument("--device", default=None, help="cpu or cuda (default: cuda where present)")
    ap.add_argument("--dtype", default="auto", help="the extraction's: auto, fp32, bf16, fp16")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--peak-tflops", type=float, default=None, help="the device's dense peak at --dtype, for pct_of_peak")
    args = ap.parse_args()

    import torch

    from mediaeval_mem.core.runtime import resolve_device, resolve_dtype
    from mediaeval_mem.core.threads import set_threads, usable_cores

    set_threads(usable_cores())
    device = resolve_device(args.device or "auto")
    dtype = resolve_dtype(args.dtype, device)
    figures = {"device": torch.cuda.get_device_name() if device.type == "cuda" else f"cpu x{usable_cores()}",
               "dtype": dtype}
    for name in args.encoders.split(","):
        r = measure(name, args.weights, device, dtype, args.repeats, args.peak_tflops)
        print(f"{name} ({r['clip_frames']} frames at {r['size']} px, {dtype}, {figures['device']})")
        print_table([(k, str(v)) for k, v in r.items()])
        figures[name] = r
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
