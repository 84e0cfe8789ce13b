"""The I3D fine-tuned end to end for memorability (the paper's "I3D fine-tuned" rows).

Clips are decoded on the fly in DataLoader workers (uniform:N frames, the short side resized to 8/7
of the crop by the shared preprocessing, `ImageTransform`), randomly cropped and flipped in training,
centre-cropped otherwise, scaled to [-1, 1]. The model is the I3D's 1024-d clip feature -> a head from
the heads registry (finetune.head, linear by default), trained by the one training loop with the run's
recipe (finetune.epochs / batch_size / lr / patience over train's schedule, loss and early stopping on
the selection videos) and its per-epoch checkpoints: an interrupted fine-tuning resumes after its last
finished epoch. BatchNorm statistics stay frozen: batches of a few clips would only add noise to them.

The best epoch's network is saved as best.pt in the pytorch-i3d layout with a best.json sidecar, and
is then the `i3d-finetune` feature extractor (training/trainers.py registers this as its trainer).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np
import torch
from torch import nn

from mediaeval_mem.core.errors import MemError, WeightsError
from mediaeval_mem.core.io import atomic_save, atomic_write_json, file_lock
from mediaeval_mem.core.paths import runs_dir
from mediaeval_mem.core.schema import digest, to_dict
from mediaeval_mem.datasets import DatasetIndex, VideoItem
from mediaeval_mem.encoders.i3d import (
    FEATURE_DIM,
    I3D_CHECKPOINTS,
    i3d_dir,
    i3d_transform,
    load_i3d_checkpoint,
    pad_frames,
    random_i3d,
)
from mediaeval_mem.encoders.preprocess import ImageTransform
from mediaeval_mem.encoders.weights import files_identity
from mediaeval_mem.features.pixels import frames_for
from mediaeval_mem.models import HEADS
from mediaeval_mem.training.loop import seed_everything, train_model
from mediaeval_mem.training.losses import describe_loss

if TYPE_CHECKING:
    from mediaeval_mem.config import RunConfig


class I3DRegressor(nn.Module):
    """An I3D's clip feature -> a score head. BatchNorm statistics frozen in training."""

    def __init__(self, net, head: nn.Module):
        super().__init__()
        self.net, self.head = net, head

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, 3, T, S, S) in [-1, 1] -> (B,)
        return self.head(self.net.features(x))

    def train(self, mode: bool = True):
        super().train(mode)
        for m in self.net.modules():  # frozen BatchNorm statistics
            if isinstance(m, nn.BatchNorm3d):
                m.eval()
        return self


def clip_transform(size: int) -> ImageTransform:
    """The fine-tuning's preprocessing: short side to 8/7 of the crop, a size x size crop, [-1, 1]."""
    return i3d_transform(size, round(size * 8 / 7))


class ClipDataset(torch.utils.data.Dataset):
    """(index, clip (3, T, S, S) float in [-1, 1], score) per video, decoded when asked for (in a worker)."""

    def __init__(self, items: list[VideoItem], frames: int, size: int, train: bool):
        self.items, self.frames, self.train = items, frames, train
        self.transform = clip_transform(size)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        item = self.items[i]
        try:  # extraction's own pixel path: (T, 3, S, S) uint8
            x = frames_for(item.path, self.transform, f"uniform:{self.frames}", random_crop=self.train)
        except MemError:
            return None  # left out of the batch; a prediction for it is NaN
        x, _ = pad_frames(x, self.frames)
        if self.train and torch.rand(()) < 0.5:
            x = x.flip(-1)
        x = self.transform.normalize(x).permute(1, 0, 2, 3)  # (3, T, S, S)
        return i, x, torch.tensor(item.score if item.score is not None else float("nan"), dtype=torch.float32)


def _collate(batch):
    batch = [b for b in batch if b is not None]
    if not batch:
        return None
    return torch.tensor([b[0] for b in batch]), torch.stack([b[1] for b in batch]), torch.stack([b[2] for b in batch])


@dataclass
class ClipData:
    """Videos as decoded clips: the training loop's TrainData for an encoder trained end to end."""

    items: list[VideoItem]
    frames: int
    size: int
    workers: int

    @property
    def scores(self) -> np.ndarray:
        return np.array([it.score for it in self.items], np.float32)

    def __len__(self) -> int:
        return len(self.items)

    def _loader(self, train: bool, batch_size: int, generator: torch.Generator | None = None):
        return torch.utils.data.DataLoader(
            ClipDataset(self.items, self.frames, self.size, train), batch_size=batch_size, shuffle=train,
            generator=generator, num_workers=self.workers, collate_fn=_collate, pin_memory=torch.cuda.is_available(),
        )

    def batches(self, cfg, rng: np.random.Generator, device: torch.device):
        shuffle = torch.Generator().manual_seed(int(rng.integers(2**31)))
        for batch in self._loader(True, cfg.batch_size, shuffle):
            if batch is not None:  # every clip of the batch failed to decode
                _, x, y = batch
                yield x.to(device, non_blocking=True), y

    @torch.inference_mode()
    def predict(self, model: nn.Module, device: torch.device, batch_size: int = 4) -> np.ndarray:
        model.eval()
        out = np.full(len(self.items), np.nan, np.float32)
        for batch in self._loader(False, batch_size):
            if batch is not None:
                idx, x, _ = batch
                out[idx.numpy()] = model(x.to(device)).float().cpu().numpy()
        return out


UNKEYED = ("workers",)  # finetune settings that change how fast, not what is trained


@dataclass
class FinetuneResult:
    checkpoint: Path  # best.pt, pytorch-i3d layout, with best.json beside it
    history: list[dict] = field(default_factory=list)  # EpochLog fields per epoch
    best_epoch: int = 0
    cached: bool = False


def finetune_key(index: DatasetIndex, fit: list[VideoItem], select: list[VideoItem], init_id: str, cfg: RunConfig) -> str:
    """What fixes a fine-tuned I3D: data (ids, folder), the starting weights, the fine-tuning and recipe settings
    (not finetune.workers: how many processes decode the clips changes no result)."""
    t = to_dict(cfg.train)
    recipe = {k: t[k] for k in ("lr_decay", "lr_step_epochs", "loss", "seed", "holdout_fraction", "monitor")}
    settings = {k: v for k, v in to_dict(cfg.finetune).items() if k not in UNKEYED}
    blob = {"dataset": index.name, "root": str(index.root.resolve()), "fit": [i.video_id for i in fit],
            "select": [i.video_id for i in select], "init": init_id, "finetune": settings, "recipe": recipe}
    return digest(blob, 12)


def _init_source(cfg: RunConfig) -> tuple[Callable[[], nn.Module], str]:
    """(load the starting I3D, its identity). The identity alone keys the cache: a fine-tuning
    found already done never loads the network."""
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
    """The fine-tuning itself, on the one training loop, resumable from `folder`/last.safetensors."""
    f, recipe = cfg.finetune, cfg.finetune.recipe(cfg.train)
    seed_everything(recipe.seed)  # the head's initial weights follow the seed
    model = I3DRegressor(load_init(), HEADS.build(f.head, in_dim=FEATURE_DIM, **dict(f.head_args)))
    last = folder / "last.safetensors"
    if (old := folder / "last.pt").is_file():  # an older version's pickle: never unpickled, so not resumed from
        old.unlink()
        echo(f"fine-tuning I3D: {old} is an older version's resume checkpoint (a pickle, not read): starting afresh")
    if last.is_file():
        echo(f"fine-tuning I3D: resuming from {last}")

    def on_epoch(log) -> None:
        echo(f"fine-tuning I3D: epoch {log.epoch}  train {describe_loss(recipe.loss)} {log.train_loss:.4f}  "
             f"select SROCC {log.select_srocc:.4f}  ({log.seconds:.0f}s)")

    data = [ClipData(items, f.frames, f.size, f.workers) for items in (fit, select)]
    result = train_model(model, *data, recipe, device, on_epoch, checkpoint=last)
    if result.best_epoch == 0:
        raise MemError(f"fine-tuning I3D in {folder}: no epoch could be evaluated (every selection clip failed to decode?)")
    history = [asdict(h) for h in result.history]
    atomic_save(folder / "best.pt", lambda tmp: torch.save(model.net.state_dict(), tmp))  # the best epoch's, restored
    # the extractor then sees the scale the network was trained and selected at (centre crop of the same short side)
    atomic_write_json(folder / "best.json", {"size": f.size, "short_side": clip_transform(f.size).short_side,
                                             "frames": f.frames, "epoch": result.best_epoch, "init": init_id})
    atomic_write_json(folder / "done.json", {"history": history, "best_epoch": result.best_epoch})
    last.unlink(missing_ok=True)  # done: the resume state (two copies of the network) is no longer needed
    return FinetuneResult(folder / "best.pt", history, result.best_epoch)
