"""I3D fine-tuned end to end for memorability (the paper's "I3D fine-tuned" rows).

Clips are decoded on the fly in DataLoader workers (uniform:N frames, resized so the short side is
8/7 of the crop), randomly cropped and flipped in training, centre-cropped otherwise, scaled to
[-1, 1]. The model is the I3D's 1024-d clip feature -> Linear -> sigmoid, trained with the run's
recipe (Adam, step decay, the loss, early stopping on a held-out slice of the training split).
BatchNorm statistics stay frozen: batches of a few clips would only add noise to them.

Every epoch writes a checkpoint (resumable: an interrupted fine-tuning continues from its last
epoch); the best epoch's network is saved as best.pt in the pytorch-i3d layout with a best.json
sidecar, and is then used as the `i3d-finetune` feature extractor.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from mediaeval_mem.config import RunConfig, to_dict
from mediaeval_mem.datasets import DatasetIndex, VideoItem
from mediaeval_mem.errors import MemError
from mediaeval_mem.io import atomic_save, atomic_write_json, file_lock
from mediaeval_mem.paths import runs_dir


class I3DRegressor(nn.Module):
    def __init__(self, net):
        super().__init__()
        self.net, self.head = net, nn.Linear(1024, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, 3, T, S, S) in [-1, 1] -> (B,)
        return torch.sigmoid(self.head(self.net.features(x))).squeeze(-1)

    def train(self, mode: bool = True):
        super().train(mode)
        for m in self.net.modules():  # frozen BatchNorm statistics
            if isinstance(m, nn.BatchNorm3d):
                m.eval()
        return self


class ClipDataset(torch.utils.data.Dataset):
    """(clip (3, T, S, S) float in [-1, 1], score) per video, decoded when asked for (in a worker)."""

    def __init__(self, items: list[VideoItem], frames: int, size: int, train: bool):
        self.items, self.frames, self.size, self.train = items, frames, size, train

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        from mediaeval_mem.encoders.i3d import pad_frames
        from mediaeval_mem.video import decode

        item = self.items[i]
        try:
            x = decode(item.path, f"uniform:{self.frames}", short_side=round(self.size * 8 / 7))  # (T, H, W, 3) uint8
        except MemError:
            return None  # dropped by collate; counted by the caller
        x, _ = pad_frames(x, self.frames)
        h, w = x.shape[1:3]
        if self.train:
            top, left = torch.randint(0, h - self.size + 1, ()).item(), torch.randint(0, w - self.size + 1, ()).item()
        else:
            top, left = (h - self.size) // 2, (w - self.size) // 2
        x = x[:, top : top + self.size, left : left + self.size]
        if self.train and torch.rand(()) < 0.5:
            x = x.flip(2)
        x = x.permute(3, 0, 1, 2).float() / 127.5 - 1.0  # (3, T, S, S)
        return x, torch.tensor(item.score if item.score is not None else float("nan"), dtype=torch.float32)


def _collate(batch):
    batch = [b for b in batch if b is not None]
    if not batch:
        return None
    return torch.stack([b[0] for b in batch]), torch.stack([b[1] for b in batch])


def _loader(items, cfg, train: bool, shuffle: bool):
    f = cfg.finetune
    return torch.utils.data.DataLoader(
        ClipDataset(items, f.frames, f.size, train), batch_size=f.batch_size, shuffle=shuffle,
        num_workers=f.workers, collate_fn=_collate, pin_memory=torch.cuda.is_available(),
        persistent_workers=False,
    )


@torch.inference_mode()
def _predict(model, items, cfg, device) -> np.ndarray:
    model.eval()
    out = []
    for batch in _loader(items, cfg, train=False, shuffle=False):
        if batch is not None:
            out.append(model(batch[0].to(device)).float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros(0, np.float32)


@dataclass
class FinetuneResult:
    checkpoint: Path  # best.pt, pytorch-i3d layout, with best.json beside it
    history: list[dict] = field(default_factory=list)
    best_epoch: int = 0
    cached: bool = False


def finetune_key(index: DatasetIndex, fit: list[VideoItem], select: list[VideoItem], init_id: str, cfg: RunConfig) -> str:
    """What fixes a fine-tuned I3D: data (ids, folder), the starting weights, the fine-tuning and recipe settings."""
    t = to_dict(cfg.train)
    recipe = {k: t[k] for k in ("lr_decay", "lr_step_epochs", "loss", "seed", "holdout_fraction", "monitor")}
    blob = {"dataset": index.name, "root": str(index.root.resolve()), "fit": [i.video_id for i in fit],
            "select": [i.video_id for i in select], "init": init_id, "finetune": to_dict(cfg.finetune), "recipe": recipe}
    return hashlib.sha256(json.dumps(blob, sort_keys=True).encode()).hexdigest()[:12]


def _init_source(cfg: RunConfig) -> tuple[Callable[[], nn.Module], str]:
    """(load the starting I3D, its identity). The identity alone keys the cache: a fine-tuning
    found already done never loads the network."""
    from mediaeval_mem.encoders.i3d import I3D_CHECKPOINTS, i3d_dir, load_i3d_checkpoint, random_i3d
    from mediaeval_mem.encoders.weights import files_identity
    from mediaeval_mem.errors import WeightsError

    init, what = cfg.finetune.init, "i3d-finetune (finetune.init)"
    if init == "random":
        return (lambda: random_i3d(400)), "random:seed=0"
    path = Path(init).expanduser() if init else i3d_dir() / I3D_CHECKPOINTS["i3d-kinetics"][0]
    if not path.is_file():
        raise WeightsError(f"{what}: checkpoint {path} not found: set finetune.init to a pytorch-i3d checkpoint, or 'random'")
    return (lambda: load_i3d_checkpoint(path, what)), files_identity([path])


def finetune_i3d(
    index: DatasetIndex,
    fit: list[VideoItem],
    select: list[VideoItem],
    cfg: RunConfig,
    device: torch.device,
    echo: Callable[[str], None] = print,
) -> FinetuneResult:
    """Fine-tune (or find already fine-tuned) an I3D on `fit`, selecting the epoch on `select`."""
    fit = [it for it in fit if it.path is not None]
    select = [it for it in select if it.path is not None]
    load_init, init_id = _init_source(cfg)
    folder = runs_dir() / "finetune" / "i3d" / index.name / finetune_key(index, fit, select, init_id, cfg)
    best = folder / "best.pt"

    def finished() -> FinetuneResult | None:
        if (folder / "done.json").is_file() and best.is_file():
            done = json.loads((folder / "done.json").read_text())
            return FinetuneResult(best, done["history"], done["best_epoch"], cached=True)
        return None

    if (result := finished()) is not None:
        return result
    # one process fine-tunes a given network; another asking for the same one waits, then finds it done
    with file_lock(folder.with_name(f"{folder.name}.lock"),
                   on_wait=lambda: echo(f"waiting: another process is fine-tuning this I3D in {folder}")):
        return finished() or _finetune(folder, load_init, init_id, fit, select, cfg, device, echo)


def _finetune(folder: Path, load_init, init_id: str, fit: list[VideoItem], select: list[VideoItem], cfg: RunConfig,
              device: torch.device, echo: Callable[[str], None]) -> FinetuneResult:
    """The fine-tuning itself, resumable from the last epoch's checkpoint in `folder`."""
    from mediaeval_mem.training.loop import EarlyStopping, make_loss, seed_everything
    from mediaeval_mem.training.metrics import srocc

    best = folder / "best.pt"
    f, t = cfg.finetune, cfg.train
    seed_everything(t.seed)
    model = I3DRegressor(load_init()).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=f.lr)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=t.lr_step_epochs, gamma=t.lr_decay)
    stopper = EarlyStopping(f.patience, "max" if t.monitor == "srocc" else "min")
    loss_fn = make_loss(t.loss)
    history, start = [], 1
    folder.mkdir(parents=True, exist_ok=True)
    epochs = sorted(folder.glob("epoch-*.pt"), key=lambda p: int(p.stem.split("-")[1]))
    if epochs:  # resume after an interruption
        state = torch.load(epochs[-1], map_location="cpu", weights_only=True)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        sched.load_state_dict(state["sched"])
        stopper.best, stopper.best_epoch, stopper.bad = state["stopper"]
        history, start = json.loads(state["history"]), state["epoch"] + 1
        torch.set_rng_state(state["rng"])
        echo(f"fine-tuning I3D: resuming after epoch {state['epoch']} from {epochs[-1]}")
    select_scores = np.array([it.score for it in select], np.float32)
    for epoch in range(start, f.epochs + 1):
        if stopper.should_stop:
            break
        t0, total, seen, skipped = time.perf_counter(), 0.0, 0, 0
        model.train()
        lr = opt.param_groups[0]["lr"]
        for batch in _loader(fit, cfg, train=True, shuffle=True):
            if batch is None:
                skipped += 1
                continue
            x, y = batch
            loss = loss_fn(model(x.to(device, non_blocking=True)), y.to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total, seen = total + loss.item() * len(y), seen + len(y)
        sched.step()
        pred = _predict(model, select, cfg, device)
        sel_loss = float(loss_fn(torch.from_numpy(pred), torch.from_numpy(select_scores[: len(pred)]))) if len(pred) else float("nan")
        sel_srocc = srocc(select_scores[: len(pred)], pred) if len(pred) == len(select) else float("nan")
        log = {"epoch": epoch, "lr": lr, "train_loss": total / max(seen, 1), "select_loss": sel_loss,
               "select_srocc": sel_srocc, "seconds": time.perf_counter() - t0}
        history.append(log)
        echo(f"fine-tuning I3D: epoch {epoch}  train {t.loss} {log['train_loss']:.4f}  select SROCC {sel_srocc:.4f}  ({log['seconds']:.0f}s)")
        if stopper.step(epoch, sel_srocc if t.monitor == "srocc" else sel_loss):
            atomic_save(best, lambda tmp: torch.save(model.net.state_dict(), tmp))
            atomic_write_json(folder / "best.json", {"size": f.size, "frames": f.frames, "epoch": epoch, "init": init_id})
        state = {"model": model.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict(),
                 "stopper": (stopper.best, stopper.best_epoch, stopper.bad), "history": json.dumps(history),
                 "epoch": epoch, "rng": torch.get_rng_state()}
        atomic_save(folder / f"epoch-{epoch}.pt", lambda tmp: torch.save(state, tmp))
        for old in folder.glob("epoch-*.pt"):  # keep the latest epoch only: enough to resume
            if old.name != f"epoch-{epoch}.pt":
                old.unlink()
    if not best.is_file():
        raise MemError(f"fine-tuning I3D produced no checkpoint in {folder}: no epoch could be evaluated")
    atomic_write_json(folder / "done.json", {"history": history, "best_epoch": stopper.best_epoch})
    return FinetuneResult(best, history, stopper.best_epoch)
