"""Metrics against scipy, the learning-rate schedule and early stopping against the recipe, determinism."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from scipy import stats

from mediaeval_mem.config import TrainCfg, load_config
from mediaeval_mem.features.store import SplitFeatures
from mediaeval_mem.models import build_model
from mediaeval_mem.experiments.tasks import plan_task
from mediaeval_mem.core.errors import MemError
from mediaeval_mem.training.batches import LabelledSplit, collate
from mediaeval_mem.training.loop import EarlyStopping, train_model
from mediaeval_mem.training.metrics import evaluate, mse, plcc, srocc


def test_metrics_match_scipy_on_tied_data():
    y = np.array([0.5, 0.5, 0.7, 0.7, 0.7, 0.9, 0.2, 0.2])
    p = np.array([0.1, 0.3, 0.3, 0.3, 0.8, 0.8, 0.0, 0.05])
    assert srocc(y, p) == pytest.approx(stats.spearmanr(y, p).statistic, abs=1e-12)
    # ties take their average rank: Pearson of average ranks
    assert srocc(y, p) == pytest.approx(stats.pearsonr(stats.rankdata(y), stats.rankdata(p)).statistic, abs=1e-12)
    assert plcc(y, p) == pytest.approx(stats.pearsonr(y, p).statistic, abs=1e-12)
    assert mse(y, p) == pytest.approx(np.mean((y - p) ** 2))
    assert math.isnan(evaluate(y, np.full_like(y, 0.5))["srocc"])  # constant predictions: undefined, not 0


def _toy_split(n=40, t=6, d=8, seed=0) -> LabelledSplit:
    """Videos whose score is the mean of their first feature: learnable in a few epochs."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(3, t + 1, n)
    frames = rng.normal(0, 1, (int(lengths.sum()), d)).astype(np.float16)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    scores = np.array([1 / (1 + np.exp(-frames[s : s + n_t, 0].astype(float).mean() * 2)) for s, n_t in zip(starts, lengths)], np.float32)
    return LabelledSplit([SplitFeatures([str(i) for i in range(n)], frames, starts, lengths)], scores)


def model_of(*overrides):
    return build_model(load_config(None, ["model.streams.0.encoder=clip-demo", *overrides]).model, [8])


def test_collate_pads_and_masks():
    split = _toy_split(5)
    [(x, mask)], y = collate(split, np.array([0, 3]))
    assert x.shape[0] == 2 and mask.sum(1).tolist() == split.streams[0].lengths[[0, 3]].tolist()
    assert (x[~mask] == 0).all() and torch.equal(y, torch.from_numpy(split.scores[[0, 3]]))


def test_learning_rate_follows_the_recipe():
    """x0.95 every 5 epochs: epochs 1-5 at lr, 6-10 at 0.95 lr, 11-15 at 0.9025 lr."""
    train = _toy_split(16)
    cfg = TrainCfg(epochs=12, lr=1e-3, lr_decay=0.95, lr_step_epochs=5, patience=100, batch_size=8)
    result = train_model(model_of("model.streams.0.aggregator=avg", "model.head=linear"), train, train, cfg)
    lrs = [log.lr for log in result.history]
    assert lrs[:5] == pytest.approx([1e-3] * 5)
    assert lrs[5:10] == pytest.approx([0.95e-3] * 5)
    assert lrs[10:] == pytest.approx([0.9025e-3] * 2)


@pytest.mark.parametrize(
    "values,mode,patience,best,stop_after",
    [
        ([0.1, 0.2, 0.3, 0.25, 0.2, 0.1], "max", 3, 3, 6),  # 3 epochs without improvement after epoch 3
        ([0.5, 0.4, 0.45, 0.41, 0.3], "min", 3, 5, None),  # two bad epochs, then a new best
        ([0.5, 0.4, 0.45, 0.41, 0.3], "min", 2, 2, 4),  # the same with patience 2: stops at epoch 4
        ([float("nan"), 0.1, 0.1, 0.1], "max", 2, 2, 4),  # NaN never counts; a tie is no improvement
    ],
)
def test_early_stopping(values, mode, patience, best, stop_after):
    stopper = EarlyStopping(patience, mode)
    stopped = None
    for epoch, v in enumerate(values, start=1):
        stopper.step(epoch, v)
        if stopper.should_stop:
            stopped = epoch
            break
    assert stopper.best_epoch == best and stopped == stop_after


def test_training_stops_early_and_restores_the_best_epoch():
    train, select = _toy_split(40, seed=1), _toy_split(20, seed=2)
    cfg = TrainCfg(epochs=60, lr=3e-3, batch_size=8, patience=3, lr_step_epochs=5)
    model = model_of("model.streams.0.aggregator=avg", "model.head_args={hidden: [16]}")
    result = train_model(model, train, select, cfg)
    assert result.stopped_early and len(result.history) == result.best_epoch + 3
    best = max(result.history, key=lambda log: log.select_srocc)
    assert best.epoch == result.best_epoch
    from mediaeval_mem.training.batches import predict

    assert srocc(select.scores, predict(model, select)) == pytest.approx(best.select_srocc, abs=1e-6)
    assert best.select_srocc > 0.8  # it learned


def test_same_seed_same_metrics():
    train, select = _toy_split(24, seed=3), _toy_split(12, seed=4)

    def run(seed):
        cfg = TrainCfg(epochs=4, lr=1e-3, batch_size=8, seed=seed)
        torch.manual_seed(seed)  # the initial weights follow the seed too
        model = model_of("model.streams.0.aggregator_args={hidden: 8, layers: 2}")
        return [(log.train_loss, log.select_srocc) for log in train_model(model, train, select, cfg).history]

    assert run(0) == run(0)
    assert run(0) != run(1)


def test_an_interrupted_training_resumes_from_its_checkpoint_exactly(tmp_path):
    """Ctrl-C after epoch 2 of 5; the same call resumes at epoch 3 and ends where an uninterrupted run ends."""
    train, select = _toy_split(24, seed=3), _toy_split(12, seed=4)
    cfg = TrainCfg(epochs=5, lr=1e-3, batch_size=8, patience=10)

    def fresh():
        torch.manual_seed(0)
        return model_of("model.streams.0.aggregator_args={hidden: 8, layers: 2}")

    straight = train_model(fresh(), train, select, cfg)

    def stop_after_two(log):
        if log.epoch == 2:
            raise KeyboardInterrupt

    checkpoint = tmp_path / "last.safetensors"
    with pytest.raises(KeyboardInterrupt):
        train_model(fresh(), train, select, cfg, on_epoch=stop_after_two, checkpoint=checkpoint)
    model = fresh()
    resumed = train_model(model, train, select, cfg, checkpoint=checkpoint)
    assert resumed.resumed_after == 2 and [h.epoch for h in resumed.history] == [1, 2, 3, 4, 5]
    key = lambda r: [(h.train_loss, h.select_loss, h.select_srocc) for h in r.history]  # noqa: E731
    assert key(resumed) == key(straight) and resumed.best_epoch == straight.best_epoch


def test_the_resume_checkpoint_is_safetensors_and_json_without_pickle(tmp_path):
    """Every tensor is a safetensors tensor; epoch, history, early stopping and RNG states are JSON metadata."""
    from safetensors import safe_open

    from mediaeval_mem.training.checkpoint import FORMAT

    train, select = _toy_split(16, seed=3), _toy_split(8, seed=4)
    torch.manual_seed(0)
    model = model_of("model.streams.0.aggregator_args={hidden: 8, layers: 2}")
    checkpoint = tmp_path / "last.safetensors"
    train_model(model, train, select, TrainCfg(epochs=2, lr=1e-3, batch_size=8), checkpoint=checkpoint)
    with safe_open(str(checkpoint), framework="pt") as f:
        names, meta = set(f.keys()), json.loads(f.metadata()[FORMAT])
    assert {f"/model/{k}" for k in model.state_dict()} <= names
    assert any(n.startswith("/opt/") and n.endswith("/exp_avg") for n in names)
    assert meta["epoch"] == 2 and len(meta["history"]) == 2
    assert set(meta["rng"]) == {"python", "numpy", "generator", "torch"}


def _old_pickle(path):
    torch.save({"epoch": 1, "np_rng": np.random.default_rng(0).bit_generator.state}, path)


def _truncated(path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


@pytest.mark.parametrize("spoil", [_old_pickle, _truncated])
def test_an_old_or_damaged_checkpoint_is_refused_in_one_line_and_kept(tmp_path, spoil):
    train, select = _toy_split(16, seed=3), _toy_split(8, seed=4)
    cfg = TrainCfg(epochs=3, lr=1e-3, batch_size=8)
    checkpoint = tmp_path / "last.safetensors"

    def stop(log):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_model(model_of(), train, select, cfg, on_epoch=stop, checkpoint=checkpoint)
    spoil(checkpoint)
    damaged = checkpoint.read_bytes()
    with pytest.raises(MemError) as e:
        train_model(model_of(), train, select, cfg, checkpoint=checkpoint)
    msg = str(e.value)
    assert "\n" not in msg and str(checkpoint) in msg and "delete it" in msg
    assert checkpoint.read_bytes() == damaged  # nothing removed behind the user's back


@pytest.mark.parametrize(
    "task,train,test,ok",
    [
        (1, "memento10k", "memento10k", True),
        (2, "memento10k", "videomem", True),
        (2, "videomem", "memento10k", True),
        (1, "videomem", "videomem", False),
        (1, "memento10k", "videomem", False),
        (2, "memento10k", "memento10k", False),
        (3, "memento10k", "memento10k", False),
    ],
)
def test_task_map(task, train, test, ok):
    if ok:
        plan = plan_task(task, train, test)
        assert plan.train_splits == ("train",) and plan.evaluate == (test, "dev") and plan.predict == (test, "test")
        assert plan.experiment_name.startswith(f"Task {task}: train ")
    else:
        with pytest.raises(MemError, match="allowed: --train|subtasks 1 and 2"):
            plan_task(task, train, test)


def test_prefetch_keeps_order_propagates_errors_and_stops():
    import threading

    from mediaeval_mem.training.batches import prefetch

    assert list(prefetch(iter(range(10)), depth=2)) == list(range(10))

    def broken():
        yield 1
        raise ValueError("bad batch")

    with pytest.raises(ValueError, match="bad batch"):
        list(prefetch(broken()))
    before = threading.active_count()
    it = prefetch(iter(range(1000)), depth=2)
    assert next(it) == 0
    it.close()  # the consumer leaves early: the producer thread ends too
    assert threading.active_count() <= before
