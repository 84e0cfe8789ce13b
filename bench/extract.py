"""Extraction throughput: `mem extract` end to end against the model alone and a naive pipeline.

    .venv/bin/python bench/extract.py                        # clip-vit-b32, full size, random weights
    .venv/bin/python bench/extract.py --weights DIR --videos 16
    .venv/bin/python bench/extract.py --size 1280x720             # decoding costs real CPU time here

Videos are generated like Memento10k's (3 s, 30 fps, H.264; 640x360 unless --size). Figures:
  e2e_fps         frames/s of extract_features (decode + preprocess + model + store), model loaded
  model_fps       frames/s of the model alone on batches already decoded and preprocessed (same batch
                  size, dtype, normalisation on the device): this machine's ceiling
  naive_fps       one frame at a time: PyAV frame -> PIL -> CLIPImageProcessor -> fp32 forward
  decode_fps      decoding alone at full size, as many threads as extraction's decoders
  bound_fps       1 / (1/model_fps + 1/decode_fps) on a CPU (decoding and the model share its cores),
                  min(model_fps, decode_fps) on a GPU: what no pipeline can beat; e2e_over_bound
  peak_rss_mb_n / peak_rss_mb_4n   peak RSS of an extraction of N and of 4N videos (separate processes)
The model-alone figure is measured in the same process as each extraction, half just before it and
half just after, so that a shared machine's drifting speed affects both alike.
The last line printed is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import peak_rss_mb, print_table, run_child  # noqa: E402


def make_videos(root: Path, n: int, size: tuple[int, int]) -> Path:
    """A memento10k folder in the MediaEval layout with n train videos of 3 s at 30 fps, H.264, at `size`."""
    from mediaeval_mem.datasets.synthetic import DemoSpec, generate_dataset

    spec = DemoSpec("memento10k", 3.0, "libx264", ".mp4", (n, 2, 2), 0, (("crf", "23"), ("preset", "veryfast")))
    generate_dataset(root, spec, seed=1, noise=0.03, size=size)
    return root


def decode_only(root: Path, workers: int) -> float:
    """Frames/s of decoding alone at full size (no resize, no model), with as many threads as extraction."""
    from concurrent.futures import ThreadPoolExecutor

    from mediaeval_mem.video.decode import iter_chunks

    videos = sorted((root / "memento10k" / "train_set" / "Videos").iterdir())
    t0 = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        frames = sum(pool.map(lambda v: sum(len(c) for c in iter_chunks(v)), videos))
    return frames / (time.perf_counter() - t0)


def child_e2e(args) -> None:
    """In a fresh process: one extraction (peak RSS read right after it), then the model alone on the
    same loaded encoder, so that both figures see the same machine conditions."""
    from mediaeval_mem.encoders import encoder_recipe
    from mediaeval_mem.features.extract import extract_features
    from mediaeval_mem.features.options import ExtractOptions
    from mediaeval_mem.core.runtime import resolve_device, resolve_dtype
    from mediaeval_mem.features.pixels import frames_for

    device = resolve_device(args.device)
    dtype = resolve_dtype(args.dtype, device)
    enc = encoder_recipe(args.encoder, args.weights).load().to(device)
    video = sorted((Path(args.child) / "memento10k" / "train_set" / "Videos").iterdir())[0]
    frames = frames_for(video, enc.transform, "all")
    # The model alone just before and just after the extraction: a shared machine's speed drifts.
    before = model_only(enc, frames, args.batch_size, device, dtype, args.model_seconds / 2)
    opts = ExtractOptions(batch_size=args.batch_size, dtype=args.dtype, workers=args.workers)
    report = extract_features("memento10k", enc, ("train",), None, args.child, opts=opts, device=args.device, progress=False)
    s = report.splits[0]
    rss = peak_rss_mb()
    fps = (before + model_only(enc, frames, args.batch_size, device, dtype, args.model_seconds / 2)) / 2
    print(json.dumps({"frames": s.frames, "seconds": s.seconds, "videos": s.extracted, "peak_rss_mb": rss,
                      "model_fps": fps, "decode_fps": decode_only(Path(args.child), args.workers), "dtype": dtype}))


def model_only(enc, frames, batch_size: int, device, dtype: str, seconds: float = 20.0) -> float:
    """Frames/s of normalise + forward on ready uint8 batches (B, 3, S, S), as extraction runs them."""
    import torch

    from mediaeval_mem.features.engine import _encode

    reps = -(-batch_size // len(frames))
    batch = frames.repeat(reps, 1, 1, 1)[:batch_size].contiguous()
    if device.type == "cuda":
        batch = batch.pin_memory()
    for _ in range(2):
        _encode(enc, batch, device, dtype)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        _encode(enc, batch, device, dtype)  # includes the copy back to the CPU: the result must land somewhere
        n += batch_size
    if device.type == "cuda":
        torch.cuda.synchronize()
    return n / (time.perf_counter() - t0)


def naive(enc, video: Path, n_frames: int) -> float:
    """The per-frame pipeline many start with: PIL frames, CLIPImageProcessor, one fp32 forward each."""
    import av
    import torch
    import transformers

    cls = getattr(transformers, "CLIPImageProcessorPil", None) or transformers.CLIPImageProcessor
    t = enc.transform
    processor = cls(size={"shortest_edge": t.short_side}, crop_size={"height": t.crop, "width": t.crop})
    device = next(enc.parameters()).device
    done, t0 = 0, time.perf_counter()
    with torch.inference_mode():
        while done < n_frames:
            with av.open(str(video)) as c:
                for frame in c.decode(video=0):
                    pixels = processor(images=frame.to_image(), return_tensors="pt")["pixel_values"].to(device)
                    enc(pixels)
                    done += 1
                    if done >= n_frames:
                        break
    return done / (time.perf_counter() - t0)


def flops_per_image(enc) -> float | None:
    """Forward FLOPs of a CLIP vision tower for one image (2 x multiply-adds of its matrix products)."""
    cfg = getattr(getattr(enc, "vision", None), "config", None)
    if cfg is None:
        return None
    d, i, p, s, layers = cfg.hidden_size, cfg.intermediate_size, cfg.patch_size, cfg.image_size, cfg.num_hidden_layers
    n = (s // p) ** 2 + 1
    per_layer = n * (4 * d * d + 2 * d * i) + 2 * n * n * d  # qkv + out projections, MLP, attention scores and mix
    return 2.0 * (layers * per_layer + (s // p) ** 2 * 3 * p * p * d)


BF16_PEAK_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "A10": 125.0, "4090": 165.0}  # dense, spec sheets


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--encoder", default="clip-vit-b32")
    ap.add_argument("--weights", default="random", help="'random' (default: nothing to download) or a weights folder")
    ap.add_argument("--videos", type=int, default=8, help="N (the memory check also runs 4N)")
    ap.add_argument("--size", default="640x360", help="WxH of the generated videos (default 640x360, Memento10k's usual size)")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--dtype", default="auto")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--naive-frames", type=int, default=60)
    ap.add_argument("--model-seconds", type=float, default=15.0, help="how long the model-only loop runs")
    ap.add_argument("--workdir", help="keep the generated videos here (default: a temporary folder)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child_e2e(args)

    import torch

    from mediaeval_mem.encoders import encoder_recipe
    from mediaeval_mem.core.runtime import resolve_device, resolve_dtype
    work = Path(args.workdir or tempfile.mkdtemp(prefix="mem-bench-"))
    device = resolve_device(args.device)
    dtype = resolve_dtype(args.dtype, device)
    t0 = time.perf_counter()
    size = tuple(int(v) for v in args.size.lower().split("x"))
    roots = {k: make_videos(work / f"{k}-{args.size}", n, size) for k, n in (("n", args.videos), ("4n", 4 * args.videos))}
    print(f"generated {args.videos} + {4 * args.videos} videos ({args.size}, 90 frames) in {time.perf_counter() - t0:.0f}s under {work}")

    child = [__file__, "--encoder", args.encoder, "--weights", args.weights, "--batch-size", str(args.batch_size),
             "--device", args.device, "--dtype", args.dtype, "--workers", str(args.workers),
             "--model-seconds", str(args.model_seconds)]
    import shutil

    for d in ("runs-n", "runs-4n"):  # an empty feature cache: everything is extracted
        shutil.rmtree(work / d, ignore_errors=True)
    env = {**os.environ, "MEM_RUNS_DIR": str(work / "runs-n")}
    e2e = run_child(child + ["--child", str(roots["n"])], env)
    env4 = {**os.environ, "MEM_RUNS_DIR": str(work / "runs-4n")}
    e2e4 = run_child(child + ["--child", str(roots["4n"])], env4)

    os.environ["MEM_RUNS_DIR"] = str(work / "runs-model")
    enc = encoder_recipe(args.encoder, args.weights).load().to(device)
    video = sorted((roots["n"] / "memento10k" / "train_set" / "Videos").iterdir())[0]
    naive_fps = naive(enc.float(), video, args.naive_frames)

    e2e_fps = (e2e["frames"] + e2e4["frames"]) / (e2e["seconds"] + e2e4["seconds"])
    model_fps = (e2e["model_fps"] + e2e4["model_fps"]) / 2
    decode_fps = (e2e["decode_fps"] + e2e4["decode_fps"]) / 2
    # Decoding and the model share the CPU's cores (their times add up); on a GPU they overlap.
    bound_fps = min(model_fps, decode_fps) if device.type == "cuda" else 1 / (1 / model_fps + 1 / decode_fps)
    figures = {
        "encoder": args.encoder, "device": str(device), "dtype": dtype, "batch_size": args.batch_size,
        "threads": torch.get_num_threads(), "videos_n": args.videos, "size": args.size,
        "e2e_fps": round(e2e_fps, 2), "model_fps": round(model_fps, 2), "naive_fps": round(naive_fps, 2),
        "decode_fps": round(decode_fps, 2), "bound_fps": round(bound_fps, 2),
        "e2e_over_model": round(e2e_fps / model_fps, 3), "e2e_over_bound": round(e2e_fps / bound_fps, 3),
        "e2e_over_naive": round(e2e_fps / naive_fps, 2),
        "peak_rss_mb_n": round(e2e["peak_rss_mb"], 1), "peak_rss_mb_4n": round(e2e4["peak_rss_mb"], 1),
    }
    flops = flops_per_image(enc)
    if device.type == "cuda" and flops:
        name = torch.cuda.get_device_name(device)
        peak = next((v for k, v in BF16_PEAK_TFLOPS.items() if k in name), None)
        figures["model_tflops"] = round(model_fps * flops / 1e12, 1)
        figures["device_name"] = name
        if peak:
            figures["bf16_peak_tflops"] = peak
            figures["model_share_of_peak"] = round(figures["model_tflops"] / peak, 3)
    print_table([
        ("device / dtype / batch", f"{device} / {dtype} / {args.batch_size}"),
        ("mem extract, end to end", f"{e2e_fps:,.1f} frames/s"),
        ("model alone (ceiling)", f"{model_fps:,.1f} frames/s"),
        (f"decoding alone, {args.size}", f"{decode_fps:,.1f} frames/s"),
        ("bound (model + decoding on the same cores)", f"{bound_fps:,.1f} frames/s"),
        ("end to end / bound", f"{figures['e2e_over_bound']:.1%}"),
        ("naive per-frame pipeline", f"{naive_fps:,.1f} frames/s"),
        ("end to end / model", f"{figures['e2e_over_model']:.1%}"),
        ("end to end / naive", f"{figures['e2e_over_naive']:.1f}x"),
        (f"peak RSS, {args.videos} videos", f"{figures['peak_rss_mb_n']:,.0f} MB"),
        (f"peak RSS, {4 * args.videos} videos", f"{figures['peak_rss_mb_4n']:,.0f} MB"),
    ] + ([("model TFLOP/s (of bf16 peak)", f"{figures['model_tflops']} ({figures.get('model_share_of_peak', '?')})")]
         if "model_tflops" in figures else []))
    print(json.dumps(figures))


if __name__ == "__main__":
    from mediaeval_mem.core.process import one_malloc_arena

    one_malloc_arena()  # as `mem` does at start-up, before torch starts its threads
    main()
