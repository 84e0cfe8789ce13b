"""A memorability model: an aggregator over frame features, then a head. Widths are derived, never typed."""

from __future__ import annotations

import torch
from torch import nn

from mediaeval_mem.errors import ConfigError
from mediaeval_mem.models.aggregators import AGGREGATORS
from mediaeval_mem.models.heads import HEADS


class MemModel(nn.Module):
    def __init__(self, aggregator: nn.Module, head: nn.Module):
        super().__init__()
        self.aggregator, self.head = aggregator, head

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(B, T, D) frame features, (B, T) bool mask -> (B,) scores in [0, 1]."""
        return self.head(self.aggregator(x, mask))


def _build(registry, name: str, args: dict, in_dim: int, where: str):
    try:
        return registry.build(name, in_dim=in_dim, **args)
    except TypeError as e:  # an argument the builder does not take
        raise ConfigError(f"{where}: bad arguments {sorted(args)} for {registry.kind} {name!r} ({e})") from None


def build_model(model_cfg, in_dim: int) -> MemModel:
    """Build from a ModelCfg: the aggregator from the feature width, the head from the aggregator's."""
    agg = _build(AGGREGATORS, model_cfg.aggregator, dict(model_cfg.aggregator_args), in_dim, "model.aggregator_args")
    head = _build(HEADS, model_cfg.head, dict(model_cfg.head_args), agg.out_dim, "model.head_args")
    return MemModel(agg, head)


def count_trainable(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
