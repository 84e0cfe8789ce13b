"""The one training loop: the paper's recipe (Adam, step decay, the loss, early stopping) for every model.

It trains any model on any `TrainData`: cached feature splits (`LabelledSplit`, the heads and
aggregators) or video clips decoded on the fly (the fine-tuned I3D). Model selection watches a
selection split (by default a held-out slice of the training split), never the split that is
reported; the best epoch's weights are restored at the end. With a checkpoint path, every epoch is
saved (atomically) and an interrupted training resumes after its last finished epoch.
"""

from __future__ import annotations

import copy
import math
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Protocol

import numpy as np
import torch
from torch import nn

from mediaeval_mem.core.errors import DamagedError, DataError
from mediaeval_mem.core.threads import training_work, with_threads
from mediaeval_mem.training.checkpoint import load_checkpoint, rng_states, save_checkpoint, set_rng_states
from mediaeval_mem.training.losses import WeightedLoss
from mediaeval_mem.training.metrics import evaluate
from mediaeval_mem.training.options import TrainCfg


class TrainData(Protocol):
    """What the loop trains on: scored examples it can batch (shuffled) and predict (in order)."""

    scores: np.ndarray | None  # (N,) float32, (N, K) for K targets

    def __len__(self) -> int: ...

    def batches(self, cfg: TrainCfg, rng: np.random.Generator, device: torch.device) -> Iterable[tuple[object, torch.Tensor]]:
        """One epoch of (model input on `device`, scores (B,) or (B, K)[, loss weights (B,)]), shuffled with `rng`."""

    def predict(self, model: nn.Module, device: torch.device) -> np.ndarray:
        """(N,) (or (N, K)) predictions in order (NaN where an example could not be read)."""


def seed_everything(seed: int) -> None:
    """python, numpy and torch: the same seed on the CPU gives the same run."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@dataclass
class EpochLog:
    epoch: int
    lr: float
    train_loss: float
    select_loss: float
    select_srocc: float
    seconds: float  # the whole epoch, selection included
    train_seconds: float = 0.0  # the training steps
    data_seconds: float = 0.0  # of which waiting on data: cutting or decoding batches, moving them

    @property
    def data_wait_share(self) -> float:
        return self.data_seconds / self.train_seconds if self.train_seconds else 0.0


@dataclass
class TrainResult:
    best_epoch: int
    history: list[EpochLog] = field(default_factory=list)
    stopped_early: bool = False
    resumed_after: int = 0  # the last epoch a checkpoint held when training started (0: a fresh start)
    params: dict = field(default_factory=dict)  # what a closed-form fit chose (training/closed_form.py)


class EarlyStopping:
    """Stop after `patience` epochs without improvement of the monitored value; remember the best."""

    def __init__(self, patience: int, mode: str):
        self.patience, self.sign = patience, (1 if mode == "max" else -1)
        self.best, self.best_epoch, self.bad = -math.inf, 0, 0

    def step(self, epoch: int, value: float) -> bool:
        """Record `value` for `epoch`; True if it is the best so far. NaN never improves."""
        score = self.sign * value if not math.isnan(value) else -math.inf
        if score > self.best:
            self.best, self.best_epoch, self.bad = score, epoch, 0
            return True
        self.bad += 1
        return False

    @property
    def should_stop(self) -> bool:
        return self.bad >= self.patience


def _selection(pred: np.ndarray, scores: np.ndarray, loss_fn) -> tuple[float, float]:
    """(loss, SROCC) on the selection split, over the examples that have a prediction (a clip that failed
    to decode has none, the same one every epoch). Several targets ((N, K)): the summed loss, and the mean
    of the targets' SROCCs (each target counts the same in choosing the epoch)."""
    ok = np.isfinite(pred) if pred.ndim == 1 else np.isfinite(pred).all(axis=1)
    if not ok.any():
        return float("nan"), float("nan")
    loss = float(loss_fn(torch.from_numpy(pred[ok]), torch.from_numpy(scores[ok])))
    if pred.ndim == 1:
        return loss, evaluate(scores[ok], pred[ok])["srocc"]
    return loss, float(np.mean([evaluate(scores[ok, k], pred[ok, k])["srocc"] for k in range(pred.shape[1])]))


def _resume(checkpoint: Path, model: nn.Module, opt, sched, rng: np.random.Generator,
            stopper: EarlyStopping, result: TrainResult) -> dict:
    """Put the model, optimizer, scheduler, RNGs, early stopping and history back as `checkpoint` left them
    after its epoch; returns the best epoch's weights."""
    state = load_checkpoint(checkpoint)
    try:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        sched.load_state_dict(state["sched"])
        set_rng_states(state["rng"], rng)
        stopper.best, stopper.best_epoch, stopper.bad = state["stopper"]
        result.history = [EpochLog(**h) for h in state["history"]]
        result.resumed_after = int(state["epoch"])
        return dict(state["best_state"])
    except (KeyError, ValueError, TypeError, RuntimeError) as e:  # another model's, or a damaged state
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise DamagedError(f"resume checkpoint {checkpoint} does not fit this training ({reason}): "
                           "delete it to train from the first epoch") from None


@with_threads(lambda model, *args, **kwargs: training_work(model))  # small models: one thread (core/threads.py)
def train_model(
    model: nn.Module,
    train: TrainData,
    select: TrainData | None,
    cfg: TrainCfg,
    device: torch.device = torch.device("cpu"),
    on_epoch: Callable[[EpochLog], None] | None = None,
    checkpoint: Path | None = None,
) -> TrainResult:
    """Train `model` in place on `train`, select the epoch on `select`; returns the history.
    `select` None (a refit): `cfg.epochs` epochs, no early stopping, the last epoch's weights.

    >>> result = train_model(model, fit_split, select_split, load_config("configs/demo.yaml").train)
    >>> result.best_epoch, result.history[-1].select_srocc
    """
    seed_everything(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    if select is not None and (len(select) == 0 or select.scores is None):
        raise DataError("the selection split has no scored video: check train.holdout_fraction and the training split")
    model.to(device)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=cfg.lr)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=cfg.lr_step_epochs, gamma=cfg.lr_decay)
    loss_fn = WeightedLoss(cfg.loss)
    stopper = EarlyStopping(cfg.patience, "max" if cfg.monitor == "srocc" else "min")
    result, best_state, start = TrainResult(best_epoch=0), copy.deepcopy(model.state_dict()), 1
    if checkpoint is not None and checkpoint.is_file():  # resume after an interruption
        best_state = _resume(checkpoint, model, opt, sched, rng, stopper, result)
        start = result.resumed_after + 1
    for epoch in range(start, cfg.epochs + 1):
        if stopper.should_stop:
            result.stopped_early = True
            break
        t0 = time.perf_counter()
        lr = opt.param_groups[0]["lr"]
        model.train()
        total, seen, data_s = 0.0, 0, 0.0
        batches = iter(train.batches(cfg, rng, device))
        while True:
            t_data = time.perf_counter()  # waiting on data: getting the next batch onto the device
            batch = next(batches, None)
            if batch is None:
                break
            inputs, y, *w = batch  # w: [loss weights (B,)] for a weighted split, else []
            data_s += time.perf_counter() - t_data
            pred = model(inputs)
            loss = loss_fn(pred, y.to(device), *(t.to(device) for t in w))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.item() * len(y)
            seen += len(y)
        sched.step()
        train_s = time.perf_counter() - t0
        # no selection split (a refit): nothing to watch, every epoch runs and the last one's weights are kept
        sel_loss, sel_srocc = (float("nan"),) * 2 if select is None else _selection(select.predict(model, device),
                                                                                 select.scores, loss_fn)
        log = EpochLog(epoch, lr, total / max(seen, 1), sel_loss, sel_srocc, time.perf_counter() - t0, train_s, data_s)
        result.history.append(log)
        if select is None:
            stopper.best_epoch = epoch
        elif stopper.step(epoch, sel_srocc if cfg.monitor == "srocc" else sel_loss):
            best_state = copy.deepcopy(model.state_dict())
        if checkpoint is not None:
            save_checkpoint(checkpoint, {
                "model": model.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict(),
                "best_state": best_state, "stopper": [stopper.best, stopper.best_epoch, stopper.bad],
                "history": [asdict(h) for h in result.history], "epoch": epoch, "rng": rng_states(rng)})
        if on_epoch is not None:
            on_epoch(log)
        if stopper.should_stop:
            result.stopped_early = True
            break
    if select is not None:
        model.load_state_dict(best_state)
    result.best_epoch = stopper.best_epoch
    return result
