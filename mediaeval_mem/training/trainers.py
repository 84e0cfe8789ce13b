"""Trainers: what makes an encoder's weights when the encoder is trained before it extracts.

Such an encoder names its trainer in its EncoderInfo (`trainer="i3d-finetune"`), as data; the run's
feature stage looks the name up here and calls it when a stream gives no weights:

    prepared = TRAINERS[ENCODERS.info(stream.encoder).trainer](PrepareContext(index, fit, select, cfg, device))

A trainer maps a PrepareContext to Prepared (the weights its encoder's builder then takes). A plugin
registers one as the built-in parts do: `@TRAINERS.register("my-trainer")`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

import torch

from mediaeval_mem.core.errors import ConfigError
from mediaeval_mem.core.registry import Registry
from mediaeval_mem.datasets import DatasetIndex, VideoItem
from mediaeval_mem.training.finetune import finetune_i3d
from mediaeval_mem.training.vlm_lora import train_vlm_lora

if TYPE_CHECKING:
    from mediaeval_mem.config import RunConfig

# name -> trainer(PrepareContext) -> Prepared
TRAINERS: Registry = Registry("trainer")


@dataclass
class PrepareContext:
    """What an encoder that is trained before it extracts gets to train on (the run's training data)."""

    dataset: DatasetIndex
    fit: list[VideoItem]  # training videos
    select: list[VideoItem]  # the videos model selection watches
    cfg: RunConfig
    device: torch.device
    echo: Callable[[str], None] = print
    encoder: str = ""  # the stream's encoder name (a trainer that makes several, vlm-lora, needs it)
    sampling: str = "all"  # the frames the stream extracts with the weights made (vlm-lora trains on the same ones)


@dataclass
class Prepared:
    """Weights an encoder made for itself, and what to record about their making."""

    weights: str  # what the encoder's builder then takes as `weights`
    tags: dict[str, Any] = field(default_factory=dict)
    history: list[dict] = field(default_factory=list)  # per-epoch metrics of the making


@TRAINERS.register("i3d-finetune")
def finetune_i3d_weights(ctx: PrepareContext) -> Prepared:
    """Fine-tune an I3D for memorability on the run's training videos (or find it done): its best.pt."""
    done = finetune_i3d(ctx.dataset, ctx.fit, ctx.select, ctx.cfg, ctx.device, ctx.echo)
    tags = {"finetune_checkpoint": done.checkpoint, "finetune_best_epoch": done.best_epoch, "finetune_cached": done.cached}
    return Prepared(str(done.checkpoint), tags, done.history)


@TRAINERS.register("vlm-lora")
def vlm_lora_weights(ctx: PrepareContext) -> Prepared:
    """Train LoRA adapters and a head on a Qwen2.5-VL for memorability on the run's training videos (or find them
    trained): their folder (adapters, head, lora.json; no base weights), its size logged."""
    if ctx.sampling != f"uniform:{ctx.cfg.lora.frames}":  # features from other frames than the adapters learnt on
        raise ConfigError(f"{ctx.encoder}: the stream samples {ctx.sampling} but the adapters train on "
                          f"lora.frames={ctx.cfg.lora.frames} (uniform:{ctx.cfg.lora.frames}): set both alike")
    done = train_vlm_lora(ctx.dataset, ctx.fit, ctx.select, ctx.encoder, ctx.cfg, ctx.device, ctx.echo)
    tags = {"lora_adapters": done.folder, "lora_size_bytes": done.size_bytes, "lora_best_epoch": done.best_epoch,
            "lora_base_dtype": done.base_dtype, "lora_cached": done.cached}
    return Prepared(str(done.folder), tags, done.history)
