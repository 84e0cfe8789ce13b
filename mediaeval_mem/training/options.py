"""The training options a run config holds (`train:`, `finetune:` and `lora:`), as the training code reads them.

They are sections of a RunConfig (config.py builds and re-exports them), defined here so that training,
below config in the layers, needs nothing from above it.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Mapping

from mediaeval_mem.core.errors import ConfigError, MemError
from mediaeval_mem.encoders.vlm import POOLINGS
from mediaeval_mem.models import HEADS
from mediaeval_mem.training.losses import loss_terms


def known_head(name: str, where: str):
    """The head's registered metadata (a ClosedForm for the baselines, else None); an unknown name raises."""
    try:
        return HEADS.info(name)
    except MemError as e:
        raise ConfigError(f"{where}: {e}") from None


@dataclass(frozen=True)
class TrainCfg:
    epochs: int = 100  # at most
    batch_size: int = 8
    lr: float = 1e-4  # Adam
    lr_decay: float = 0.95  # multiplied in ...
    lr_step_epochs: int = 5  # ... every this many epochs
    patience: int = 5  # epochs without improvement before stopping
    loss: str | Mapping[str, float] = "l1"  # a name (l1 | mse | spearman) or name -> weight (training/losses.py)
    shuffle_frames: bool = True  # the paper's augmentation: frame order shuffled in training
    select_on: str = "holdout"  # holdout: a seeded slice of the training split; dev: the paper's protocol
    holdout_fraction: float = 0.1
    monitor: str = "srocc"  # what early stopping watches on the selection split: srocc | loss
    seed: int = 0
    device: str = "auto"  # for extraction and training: auto (cuda if present) | cpu | cuda | cuda:N

    def __post_init__(self):
        checks = [
            (self.epochs >= 1, "epochs must be >= 1"),
            (self.batch_size >= 1, "batch_size must be >= 1"),
            (self.lr > 0, "lr must be > 0"),
            (0 < self.lr_decay <= 1, "lr_decay must lie in (0, 1]"),
            (self.lr_step_epochs >= 1, "lr_step_epochs must be >= 1"),
            (self.patience >= 1, "patience must be >= 1"),
            (self.select_on in ("holdout", "dev"), "select_on must be holdout or dev"),
            (0 < self.holdout_fraction < 1, "holdout_fraction must lie in (0, 1)"),
            (self.monitor in ("srocc", "loss"), "monitor must be srocc or loss"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)
        try:
            loss_terms(self.loss)
        except MemError as e:  # an unknown name, a weight <= 0
            raise ConfigError(f"loss: {e}") from None


@dataclass(frozen=True)
class FinetuneCfg:
    """Training an encoder end to end before it extracts (i3d-finetune); the rest of the recipe is train's."""

    init: str | None = None  # checkpoint to start from; None: i3d-kinetics's default file; 'random'
    frames: int = 32  # frames per clip, sampled uniformly
    size: int = 224  # crop side; the features of the fine-tuned net are extracted at the same size
    head: str = "linear"  # from the heads registry, over the network's clip feature
    head_args: Mapping[str, Any] = field(default_factory=dict)
    epochs: int = 10
    batch_size: int = 4
    lr: float = 1e-4
    patience: int = 3
    workers: int = 2  # DataLoader workers decoding clips on the fly

    def __post_init__(self):
        if known_head(self.head, "head") is not None:
            raise ConfigError(f"head: {self.head} is fitted in closed form; a fine-tuned network needs a trained head "
                              f"(linear, mlp)")
        for name in ("frames", "size", "epochs", "batch_size", "patience"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1")
        if self.lr <= 0 or self.workers < 0:
            raise ConfigError("lr must be > 0" if self.lr <= 0 else "workers must be >= 0")

    def recipe(self, train: TrainCfg) -> TrainCfg:
        """The training recipe of the fine-tuning: train's, with this section's epochs, batch, lr, patience."""
        return replace(train, epochs=self.epochs, batch_size=self.batch_size, lr=self.lr, patience=self.patience)


QUANTIZE = ("auto", "nf4", "none")  # auto: nf4 (4-bit) where CUDA is present, else none


@dataclass(frozen=True)
class LoraCfg:
    """The VLM regressor (qwen2.5-vl-*-lora): LoRA adapters on the language model's attention projections and a head
    on its pooled last hidden state, trained before the stream extracts; the rest of the recipe is train's."""

    weights: str | None = None  # the base VLM: None its default (hub id; the demo's saved folder), a folder, 'random'
    rank: int = 16  # LoRA rank r of q_proj, k_proj, v_proj, o_proj
    alpha: float = 32.0  # LoRA scale alpha (the update is alpha / r * B A)
    dropout: float = 0.05  # on the adapters' input
    pooling: str = "answer"  # answer | mean: which hidden states are averaged (encoders/vlm.py POOLINGS)
    frames: int = 8  # frames per video, sampled uniformly (extract with the stream's sampling: uniform:<frames>)
    quantize: str = "auto"  # auto | nf4 | none: the frozen base weights in 4-bit (bitsandbytes, CUDA only)
    head: str = "linear"  # from the heads registry, over the pooled hidden state
    head_args: Mapping[str, Any] = field(default_factory=dict)
    epochs: int = 3
    batch_size: int = 4
    lr: float = 1e-4
    patience: int = 2
    workers: int = 2  # DataLoader workers decoding videos on the fly

    def __post_init__(self):
        if known_head(self.head, "head") is not None:
            raise ConfigError(f"head: {self.head} is fitted in closed form; the LoRA regressor needs a trained head "
                              f"(linear, mlp)")
        for name in ("rank", "frames", "epochs", "batch_size", "patience"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1")
        checks = [(self.alpha > 0, "alpha must be > 0"), (0 <= self.dropout < 1, "dropout must lie in [0, 1)"),
                  (self.lr > 0, "lr must be > 0"), (self.workers >= 0, "workers must be >= 0"),
                  (self.pooling in POOLINGS, f"pooling must be one of {', '.join(POOLINGS)}, got {self.pooling!r}"),
                  (self.quantize in QUANTIZE, f"quantize must be one of {', '.join(QUANTIZE)}, got {self.quantize!r}")]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)

    def recipe(self, train: TrainCfg) -> TrainCfg:
        """The training recipe of the adapters: train's, with this section's epochs, batch, lr, patience."""
        return replace(train, epochs=self.epochs, batch_size=self.batch_size, lr=self.lr, patience=self.patience)
