"""Feature extraction: cache hits, resume after interruption (Ctrl-C and kill -9), broken videos."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from mediaeval_mem.cli import main
from mediaeval_mem.datasets import open_dataset
from mediaeval_mem.features.extract import ExtractOptions, extract_features
from mediaeval_mem.features.store import FeatureStore

OPTS = ExtractOptions(batch_size=32, flush_every=2)


def _store_files(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir() if p.name != ".lock"}


def test_extract_then_cache_hit(demo_root, runs_dir):
    first = extract_features("memento10k", "clip-demo", ("train", "dev"), data_root=demo_root, opts=OPTS, progress=False)
    index = open_dataset("memento10k", demo_root)
    train = first.splits[0]
    assert train.extracted == len(index.split("train")) and train.cached == 0 and not train.failed
    feats = FeatureStore(first.cache_dir / "train").load([it.video_id for it in index.split("train")])
    assert feats.dim == 64 and set(feats.lengths.tolist()) == {90}  # 3 s at 30 fps, every frame
    assert np.allclose(np.linalg.norm(feats[0].astype(np.float32), axis=1), 1, atol=2e-3)
    assert len(FeatureStore(first.cache_dir / "train").manifest()["segments"]) == 1  # consolidated
    assert json.loads((first.cache_dir / "key.json").read_text())["encoder"] == "clip-demo"

    second = extract_features("memento10k", "clip-demo", ("train", "dev"), data_root=demo_root, opts=OPTS, progress=False)
    assert second.cache_dir == first.cache_dir
    assert [(s.extracted, s.cached, s.frames) for s in second.splits] == [(0, s.total, 0) for s in first.splits]


def test_key_changes_with_sampling(demo_root, runs_dir):
    a = extract_features("videomem", "clip-demo", ("dev",), data_root=demo_root, opts=OPTS, progress=False)
    b = extract_features(
        "videomem", "clip-demo", ("dev",), data_root=demo_root, progress=False,
        sampling="uniform:8", opts=ExtractOptions(batch_size=16),
    )
    assert a.cache_dir != b.cache_dir
    assert set(FeatureStore(b.cache_dir / "dev").load().lengths.tolist()) == {8}
    assert set(FeatureStore(a.cache_dir / "dev").load().lengths.tolist()) == {210}  # 7 s VP9


def test_interrupt_keeps_finished_videos_and_resumes(demo_root, runs_dir, monkeypatch):
    """A real SIGINT (Ctrl-C) in the middle: finished videos are kept, nothing partial; the rerun does only the rest."""
    import threading

    reference = extract_features("memento10k", "clip-demo", ("train",), data_root=demo_root, opts=OPTS, progress=False)
    ref = FeatureStore(reference.cache_dir / "train").load()
    monkeypatch.setenv("MEM_RUNS_DIR", str(runs_dir.parent / "runs2"))
    manifest = runs_dir.parent / "runs2" / reference.cache_dir.relative_to(runs_dir) / "train" / "manifest.json"
    stop = threading.Event()

    def press_ctrl_c_after_two_segments():
        while not stop.is_set():
            try:
                if len(json.loads(manifest.read_text())["segments"]) >= 2:
                    os.kill(os.getpid(), signal.SIGINT)
                    return
            except (OSError, ValueError):
                pass
            time.sleep(0.002)

    watcher = threading.Thread(target=press_ctrl_c_after_two_segments, daemon=True)
    # Ctrl-C's handler, whatever this process inherited: a background job (`cmd &`, nohup) starts with SIGINT ignored
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    watcher.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            extract_features("memento10k", "clip-demo", ("train",), data_root=demo_root, opts=OPTS, progress=False)
    finally:
        stop.set()
        watcher.join()
        signal.signal(signal.SIGINT, previous)
    store = FeatureStore(runs_dir.parent / "runs2" / reference.cache_dir.relative_to(runs_dir) / "train")
    part = store.load()
    assert 0 < len(part) < len(ref) and len(set(part.ids)) == len(part.ids)
    assert set(part.lengths.tolist()) == {90}  # complete videos only

    again = extract_features("memento10k", "clip-demo", ("train",), data_root=demo_root, opts=OPTS, progress=False)
    assert again.splits[0].cached == len(part) and again.splits[0].extracted == len(ref) - len(part)
    full = store.load(ref.ids)
    assert sorted(store.load().ids) == sorted(ref.ids)
    for i in range(len(ref)):
        assert np.array_equal(full[i], ref[i])


def test_orphans_from_a_killed_writer_are_ignored_and_removed(tmp_path):
    store = FeatureStore(tmp_path / "train")
    with store.writing():
        store.append([("a", np.ones((3, 4), np.float32))])
    # What kill -9 can leave: a segment written but never listed, and a temporary file.
    np.save(tmp_path / "train" / "seg-deadbeef0000.npy", np.zeros((5, 4), np.float16))
    (tmp_path / "train" / "manifest.json.tmp-999").write_text("{half")
    assert store.done_ids() == {"a"}
    with store.writing():
        pass
    assert _store_files(tmp_path / "train") == {"manifest.json", store.manifest()["segments"][0]["file"]}


def test_kill_9_mid_extraction_then_resume(demo_root, runs_dir):
    """A real `mem extract` process killed with SIGKILL while writing; the rerun completes the split."""
    cmd = [sys.executable, "-m", "mediaeval_mem", "extract", "--dataset", "videomem", "--encoder", "clip-demo",
           "--splits", "train", "--data-root", str(demo_root), "--batch-size", "16", "--flush-every", "1", "--quiet"]
    env = {**os.environ, "MEM_RUNS_DIR": str(runs_dir)}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    manifests = []
    while time.time() < deadline and proc.poll() is None:
        manifests = list(runs_dir.glob("features/videomem/clip-demo/*/train/manifest.json"))
        if manifests and len(json.loads(manifests[0].read_text())["segments"]) >= 2:
            break
        time.sleep(0.01)
    killed = proc.poll() is None
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert killed, "extraction finished before it could be killed"
    store = FeatureStore(manifests[0].parent)
    kept = store.load()
    assert 2 <= len(kept) < 8 and set(kept.lengths.tolist()) == {210}

    assert main(cmd[3:]) == 0
    total = len(open_dataset("videomem", demo_root).split("train"))
    done = store.load()
    assert len(done) == total and len(set(done.ids)) == total
    assert _store_files(store.folder) == {"manifest.json", store.manifest()["segments"][0]["file"]}


def test_broken_video_among_good_ones(demo_copy, runs_dir, capsys):
    dev = demo_copy / "memento10k" / "dev_set" / "Videos"
    victim = sorted(dev.iterdir())[1]
    victim.write_bytes(b"\x1a\x45\xdf\xa3 this is not a video" * 50)
    code = main(["extract", "--dataset", "memento10k", "--encoder", "clip-demo", "--splits", "dev",
                 "--data-root", str(demo_copy), "--quiet"])
    out = capsys.readouterr().out
    assert code == 1
    assert f"failed dev/{int(victim.stem)}" in out and victim.name in out and "cannot decode" in out
    report = extract_features("memento10k", "clip-demo", ("dev",), data_root=demo_copy, opts=OPTS, progress=False)
    dev_split = report.splits[0]
    assert dev_split.cached == dev_split.total - 1 and list(dev_split.failed) == [str(int(victim.stem))]
