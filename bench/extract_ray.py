"""`mem extract --ray` against the single-process path, on this machine (a local Ray).

    .venv/bin/python bench/extract_ray.py                       # clip-vit-b32, random weights, 16 videos, 2 actors
    .venv/bin/python bench/extract_ray.py --ray-workers 4 --ray-cpus 0.5

Videos are generated like Memento10k's (3 s, 30 fps, H.264, 640x360; bench/extract.py's generator).
Each path extracts them into an empty cache, in the order single, Ray, single, Ray (a shared machine
drifts); figures are averaged over the two runs of each:
  single_fps       frames/s of extract_features in this process, the model already loaded
  ray_fps          frames/s of extract_features(..., ray=...), the actors already started (the
                   driver's figure: from the first shard sent to the last one stored)
  ray_wall_fps     the same, counting Ray's start, the dtype probe and the actors' model loads
  ray_over_single  ray_fps / single_fps
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

from _common import print_table  # noqa: E402
from extract import make_videos  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--encoder", default="clip-vit-b32")
    ap.add_argument("--weights", default="random")
    ap.add_argument("--videos", type=int, default=16)
    ap.add_argument("--size", default="640x360")
    ap.add_argument("--ray-workers", type=int, default=2)
    ap.add_argument("--ray-cpus", type=float, default=1)
    ap.add_argument("--workdir", help="keep the generated videos here (default: a temporary folder)")
    args = ap.parse_args()

    import torch

    from mediaeval_mem.features.distributed import RayOptions
    from mediaeval_mem.features.extract import extract_features
    from mediaeval_mem.features.options import ExtractOptions

    work = Path(args.workdir or tempfile.mkdtemp(prefix="mem-bench-ray-"))
    root = make_videos(work / f"videos-{args.size}", args.videos, tuple(int(v) for v in args.size.lower().split("x")))
    cluster = RayOptions(workers=args.ray_workers, cpus=args.ray_cpus)
    opts = ExtractOptions()
    runs: dict[str, list[tuple[int, float, float]]] = {"single": [], "ray": []}  # (frames, seconds, wall seconds)
    for i, path in enumerate(("single", "ray", "single", "ray")):
        os.environ["MEM_RUNS_DIR"] = str(work / f"runs-{i}")  # an empty cache: every video is extracted
        t0 = time.perf_counter()
        report = extract_features("memento10k", args.encoder, ("train",), args.weights, root, opts=opts,
                                  progress=False, ray=cluster if path == "ray" else None)
        split = report.splits[0]
        assert split.extracted == args.videos and not split.failed, split
        runs[path].append((split.frames, split.seconds, time.perf_counter() - t0))

    def fps(path: str, column: int) -> float:
        return sum(r[0] for r in runs[path]) / sum(r[column] for r in runs[path])

    figures = {
        "encoder": args.encoder, "videos": args.videos, "size": args.size, "cpus": os.cpu_count(),
        "torch_threads_single": torch.get_num_threads(), "ray_workers": args.ray_workers, "ray_cpus": args.ray_cpus,
        "single_fps": round(fps("single", 1), 1), "ray_fps": round(fps("ray", 1), 1),
        "ray_wall_fps": round(fps("ray", 2), 1),
    }
    figures["ray_over_single"] = round(figures["ray_fps"] / figures["single_fps"], 3)
    print_table([
        ("single process (model loaded)", f"{figures['single_fps']:,.1f} frames/s"),
        (f"Ray, {args.ray_workers} actors x {args.ray_cpus:g} CPU (actors started)", f"{figures['ray_fps']:,.1f} frames/s"),
        ("Ray, counting its start and the model loads", f"{figures['ray_wall_fps']:,.1f} frames/s"),
        ("Ray / single", f"{figures['ray_over_single']:.2f}x"),
    ])
    print(json.dumps(figures))


if __name__ == "__main__":
    from mediaeval_mem.core.process import one_malloc_arena

    one_malloc_arena()
    main()
