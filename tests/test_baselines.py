"""Ridge and SVR baselines: fitted by scikit-learn with an inner CV, logged and loaded as state dicts,
better than a constant on the demo data, refused on features that are not pooled over time."""

from __future__ import annotations

import csv
import io

import numpy as np
import pytest
import torch

from mediaeval_mem.config import load_config
from mediaeval_mem.core.errors import ConfigError


@pytest.fixture(scope="module")
def memento_third(tmp_path_factory):
    """A Memento10k demo stand-in at a third of `mem demo-data`'s size (36 train, 12 dev, 12 test videos)."""
    from mediaeval_mem.datasets.synthetic import DEMO_SPECS, generate_dataset

    root = tmp_path_factory.mktemp("demo-third")
    generate_dataset(root, DEMO_SPECS["memento10k"], seed=0, noise=0.03, scale=0.3)
    return root


@pytest.mark.parametrize("head", ["ridge", "svr"])
def test_baselines_beat_a_constant_and_round_trip(head, memento_third, runs_dir):
    from mediaeval_mem.experiments.runner import run_experiment
    from mediaeval_mem.models import build_model
    from mediaeval_mem.tracking import download_artifact, get_run, read_artifact_text

    cfg = load_config(None, ["model.streams.0.encoder=clip-demo", "model.streams.0.sampling=uniform:4",
                             "model.streams.0.aggregator=avg", f"model.head={head}"])
    r = run_experiment(1, "memento10k", "memento10k", cfg, memento_third, progress=False, echo=lambda *a: None)
    dev = list(csv.DictReader(io.StringIO(read_artifact_text(r.run_id, "dev_predictions.csv"))))
    y = np.array([float(d["ground_truth"]) for d in dev])
    train_mean = np.mean([float(line.split(",")[2]) for line in
                          (memento_third / "memento10k" / "train_set" / "train_scores.csv").read_text().splitlines()[1:]])
    assert r.metrics["mse"] < np.mean((y - train_mean) ** 2)  # better than predicting the training mean
    assert r.metrics["srocc"] > 0.3
    params = get_run(r.run_id).data.params
    assert ("fit.alpha" in params) if head == "ridge" else ("fit.C" in params and "fit.gamma_value" in params)

    # the fitted estimator is in the state dict: a model built afresh and loaded predicts the same
    from safetensors.torch import load_file

    state = load_file(str(download_artifact(r.run_id, "model.safetensors", runs_dir)))
    model = build_model(cfg.model, [64])
    model.load_state_dict(state)
    x = torch.randn(5, 4, 64)
    mask = torch.ones(5, 4, dtype=torch.bool)
    out = model([(x, mask)])
    assert out.shape == (5,) and ((out >= 0) & (out <= 1)).all()


def test_baselines_take_time_pooled_features_only():
    with pytest.raises(ConfigError, match="head 'ridge' is fitted on time-pooled features: give its streams aggregator avg"):
        load_config(None, ["model.streams.0.aggregator=bigru-attention", "model.head=ridge"])
    with pytest.raises(ConfigError, match="svr is fitted in closed form"):
        load_config(None, ["finetune.head=svr"])


def test_the_inner_cv_picks_the_regularisation(runs_dir):
    """Pure noise features: the inner CV chooses the strongest ridge penalty of its grid; a clean linear signal, a weak one."""
    from mediaeval_mem.models.baselines import GRIDS, RidgeHead, fit_ridge

    rng = np.random.default_rng(0)
    X = rng.normal(size=(120, 20))
    noisy = fit_ridge(RidgeHead(20), X, rng.uniform(size=120), seed=0)
    clean = fit_ridge(RidgeHead(20), X, X[:, 0] * 0.1 + 0.5, seed=0)
    assert noisy["alpha"] == max(GRIDS["ridge"]["alpha"]) and clean["alpha"] == min(GRIDS["ridge"]["alpha"])
    assert clean["inner_cv_srocc"] > 0.99
