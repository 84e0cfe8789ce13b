"""Precomputed features as a stream: .npy per video or one array plus ids, read into the cache keyed by
the files' identity, and trained on exactly like features the harness extracted."""

from __future__ import annotations

import numpy as np
import pytest

from mediaeval_mem.config import load_config
from mediaeval_mem.core.errors import ConfigError, WeightsError
from mediaeval_mem.datasets import open_dataset
from mediaeval_mem.features.extract import extract_features
from mediaeval_mem.features.store import FeatureStore


def _export(demo_root, folder, sampling="uniform:4"):
    """Write clip-demo's cached features of every memento10k split as one .npy per video (as organisers ship them)."""
    index = open_dataset("memento10k", demo_root)
    report = extract_features(index, "clip-demo", sampling=sampling, progress=False)
    (folder / "memento10k").mkdir(parents=True)
    for split in ("train", "dev", "test"):
        feats = FeatureStore(report.cache_dir / split).load()
        for i, vid in enumerate(feats.ids):
            np.save(folder / "memento10k" / f"{int(vid):05d}.npy", np.asarray(feats[i], np.float32))
    return index


def test_a_precomputed_stream_trains_exactly_like_the_features_it_holds(demo_root, runs_dir, tmp_path):
    """clip-demo's own features, exported per video and read back as `precomputed`: the same run, the same metrics."""
    from mediaeval_mem.experiments.runner import run_experiment

    _export(demo_root, tmp_path / "feats")
    quiet = lambda *a: None  # noqa: E731
    sets = ["train.epochs=3", "train.patience=3"]
    own = run_experiment(1, "memento10k", "memento10k",
                         load_config("configs/demo.yaml", sets + ["model.streams.0.sampling=uniform:4"]), demo_root,
                         progress=False, echo=quiet)
    theirs = run_experiment(1, "memento10k", "memento10k",
                            load_config("configs/demo.yaml", sets + ["model.streams.0.encoder=precomputed",
                                                                     f"model.streams.0.weights={tmp_path / 'feats'}"]),
                            demo_root, progress=False, echo=quiet)
    assert theirs.metrics == pytest.approx(own.metrics, abs=1e-6)


def test_one_array_with_ids_and_a_missing_video(demo_root, runs_dir, tmp_path):
    """features.npy (N, D) per video with ids.txt: one row per video; a video the ids do not list is
    recorded as failed (left out of runs), the others stored; touching the files makes a new cache entry."""
    index = open_dataset("memento10k", demo_root)
    train = index.split("train")
    folder = tmp_path / "organisers"
    folder.mkdir()
    vectors = np.random.default_rng(0).normal(size=(len(train) - 1, 12)).astype(np.float32)
    np.save(folder / "features.npy", vectors)
    (folder / "ids.txt").write_text("".join(f"{it.video_id.zfill(5)}\n" for it in train[1:]))  # zero-padded: still matched
    report = extract_features(index, "precomputed", ("train",), weights=str(folder), progress=False)
    split = report.splits[0]
    assert split.extracted == len(train) - 1 and list(split.failed) == [train[0].video_id]
    assert "not listed in" in split.failed[train[0].video_id]
    feats = FeatureStore(report.cache_dir / "train").load([it.video_id for it in train[1:]])
    assert feats.dim == 12 and set(feats.lengths) == {1}
    np.testing.assert_allclose(np.asarray(feats.frames, np.float32), vectors, atol=1e-2)

    np.save(folder / "features.npy", vectors * 2)  # replaced by a new release
    moved = extract_features(index, "precomputed", ("train",), weights=str(folder), progress=False)
    assert moved.cache_dir != report.cache_dir and moved.splits[0].cached == 0


def test_the_entry_is_keyed_on_its_own_dataset_files_only(demo_root, runs_dir, tmp_path):
    """One folder, a subfolder per dataset: a file added for videomem keeps memento10k's entry valid (nothing
    extracted again); changing one of memento10k's own files makes a new entry."""
    index = open_dataset("memento10k", demo_root)
    train = index.split("train")
    folder = tmp_path / "features"
    (folder / "memento10k").mkdir(parents=True)
    vectors = np.random.default_rng(0).normal(size=(len(train), 6)).astype(np.float32)
    np.save(folder / "memento10k" / "features.npy", vectors)
    (folder / "memento10k" / "ids.txt").write_text("".join(f"{it.video_id}\n" for it in train))

    def extract():
        return extract_features(index, "precomputed", ("train",), weights=str(folder), progress=False)

    first = extract()
    assert first.splits[0].extracted == len(train)
    (folder / "videomem").mkdir()
    np.save(folder / "videomem" / "video7.npy", vectors[0])  # another dataset's release arrives
    (folder / "README.txt").write_text("features of both datasets\n")
    same = extract()
    assert same.cache_dir == first.cache_dir and same.splits[0].cached == len(train) and same.splits[0].extracted == 0
    (folder / "memento10k" / "ids.txt").write_text("".join(f"{it.video_id}\n" for it in reversed(train)))
    changed = extract()
    assert changed.cache_dir != first.cache_dir and changed.splits[0].extracted == len(train)


def test_precomputed_is_refused_clearly_without_its_folder(tmp_path):
    with pytest.raises(WeightsError, match="give the features' folder as the stream's weights"):
        extract_features("memento10k", "precomputed", data_root=tmp_path, progress=False)
    with pytest.raises(ConfigError, match="precomputed reads stored features: leave sampling at all"):
        load_config(None, ["model.streams.0.encoder=precomputed", "model.streams.0.sampling=uniform:4"])


def test_a_precomputed_run_is_evaluated_on_another_datasets_files(demo_root, runs_dir, tmp_path, capsys):
    """One folder with a subfolder per dataset (each keyed on its own files): `mem eval` of a run trained on
    memento10k's reads videomem's subfolder, not refused as 'other weights'."""
    from mediaeval_mem.cli import main
    from mediaeval_mem.experiments.runner import run_experiment

    folder = tmp_path / "feats"
    for name in ("memento10k", "videomem"):
        index = open_dataset(name, demo_root)
        report = extract_features(index, "clip-demo", sampling="uniform:4", progress=False)
        (folder / name).mkdir(parents=True)
        for split in ("train", "dev", "test"):
            feats = FeatureStore(report.cache_dir / split).load()
            for i, vid in enumerate(feats.ids):
                np.save(folder / name / f"{vid}.npy", np.asarray(feats[i], np.float32))
    cfg = load_config("configs/demo.yaml", ["train.epochs=2", "model.streams.0.encoder=precomputed",
                                            f"model.streams.0.weights={folder}"])
    run = run_experiment(1, "memento10k", "memento10k", cfg, demo_root, progress=False, echo=lambda *a: None)
    capsys.readouterr()
    assert main(["eval", run.run_id, "--test", "videomem", "--data-root", str(demo_root), "--quiet"]) == 0, \
        capsys.readouterr().err
