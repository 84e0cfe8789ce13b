"""`mem extract --ray` against the single-process path, on this machine (a local Ray); and the product's encoder
actors (features/distributed.py) against a Ray Data version of the same work (`--engine data`).

    .venv/bin/python bench/extract_ray.py                       # clip-vit-b32, random weights, 16 videos, 2 actors
    .venv/bin/python bench/extract_ray.py --engine actors       # the product's path only
    .venv/bin/python bench/extract_ray.py --ray-workers 4 --ray-cpus 0.5

Videos are generated like Memento10k's (3 s, 30 fps, H.264, 640x360; bench/extract.py's generator) and cut
into shards of --flush-every videos (4: every actor gets some). Each path extracts them into an empty cache,
in turns (single, actors, data, single, data, actors: a shared machine drifts); figures are averaged over
the two runs of each (`per_run_fps` has each run's):
  single_fps       frames/s of extract_features in this process, the model already loaded
  ray_fps          frames/s of extract_features(..., ray=...) on the product's encoder actors, the actors
                   started (the driver's figure: from the first shard sent to the last one stored)
  ray_wall_fps     the same, counting Ray's start, the dtype probe and the actors' model loads
  data_fps         Ray Data: `ray.data.from_items` of the shards' videos, `map_batches` with a callable class
                   on an ActorPoolStrategy of --ray-workers actors (each the product's EncoderWorker: the
                   model loaded once, a shard through the single-process pipeline), the driver storing what
                   `iter_batches` yields; from the moment the last actor had its model to the last shard
                   stored (Ray Data hands an actor work as soon as it is ready, so this counts a few frames
                   encoded before: it flatters Ray Data a little)
  data_wall_fps    the same, counting Ray's start, the dtype probe and the actors' model loads
  ray_over_single, data_over_ray   ratios of the first figures; data_wall_over_ray_wall of the wall figures
Both Ray paths run through extract_features (the same Ray start, dtype probe, store and report); only how
shards reach the actors and come back differs. The last line printed is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import print_table  # noqa: E402
from extract import make_videos  # noqa: E402

import numpy as np  # noqa: E402

from mediaeval_mem.core.cluster import RayOptions  # noqa: E402
from mediaeval_mem.features import distributed  # noqa: E402


class EncodeShards:
    """Ray Data's callable class: the product's EncoderWorker (the model loaded once per actor); a batch of video
    indices in, one row out: the shard's Rows, pickled, and when this actor had its model."""

    def __init__(self, split: str, items: list, *worker_args):
        self.split, self.items = split, items
        self.worker = distributed.EncoderWorker(*worker_args)
        self.ready = time.time()

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        rows = self.worker.extract(self.split, [self.items[i] for i in batch["i"]])
        return {"rows": np.array([pickle.dumps(rows)], dtype=object), "ready": np.array([self.ready])}


class DataPool:
    """What extract_features asks of distributed.EncoderPool (device, dtype, extract_split), done by Ray Data."""

    def __init__(self, pool: distributed.EncoderPool):
        self.ray, self.cluster, self.args = pool.ray, pool.cluster, pool.args
        self.device, self.dtype = pool.device, pool.dtype
        self.clock: list[tuple[float, float]] = []  # per split: (last actor ready, last shard stored), time.time()

    def shards(self, split: str, todo: list, size: int):
        import ray.data

        todo = [replace(it, path=it.path.resolve() if it.path else None, captions=()) for it in todo]
        c = self.cluster
        ds = ray.data.from_items([{"i": i} for i in range(len(todo))], override_num_blocks=-(-len(todo) // size))
        ds = ds.map_batches(EncodeShards, batch_size=size, fn_constructor_args=(split, todo, *self.args),
                            compute=ray.data.ActorPoolStrategy(size=c.workers,
                                                               max_tasks_in_flight_per_actor=distributed.INFLIGHT),
                            num_cpus=c.cpus, num_gpus=c.gpus, runtime_env={"env_vars": distributed.worker_env()})
        ready = 0.0
        for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
            ready = max(ready, *batch["ready"])
            for blob in batch["rows"]:
                rows = pickle.loads(blob)
                yield len(rows.videos) + len(rows.failed), rows
        self.clock.append((ready, time.time()))

    def extract_split(self, items, store, opts, report, progress: bool = True):
        from mediaeval_mem.features.rows import store_rows

        return store_rows(lambda: self, items, store, lambda _, todo: self.shards(report.split, todo, opts.flush_every),
                          report, progress)


@contextmanager
def data_pool(*args, **kwargs):
    """distributed.encoder_pool (Ray started, resources checked, dtype probed), with Ray Data in place of the actors."""
    with real_encoder_pool(*args, **kwargs) as pool:
        pools.append(DataPool(pool))
        yield pools[-1]


real_encoder_pool, pools = distributed.encoder_pool, []


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--encoder", default="clip-vit-b32")
    ap.add_argument("--weights", default="random")
    ap.add_argument("--videos", type=int, default=16)
    ap.add_argument("--size", default="640x360")
    ap.add_argument("--engine", choices=("actors", "data", "both"), default="both",
                    help="the Ray path(s) timed beside the single process: the product's actors, Ray Data, or both")
    ap.add_argument("--flush-every", type=int, default=4, help="videos per shard (default 4)")
    ap.add_argument("--ray-workers", type=int, default=2)
    ap.add_argument("--ray-cpus", type=float, default=1)
    ap.add_argument("--workdir", help="keep the generated videos here (default: a temporary folder)")
    args = ap.parse_args()

    import ray
    import torch

    from mediaeval_mem.features.extract import extract_features
    from mediaeval_mem.features.options import ExtractOptions

    work = Path(args.workdir or tempfile.mkdtemp(prefix="mem-bench-ray-"))
    root = make_videos(work / f"videos-{args.size}", args.videos, tuple(int(v) for v in args.size.lower().split("x")))
    cluster = RayOptions(workers=args.ray_workers, cpus=args.ray_cpus)
    opts = ExtractOptions(flush_every=args.flush_every)
    engines = {"actors": ["ray"], "data": ["data"], "both": ["ray", "data"]}[args.engine]
    ray.data.DataContext.get_current().enable_progress_bars = False
    runs: dict[str, list[tuple[int, float, float]]] = {p: [] for p in ("single", *engines)}  # (frames, s, wall s)
    for i, path in enumerate(["single", *engines, "single", *engines[::-1]]):  # the Ray paths' order swapped
        os.environ["MEM_RUNS_DIR"] = str(work / f"runs-{i}")  # an empty cache: every video is extracted
        distributed.encoder_pool = data_pool if path == "data" else real_encoder_pool
        t0 = time.perf_counter()
        report = extract_features("memento10k", args.encoder, ("train",), args.weights, root, opts=opts,
                                  progress=False, ray=None if path == "single" else cluster)
        split = report.splits[0]
        assert split.extracted == args.videos and not split.failed, split
        seconds = split.seconds if path != "data" else pools[-1].clock[0][1] - pools[-1].clock[0][0]
        runs[path].append((split.frames, seconds, time.perf_counter() - t0))

    def fps(path: str, column: int) -> float:
        return round(sum(r[0] for r in runs[path]) / sum(r[column] for r in runs[path]), 1)

    figures = {
        "encoder": args.encoder, "videos": args.videos, "size": args.size, "cpus": os.cpu_count(),
        "flush_every": args.flush_every, "torch_threads_single": torch.get_num_threads(),
        "ray_workers": args.ray_workers, "ray_cpus": args.ray_cpus, "single_fps": fps("single", 1),
        "load_average": [round(x, 1) for x in os.getloadavg()],
        # [fps, wall fps] of each run, in the order run
        "per_run_fps": {p: [[round(n / s, 1), round(n / wall, 1)] for n, s, wall in rs] for p, rs in runs.items()},
    }
    rows = [("single process (model loaded)", f"{figures['single_fps']:,.1f} frames/s")]
    actors = f"{args.ray_workers} actors x {args.ray_cpus:g} CPU"
    for path, name in (("ray", f"Ray actors, {actors}"), ("data", f"Ray Data, {actors}")):
        if path in runs:
            figures[f"{path}_fps"], figures[f"{path}_wall_fps"] = fps(path, 1), fps(path, 2)
            rows += [(f"{name} (models loaded)", f"{figures[f'{path}_fps']:,.1f} frames/s"),
                     (f"{name}, counting Ray's start and the model loads", f"{figures[f'{path}_wall_fps']:,.1f} frames/s")]
    if "ray" in runs:
        figures["ray_over_single"] = round(figures["ray_fps"] / figures["single_fps"], 3)
        rows.append(("Ray actors / single", f"{figures['ray_over_single']:.2f}x"))
    if "ray" in runs and "data" in runs:
        figures["data_over_ray"] = round(figures["data_fps"] / figures["ray_fps"], 3)
        figures["data_wall_over_ray_wall"] = round(figures["data_wall_fps"] / figures["ray_wall_fps"], 3)
        rows.append(("Ray Data / Ray actors (models loaded; wall)",
                     f"{figures['data_over_ray']:.2f}x; {figures['data_wall_over_ray_wall']:.2f}x"))
    print_table(rows)
    print(json.dumps(figures))


if __name__ == "__main__":
    from mediaeval_mem.core.process import one_malloc_arena

    one_malloc_arena()
    main()
