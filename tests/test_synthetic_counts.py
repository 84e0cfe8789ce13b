"""datasets/synthetic.py with other counts (bench/season.py's real sizes times S) and clips rendered in processes."""

from __future__ import annotations

import json

from mediaeval_mem.datasets.synthetic import DEMO_MARKER, generate_demo_data


def _files(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_counts_and_workers_give_the_same_files_as_one_process(tmp_path):
    counts = {"memento10k": (3, 2, 2), "videomem": (2, 2, 3)}
    one = generate_demo_data(tmp_path / "one", counts=counts)
    two = generate_demo_data(tmp_path / "two", counts=counts, workers=2)
    assert one == two == {"memento10k": {"train": 3, "dev": 2, "test": 2}, "videomem": {"train": 2, "dev": 2, "test": 3}}
    a, b = _files(tmp_path / "one"), _files(tmp_path / "two")
    assert a.keys() == b.keys() and len([k for k in a if "/Videos/" in k]) == 14
    # every clip has its own seeded draws: the process that renders it changes nothing. The VP9 clips are left out:
    # libvpx's realtime mode gives other bytes from one call to the next even in one process.
    assert {k: v for k, v in a.items() if not k.endswith(".webm")} == {k: v for k, v in b.items() if not k.endswith(".webm")}
    assert json.loads((tmp_path / "one" / DEMO_MARKER).read_text())["counts"]["videomem"] == [2, 2, 3]


def test_without_counts_the_demo_marker_is_as_before(tmp_path):
    generate_demo_data(tmp_path, scale=0.01)
    assert set(json.loads((tmp_path / DEMO_MARKER).read_text())) == {"made_by", "seed", "scale", "noise"}
