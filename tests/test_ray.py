"""`mem grid --ray` and `mem cv --ray` on a local Ray with 2 CPUs: the same runs, keys and metrics as without Ray;
a failed task reported while the others go on; a cluster with a SQLite store refused in one line."""

from __future__ import annotations

import os
import sys
from functools import partial

import numpy as np
import pytest

from mediaeval_mem.core.errors import MemError
from mediaeval_mem.core.cluster import Failed, RayOptions, import_ray, run_tasks
from mediaeval_mem.experiments.executor import check_cluster

from conftest import REPO

FAST = ("train.epochs=2", "model.streams.*.sampling=uniform:4")


@pytest.fixture(scope="module")
def local_ray(tmp_path_factory):
    """A local Ray with 2 CPUs, and one runs/ for this module's tests: the features are extracted once, and
    every task has the same environment, so Ray reuses its worker processes from test to test."""
    ray = pytest.importorskip("ray")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MEM_RUNS_DIR", str(tmp_path_factory.mktemp("ray") / "runs"))
        ray.init(address="local", num_cpus=2, include_dashboard=False)
        yield RayOptions()  # "local": Ray is already initialised here, so the tasks go to it
        ray.shutdown()


def test_grid_on_ray_gives_the_sequential_metrics_and_resumes(local_ray, tmp_path, demo_root):
    from mediaeval_mem.experiments.grid import load_grid, load_profile, run_grid
    from mediaeval_mem.tracking import get_run

    (tmp_path / "grid.yaml").write_text(f"""
title: ray
configs:
  - {REPO}/configs/table1/01_clip-b32_linear-avg_linear.yaml
  - {REPO}/configs/table1/02_clip-b32_bigru_linear.yaml
pairs: [{{task: 1, train: memento10k, test: memento10k}}]
""")
    grid = load_grid(tmp_path / "grid.yaml")
    profile = load_profile(REPO / "configs" / "profiles" / "demo.yaml", demo_root)
    quiet = lambda *a: None  # noqa: E731
    alone = run_grid(grid, demo_root, profile, FAST, progress=False, echo=quiet)
    said = []
    on_ray = run_grid(grid, demo_root, profile, FAST, progress=False, echo=said.append, rerun=True, ray=local_ray)
    assert sum(line.endswith(": submitted to Ray") for line in said) == 2
    for a, r in zip(alone, on_ray):
        assert len(a.metrics) == len(r.metrics) == 1 and a.run_ids != r.run_ids
        for m in ("srocc", "plcc", "mse"):
            assert r.metrics[0][m] == pytest.approx(a.metrics[0][m], abs=1e-6)
        ray_run = get_run(r.run_ids[0])
        assert ray_run.data.tags["grid_key"] == get_run(a.run_ids[0]).data.tags["grid_key"]
        assert ray_run.info.status == "FINISHED" and os.environ["MEM_RUNS_DIR"] in ray_run.info.artifact_uri  # the test's runs/
    said.clear()
    again = run_grid(grid, demo_root, profile, FAST, progress=False, echo=said.append, ray=local_ray)
    assert sum(": done before (run " in line for line in said) == 2 and [r.reused for r in again] == [1, 1]


def test_cv_on_ray_gives_the_sequential_folds(local_ray, demo_root):
    from mediaeval_mem.config import load_config
    from mediaeval_mem.experiments.cv import run_cv
    from mediaeval_mem.tracking import get_run

    cfg = load_config("configs/demo.yaml", list(FAST))
    quiet = lambda *a: None  # noqa: E731
    alone = run_cv(cfg, "memento10k", folds=2, data_root=demo_root, progress=False, echo=quiet)
    on_ray = run_cv(cfg, "memento10k", folds=2, data_root=demo_root, progress=False, echo=quiet, rerun=True, ray=local_ray)
    assert [(f.seed, f.fold) for f in on_ray.folds] == [(f.seed, f.fold) for f in alone.folds] == [(0, 0), (0, 1)]
    for a, r in zip(alone.folds, on_ray.folds):
        assert not r.reused and r.run_id != a.run_id
        for m in ("srocc", "plcc", "mse"):
            assert r.metrics[m] == pytest.approx(a.metrics[m], abs=1e-6)
        tags = get_run(r.run_id).data.tags
        assert tags["mlflow.parentRunId"] == on_ray.parent_id and tags["cv_fold"] == f"0:{r.fold}"
        assert tags["cv_key"] == get_run(a.run_id).data.tags["cv_key"]
    assert on_ray.summary == pytest.approx(alone.summary, abs=1e-6) and on_ray.refit_epochs == alone.refit_epochs


def test_a_failed_task_is_reported_and_the_others_go_on(local_ray):
    from mediaeval_mem.experiments.cv import stratified_folds

    calls = [partial(int, "3"), partial(stratified_folds, np.zeros(6), 1, 0), partial(int, "x")]
    got = dict(run_tasks(local_ray, calls))
    assert got[0] == 3
    assert got[1] == Failed("--folds must be >= 2, got 1")  # a MemError: its message
    assert isinstance(got[2], Failed) and got[2].why.startswith("ValueError: invalid literal")


def test_a_cluster_with_a_sqlite_store_is_refused_in_one_line(demo_root, runs_dir, monkeypatch, capsys):
    pytest.importorskip("ray")
    from mediaeval_mem.cli import main

    for uri in (None, f"sqlite:///{runs_dir}/other.db"):
        if uri:
            monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
        with pytest.raises(MemError, match=r"is a SQLite file.*start a tracking server \(mlflow server "
                                           r"--backend-store-uri .* --host 0\.0\.0\.0.*MLFLOW_TRACKING_URI"):
            check_cluster(RayOptions("head:6379"))
    check_cluster(RayOptions())  # a local Ray: every process is on this machine, the SQLite store is fine
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://head:5000")
    check_cluster(RayOptions("head:6379"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    assert main(["cv", "configs/demo.yaml", "--train", "memento10k", "--data-root", str(demo_root),
                 "--ray", "head:6379", "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "start a tracking server" in err


def test_without_ray_installed_ray_says_how_to_get_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    with pytest.raises(MemError, match=r"--ray needs Ray, an optional extra: pip install -e '\.\[ray\]'"):
        import_ray()
