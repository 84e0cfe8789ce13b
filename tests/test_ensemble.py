"""`mem ensemble`: weights that never see the reported predictions, and an ensemble that is a run like any other."""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import pytest

from mediaeval_mem.experiments.ensemble import cross_fitted, fit_weights
from mediaeval_mem.training.metrics import srocc


def test_weights_are_non_negative_sum_to_one_and_recover_a_mixture():
    rng = np.random.default_rng(0)
    preds = rng.uniform(size=(3, 200))
    w = fit_weights(preds, 0.7 * preds[0] + 0.3 * preds[1])
    assert (w >= 0).all() and w.sum() == pytest.approx(1)
    np.testing.assert_allclose(w, [0.7, 0.3, 0.0], atol=1e-3)


def simplex_grid(m: int, steps: int) -> np.ndarray:
    """(K, m) every weight vector on the simplex with coordinates in multiples of 1/steps."""
    import itertools

    return np.array([(*c, steps - sum(c)) for c in itertools.product(range(steps + 1), repeat=m - 1)
                     if sum(c) <= steps], float) / steps


def grid_best(preds: np.ndarray, y: np.ndarray, steps: int = 200) -> tuple[np.ndarray, float]:
    """The weights of the finest grid over the simplex with the least squared error, and that error."""
    grid = simplex_grid(len(preds), steps)
    loss = ((grid @ preds - y) ** 2).mean(1)
    return grid[loss.argmin()], float(loss.min())


@pytest.mark.parametrize("seed", range(4))
def test_weights_of_similar_members_are_those_a_fine_grid_finds(seed):
    """Seeds of one model: predictions correlated at about 0.99, a loss of about 0.01 whose mixtures differ by
    far less than an absolute tolerance of 1e-6 (the fit once stopped at equal weights here)."""
    rng = np.random.default_rng(seed)
    y = rng.uniform(0.3, 0.9, 300)
    shared = y + rng.normal(0, 0.1, 300)
    preds = np.array([shared + rng.normal(0, s, 300) for s in (0.01, 0.02, 0.015)])  # (3, 300)
    assert np.corrcoef(preds).min() > 0.98
    w, (best, best_loss) = fit_weights(preds, y), grid_best(preds, y)
    np.testing.assert_allclose(w, best, atol=0.01)  # the grid's step is 0.005
    assert np.mean((w @ preds - y) ** 2) <= best_loss + 1e-12


def test_cross_fitting_catches_what_fitting_on_the_reported_split_would_leak():
    """Twenty members that are pure noise: weights fit on the videos they are scored on find a 'signal'
    (the leak this protocol exists to avoid); cross-fitted weights find none."""
    in_sample, crossed = [], []
    for seed in range(10):
        rng = np.random.default_rng(seed)
        y, preds = rng.uniform(size=60), rng.uniform(size=(20, 60))
        in_sample.append(srocc(y, fit_weights(preds, y) @ preds))
        crossed.append(srocc(y, cross_fitted(preds, y)))
    assert np.mean(in_sample) > 0.25  # the leak is real: this test would fail a protocol that had it
    assert abs(np.mean(crossed)) < 0.1


def test_an_ensemble_of_seeds_is_a_run_that_packages(demo_root, runs_dir, capsys):
    from mediaeval_mem.cli import main
    from mediaeval_mem.config import load_config
    from mediaeval_mem.core.paths import submissions_dir
    from mediaeval_mem.experiments.runner import run_experiment
    from mediaeval_mem.tracking import get_run, read_artifact_text

    ids = []
    for seed in (0, 1, 2):
        cfg = load_config("configs/demo.yaml", [f"train.seed={seed}", "train.epochs=2", "model.streams.0.sampling=uniform:4"])
        ids.append(run_experiment(1, "memento10k", "memento10k", cfg, demo_root, progress=False, echo=lambda *a: None).run_id)
    table = lambda rid, name: list(csv.DictReader(io.StringIO(read_artifact_text(rid, name))))  # noqa: E731
    assert main(["ensemble", *ids]) == 0
    out = capsys.readouterr().out
    ens = out.split("logged as run ")[1].split(";")[0]
    run = get_run(ens)
    assert run.data.tags["kind"] == "ensemble" and run.data.tags["members"] == ",".join(ids)
    members = [{r["video_id"]: float(r["prediction"]) for r in table(rid, "test_predictions.csv")} for rid in ids]
    for r in table(ens, "test_predictions.csv"):
        assert float(r["prediction"]) == pytest.approx(np.mean([m[r["video_id"]] for m in members]), abs=2e-6)
    assert "dev_srocc_ci_low" in run.data.metrics and "members_mean_srocc" in run.data.metrics
    assert main(["package-submission", "--team", "t", "--subtask", "1", ens, "--data-root", str(demo_root)]) == 0
    entry = json.loads((submissions_dir() / "t-subtask1-manifest.json").read_text())["runs"][0]
    member = get_run(ids[0]).data.tags
    assert entry["members"] == ids and entry["git_commit"] == member["git_commit"]
    assert entry["feature_keys"] == {k: v for k, v in member.items() if k.startswith("feature_key.")} != {}

    # weighted: what is logged as its dev predictions is the cross-fitted combination, never an in-sample fit
    assert main(["ensemble", *ids, "--method", "weighted"]) == 0
    weighted = capsys.readouterr().out.split("logged as run ")[1].split(";")[0]
    dev = [table(rid, "dev_predictions.csv") for rid in ids]
    order = sorted(r["video_id"] for r in dev[0])
    preds = np.array([[{r["video_id"]: float(r["prediction"]) for r in d}[v] for v in order] for d in dev])
    y = np.array([{r["video_id"]: float(r["ground_truth"]) for r in dev[0]}[v] for v in order])
    logged = {r["video_id"]: float(r["prediction"]) for r in table(weighted, "dev_predictions.csv")}
    np.testing.assert_allclose([logged[v] for v in order], cross_fitted(preds, y), atol=2e-6)
    # the test split's weights (fit on every dev video) are the best mixture: a fine grid finds none better
    w = np.array(json.loads(get_run(weighted).data.params["weights"]))
    best, best_loss = grid_best(preds, y)
    assert np.mean((w @ preds - y) ** 2) <= best_loss + 1e-9, (w, best)


def test_ensembles_refuse_what_cannot_be_combined(runs_dir, capsys):
    from mediaeval_mem.cli import main

    assert main(["ensemble", "a" * 32]) == 2
    assert "at least two different run ids" in capsys.readouterr().err
    assert main(["ensemble", "a" * 32, "b" * 32]) == 2
    assert "no MLflow run" in capsys.readouterr().err
