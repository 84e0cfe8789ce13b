"""`mem cv` and `mem run --refit`: folds disjoint, stratified and seeded; no fold's model sees its own fold;
parent and child runs in MLflow; resumable; a refit trains the chosen epochs on every labelled video and packages."""

from __future__ import annotations

import csv
import io

import numpy as np
import pytest

from mediaeval_mem.core.errors import ConfigError, MemError
from mediaeval_mem.experiments.cv import stratified_folds


def test_folds_are_disjoint_stratified_and_seeded():
    scores = np.random.default_rng(0).beta(4, 2, size=103)
    folds = stratified_folds(scores, 5, seed=7)
    assert set(folds) == set(range(5))  # every video in exactly one fold
    sizes = np.bincount(folds)
    assert sizes.max() - sizes.min() <= 1
    order = np.argsort(scores, kind="stable")
    for start in range(0, 100, 5):  # each block of 5 neighbours in score is spread over the 5 folds
        assert sorted(folds[order[start : start + 5]]) == [0, 1, 2, 3, 4]
    means = [scores[folds == k].mean() for k in range(5)]
    assert max(means) - min(means) < 0.03  # stratified: every fold spans the whole score range
    np.testing.assert_array_equal(folds, stratified_folds(scores, 5, seed=7))
    assert (folds != stratified_folds(scores, 5, seed=8)).any()
    with pytest.raises(ConfigError, match="--folds must be >= 2"):
        stratified_folds(scores, 1, 0)
    with pytest.raises(MemError, match="too few for 5 folds"):
        stratified_folds(scores[:9], 5, 0)


@pytest.fixture(scope="module")
def cv_done(demo_root, empty_store, tmp_path_factory):
    """A 3-fold cross-validation on the tiny demo data in a runs/ folder of its own, recording what every fold's
    model was fit and selected on. Made once for the tests below: each reads the runs it names by id."""
    from conftest import fresh_runs
    from mediaeval_mem.config import load_config
    from mediaeval_mem.experiments import runner
    from mediaeval_mem.experiments.cv import run_cv

    seen = []
    real_fit = runner.fit

    def recording_fit(cfg, splits, device, on_epoch=None):
        seen.append((set(splits.fit.ids), set(splits.select.ids) if splits.select else set(), set(splits.dev.ids)))
        return real_fit(cfg, splits, device, on_epoch)

    runs = fresh_runs(tmp_path_factory.mktemp("cv") / "runs", empty_store)
    with pytest.MonkeyPatch.context() as mp:  # the cross-validation's fits only
        mp.setenv("MEM_RUNS_DIR", str(runs))
        mp.setattr(runner, "fit", recording_fit)
        cfg = load_config("configs/demo.yaml", ["train.epochs=2", "model.streams.0.sampling=uniform:4"])
        result = run_cv(cfg, "memento10k", folds=3, data_root=demo_root, progress=False, echo=lambda *a: None)
    return runs, (cfg, result, seen)


@pytest.fixture
def cv_run(cv_done, monkeypatch):
    """The cross-validation above, its runs/ folder in use for the test."""
    runs, done = cv_done
    monkeypatch.setenv("MEM_RUNS_DIR", str(runs))
    return done


def test_no_fold_sees_its_own_fold_and_the_runs_nest(cv_run, demo_root):
    from mediaeval_mem.datasets import open_dataset
    from mediaeval_mem.tracking import get_run, read_artifact_text

    cfg, result, seen = cv_run
    labelled = {it.video_id for it in open_dataset("memento10k", demo_root).split("train")}
    assert len(seen) == 3
    for fit_ids, select_ids, own in seen:
        assert not (fit_ids | select_ids) & own  # the fold's videos are never trained or selected on
        assert not fit_ids & select_ids and fit_ids | select_ids | own == labelled
    assert set().union(*(own for *_, own in seen)) == labelled and sum(len(o) for *_, o in seen) == len(labelled)

    parent = get_run(result.parent_id)
    assert parent.data.tags["kind"] == "cv" and parent.data.tags["refit_epochs"] == str(result.refit_epochs)
    for f in result.folds:
        assert get_run(f.run_id).data.tags["mlflow.parentRunId"] == result.parent_id
    oof = list(csv.DictReader(io.StringIO(read_artifact_text(result.parent_id, "oof_predictions.csv"))))
    assert {r["video_id"] for r in oof} == labelled
    for m in ("srocc", "plcc", "mse"):
        s = result.summary
        assert s[f"oof_{m}_ci_low"] <= s[f"oof_{m}"] <= s[f"oof_{m}_ci_high"]
        assert parent.data.metrics[f"cv_{m}_mean"] == pytest.approx(np.mean([f.metrics[m] for f in result.folds]))


def test_cv_resumes_and_a_refit_packages(cv_run, demo_root, capsys):
    from mediaeval_mem.cli import main
    from mediaeval_mem.datasets import open_dataset
    from mediaeval_mem.experiments.cv import run_cv
    from mediaeval_mem.tracking import client, get_run

    cfg, first, _ = cv_run
    again = run_cv(cfg, "memento10k", folds=3, data_root=demo_root, progress=False, echo=lambda *a: None)
    assert all(f.reused for f in again.folds) and [f.run_id for f in again.folds] == [f.run_id for f in first.folds]
    assert again.summary == first.summary  # read back from fold_predictions.json: the predictions the first run summarised

    assert main(["run", "--train", "memento10k", "--test", "memento10k", "--config", "configs/demo.yaml",
                 "--set", "model.streams.0.sampling=uniform:4", "--data-root", str(demo_root),
                 "--refit", again.parent_id, "--quiet"]) == 0
    refit = capsys.readouterr().out.split(", run ")[1].split(";")[0]
    run = get_run(refit)
    assert run.data.tags["kind"] == "refit" and run.data.tags["refit_of"] == again.parent_id
    losses = client().get_metric_history(refit, "train_loss")
    assert len(losses) == again.refit_epochs  # every chosen epoch, no early stopping
    assert "dev_srocc" not in run.data.metrics and "refit_dev_srocc" in run.data.metrics  # dev was trained on
    index = open_dataset("memento10k", demo_root)
    assert int(run.data.params["derived.n_train"]) == len(index.split("train")) + len(index.split("dev"))
    assert main(["package-submission", "--team", "t", "--subtask", "1", refit, "--data-root", str(demo_root)]) == 0


def test_two_mem_cv_at_once_train_each_fold_once_and_agree(demo_root, runs_dir):
    """Two real `mem cv` of one key started together (after a trainer of fold 1 was killed holding its lock):
    every fold is trained once, by one of them; the other waits for it and reuses its run; both report the
    same figures."""
    import os
    import re
    import subprocess
    import sys
    from pathlib import Path

    from mediaeval_mem.config import load_config
    from mediaeval_mem.experiments.cv import fold_lock, open_cv
    from mediaeval_mem.tracking import search_runs

    repo = Path(__file__).resolve().parents[1]
    sets = ["train.epochs=1", "model.streams.0.sampling=uniform:4"]
    key = open_cv(load_config(repo / "configs" / "demo.yaml", sets), "memento10k", folds=2, data_root=demo_root,
                  progress=False, echo=lambda *a: None).key  # (the features, extracted once here)
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time\nfrom mediaeval_mem.core.io import file_lock\n"
                               "with file_lock(sys.argv[1]):\n    print('held', flush=True)\n    time.sleep(600)",
                               str(fold_lock(key, 0, 0))], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline() == "held\n"
    holder.kill()  # SIGKILL: the lock file stays, its lock goes with the process
    holder.wait()

    env = {**os.environ, "MEM_RUNS_DIR": str(runs_dir), "COLUMNS": "200"}
    env.pop("MLFLOW_TRACKING_URI", None)
    cmd = [sys.executable, "-m", "mediaeval_mem", "cv", str(repo / "configs" / "demo.yaml"), "--train", "memento10k",
           "--folds", "2", "--data-root", str(demo_root), "--quiet", *(a for s in sets for a in ("--set", s))]
    procs = [subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err[-2000:] for _, err in outs]

    folds = search_runs(filter_string=f"tags.cv_key = '{key}' and tags.kind = 'cv-fold'")
    assert sorted(r.data.tags["cv_fold"] for r in folds) == ["0:0", "0:1"]  # each trained once
    assert {r.info.status for r in folds} == {"FINISHED"}
    parents = search_runs(filter_string=f"tags.cv_key = '{key}' and tags.kind = 'cv'")
    assert len(parents) == 2
    children = [set(p.data.tags["children"].split(",")) for p in parents]
    assert children[0] == children[1] == {r.info.run_id for r in folds}
    assert parents[0].data.metrics == parents[1].data.metrics
    said = [re.search(r"dev split: SROCC (\S+), PLCC (\S+);", out).groups() for out, _ in outs]
    assert said[0] == said[1]


def test_a_cv_parent_records_the_commit_and_its_folds_features(cv_run, demo_root, tmp_path, monkeypatch):
    """Packaged, a cv parent's manifest entry traces to the code and the features its folds read, as a run's does."""
    import json

    from mediaeval_mem.cli import main
    from mediaeval_mem.tracking import get_run

    _, result, _ = cv_run
    monkeypatch.setenv("MEM_SUBMISSIONS_DIR", str(tmp_path / "subs"))
    assert main(["package-submission", "--team", "t", "--subtask", "1", result.parent_id, "--data-root", str(demo_root)]) == 0
    entry = json.loads((tmp_path / "subs" / "t-subtask1-manifest.json").read_text())["runs"][0]
    fold = get_run(result.folds[0].run_id).data.tags
    assert entry["kind"] == "cv" and entry["git_commit"] == fold["git_commit"]
    assert entry["feature_keys"] == {k: v for k, v in fold.items() if k.startswith("feature_key.")} != {}
