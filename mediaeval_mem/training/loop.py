"""The training loop: the paper's recipe (Adam, step decay, L1, early stopping) as config.

Model selection watches a selection split (by default a held-out slice of the training split) and
never the split that is reported; the best epoch's weights are restored at the end.
"""

from __future__ import annotations

import copy
import math
import random
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
from torch import nn

from mediaeval_mem.config import TrainCfg
from mediaeval_mem.training.batches import LabelledSplit, batch_indices, collate, training_batches
from mediaeval_mem.training.metrics import evaluate


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
    data_seconds: float = 0.0  # of which waiting on data: cutting batches from the feature arrays, moving them

    @property
    def data_wait_share(self) -> float:
        return self.data_seconds / self.train_seconds if self.train_seconds else 0.0


@dataclass
class TrainResult:
    best_epoch: int
    history: list[EpochLog] = field(default_factory=list)
    stopped_early: bool = False


def to_device(streams, device: torch.device):
    """[(x, mask)] -> the device, x as float32 (batches may travel as float16)."""
    return [(x.to(device, non_blocking=True).float(), m.to(device, non_blocking=True)) for x, m in streams]


def make_loss(name: str) -> nn.Module:
    return {"l1": nn.L1Loss, "mse": nn.MSELoss}[name]()


@torch.inference_mode()
def predict(model: nn.Module, split: LabelledSplit, batch_size: int = 64, device: torch.device = torch.device("cpu")) -> np.ndarray:
    """(N,) scores for every video of `split`, in order."""
    model.eval()
    out = []
    for idx in batch_indices(len(split), batch_size):
        streams, _ = collate(split, idx)
        out.append(model(to_device(streams, device)).float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros(0, np.float32)


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


def train_model(
    model: nn.Module,
    train: LabelledSplit,
    select: LabelledSplit,
    cfg: TrainCfg,
    device: torch.device = torch.device("cpu"),
    on_epoch: Callable[[EpochLog], None] | None = None,
) -> TrainResult:
    """Train `model` in place on `train`, select the epoch on `select`; returns the history."""
    seed_everything(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    if len(select) == 0 or select.scores is None:
        raise ValueError("the selection split needs scored videos")
    model.to(device)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=cfg.lr_step_epochs, gamma=cfg.lr_decay)
    loss_fn = make_loss(cfg.loss)
    stopper = EarlyStopping(cfg.patience, "max" if cfg.monitor == "srocc" else "min")
    result, best_state = TrainResult(best_epoch=0), copy.deepcopy(model.state_dict())
    for epoch in range(1, cfg.epochs + 1):
        t0 = time.perf_counter()
        lr = opt.param_groups[0]["lr"]
        model.train()
        total, seen, data_s = 0.0, 0, 0.0
        batches = iter(training_batches(train, cfg.batch_size, rng, cfg.shuffle_frames, device))
        while True:
            t_data = time.perf_counter()  # waiting on data: getting the next batch onto the device
            batch = next(batches, None)
            if batch is None:
                break
            streams, y = batch
            streams = to_device(streams, device)
            data_s += time.perf_counter() - t_data
            pred = model(streams)
            loss = loss_fn(pred, y.to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.item() * len(y)
            seen += len(y)
        sched.step()
        train_s = time.perf_counter() - t0
        sel_pred = predict(model, select, device=device)
        sel_loss = float(loss_fn(torch.from_numpy(sel_pred), torch.from_numpy(select.scores)))
        sel_srocc = evaluate(select.scores, sel_pred)["srocc"]
        log = EpochLog(epoch, lr, total / max(seen, 1), sel_loss, sel_srocc, time.perf_counter() - t0, train_s, data_s)
        result.history.append(log)
        if stopper.step(epoch, sel_srocc if cfg.monitor == "srocc" else sel_loss):
            best_state = copy.deepcopy(model.state_dict())
        if on_epoch is not None:
            on_epoch(log)
        if stopper.should_stop:
            result.stopped_early = True
            break
    model.load_state_dict(best_state)
    result.best_epoch = stopper.best_epoch
    return result
