"""`mem extract --ray`: videos sharded over encoder actors give the single-process features; a killed actor loses
nothing stored, ends in a clear report, and the next call completes the split."""

from __future__ import annotations

import functools
import os
import signal
import time
from dataclasses import replace

import numpy as np
import pytest
import torch

ray = pytest.importorskip("ray")

from mediaeval_mem.cli import main  # noqa: E402
from mediaeval_mem.core.errors import MemError  # noqa: E402
from mediaeval_mem.core.cluster import RayOptions  # noqa: E402
from mediaeval_mem.features.distributed import EncoderPool  # noqa: E402
from mediaeval_mem.core.runtime import resolve_dtype  # noqa: E402
from mediaeval_mem.features.extract import ExtractOptions, extract_features  # noqa: E402
from mediaeval_mem.features.store import FeatureStore  # noqa: E402

OPTS = ExtractOptions(batch_size=8, flush_every=1)  # one video per shard and per stored segment
# The kill tests name the dtype that `auto` means here (the same key): no Ray task needed to ask a worker
DTYPE = resolve_dtype("auto", torch.device("cpu"))
SPLITS = ("train", "dev")


@pytest.fixture(scope="module")
def local_ray():
    env = {k: os.environ[k] for k in ("MEM_RUNS_DIR", "HF_HOME", "HF_HUB_OFFLINE")}
    ray.init(address="local", num_cpus=2, include_dashboard=False, runtime_env={"env_vars": env})
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def reference(demo_root, tmp_path_factory):
    """The single-process features of memento10k train and dev: (cache folder under runs/, {split: {id: rows}})."""
    runs, old = tmp_path_factory.mktemp("reference") / "runs", os.environ["MEM_RUNS_DIR"]
    os.environ["MEM_RUNS_DIR"] = str(runs)
    try:
        report = extract_features("memento10k", "clip-demo", SPLITS, data_root=demo_root, sampling="uniform:4",
                                  opts=OPTS, progress=False)
    finally:
        os.environ["MEM_RUNS_DIR"] = old
    feats = {s: FeatureStore(report.cache_dir / s).load() for s in SPLITS}
    return report.cache_dir.relative_to(runs), {s: dict(zip(f.ids, f)) for s, f in feats.items()}


def _assert_same(runs_dir, reference, splits=SPLITS):
    folder, ref = reference
    for split in splits:
        got = FeatureStore(runs_dir / folder / split).load()
        assert sorted(got.ids) == sorted(ref[split]) and len(set(got.ids)) == len(got.ids)
        for vid, rows in zip(got.ids, got):
            a, b = rows.astype(np.float32), ref[split][vid].astype(np.float32)
            assert a.shape == b.shape == (4, 64)
            cos = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
            assert cos.min() >= 0.99999, (split, vid, cos.min())


def test_two_workers_give_the_single_process_features(demo_root, runs_dir, local_ray, reference):
    report = extract_features("memento10k", "clip-demo", SPLITS, data_root=demo_root, sampling="uniform:4",
                              opts=OPTS, progress=False, ray=RayOptions(workers=2))
    assert report.cache_dir == runs_dir / reference[0]  # the same key: the same cache entry as without Ray
    assert [(s.extracted, s.cached, s.failed) for s in report.splits] == [(s.total, 0, {}) for s in report.splits]
    assert report.splits[0].frames == 4 * report.splits[0].total
    _assert_same(runs_dir, reference)
    for split in SPLITS:  # one segment per split once done, as without Ray
        assert len(FeatureStore(report.cache_dir / split).manifest()["segments"]) == 1


def _kill_after_first_stored(monkeypatch, victims: int):
    """Once the first shard is stored, SIGKILL `victims` of the pool's actors; returns what happened."""
    seen = {"killed": [], "left": None}
    shards = EncoderPool.shards

    def shards_then_kill(pool, split, todo, size):
        for i, result in enumerate(shards(pool, split, todo, size)):
            if i == 1 and not seen["killed"]:  # the driver has stored the first shard: it asks for the next
                for pid in list(pool.actors.values())[:victims]:
                    os.kill(pid, signal.SIGKILL)
                    seen["killed"].append(pid)
                time.sleep(0.2)
            yield result
        seen["left"] = sorted(pool.actors.values())

    monkeypatch.setattr(EncoderPool, "shards", shards_then_kill)
    return seen


def test_a_killed_worker_shard_goes_to_the_other(demo_root, runs_dir, local_ray, reference, monkeypatch):
    seen = _kill_after_first_stored(monkeypatch, victims=1)
    report = extract_features("memento10k", "clip-demo", ("train",), data_root=demo_root, sampling="uniform:4",
                              opts=replace(OPTS, dtype=DTYPE), progress=False, ray=RayOptions(workers=2))
    train = report.splits[0]
    assert len(seen["killed"]) == 1 and seen["killed"][0] not in seen["left"] and len(seen["left"]) == 1, (seen, train)
    assert (train.extracted, train.failed) == (train.total, {}), (seen, train)
    _assert_same(runs_dir, reference, ("train",))


def test_killed_workers_lose_nothing_stored_and_a_second_call_completes(demo_root, runs_dir, local_ray, reference,
                                                                       monkeypatch, capsys):
    seen = _kill_after_first_stored(monkeypatch, victims=1)
    cmd = ["extract", "--dataset", "memento10k", "--encoder", "clip-demo", "--splits", "train", "--sampling", "uniform:4",
           "--data-root", str(demo_root), "--batch-size", "8", "--flush-every", "1", "--dtype", DTYPE, "--quiet", "--ray", "--ray-workers", "1"]
    assert main(cmd) == 1  # not a traceback: the report, with the videos not done
    out = capsys.readouterr().out
    assert len(seen["killed"]) == 1 and seen["left"] == []
    store = FeatureStore(runs_dir / reference[0] / "train")
    kept = store.load()
    total = len(reference[1]["train"])
    assert 1 <= len(kept) < total and not store.failed()  # what was stored stays; the lost videos are not recorded
    assert out.count("not extracted: ") == total - len(kept)
    _assert_same(runs_dir, (reference[0], {"train": {v: reference[1]["train"][v] for v in kept.ids}}), ("train",))

    assert main(cmd) == 0  # the second call does the rest (the hook kills only once)
    _assert_same(runs_dir, reference, ("train",))


def test_ray_refusals(demo_root, runs_dir, local_ray):
    from mediaeval_mem.encoders import encoder_recipe

    broken = replace(encoder_recipe("clip-demo"), load=functools.partial(int, "weights missing on that node"))
    with pytest.raises(MemError, match="no Ray encoder actor started: .*weights missing on that node"):
        extract_features("memento10k", broken, ("dev",), data_root=demo_root, progress=False,
                         opts=replace(OPTS, dtype=DTYPE), ray=RayOptions(workers=1))
    with pytest.raises(MemError, match="need 8 CPUs; the cluster has 2"):
        extract_features("memento10k", "clip-demo", ("dev",), data_root=demo_root, progress=False,
                         ray=RayOptions(workers=8))
    with pytest.raises(MemError, match="extract clip-demo-text without it"):
        extract_features("memento10k", "clip-demo-text", ("dev",), data_root=demo_root, progress=False, ray="local")
