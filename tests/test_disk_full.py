"""Write errors for real: a full (small) filesystem and a file-size limit set on a real process.

Each ends in one line naming the path and the space, leaves every store consistent, and a second
call after freeing space completes.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mediaeval_mem.cli import main
from mediaeval_mem.datasets import open_dataset
from mediaeval_mem.features.store import FeatureStore

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def small_disk(tmp_path):
    """A 24 MB tmpfs mounted for the test (root only; skipped where mounting is not allowed)."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(mnt)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small filesystem here: {done.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def _fill(disk: Path, leave: int) -> Path:
    """A filler file that leaves about `leave` bytes free on `disk`."""
    st = os.statvfs(disk)
    size = st.f_bavail * st.f_frsize - leave
    filler = disk / "filler"
    with open(filler, "wb") as f:
        chunk = b"\0" * (1 << 20)
        while size > 0:
            f.write(chunk[: min(size, len(chunk))])
            size -= len(chunk)
    return filler


def _one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_extraction_on_a_full_disk_then_again_after_freeing(small_disk, demo_root, monkeypatch, capsys, tmp_path):
    # The reference, on a disk with room.
    monkeypatch.setenv("MEM_RUNS_DIR", str(tmp_path / "roomy"))
    extract = ["extract", "--dataset", "videomem", "--encoder", "clip-demo", "--data-root", str(demo_root), "--quiet"]
    assert main([*extract, "--splits", "train"]) == 0
    ref_folder = next((tmp_path / "roomy").glob("features/videomem/clip-demo/*/train"))
    ref = FeatureStore(ref_folder).load()

    monkeypatch.setenv("MEM_RUNS_DIR", str(small_disk / "runs"))
    assert main([*extract, "--splits", "dev"]) == 0  # the demo weights and one split fit
    capsys.readouterr()
    filler = _fill(small_disk, leave=150_000)  # room for about five videos of 27 KB
    assert main([*extract, "--splits", "train", "--flush-every", "2"]) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert "no space left on the disk holding" in line and str(small_disk) in line
    assert "free" in line and "needed for the" in line and "left in train" in line

    store = FeatureStore(next((small_disk / "runs").glob("features/videomem/clip-demo/*/train")))
    kept = store.load()  # consistent: what finished is there, whole
    assert 0 < len(kept) < len(ref) and set(kept.lengths.tolist()) == {210}
    assert not [p for p in store.folder.iterdir() if ".tmp-" in p.name]

    filler.unlink()
    assert main([*extract, "--splits", "train"]) == 0
    done = store.load(ref.ids)
    assert all(np.array_equal(done[i], ref[i]) for i in range(len(ref)))


def test_logging_on_a_full_disk_then_again_after_freeing(small_disk, demo_root, monkeypatch, capsys):
    """The features are there; the disk fills before the run's weights and figures are logged."""
    monkeypatch.setenv("MEM_RUNS_DIR", str(small_disk / "runs"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    run = ["run", "--task", "1", "--train", "memento10k", "--test", "memento10k", "--config",
           str(REPO / "configs" / "demo.yaml"), "--set", "train.epochs=2", "--data-root", str(demo_root), "--quiet"]
    assert main(["extract", "--dataset", "memento10k", "--encoder", "clip-demo", "--data-root", str(demo_root), "--quiet"]) == 0
    assert main(["results", "--no-ci"]) == 0  # creates the store while there is room
    capsys.readouterr()
    filler = _fill(small_disk, leave=40_000)
    assert main(run) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert "no space left on the disk holding" in line and str(small_disk) in line

    filler.unlink()
    assert main(run) == 0
    from mediaeval_mem.tracking import search_runs

    statuses = sorted(r.info.status for r in search_runs())
    assert "RUNNING" not in statuses and statuses.count("FINISHED") == 1


def test_file_size_limit_on_a_real_process(demo_root, tmp_path, monkeypatch):
    """RLIMIT_FSIZE set on a real `mem extract`: every segment write fails with EFBIG, on any machine."""
    from mediaeval_mem.encoders import build_encoder

    env = {**os.environ, "MEM_RUNS_DIR": str(tmp_path / "runs")}
    monkeypatch.setenv("MEM_RUNS_DIR", env["MEM_RUNS_DIR"])
    build_encoder("clip-demo")  # its weights written first (save_pretrained under runs/models), over the limit below
    cmd = [sys.executable, "-m", "mediaeval_mem", "extract", "--dataset", "videomem", "--encoder", "clip-demo",
           "--data-root", str(demo_root), "--quiet"]

    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (40_000, 40_000))  # a 2-video segment is 54 KB

    failed = subprocess.run([*cmd, "--splits", "train", "--flush-every", "2"], env=env, capture_output=True, text=True,
                            preexec_fn=limit)
    assert failed.returncode == 2
    line = _one_error_line(failed.stderr)
    assert "cannot write" in line and "seg-" in line and "File too large" in line

    again = subprocess.run([*cmd, "--splits", "train"], env=env, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    folder = next((tmp_path / "runs").glob("features/videomem/clip-demo/*/train"))
    assert len(FeatureStore(folder).load()) == len(open_dataset("videomem", demo_root).split("train"))
