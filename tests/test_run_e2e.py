"""`mem run` end to end on tiny generated data: MLflow contents, determinism, packaging and its refusals."""

from __future__ import annotations

import csv
import json

import pytest

from mediaeval_mem.cli import main
from conftest import REPO

FAST = ["--set", "train.epochs=3", "--set", "train.patience=2", "--set", "model.streams.0.aggregator_args={hidden: 16, layers: 2}"]


def _run(demo_root, *extra, task="1", train="memento10k", test="memento10k"):
    argv = ["run", "--task", task, "--train", train, "--test", test, "--config", str(REPO / "configs" / "demo.yaml"),
            "--data-root", str(demo_root), "--quiet", *FAST, *extra]
    assert main(argv) == 0


def _runs(experiment=None):
    from mediaeval_mem.tracking import search_runs

    return search_runs([experiment] if experiment else None)


@pytest.fixture(scope="module")
def two_runs(demo_root, tmp_path_factory):
    """Task 1 twice with the same seed, and task 2 once, in a private MLflow store."""
    import os

    runs = tmp_path_factory.mktemp("e2e") / "runs"
    old = os.environ["MEM_RUNS_DIR"]
    os.environ["MEM_RUNS_DIR"] = str(runs)
    try:
        _run(demo_root)
        _run(demo_root)
        _run(demo_root, task="2", train="videomem", test="memento10k")
        yield runs
    finally:
        os.environ["MEM_RUNS_DIR"] = old


@pytest.fixture
def store(two_runs, monkeypatch):
    monkeypatch.setenv("MEM_RUNS_DIR", str(two_runs))
    return two_runs


def test_mlflow_holds_params_metrics_artifacts(store):
    from mediaeval_mem.tracking import client

    task1 = _runs("Task 1: train Memento10k, test Memento10k")
    assert len(task1) == 2 and (store / "mlflow.db").is_file()
    run = task1[0]
    assert run.info.status == "FINISHED"
    tags, params, metrics = run.data.tags, run.data.params, run.data.metrics
    assert tags["task"] == "1" and tags["encoder"] == "clip-demo" and tags["aggregator"] == "bigru-attention"
    assert tags["head"] == "mlp" and tags["git_commit"] and tags["feature_key.memento10k.clip-demo"]
    assert tags["selection"].startswith("holdout:")
    assert params["train.epochs"] == "3" and params["train.lr"] == "0.002" and params["model.streams.0.encoder"] == "clip-demo"
    assert {"dev_plcc", "dev_srocc", "dev_mse"} <= set(metrics)
    history = client().get_metric_history(run.info.run_id, "select_srocc")
    assert [m.step for m in history] == list(range(1, len(history) + 1)) and len(history) >= 1
    files = {a.path for a in client().list_artifacts(run.info.run_id)}
    assert {"config.yaml", "dev_predictions.csv", "test_predictions.csv", "model.safetensors", "features.json"} <= files
    assert (store / "mlartifacts").is_dir()  # artifacts under runs/, not the working directory


def test_select_on_dev_is_the_papers_protocol_and_says_so(runs_dir, demo_root):
    """train.select_on=dev: every training video fits, early stopping watches the reported dev split, the
    run is tagged as such; the default holds a slice of the training split out instead."""
    from mediaeval_mem.tracking import read_artifact_text

    _run(demo_root, "--set", "train.select_on=dev")
    _run(demo_root)
    paper = [r for r in _runs("Task 1: train Memento10k, test Memento10k") if r.data.params["train.select_on"] == "dev"][0]
    honest = [r for r in _runs("Task 1: train Memento10k, test Memento10k") if r.data.params["train.select_on"] == "holdout"][0]
    assert paper.data.tags["selection"].startswith("dev: selected on the reported split")
    dev_ids = [r["video_id"] for r in csv.DictReader(read_artifact_text(paper.info.run_id, "dev_predictions.csv").splitlines())]
    assert read_artifact_text(paper.info.run_id, "selection_ids.txt").split() == dev_ids
    held = read_artifact_text(honest.info.run_id, "selection_ids.txt").split()
    assert held and not set(held) & set(dev_ids)  # the default never selects on what it reports
    assert int(paper.data.params["derived.n_train"]) == int(honest.data.params["derived.n_train"]) + len(held)


def test_same_seed_same_metrics_end_to_end(store):
    a, b = _runs("Task 1: train Memento10k, test Memento10k")
    assert a.data.metrics["dev_srocc"] == b.data.metrics["dev_srocc"]
    assert a.data.metrics["dev_mse"] == b.data.metrics["dev_mse"]


def test_package_submission_writes_csvs_and_manifest(store, demo_root, tmp_path, monkeypatch):
    monkeypatch.setenv("MEM_SUBMISSIONS_DIR", str(tmp_path / "subs"))
    t1 = _runs("Task 1: train Memento10k, test Memento10k")
    assert main(["package-submission", "--team", "us", "--subtask", "1", t1[1].info.run_id, t1[0].info.run_id,
                 "--data-root", str(demo_root)]) == 0
    files = sorted(p.name for p in (tmp_path / "subs").iterdir())
    assert files == ["me22mem-us-subtask1-run1.csv", "me22mem-us-subtask1-run2.csv", "us-subtask1-manifest.json"]
    rows = list(csv.reader(open(tmp_path / "subs" / "me22mem-us-subtask1-run1.csv")))
    assert rows[0] == ["video_id", "mem_score"] and len(rows) == 1 + 4  # the tiny demo's 4 test videos
    manifest = json.loads((tmp_path / "subs" / "us-subtask1-manifest.json").read_text())
    assert [r["run_id"] for r in manifest["runs"]] == [t1[1].info.run_id, t1[0].info.run_id]
    assert manifest["runs"][0]["dev_metrics"]["srocc"] == t1[1].data.metrics["dev_srocc"]


def test_packaging_again_leaves_only_what_the_manifest_lists(store, demo_root, tmp_path, monkeypatch, capsys):
    """Two runs packaged, then one: the second file of the first packaging goes (it said so), as does one of a
    template given before; another team's and another subtask's files stay."""
    monkeypatch.setenv("MEM_SUBMISSIONS_DIR", str(tmp_path / "subs"))
    a, b = (r.info.run_id for r in _runs("Task 1: train Memento10k, test Memento10k"))
    (tmp_path / "other.yaml").write_text("filename: 'old-{team}-{subtask}-{run}.csv'\n")
    package = ["package-submission", "--team", "us", "--subtask", "1", "--data-root", str(demo_root)]
    assert main([*package, a, b, "--config", str(tmp_path / "other.yaml")]) == 0  # old-us-1-1.csv, old-us-1-2.csv
    assert main([*package, a, b]) == 0
    assert sorted(p.name for p in (tmp_path / "subs").iterdir()) == [
        "me22mem-us-subtask1-run1.csv", "me22mem-us-subtask1-run2.csv", "us-subtask1-manifest.json"]
    others = ["me22mem-them-subtask1-run2.csv", "me22mem-us-subtask2-run2.csv", "notes.txt"]
    for name in others:
        (tmp_path / "subs" / name).write_text("kept\n")
    capsys.readouterr()
    assert main([*package, b]) == 0
    out = capsys.readouterr().out
    assert "removed " in out and "me22mem-us-subtask1-run2.csv" in out.split("removed ")[1]
    manifest = json.loads((tmp_path / "subs" / "us-subtask1-manifest.json").read_text())
    listed = {r["file"] for r in manifest["runs"]}
    assert listed == {"me22mem-us-subtask1-run1.csv"} and manifest["runs"][0]["run_id"] == b
    ours = {p.name for p in (tmp_path / "subs").iterdir()} - set(others)
    assert ours == listed | {"us-subtask1-manifest.json"}  # the folder is what the manifest says
    assert all((tmp_path / "subs" / n).read_text() == "kept\n" for n in others)


@pytest.mark.parametrize(
    "mutate,expected",
    [
        (lambda rows: rows[:-1], "1 test videos missing"),
        (lambda rows: rows + [["99999", "0.5"]], "unknown ids (not in the test split): 99999"),
        (lambda rows: [rows[0], [rows[1][0], "nan"]] + rows[2:], "values not a finite number"),
        (lambda rows: [rows[0], [rows[1][0], "1.7"]] + rows[2:], "values outside [0, 1]"),
    ],
    ids=["missing", "unknown", "nan", "out-of-range"],
)
def test_packager_refuses_bad_runs_and_writes_nothing(store, demo_root, tmp_path, monkeypatch, capsys, mutate, expected):
    """A copy of a good run with broken test predictions: exit non-zero, ids named, no file written."""
    from mediaeval_mem.tracking import TrackedRun, read_artifact_text

    monkeypatch.setenv("MEM_SUBMISSIONS_DIR", str(tmp_path / "subs"))
    good = _runs("Task 1: train Memento10k, test Memento10k")[0]
    rows = list(csv.reader(read_artifact_text(good.info.run_id, "test_predictions.csv").splitlines()))
    bad = mutate(rows[1:])
    tags = {k: v for k, v in good.data.tags.items() if not k.startswith("mlflow.")}
    with TrackedRun("Task 1: train Memento10k, test Memento10k", "broken", tags) as run:
        run.log_csv(rows[0], bad, "test_predictions.csv")
    code = main(["package-submission", "--team", "us", "--subtask", "1", good.info.run_id, run.run_id, "--data-root", str(demo_root)])
    err = capsys.readouterr().err
    assert code == 2 and "nothing written" in err and f"run 2 ({run.run_id}" in err and expected in err
    assert not (tmp_path / "subs").exists() or not any((tmp_path / "subs").iterdir())


def test_packager_refuses_wrong_subtask_and_too_many_runs(store, demo_root, capsys):
    t2 = _runs("Task 2: train VideoMem, test Memento10k")[0]
    assert main(["package-submission", "--team", "us", "--subtask", "1", t2.info.run_id, "--data-root", str(demo_root)]) == 2
    assert "made for task 2, not subtask 1" in capsys.readouterr().err
    assert main(["package-submission", "--team", "us", "--subtask", "2", *[t2.info.run_id] * 6]) == 2
    assert "at most 5" in capsys.readouterr().err


def test_run_refuses_pairs_the_task_does_not_allow(demo_root, capsys):
    assert main(["run", "--task", "1", "--train", "videomem", "--test", "memento10k", "--data-root", str(demo_root)]) == 2
    assert "allowed: --train memento10k --test memento10k" in capsys.readouterr().err


def test_mlflow_rest_api_serves_the_store(store):
    """`mlflow server` on 127.0.0.1 over the same store answers the REST API with our runs."""
    import os
    import socket
    import subprocess
    import sys
    import time
    import urllib.request

    from mediaeval_mem.tracking import UI_ENV, tracking_uri

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "mlflow", "server", "--backend-store-uri", tracking_uri(),
                             "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
                            env={**os.environ, **UI_ENV},  # as `mem ui` starts it: no job runner (seven processes)
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        body = None
        for _ in range(120):  # about 9 s to come up on these machines
            try:
                req = urllib.request.Request(f"http://127.0.0.1:{port}/api/2.0/mlflow/experiments/search",
                                             data=b'{"max_results": 100}', headers={"Content-Type": "application/json"})
                body = json.loads(urllib.request.urlopen(req, timeout=2).read())
                break
            except OSError:
                time.sleep(0.5)
        assert body is not None, "mlflow server did not answer"
        names = {e["name"] for e in body["experiments"]}
        assert "Task 1: train Memento10k, test Memento10k" in names
    finally:
        proc.terminate()
        proc.wait(timeout=30)
