"""`mem extract --ray`: a split's videos sharded across encoder actors on a Ray cluster, stored by the driver.

    driver:  holds the split's lock (FeatureStore.writing), cuts the videos not yet stored into shards of
             `flush_every`, keeps every actor INFLIGHT shards deep, and appends each shard as one segment
             as it comes back (ray.wait, features/rows.py `store_rows`): the one writer, as without Ray.
    actors:  `workers` of them, each holding the encoder once (on a GPU of its own with `gpus` > 0). A shard
             runs through the single-process path's engine (features/engine.py `encode_videos`: same decoding,
             resizing, batching and `_encode`) into memory instead of a store, and comes back as Rows:
             (video id, float16 rows) per video, the videos that failed and why.

A dead actor (its process killed, its node lost) loses only the shards it had not returned: each goes once
to another live actor; a shard that loses a second actor, or finds none left, is reported as not extracted
(never recorded in the cache) and the next call extracts it. Nothing is ever half-written: only whole
shards reach the store, through its atomic manifest.

Every node must see the same paths: the videos (the actors open them by the driver's absolute paths),
the weights and runs/ (the driver's $MEM_RUNS_DIR, $HF_HOME, $MEM_I3D_DIR, ... are passed to the actors,
made absolute, as to grid and cv tasks: core/cluster.py), and the installed `mediaeval_mem`
package. Only the driver writes the cache.
"""

from __future__ import annotations

import os
import sys
from collections import deque
from contextlib import contextmanager
from dataclasses import replace
from typing import Iterator

from mediaeval_mem.core.cluster import RayOptions, gpus_each, ray_session, worker_env  # as grid, cv and sweep
from mediaeval_mem.core.errors import MemError
from mediaeval_mem.core.runtime import resolve_device, resolve_dtype
from mediaeval_mem.datasets import VideoItem
from mediaeval_mem.features.engine import encode_videos
from mediaeval_mem.features.options import ExtractOptions
from mediaeval_mem.features.report import SplitReport
from mediaeval_mem.features.rows import Rows, store_rows
from mediaeval_mem.features.store import FeatureStore
from mediaeval_mem.video import Sampling

INFLIGHT = 2  # shards queued per actor: the next one waits on the actor while the driver stores the last


class EncoderWorker:
    """A Ray actor: the encoder loaded once, then shards of videos through the single-process pipeline."""

    def __init__(self, recipe, device: str, dtype: str, sampling: Sampling, opts: ExtractOptions):
        self.device, self.dtype, self.sampling, self.opts = resolve_device(device), dtype, sampling, opts
        self.encoder = recipe.load().to(self.device)

    def pid(self) -> int:
        return os.getpid()

    def extract(self, split: str, items: list[VideoItem]) -> Rows:
        """One shard through the engine, kept in memory for the driver to store: its videos' rows, those that
        failed, the clip-level ones padded (as the single-process path would append them)."""
        rows = Rows([])

        def keep(videos, failed, padded) -> None:
            rows.videos.extend(videos)
            rows.failed.update(failed)
            if padded:
                rows.notes.setdefault("padded", {}).update(padded)

        report = encode_videos(self.encoder, items, keep, self.sampling, self.opts, self.device, self.dtype,
                               SplitReport(split, len(items)), progress=False)
        rows.inputs = report.frames
        return rows


def _worker_dtype(dtype: str, device: str) -> str:
    """(A Ray task) the compute dtype `dtype` means on a worker: 'auto' depends on its hardware."""

    return resolve_dtype(dtype, resolve_device(device))


def _death_errors(ray) -> tuple[type[BaseException], ...]:
    """What ray.get raises when the process or node running a shard is gone (not an error of the code)."""
    x = ray.exceptions
    return (x.RayActorError, x.WorkerCrashedError, x.NodeDiedError, x.ObjectLostError)


def _first_line(e: BaseException) -> str:
    return next((line.strip() for line in str(e).splitlines() if line.strip()), type(e).__name__)


class EncoderPool:
    """The encoder actors of one extraction, started on first use; `shards` runs a split's videos on them."""

    def __init__(self, ray, cluster: RayOptions, recipe, device: str, dtype: str, sampling: Sampling,
                 opts: ExtractOptions):
        self.ray, self.cluster, self.device, self.dtype = ray, cluster, device, dtype
        self.args = (recipe, device, dtype, sampling, opts)
        self.actors: dict = {}  # live actor -> its pid
        self.started = False

    def start(self) -> EncoderPool:
        """Start the actors (each loads the model) and wait until they answer; those that fail are left out."""
        if self.started:
            return self
        ray, c = self.ray, self.cluster
        cls = ray.remote(EncoderWorker).options(num_cpus=c.cpus, num_gpus=c.gpus,
                                                runtime_env={"env_vars": worker_env()})
        actors = [cls.remote(*self.args) for _ in range(c.workers)]
        why = ""
        for actor, ref in [(a, a.pid.remote()) for a in actors]:
            try:
                self.actors[actor] = ray.get(ref)
            except _death_errors(ray) as e:  # its constructor failed (missing weights on that node, say)
                why = str(e).strip().splitlines()[-1]  # the constructor's exception, where it raised one
        self.started = True
        if not self.actors:
            raise MemError(f"no Ray encoder actor started: {why}")
        if len(self.actors) < len(actors):
            print(f"{len(actors) - len(self.actors)} of {len(actors)} Ray encoder actors did not start ({why}); "
                  f"going on with {len(self.actors)}", file=sys.stderr, flush=True)
        return self

    def shards(self, split: str, todo: list[VideoItem], size: int) -> Iterator[tuple[int, Rows]]:
        """(videos, Rows) of every shard of `size` videos of `todo`, in the order they finish."""
        ray = self.ray
        todo = [replace(it, path=it.path.resolve() if it.path else None, captions=()) for it in todo]
        queue = deque((todo[i : i + size], 0) for i in range(0, len(todo), size))  # (shard, actors lost on it)
        running: dict = {}  # ObjectRef -> (actor, shard, actors lost on it)
        load = {actor: 0 for actor in self.actors}
        while queue or running:
            for actor in load:
                while load[actor] < INFLIGHT and queue:
                    shard, lost = queue.popleft()
                    running[actor.extract.remote(split, shard)] = (actor, shard, lost)
                    load[actor] += 1
            if not running:  # every actor is dead
                yield from ((len(shard), self._lost(shard, "no Ray encoder actor is left")) for shard, _ in queue)
                return
            [ref], _ = ray.wait(list(running), num_returns=1)
            actor, shard, lost = running.pop(ref)
            try:
                rows = ray.get(ref)
            except _death_errors(ray) as e:
                why = f"its Ray encoder actor (pid {self.actors.get(actor, '?')}) died: {_first_line(e)}"
                if load.pop(actor, None) is not None:
                    del self.actors[actor]
                    print(f"{split}: {why[4:]}; {len(self.actors)} actor(s) left", file=sys.stderr, flush=True)
                if not lost and load:  # once more, on another actor
                    queue.appendleft((shard, 1))
                else:
                    yield len(shard), self._lost(shard, why)
                continue
            if actor in load:  # else found dead after it finished this shard: its rows stand
                load[actor] -= 1
            yield len(shard), rows

    @staticmethod
    def _lost(shard: list[VideoItem], why: str) -> Rows:
        return Rows([], lost={it.video_id: f"not extracted: {why}; the same command again extracts it" for it in shard})

    def extract_split(self, items: list[VideoItem], store: FeatureStore, opts: ExtractOptions, report,
                      progress: bool = True):
        """Like engine.extract_split, on the actors: the driver holds the lock and stores the shards as they come."""
        return store_rows(self.start, items, store, lambda pool, todo: pool.shards(report.split, todo, opts.flush_every),
                          report, progress)

    def close(self) -> None:
        for actor in list(self.actors):
            self.ray.kill(actor)
        self.actors.clear()


@contextmanager
def encoder_pool(cluster: RayOptions | str, recipe, sampling: Sampling, opts: ExtractOptions,
                 device: str = "auto") -> Iterator[EncoderPool]:
    """Ray (connected, or started here with `address` 'local') and a lazily started pool of encoder actors.

    The actors compute on CUDA with `gpus` > 0, else on their CPUs; the compute dtype ('auto' resolved
    by a worker: its hardware decides, as without Ray) is fixed here for all of them, since the cache key holds it.
    """
    cluster = RayOptions(address=cluster) if isinstance(cluster, str) else cluster
    if device not in ("auto", "cpu", "cuda"):
        raise MemError(f"--device {device} with --ray: auto, cpu or cuda (Ray gives each actor its GPU)")
    pool = None
    with ray_session(cluster, **({"num_cpus": os.cpu_count()} if cluster.local else {})) as ray:  # a caller's Ray is left running
        try:
            have = ray.cluster_resources()
            if cluster.gpus is None:  # --device cpu: no GPU; else gpus_each's share for an encoder actor
                cluster = replace(cluster, gpus=0.0 if device == "cpu" else gpus_each(cluster, have, "encoder"))
            where = "cuda" if cluster.gpus > 0 else "cpu"
            if device not in ("auto", where):
                raise MemError(f"--device {device} with --ray: the actors have {cluster.gpus:g} GPU each; "
                               f"{'leave --device out' if where == 'cpu' else 'give --ray-gpus 0 for CPUs'}")
            for name, per_actor in (("CPU", cluster.cpus), ("GPU", cluster.gpus)):
                if per_actor and have.get(name, 0) < per_actor * cluster.workers:
                    raise MemError(f"{cluster.workers} Ray worker(s) x {per_actor:g} {name} need "
                                   f"{per_actor * cluster.workers:g} {name}s; the cluster has {have.get(name, 0):g}: "
                                   f"lower --ray-workers or --ray-{name.lower()}s")
            dtype = opts.dtype
            if dtype == "auto":
                task = ray.remote(_worker_dtype).options(num_cpus=cluster.cpus, num_gpus=cluster.gpus)
                dtype = ray.get(task.remote(dtype, where))
            pool = EncoderPool(ray, cluster, recipe, where, dtype, sampling, opts)
            yield pool
        finally:
            if pool is not None:
                pool.close()
