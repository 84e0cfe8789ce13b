"""bench/season.py end to end at a tiny scale (so the bench cannot rot), and the plan's arithmetic (bench/season_plan.py)."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest
from conftest import REPO

sys.path.insert(0, str(REPO / "bench"))
from season_plan import REAL_VIDEOS, exponents, fit, plan  # noqa: E402


def test_bench_season_runs_every_stage_and_packages_valid_run_files(tmp_path):
    """Every stage ran (a `mem` child each), and the 5 packaged run files pass the packager's own validation,
    re-read here from the files against the test split."""
    from mediaeval_mem.datasets import open_dataset
    from mediaeval_mem.submission import read_predictions, validate_predictions
    from season import STAGES

    work = tmp_path / "w"
    cmd = [sys.executable, str(REPO / "bench" / "season.py"), "--scale", "0.004", "--folds", "2", "--seeds", "1",
           "--epochs", "1", "--workdir", str(work)]
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, timeout=900)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    figures = json.loads(out.stdout.strip().splitlines()[-1])
    assert "failed" not in figures and list(figures["stages"]) == list(STAGES)
    for name, f in figures["stages"].items():
        assert f["wall_s"] > 0 and f["cpu_s"] > 0 and f["peak_rss_mb"] > 0, name
    assert figures["videos"]["memento10k"] == {"train": 28, "dev": 6, "test": 6}  # 7000, 1500, 1500 x 0.004
    assert figures["videos"]["videomem"] == {"train": 28, "dev": 6, "test": 6}
    assert figures["epochs_trained"] == 1 and figures["refit_epochs"] == 1  # one epoch each: its median is 1
    assert figures["packaged_runs"] == 5 and len(set(figures["run_ids"].values())) == 5
    season = work / figures["workdir"].rsplit("/", 1)[1]
    manifest = json.loads((season / "submissions" / "season-subtask1-manifest.json").read_text())
    assert [r["run_id"] for r in manifest["runs"]] == [figures["run_ids"][k] for k in
                                                        ("ensemble", "refit", "cv-fused", "cv-video", "ridge")]
    ids = [it.video_id for it in open_dataset("memento10k", figures["data"]).split("test")]
    for r in manifest["runs"]:
        preds = read_predictions((season / "submissions" / r["file"]).read_text(), r["file"], tuple(manifest["columns"][1:]))
        assert validate_predictions(preds, ids) == [] and len(preds) == 6
    assert json.loads((work / f"{season.name}.json").read_text())["run_ids"] == figures["run_ids"]

    # the same data are reused by the next call at this scale (only the stages asked for run)
    again = subprocess.run([*cmd, "--stages", "generate"], capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert again.returncode == 0, again.stderr[-2000:]
    second = json.loads(again.stdout.strip().splitlines()[-1])
    assert second["stages"] == {"generate": {"wall_s": 0.0, "cpu_s": 0.0, "peak_rss_mb": 0.0, "cached": True}}
    assert second["videos"] == figures["videos"] and second["data"] == figures["data"]


def _season(scale: float, times: dict[str, float], epochs: int = 2, seeds: int = 1, refit_epochs: int = 1) -> dict:
    n = round(10_000 * scale)
    return {"scale": scale, "seeds": seeds, "epochs_trained": epochs, "refit_epochs": refit_epochs,
            "videos": {"memento10k": {"train": n * 7 // 10, "dev": n * 15 // 100, "test": n * 15 // 100}},
            "stages": {k: {"wall_s": t, "cpu_s": t} for k, t in times.items()}}


def test_plan_fits_each_stage_and_scales_training_to_the_planned_epochs_and_seeds():
    def linear(n):  # stage -> seconds at n videos: fixed + per video
        return {"generate": 1 + 0.1 * n, "data-check": 3 + 0.002 * n, "cv-video": 20 + 0.5 * n, "refit": 5 + 0.25 * n}

    seasons = [_season(s, linear(round(10_000 * s))) for s in (0.01, 0.02)]
    p = plan(seasons, epochs=20, seeds=3)
    assert "generate" not in p["stages"]  # a real season's data exist
    assert p["stages"]["data-check"]["planned_s"] == pytest.approx(3 + 0.002 * REAL_VIDEOS, rel=1e-3)
    # cv: its per-video part x 20/2 epochs x 3/1 seeds, its fixed part (per-fold set-up) x 3 seeds
    assert p["stages"]["cv-video"]["planned_s"] == pytest.approx(3 * 20 + 0.5 * REAL_VIDEOS * 10 * 3, rel=1e-3)
    assert p["stages"]["refit"]["planned_s"] == pytest.approx(5 + 0.25 * REAL_VIDEOS * 20, rel=1e-3)  # trained 1
    assert p["total_s"] == pytest.approx(sum(s["planned_s"] for s in p["stages"].values()), abs=0.5)
    assert sum(s["share"] for s in p["stages"].values()) == pytest.approx(1, abs=1e-3)
    with pytest.raises(ValueError, match="two or more scales"):
        plan(seasons[:1], 20, 3)
    with pytest.raises(ValueError, match="different protocols"):
        plan([seasons[0], _season(0.05, linear(500), epochs=1)], 20, 3)


def test_exponents_are_log_log_slopes_between_consecutive_scales():
    seasons = [_season(s, {"linear": 100 * s, "square": 1e4 * s * s}) for s in (0.2, 0.05, 1.0)]  # any order
    got = exponents(seasons)
    assert got["linear"] == [pytest.approx(1.0, abs=0.01)] * 2
    assert got["square"] == [pytest.approx(2.0, abs=0.01)] * 2
    a, b = fit([(100, 3.0), (300, 7.0), (200, 5.0)])
    assert math.isclose(a, 1.0) and math.isclose(b, 0.02)
