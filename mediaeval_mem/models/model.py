"""A memorability model: an aggregator over frame features, then a head. Widths are derived, never typed."""

from __future__ import annotations

import torch
from torch import nn

from mediaeval_mem.errors import ConfigError
from mediaeval_mem.models.aggregators import AGGREGATORS
from mediaeval_mem.models.heads import HEADS


class MemModel(nn.Module):
    """One aggregator per feature stream; their outputs concatenated; one head.

    A single-stream model (the paper's best) has one aggregator; fusion models have several.
    """

    def __init__(self, aggregators: list[nn.Module], head: nn.Module):
        super().__init__()
        self.aggregators, self.head = nn.ModuleList(aggregators), head

    def forward(self, streams: list[tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
        """[(x (B, T_s, D_s), mask (B, T_s) bool) per stream] -> (B,) scores in [0, 1]."""
        v = [agg(x, mask) for agg, (x, mask) in zip(self.aggregators, streams)]  # each (B, out_s)
        return self.head(torch.cat(v, dim=-1))


def _build(registry, name: str, args: dict, in_dim: int, where: str):
    try:
        return registry.build(name, in_dim=in_dim, **args)
    except TypeError as e:  # an argument the builder does not take
        raise ConfigError(f"{where}: bad arguments {sorted(args)} for {registry.kind} {name!r} ({e})") from None


def streams_of(cfg) -> list[tuple[str, str | None, str, dict, str]]:
    """(encoder, weights, aggregator, aggregator_args, where) of every stream of a RunConfig, primary first."""
    primary = (cfg.features.encoder, cfg.features.weights, cfg.model.aggregator, dict(cfg.model.aggregator_args), "model")
    return [primary] + [(s.encoder, s.weights, s.aggregator, dict(s.aggregator_args), f"model.fuse[{i}]")
                        for i, s in enumerate(cfg.model.fuse)]


def check_compatible(encoder: str, aggregator: str, where: str) -> None:
    """Clip-level encoders (one vector per video) take no temporal aggregator; 'none' takes only them."""
    from mediaeval_mem.encoders import ENCODER_INFO, ENCODERS

    ENCODERS[encoder]
    clip_level = ENCODER_INFO[encoder].clip_level
    if clip_level and AGGREGATORS[aggregator].temporal:
        raise ConfigError(f"{where}: aggregator {aggregator!r} models frame order, but {encoder} gives one vector per "
                          f"video: use none, avg or linear-avg")
    if aggregator == "none" and not clip_level:
        raise ConfigError(f"{where}: aggregator 'none' is for clip-level encoders; {encoder} gives one vector per frame: use avg")


def build_model(cfg, in_dims: list[int]) -> MemModel:
    """Build from a RunConfig: each aggregator from its stream's feature width, the head from their sum."""
    aggs = []
    for (encoder, _, name, args, where), d in zip(streams_of(cfg), in_dims, strict=True):
        check_compatible(encoder, name, where)
        aggs.append(_build(AGGREGATORS, name, args, d, f"{where}.aggregator_args"))
    head = _build(HEADS, cfg.model.head, dict(cfg.model.head_args), sum(a.out_dim for a in aggs), "model.head_args")
    return MemModel(aggs, head)


def count_trainable(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
