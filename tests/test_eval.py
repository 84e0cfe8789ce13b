"""`mem eval`: a trained run scored on another dataset without training, logged as a run that packages;
and the refit's checks of its source run and its epoch lines."""

from __future__ import annotations

import csv
import io
import json
import re

import pytest

from mediaeval_mem.cli import main

DEMO = ["train.epochs=2", "model.streams.0.sampling=uniform:4"]


@pytest.fixture(scope="module")
def source(demo_root):
    """A subtask-2 run trained on memento10k (its own dev figures are on videomem): its id."""
    from mediaeval_mem.config import load_config
    from mediaeval_mem.experiments.runner import run_experiment

    cfg = load_config("configs/demo.yaml", DEMO)
    return run_experiment(2, "memento10k", "videomem", cfg, demo_root, progress=False, echo=lambda *a: None).run_id


def _table(run_id: str, name: str) -> list[dict]:
    from mediaeval_mem.tracking import read_artifact_text

    return list(csv.DictReader(io.StringIO(read_artifact_text(run_id, name))))


def _logged_run(out: str) -> str:
    """The run id of the command's last line ("logged to MLflow experiment '...', run ID ...")."""
    return re.findall(r"run\s+([0-9a-f]{32})", out)[-1]


def test_eval_scores_without_training_as_the_run_did_and_packages(source, demo_root, monkeypatch, capsys):
    """Evaluated on videomem, the memento10k model gives exactly the dev figures and predictions the source run's own
    evaluation stage gave on videomem (same weights, same features), trains nothing, and packages for subtask 2."""
    from mediaeval_mem.experiments import runner
    from mediaeval_mem.tracking import client, get_run, read_artifact_text
    from mediaeval_mem.training import loop

    def no_training(*args, **kwargs):
        raise AssertionError("mem eval trained a model")

    monkeypatch.setattr(runner, "fit", no_training)
    monkeypatch.setattr(runner, "train_model", no_training)  # runner binds it at import; loop's own name too
    monkeypatch.setattr(loop, "train_model", no_training)
    assert main(["eval", source, "--test", "videomem", "--data-root", str(demo_root), "--quiet"]) == 0
    out = capsys.readouterr().out
    evaluated = _logged_run(out)
    run, src = get_run(evaluated), get_run(source)
    tags = run.data.tags
    assert tags["kind"] == "eval" and tags["eval_of"] == source and tags["epochs_run"] == "0"
    assert tags["task"] == "2" and tags["pair"] == "memento10k->videomem"
    assert client().get_metric_history(evaluated, "train_loss") == []
    for m in ("plcc", "srocc", "mse"):
        assert run.data.metrics[f"dev_{m}"] == pytest.approx(src.data.metrics[f"dev_{m}"], abs=1e-6)
    for name in ("dev_predictions.csv", "test_predictions.csv"):
        ours, theirs = _table(evaluated, name), _table(source, name)
        assert [r["video_id"] for r in ours] == [r["video_id"] for r in theirs] and len(ours) >= 2
        assert [float(r["prediction"]) for r in ours] == pytest.approx([float(r["prediction"]) for r in theirs], abs=2e-6)
    ours, theirs = (json.loads(read_artifact_text(r, "features.json"))["keys"] for r in (evaluated, source))
    assert ours == {k: v for k, v in theirs.items() if k.startswith("videomem.")}  # the same features, read back
    assert read_artifact_text(evaluated, "config.yaml") == read_artifact_text(source, "config.yaml")

    assert main(["package-submission", "--team", "t", "--subtask", "2", evaluated, "--data-root", str(demo_root)]) == 0
    assert main(["results", "--format", "csv", "--no-ci"]) == 0
    assert evaluated in capsys.readouterr().out


def test_eval_on_the_training_dataset(source, demo_root, capsys):
    """The same model on memento10k: a subtask-1 pair, evaluated on memento10k's dev split."""
    from mediaeval_mem.datasets import open_dataset
    from mediaeval_mem.tracking import get_run

    assert main(["eval", source, "--test", "memento10k", "--data-root", str(demo_root), "--quiet"]) == 0
    run = get_run(_logged_run(capsys.readouterr().out))
    assert run.data.tags["task"] == "1" and run.data.tags["pair"] == "memento10k->memento10k"
    dev = {it.video_id for it in open_dataset("memento10k", demo_root).split("dev")}
    assert {r["video_id"] for r in _table(run.info.run_id, "dev_predictions.csv")} == dev


def test_eval_refuses_clearly(source, demo_root, capsys):
    from mediaeval_mem.tracking import TrackedRun

    def refused(argv, expected: str) -> None:
        assert main(argv + ["--data-root", str(demo_root), "--quiet"]) == 2
        err = capsys.readouterr().err
        assert expected in err and err.count("\n") == 1, err

    refused(["eval", "0" * 32, "--test", "videomem"], "no MLflow run '00000000000000000000000000000000'")
    refused(["eval", source, "--test", "nosuchset"], "nosuchset")
    with TrackedRun("cv", "an unfinished cv parent", {"kind": "cv"}) as parent:
        pass
    refused(["eval", parent.run_id, "--test", "videomem"], f"cross-validation {parent.run_id} is FINISHED without all its folds")
    with TrackedRun("ensembles", "an ensemble", {"kind": "ensemble", "train_dataset": "memento10k"}) as ensemble:
        pass
    refused(["eval", ensemble.run_id, "--test", "videomem"], "is an ensemble: it combines its members' predictions")


def test_eval_of_a_cv_parent_is_its_fold_models_mean(demo_root, capsys):
    """A cross-validation on memento10k that reports on videomem, evaluated on videomem: its fold models' mean gives
    the parent's own dev figures and test predictions; no weights are logged (there is no one model)."""
    from mediaeval_mem.config import load_config
    from mediaeval_mem.experiments.cv import run_cv
    from mediaeval_mem.tracking import client, get_run

    cfg = load_config("configs/demo.yaml", DEMO)
    cv = run_cv(cfg, "memento10k", "videomem", folds=2, data_root=demo_root, progress=False, echo=lambda *a: None)
    assert main(["eval", cv.parent_id, "--test", "videomem", "--data-root", str(demo_root), "--quiet"]) == 0
    evaluated = _logged_run(capsys.readouterr().out)
    run, parent = get_run(evaluated), get_run(cv.parent_id)
    assert run.data.tags["kind"] == "eval" and run.data.tags["eval_of"] == cv.parent_id
    assert run.data.tags["selection"].startswith(f"eval: the mean of the 2 fold models of cross-validation {cv.parent_id}")
    for m in ("plcc", "srocc", "mse"):
        assert run.data.metrics[f"dev_{m}"] == pytest.approx(parent.data.metrics[f"dev_{m}"], abs=1e-6)
    ours, theirs = _table(evaluated, "test_predictions.csv"), _table(cv.parent_id, "test_predictions.csv")
    assert [r["video_id"] for r in ours] == [r["video_id"] for r in theirs]
    assert [float(r["prediction"]) for r in ours] == pytest.approx([float(r["prediction"]) for r in theirs], abs=2e-6)
    assert "model.safetensors" not in {a.path for a in client().list_artifacts(evaluated)}


@pytest.mark.parametrize("argv, expected", [
    (["--train", "videomem", "--test", "videomem"], "trained on memento10k, this refit on videomem"),
    (["--train", "memento10k", "--test", "videomem", "--set", "model.streams.0.sampling=uniform:8"],
     "model.streams.0.sampling: run 'uniform:4', refit 'uniform:8'"),
    (["--train", "memento10k", "--test", "videomem", "--set", "model.streams.0.sampling=uniform:4", "--set",
      "model.head=linear"], "model.head: run 'mlp', refit 'linear'"),
])
def test_refit_refuses_another_model_or_dataset(source, demo_root, capsys, argv, expected):
    assert main(["run", *argv, "--config", "configs/demo.yaml", "--data-root", str(demo_root), "--refit", source]) == 2
    err = capsys.readouterr().err
    assert expected in err and err.count("\n") == 1, err


def test_refit_epoch_lines_have_no_selection_figures_and_its_eval_on_its_dev_is_no_estimate(source, demo_root, capsys):
    """A refit prints one line per epoch without the selection figures it has none of; evaluated on memento10k, whose
    dev split it trained on, its dev figures are logged as refit_dev_* (as the refit's own are); an eval run is not
    evaluated again."""
    from mediaeval_mem.tracking import client, get_run

    assert main(["run", "--train", "memento10k", "--test", "videomem", "--config", "configs/demo.yaml", "--set",
                 "model.streams.0.sampling=uniform:4", "--data-root", str(demo_root), "--refit", source]) == 0
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if line.startswith("epoch ")]
    epochs = int(get_run(source).data.tags["best_epoch"])
    assert len(lines) == epochs and all(" train " in line for line in lines)
    assert not any("select" in line or "nan" in line for line in lines), lines
    refit = _logged_run(out)
    assert client().get_metric_history(refit, "select_loss") == []

    assert main(["eval", refit, "--test", "memento10k", "--data-root", str(demo_root), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert f"run {refit} trained on memento10k's dev split too" in out
    evaluated = get_run(_logged_run(out))
    assert "dev_srocc" not in evaluated.data.metrics and "refit_dev_srocc" in evaluated.data.metrics
    assert main(["eval", evaluated.info.run_id, "--test", "videomem", "--data-root", str(demo_root), "--quiet"]) == 2
    assert f"is itself an evaluation of run {refit}" in capsys.readouterr().err
