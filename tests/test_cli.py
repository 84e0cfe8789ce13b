"""The `mem` command in-process: help, data check on good and broken data, demo-data, clear errors."""

from __future__ import annotations

import subprocess
import sys

import pytest

from mediaeval_mem.cli import main


def test_help_is_light():
    """`mem --help` must not import torch, transformers or mlflow."""
    code = "import sys; from mediaeval_mem.cli import build_parser; build_parser().format_help(); " \
           "print(sorted(m for m in ('torch', 'transformers', 'mlflow', 'decord', 'av') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize("dataset", ["memento10k", "videomem"])
def test_check_reports_layout_and_no_problems(demo_root, capsys, dataset):
    assert main(["data", "check", dataset, "--data-root", str(demo_root)]) == 0
    out = capsys.readouterr().out
    assert "mediaeval layout" in out and "no problems found" in out


def test_check_names_a_deleted_video(demo_copy, capsys):
    video = demo_copy / "memento10k" / "dev_set" / "Videos" / "00013.mp4"
    video.unlink()
    assert main(["data", "check", "memento10k", "--data-root", str(demo_copy)]) == 1
    out = capsys.readouterr().out
    assert "1 problem(s)" in out and "Videos/00013.mp4: video file not found (listed in dev_scores.csv:3)" in out.replace("\n", "")


def test_check_names_a_non_numeric_score_row(demo_copy, capsys):
    csv = demo_copy / "videomem" / "train_set" / "train_scores.csv"
    lines = csv.read_text().splitlines()
    vid, raw, _ = lines[3].split(",")
    lines[3] = f"{vid},{raw},high"
    csv.write_text("\n".join(lines) + "\n")
    assert main(["data", "check", "videomem", "--data-root", str(demo_copy)]) == 1
    out = capsys.readouterr().out.replace("\n", "")
    assert "train_scores.csv:4: column 'scores_normalized_short_term': 'high' is not a number" in out


def test_errors_are_one_line(tmp_path, capsys):
    assert main(["data", "check", "memento10k", "--data-root", str(tmp_path / "none")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: data root") and err.count("\n") == 1
    assert main(["extract", "--dataset", "videomem", "--encoder", "clip-nope", "--data-root", str(tmp_path)]) == 2
    assert "unknown encoder 'clip-nope'; valid names:" in capsys.readouterr().err


def test_demo_data_is_deterministic(tmp_path):
    from mediaeval_mem.datasets.synthetic import generate_demo_data

    generate_demo_data(tmp_path / "a", seed=3, scale=0.05)
    assert main(["demo-data", "--data-root", str(tmp_path / "b"), "--seed", "3", "--scale", "0.05"]) == 0
    for rel in ("memento10k/train_set/train_scores.csv", "videomem/dev_set/dev_scores.csv", "videomem/test_set/test_video_urls.csv"):
        assert (tmp_path / "a" / rel).read_text() == (tmp_path / "b" / rel).read_text()
    assert not (tmp_path / "a" / "memento10k" / "test_set" / "test_scores.csv").exists()
    a = sorted(p.name for p in (tmp_path / "a" / "videomem" / "train_set" / "Videos").iterdir())
    assert a and all(n.endswith(".webm") for n in a)


def test_ui_serves_the_same_store_on_loopback(monkeypatch, tmp_path):
    from mediaeval_mem.tracking import tracking_uri, ui_command

    monkeypatch.setenv("MEM_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    cmd = ui_command(5123)
    assert cmd[cmd.index("--backend-store-uri") + 1] == tracking_uri() == f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}"
    assert cmd[cmd.index("--host") + 1] == "127.0.0.1" and cmd[cmd.index("--port") + 1] == "5123"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5005")
    assert tracking_uri() == "http://127.0.0.1:5005"  # a real server wins
