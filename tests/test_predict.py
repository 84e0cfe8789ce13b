"""`mem predict`: a trained run scores a plain folder of videos exactly as it scored its own test split."""

from __future__ import annotations

import csv
import io
import shutil

import pytest

from mediaeval_mem.cli import main


@pytest.fixture
def trained(demo_root, runs_dir):
    """A video-only run on the tiny demo data: its id."""
    from mediaeval_mem.config import load_config
    from mediaeval_mem.experiments.runner import run_experiment

    cfg = load_config("configs/demo.yaml", ["train.epochs=2", "model.streams.0.sampling=uniform:4"])
    return run_experiment(1, "memento10k", "memento10k", cfg, demo_root, progress=False, echo=lambda *a: None).run_id


def test_predict_gives_the_runs_own_test_scores(trained, demo_root, tmp_path, capsys):
    """The test videos copied into a folder of their own (no layout, no scores), plus a damaged file:
    the same scores as the run's test_predictions.csv, each row naming the run; the damaged file is
    reported and the exit status says so."""
    from mediaeval_mem.tracking import read_artifact_text

    folder = tmp_path / "my videos"
    shutil.copytree(demo_root / "memento10k" / "test_set" / "Videos", folder / "holiday")
    (folder / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 this is not a video" * 10)
    out = tmp_path / "scores.csv"
    assert main(["predict", trained, str(folder), "--out", str(out), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "failed broken" in err and f"by run {trained}" in err

    rows = list(csv.DictReader(out.open()))
    assert all(r["video_id"].startswith("holiday/") for r in rows)  # ids: paths relative to the folder given
    ours = {int(r["video_id"].split("/")[1]): r for r in rows}
    theirs = {int(r["video_id"]): float(r["prediction"])
              for r in csv.DictReader(io.StringIO(read_artifact_text(trained, "test_predictions.csv")))}
    assert set(ours) == set(theirs) and len(ours) >= 2
    for vid, row in ours.items():
        assert float(row["score"]) == pytest.approx(theirs[vid], abs=2e-6)
        assert row["run_id"] == trained and row["path"].endswith(f"{vid:05d}.mp4")

    one = next(iter((folder / "holiday").glob("*.mp4")))
    assert main(["predict", trained, str(one), "--quiet"]) == 0  # a single file; CSV on standard output
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [r["video_id"] for r in rows] == [one.stem]


def test_predict_refuses_clearly(trained, tmp_path, capsys):
    assert main(["predict", "0" * 32, str(tmp_path), "--quiet"]) == 2
    assert "no MLflow run '00000000000000000000000000000000'" in capsys.readouterr().err
    assert main(["predict", trained, str(tmp_path / "nowhere"), "--quiet"]) == 2
    assert "nowhere: no such file or folder" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["predict", trained, str(tmp_path / "empty"), "--quiet"]) == 2
    assert "no video files" in capsys.readouterr().err


def test_a_file_is_never_scored_from_another_files_cache(trained, demo_root, tmp_path, capsys):
    """Same-named files in different folders, scored alone and together: each keeps its own score."""
    videos = sorted((demo_root / "memento10k" / "test_set" / "Videos").glob("*.mp4"))[:2]
    for name, src in zip("ab", videos):
        (tmp_path / name).mkdir()
        shutil.copy(src, tmp_path / name / "holiday.mp4")

    def scores(*paths):
        assert main(["predict", trained, *map(str, paths), "--quiet"]) == 0
        return {r["video_id"]: float(r["score"]) for r in csv.DictReader(io.StringIO(capsys.readouterr().out))}

    alone = scores(tmp_path / "b" / "holiday.mp4")
    both = scores(tmp_path / "a" / "holiday.mp4", tmp_path / "b" / "holiday.mp4")
    assert set(both) == {"a/holiday", "b/holiday"} and both["b/holiday"] == alone["holiday"]
    assert both["a/holiday"] != both["b/holiday"]
