"""Losses: the soft-rank Spearman against scipy, its gradient, weighted sums, configs, and a run that trains on it."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats

from mediaeval_mem.config import load_config
from mediaeval_mem.core.errors import ConfigError
from mediaeval_mem.core.schema import digest, flatten, to_dict
from mediaeval_mem.training.losses import LOSSES, WeightedLoss, describe_loss, rank, soft_rank, spearman_loss
from conftest import REPO


@pytest.mark.parametrize("n", [8, 64, 256])
def test_soft_spearman_is_scipys_at_a_small_temperature(n):
    rng = np.random.default_rng(n)
    for _ in range(5):
        pred, target = rng.normal(size=n), rng.normal(size=n)
        target += pred  # some correlation
        loss = spearman_loss(torch.tensor(pred), torch.tensor(target), tau=1e-4)
        assert 1 - loss.item() == pytest.approx(stats.spearmanr(pred, target).statistic, abs=0.01)


def test_exact_ranks_are_scipys_with_ties():
    y = np.array([0.5, 0.5, 0.7, 0.7, 0.7, 0.9, 0.2, 0.2])
    assert rank(torch.tensor(y)).tolist() == stats.rankdata(y).tolist()
    assert soft_rank(torch.tensor([3.0, 1.0, 2.0]), tau=1e-4).tolist() == pytest.approx([3, 1, 2])


def test_ordered_is_near_0_reversed_near_2():
    target = torch.linspace(0.2, 0.9, 8)
    pred = torch.sigmoid(torch.linspace(-1, 1, 8))
    assert spearman_loss(pred, target).item() < 0.01
    assert spearman_loss(pred.flip(0), target).item() > 1.99


@pytest.mark.parametrize("seed", range(5))
def test_a_gradient_step_raises_the_true_spearman(seed):
    rng = np.random.default_rng(seed)
    target = rng.uniform(0, 1, 16)
    pred = torch.tensor(target + rng.normal(0, 0.3, 16), requires_grad=True)
    spearman_loss(pred, torch.tensor(target)).backward()
    before = stats.spearmanr(pred.detach(), target).statistic
    after = stats.spearmanr(pred.detach() - 0.3 * pred.grad, target).statistic  # a step of about the noise's scale
    assert after > before


def test_an_undefined_spearman_gives_1_and_no_gradient():
    for pred, target in [(torch.tensor([0.3]), torch.tensor([0.5])), (torch.rand(4), torch.full((4,), 0.5))]:
        pred.requires_grad_(True)
        loss = spearman_loss(pred, target)
        loss.backward()
        assert loss.item() == pytest.approx(1.0) and torch.all(pred.grad == 0)


def test_a_weighted_sum_is_the_weighted_sum_of_its_parts():
    pred, target = torch.rand(8, requires_grad=True), torch.rand(8)
    combined = WeightedLoss({"l1": 1.0, "spearman": 0.5, "mse": 2.0})(pred, target)
    parts = [LOSSES.build(n)(pred, target) for n in ("l1", "spearman", "mse")]
    assert combined.item() == pytest.approx(parts[0].item() + 0.5 * parts[1].item() + 2.0 * parts[2].item(), abs=1e-6)
    assert WeightedLoss("l1")(pred, target).item() == torch.nn.L1Loss()(pred, target).item()  # a name: that loss alone
    assert describe_loss({"l1": 1.0, "spearman": 0.5}) == "l1 + 0.5*spearman" and describe_loss("mse") == "mse"


@pytest.mark.parametrize("value,message", [
    ("l2", "train: loss: unknown loss 'l2'; valid names: l1, mse, spearman"),
    ("{l1: 1, spearmann: 0.5}", "train: loss: unknown loss 'spearmann'; valid names: l1, mse, spearman"),
    ("{l1: 1, spearman: 0}", "train: loss: the weight of spearman must be a number > 0, got 0.0"),
    ("{l1: -1}", "train: loss: the weight of l1 must be a number > 0, got -1.0"),
    ("{l1: heavy}", "train.loss.l1: expected float, got 'heavy'"),
    ("[l1, mse]", "train.loss: expected str, got ['l1', 'mse']"),
])
def test_bad_losses_are_refused_when_the_config_is_read(tmp_path, value, message):
    (tmp_path / "bad.yaml").write_text(f"train: {{loss: {value}}}")
    with pytest.raises(ConfigError) as e:
        load_config(tmp_path / "bad.yaml")
    assert str(e.value) == f"{tmp_path / 'bad.yaml'}: {message}"


def test_a_weighted_loss_round_trips_through_yaml_and_describe(tmp_path, capsys):
    from mediaeval_mem.cli import main
    from mediaeval_mem.config import to_yaml

    cfg = load_config(REPO / "configs" / "demo.yaml", ["train.loss={l1: 1, spearman: 0.5}"])
    assert cfg.train.loss == {"l1": 1.0, "spearman": 0.5}
    (tmp_path / "c.yaml").write_text(to_yaml(cfg))
    again = load_config(tmp_path / "c.yaml")
    assert to_dict(again) == to_dict(cfg) and digest(to_dict(again)) == digest(to_dict(cfg))
    assert flatten(cfg)["train.loss.spearman"] == 0.5
    assert main(["describe", str(tmp_path / "c.yaml")]) == 0
    assert "l1 + 0.5*spearman loss, batch 16" in capsys.readouterr().out


def test_a_run_trains_on_l1_plus_spearman_and_logs_it(demo_root, runs_dir):
    from mediaeval_mem.experiments.runner import run_experiment
    from mediaeval_mem.tracking import client

    cfg = load_config(REPO / "configs" / "demo.yaml", ["train.epochs=4", "train.patience=10",
                                                        "model.streams.0.sampling=uniform:4",
                                                        "train.loss={l1: 1, spearman: 0.5}"])
    lines = []
    result = run_experiment(1, "memento10k", "memento10k", cfg, demo_root, echo=lines.append)
    run = client().get_run(result.run_id)
    assert run.data.params["train.loss.l1"] == "1.0" and run.data.params["train.loss.spearman"] == "0.5"
    history = sorted(client().get_metric_history(result.run_id, "train_loss"), key=lambda m: m.step)
    assert len(history) == 4 and history[-1].value < history[0].value
    assert any("train l1 + 0.5*spearman" in line for line in lines)
