"""A damaged feature cache: reported in one line, never read back as features, re-extracted by the next call."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from mediaeval_mem.cli import main
from mediaeval_mem.core.errors import DamagedError
from mediaeval_mem.features.extract import ExtractOptions, extract_features
from mediaeval_mem.features.store import FeatureStore

OPTS = ExtractOptions(batch_size=32, flush_every=4)
EXTRACT = ["extract", "--dataset", "videomem", "--encoder", "clip-demo", "--splits", "dev", "--quiet"]


def _extract(root):
    """(store, features read into memory: the test damages the files they were mapped from)."""
    report = extract_features("videomem", "clip-demo", ("dev",), data_root=root, opts=OPTS, progress=False)
    store = FeatureStore(report.cache_dir / "dev")
    feats = store.load()
    feats.frames = np.array(feats.frames)
    return store, feats


def _truncate(path, keep: float = 0.6) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def _flip_a_byte(path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x40
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", [_truncate, _flip_a_byte], ids=["truncated", "same-size-other-bytes"])
def test_damaged_segment_is_refused_then_re_extracted(demo_root, runs_dir, capsys, damage):
    store, reference = _extract(demo_root)
    segment = store.folder / store.manifest()["segments"][0]["file"]
    damage(segment)

    with pytest.raises(DamagedError) as err:  # never read back as features
        store.load()
    message = str(err.value)
    assert str(store.folder) in message and segment.name in message and "mem extract --dataset videomem" in message
    assert "\n" not in message
    assert store.done_ids() == set()  # the damaged segment's videos no longer count as cached

    assert main(["cache", "check"]) == 1
    out = capsys.readouterr().out.replace("\n", "")
    assert "DAMAGED" in out and segment.name in out and "1 damaged split folder(s)" in out

    assert main([*EXTRACT, "--data-root", str(demo_root)]) == 0
    out = capsys.readouterr().out.replace("\n", "")
    assert "repaired damaged feature cache" in out and segment.name in out
    again = store.load(reference.ids)
    assert all(np.array_equal(again[i], reference[i]) for i in range(len(reference)))
    assert not segment.exists()
    assert main(["cache", "check"]) == 0


def test_damage_in_one_of_several_segments_redoes_only_its_videos(demo_root, runs_dir):
    """Before consolidation (an interrupted extraction), one bad segment costs only its own videos."""
    index_opts = ExtractOptions(batch_size=32, flush_every=2)
    store, reference = _extract(demo_root)
    # Rebuild the split as several segments, as an interrupted extraction leaves it.
    for f in store.folder.glob("seg-*.npy"):
        f.unlink()
    (store.folder / "manifest.json").unlink()
    with store.writing():
        for i in range(0, len(reference), 2):
            store.append([(reference.ids[j], np.asarray(reference[j])) for j in range(i, min(i + 2, len(reference)))])
    segments = store.manifest()["segments"]
    victim = segments[1]
    _truncate(store.folder / victim["file"], keep=0.3)
    assert store.done_ids() == set(reference.ids) - set(victim["ids"])
    report = extract_features("videomem", "clip-demo", ("dev",), data_root=demo_root, opts=index_opts, progress=False)
    assert report.splits[0].extracted == len(victim["ids"]) and report.splits[0].cached == len(reference) - len(victim["ids"])
    assert list(report.splits[0].repaired) == [victim["file"]]
    again = store.load(reference.ids)
    assert all(np.array_equal(again[i], reference[i]) for i in range(len(reference)))


def test_unreadable_manifest_is_one_line_then_rebuilt(demo_root, runs_dir, capsys):
    store, reference = _extract(demo_root)
    (store.folder / "manifest.json").write_text('{"segments": [{"file": "seg-')  # torn by a crash or a bad disk
    with pytest.raises(DamagedError, match="manifest.json is unreadable"):
        store.load()
    assert main(["cache", "check"]) == 1
    capsys.readouterr()
    assert main([*EXTRACT, "--data-root", str(demo_root)]) == 0
    assert sorted(store.load().ids) == sorted(reference.ids)


def test_mem_run_repairs_a_damaged_cache_by_itself(demo_root, runs_dir, capsys):
    from mediaeval_mem.config import load_config
    from mediaeval_mem.experiments.runner import run_experiment

    cfg = load_config("configs/demo.yaml", ["train.epochs=1"])
    first = run_experiment(1, "memento10k", "memento10k", cfg, demo_root, progress=False, echo=lambda s: None)
    segment = next(runs_dir.glob("features/memento10k/clip-demo/*/train/seg-*.npy"))
    _truncate(segment)
    lines = []
    second = run_experiment(1, "memento10k", "memento10k", cfg, demo_root, progress=False, echo=lines.append)
    assert any("repaired damaged feature cache" in line and segment.name in line for line in lines)
    assert second.metrics == first.metrics  # the same features again, so the same numbers


# A writer that keeps adding two segments and merging them, as the end of every extraction does, for `seconds`.
MERGER = """
import sys, time
import numpy as np
from mediaeval_mem.features.store import FeatureStore
store, end, i = FeatureStore(sys.argv[1]), time.monotonic() + float(sys.argv[2]), 0
while time.monotonic() < end or i == 0:
    with store.writing():
        store.append([(f"a{i}", np.full((3, 8), i, np.float32))])
        store.append([(f"b{i}", np.full((2, 8), i, np.float32))])
        assert store.consolidate()
    i += 1
print(i)
"""


def _split_folder(runs_dir):
    folder = runs_dir / "features" / "memento10k" / "clip-demo" / "0123456789ab" / "train"
    store = FeatureStore(folder)
    folder.mkdir(parents=True)
    with store.writing():
        store.append([("first", np.ones((4, 8), np.float32))])
        store.append([("second", np.ones((5, 8), np.float32))])
    return store


def _merge(folder, seconds: float = 0.0) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", MERGER, str(folder), str(seconds)], stdout=subprocess.PIPE, text=True)


def test_cache_check_reads_the_manifest_again_when_a_merge_removed_a_segment(runs_dir, monkeypatch, capsys):
    """The interleaving itself: the check has read the manifest (two segments) when another process merges
    them (new manifest, old files deleted), before it looks at the files: they are gone. That is a merge,
    not damage."""
    store = _split_folder(runs_dir)
    look = FeatureStore._check_segment
    merged = []

    def a_merge_first(self, seg, dim):
        if not merged:
            merged.append(_merge(self.folder).wait())  # a real writer process, run to its end
        return look(self, seg, dim)

    monkeypatch.setattr(FeatureStore, "_check_segment", a_merge_first)
    assert main(["cache", "check"]) == 0, capsys.readouterr().out
    assert merged == [0] and len(store.manifest()["segments"]) == 1  # the merge did happen under the check
    out = capsys.readouterr().out
    assert "every cached feature file matches its manifest" in out and "DAMAGED" not in out


def test_cache_check_during_a_writer_merging_in_a_loop_reports_no_damage(runs_dir, capsys):
    store = _split_folder(runs_dir)
    writer, checks = _merge(store.folder, seconds=3.0), 0
    try:
        while writer.poll() is None:
            assert main(["cache", "check"]) == 0, capsys.readouterr().out
            checks += 1
    finally:
        writer.wait(timeout=60)
    # a loaded machine may allow few rounds in 3 s: what matters is that checks ran while merges did
    assert writer.returncode == 0 and checks >= 1 and int(writer.stdout.read()) >= 2
    assert main(["cache", "check"]) == 0
