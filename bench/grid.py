"""Wall time of a small grid run sequentially and as Ray tasks on this machine; on a GPU, runs per hour
with 1, 2, 4 and 8 runs sharing one card.

    .venv/bin/python bench/grid.py                    # table1's first 3 configs x 2 seeds on generated demo data
    .venv/bin/python bench/grid.py --scale 1 --seeds 4

The grid is configs/grids/table1.yaml's first 3 configs (clip-demo in place of both CLIPs through the
demo profile: linear-avg + linear, Bi-GRU + linear, Bi-GRU + linear), task 1, `--seeds` seeds, on demo
data made with `mem demo-data --scale`. The features are extracted first, so both timings are the runs
alone (training, evaluation, MLflow):

  sequential_s  run_grid, one run after the other (torch using every core)
  sequential_1t_s  the same with torch on 1 thread, as each Ray task below runs
  ray_s         run_grid(ray=...): one Ray task per run, --ray-cpus 1 each, on a local Ray with every core,
                started beforehand (ray_init_s, not counted: `mem grid --ray` pays it once per command)
  gpu_runs_per_hour_<k>  (CUDA only) `--gpu-runs` runs of the Bi-GRU config on a local Ray, each with
                1/k of the card (--ray-gpus 1, 0.5, 0.25, 0.125): runs finished per hour of wall time
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

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(REPO))

from _common import print_table  # noqa: E402

CONFIGS = ("01_clip-b32_linear-avg_linear", "02_clip-b32_bigru_linear", "03_clip-l14_bigru_linear")


def write_grid(path: Path, configs: list[str], seeds: int) -> Path:
    lines = ["title: bench", "pairs: [{task: 1, train: memento10k, test: memento10k}]", f"seeds: {list(range(seeds))}",
             "configs:"] + [f"  - {REPO}/configs/table1/{c}.yaml" for c in configs]
    path.write_text("\n".join(lines) + "\n")
    return path


def timed_grid(grid, root, profile, ray=None) -> tuple[float, list]:
    from mediaeval_mem.experiments.grid import run_grid

    t0 = time.perf_counter()
    rows = run_grid(grid, root, profile, progress=False, echo=lambda *a: None, rerun=True, ray=ray)
    failed = [f for r in rows for f in r.failed]
    if failed:
        raise SystemExit(f"a run failed: {failed[0]}")
    return time.perf_counter() - t0, rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scale", type=float, default=0.25, help="demo data size (mem demo-data --scale)")
    ap.add_argument("--seeds", type=int, default=2, help="seeds per config")
    ap.add_argument("--gpu-runs", type=int, default=8, help="runs per GPU share (CUDA only)")
    ap.add_argument("--workdir", help="keep the data and runs/ here (default: a temporary folder)")
    args = ap.parse_args()

    work = Path(args.workdir or tempfile.mkdtemp(prefix="mem-bench-grid-"))
    os.environ["MEM_RUNS_DIR"] = str(work / "runs")  # before anything opens the store
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    import ray
    import torch

    from mediaeval_mem.experiments.demo import make_demo_data
    from mediaeval_mem.core.cluster import RayOptions
    from mediaeval_mem.experiments.grid import apply_profile, load_grid, load_profile
    from mediaeval_mem.experiments.runner import extract_first
    from mediaeval_mem.config import load_config

    root = work / "data"
    make_demo_data(root, seed=0, scale=args.scale)
    profile = load_profile(REPO / "configs" / "profiles" / "demo.yaml", root)
    grid = load_grid(write_grid(work / "grid.yaml", list(CONFIGS), args.seeds))
    for entry in grid.entries:  # the features first: the timings below are the runs alone
        extract_first(1, "memento10k", "memento10k", apply_profile(load_config(entry.path), profile), root, False,
                      lambda *a: None)
    runs = len(grid.entries) * len(grid.seeds)
    from mediaeval_mem.tracking import client

    client()  # the MLflow store made before the clock starts
    threads = torch.get_num_threads()
    sequential_s, _ = timed_grid(grid, root, profile)
    torch.set_num_threads(1)  # as a Ray task with 1 CPU runs (Ray sets OMP_NUM_THREADS to its CPUs)
    sequential_1t_s, _ = timed_grid(grid, root, profile)
    torch.set_num_threads(threads)

    cores = os.cpu_count()
    t0 = time.perf_counter()
    ray.init(num_cpus=cores, include_dashboard=False)
    ray_init_s = time.perf_counter() - t0
    ray_s, _ = timed_grid(grid, root, profile, RayOptions(cpus=1, gpus=0))
    figures = {"runs": runs, "cores": cores, "scale": args.scale, "sequential_s": round(sequential_s, 1),
               "sequential_1t_s": round(sequential_1t_s, 1), "threads": threads,
               "ray_s": round(ray_s, 1), "ray_init_s": round(ray_init_s, 1),
               "speedup": round(sequential_s / ray_s, 2), "cuda": torch.cuda.is_available()}
    rows = [("runs (configs x seeds) / cores", f"{runs} / {cores}"), ("sequential: wall s", f"{sequential_s:.1f} (torch {threads} threads)"),
            ("sequential, torch 1 thread: wall s", f"{sequential_1t_s:.1f}"),
            ("Ray, 1 CPU per run: wall s", f"{ray_s:.1f} (Ray start {ray_init_s:.1f} s, not counted)"),
            ("speed-up", f"{sequential_s / ray_s:.2f}x")]
    ray.shutdown()

    if torch.cuda.is_available():
        gpu_grid = load_grid(write_grid(work / "gpu.yaml", [CONFIGS[1]], args.gpu_runs))
        ray.init(num_cpus=cores, num_gpus=1, include_dashboard=False)
        for share in (1, 2, 4, 8):
            secs, _ = timed_grid(gpu_grid, root, profile, RayOptions(cpus=1, gpus=1 / share))
            figures[f"gpu_runs_per_hour_{share}"] = round(args.gpu_runs / secs * 3600, 1)
            rows.append((f"GPU, {share} run(s) per card: runs/hour", f"{args.gpu_runs / secs * 3600:,.0f}"))
        ray.shutdown()
    else:
        rows.append(("GPU runs per hour", "no GPU here (torch.cuda.is_available() is False): not measured"))
    print_table(rows)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
