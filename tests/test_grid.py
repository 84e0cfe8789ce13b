"""mem grid (resume after an interruption, seeds, both layouts), mem results (bootstrap CI), mem report."""

from __future__ import annotations

import numpy as np
import pytest

from mediaeval_mem.cli import main
from mediaeval_mem.core.errors import ConfigError
from mediaeval_mem.experiments.grid import load_grid, load_profile, run_grid, table_rows

from conftest import REPO

FAST = ("train.epochs=2", "model.streams.*.sampling=uniform:8")


def _grid(tmp_path, text: str):
    (tmp_path / "grid.yaml").write_text(text)
    return load_grid(tmp_path / "grid.yaml")


@pytest.fixture
def small_grid(tmp_path):
    return _grid(tmp_path, f"""
title: small
configs:
  - {{config: {REPO}/configs/table1/01_clip-b32_linear-avg_linear.yaml, paper: [0.7009, 0.7000]}}
  - {REPO}/configs/table1/07_i3d-kinetics_linear.yaml
pairs: [{{task: 1, train: memento10k, test: memento10k}}]
seeds: [0, 1]
""")


def test_grid_runs_resumes_and_reports_mean_and_sd(small_grid, demo_root, runs_dir):
    profile = load_profile(REPO / "configs" / "profiles" / "demo.yaml", demo_root)
    started = []

    def interrupt_the_third(line: str) -> None:  # Ctrl-C as the third of four runs starts
        if line.endswith(": running"):
            started.append(line)
            if len(started) == 3:
                raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_grid(small_grid, demo_root, profile, FAST, progress=False, echo=interrupt_the_third)
    said = []
    rows = run_grid(small_grid, demo_root, profile, FAST, progress=False, echo=said.append)
    assert sum(line.endswith(": running") for line in said) == 2  # only the two runs missing after the interruption
    assert sum(": done before (run " in line for line in said) == 2
    assert [r.reused for r in rows] == [2, 0] and all(len(r.metrics) == 2 for r in rows)
    header, table = table_rows(small_grid, rows)
    assert header[:5] == ["encoder", "temporal aggregator", "predictor", "PLCC", "SROCC"]
    assert table[0][:3] == ["clip-demo", "linear-avg", "linear"] and table[1][:3] == ["i3d-kinetics", "none", "linear"]
    assert " ± " in table[0][4] and table[0][-1] == "0.7009 / 0.7000"
    mean = np.mean([m["srocc"] for m in rows[0].metrics])
    assert table[0][4].startswith(f"{mean:.4f}")


def test_table2_layout(tmp_path, demo_root, runs_dir):
    grid = _grid(tmp_path, f"""
title: t2
layout: table2
configs: [{REPO}/configs/demo.yaml]
pairs:
  - {{task: 2, train: memento10k, test: videomem}}
  - {{task: 0, train: videomem, test: videomem}}
""")
    rows = run_grid(grid, demo_root, None, FAST, progress=False, echo=lambda *a: None)
    header, table = table_rows(grid, rows)
    assert header == ["config", "training set", "videomem dev PLCC / SROCC"]
    assert [r[1] for r in table] == ["memento10k", "videomem"] and all(" / " in r[2] for r in table)


@pytest.mark.parametrize(
    "text,message",
    [
        ("configs: [nowhere.yaml]\npairs: [{task: 1, train: memento10k, test: memento10k}]", "config nowhere.yaml not found"),
        ("configs: []\npairs: []", "needs at least one entry"),
        ("config: [a]", "unknown key 'config'"),
        (f"configs: [{REPO}/configs/demo.yaml]\npairs: [{{task: 1}}]", "grid.yaml: pairs[0]: missing key 'test'"),
    ],
)
def test_bad_grid_files(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("{", r"\{")):
        _grid(tmp_path, text)


def test_shipped_grids_load():
    t1, t2 = load_grid(REPO / "configs" / "grids" / "table1.yaml"), load_grid(REPO / "configs" / "grids" / "table2.yaml")
    assert len(t1.entries) == 11 and all(e.paper for e in t1.entries) and t1.layout == "table1"
    assert {(p[1], p[2]) for p in t2.pairs} == {("memento10k", "memento10k"), ("memento10k", "videomem"),
                                                 ("videomem", "memento10k"), ("videomem", "videomem")}


def test_bootstrap_ci_matches_a_plain_loop():
    from scipy.stats import spearmanr

    from mediaeval_mem.training.bootstrap import bootstrap_srocc_ci

    rng = np.random.default_rng(3)
    y = rng.uniform(0.4, 1, 60).round(2)  # ties included
    p = y + rng.normal(0, 0.1, 60)
    lo, hi = bootstrap_srocc_ci(y, p, n_boot=300, seed=7)
    idx = np.random.default_rng(7).integers(0, 60, (300, 60))
    rhos = [spearmanr(y[i], p[i]).statistic for i in idx]
    assert (lo, hi) == pytest.approx(tuple(np.percentile(rhos, [2.5, 97.5])), abs=1e-9)
    assert lo < spearmanr(y, p).statistic < hi


def test_results_and_report_commands(tmp_path, demo_root, runs_dir, capsys):
    argv = ["run", "--task", "1", "--train", "memento10k", "--test", "memento10k", "--config", str(REPO / "configs" / "demo.yaml"),
            "--data-root", str(demo_root), "--quiet", "--set", "train.epochs=2"]
    assert main(argv) == 0 and main(argv + ["--set", "train.seed=1"]) == 0
    capsys.readouterr()
    assert main(["results", "--format", "csv"]) == 0
    import csv

    table = list(csv.DictReader(capsys.readouterr().out.splitlines()))
    assert len(table) == 2 and table[0]["experiment"] == "Task 1: train Memento10k, test Memento10k"
    assert float(table[0]["srocc_ci_low"]) <= float(table[0]["srocc"]) <= float(table[0]["srocc_ci_high"])
    run_ids = [r["run_id"] for r in table]
    assert main(["results", "--format", "markdown", "--sort", "config"]) == 0
    assert capsys.readouterr().out.startswith("| run id | kind | name | config | head | encoder | pair |")

    assert main(["report", *run_ids, "--out", str(tmp_path / "rep"), "--worst", "3"]) == 0
    import matplotlib.image as mpimg

    both = tmp_path / "rep" / f"scatter-{run_ids[0][:8]}-{run_ids[1][:8]}.png"
    scatter = mpimg.imread(both)
    worst = mpimg.imread(tmp_path / "rep" / f"worst-{run_ids[0][:8]}.png")
    assert scatter.shape[1] > scatter.shape[0] > 300  # two panels side by side
    assert worst.shape[0] > 200 and worst.std() > 0.05  # frames drawn, not blank
    before = both.read_bytes()
    assert main(["report", run_ids[1], "--out", str(tmp_path / "rep")]) == 0  # the next report keeps the first one's figure
    assert both.read_bytes() == before and (tmp_path / "rep" / f"scatter-{run_ids[1][:8]}.png").is_file()


def test_runs_log_their_figures(runs_dir, demo_root):
    from mediaeval_mem.config import load_config
    from mediaeval_mem.experiments.runner import run_experiment
    from mediaeval_mem.tracking import client

    cfg = load_config(REPO / "configs" / "demo.yaml", ["train.epochs=1"])
    r = run_experiment(2, "videomem", "memento10k", cfg, demo_root, progress=False, echo=lambda *a: None)
    files = {a.path for a in client().list_artifacts(r.run_id, "figures")}
    assert files == {"figures/scatter.png", "figures/worst.png"}


def test_grid_on_demo_data_uses_the_demo_profile(tmp_path, demo_root, runs_dir, capsys):
    (tmp_path / "g.yaml").write_text(f"configs: [{REPO}/configs/table1/02_clip-b32_bigru_linear.yaml]\n"
                                     "pairs: [{task: 1, train: memento10k, test: memento10k}]\n")
    assert main(["grid", str(tmp_path / "g.yaml"), "--data-root", str(demo_root), "--quiet", "--set", "train.epochs=1"]) == 0
    out = capsys.readouterr().out
    assert "holds generated demo data: using the stand-ins" in out and "clip-demo" in out
    from mediaeval_mem.tracking import search_runs

    (run,) = search_runs()  # named for what it is: the config under the profile's stand-in, not the paper's encoder
    assert run.info.run_name == ("02_clip-b32_bigru_linear memento10k->memento10k seed0 train.epochs=1 "
                                 "profile[clip-vit-b32->clip-demo]") and run.data.tags["encoder"] == "clip-demo"
    # without the profile the real CLIP is asked for, which this machine does not have: one clear failure
    assert main(["grid", str(tmp_path / "g.yaml"), "--data-root", str(demo_root), "--quiet", "--profile", "none"]) == 1
    out = capsys.readouterr().out.replace("\n", "")
    assert "failed: clip-vit-b32: cannot load 'openai/clip-vit-base-patch32'" in out and "1 run(s) failed" in out
