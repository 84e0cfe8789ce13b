"""A memorability model: an aggregator over frame features, then a head. Widths are derived, never typed."""

from __future__ import annotations

import torch
from torch import nn

from mediaeval_mem.core.errors import ConfigError
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
        """[(x (B, T_s, D_s), mask (B, T_s) bool) per stream] -> (B,) scores in [0, 1] ((B, K) for K targets)."""
        v = [agg(x, mask) for agg, (x, mask) in zip(self.aggregators, streams)]  # each (B, out_s)
        return self.head(torch.cat(v, dim=-1))


def _build(registry, name: str, args: dict, in_dim: int, where: str):
    try:
        return registry.build(name, in_dim=in_dim, **args)
    except TypeError as e:  # an argument the builder does not take
        raise ConfigError(f"{where}: bad arguments {sorted(args)} for {registry.kind} {name!r} ({e})") from None


def build_model(model_cfg, in_dims: list[int], outputs: int = 1) -> MemModel:
    """Build from a ModelCfg: each stream's aggregator from its feature width, the head from their sum, with
    `outputs` scores (one per target: data.targets; a one-target head is built exactly as before).

    (Whether an aggregator fits its encoder was checked when the config was built.)
    """
    aggs = [_build(AGGREGATORS, s.aggregator, dict(s.aggregator_args), d, f"model.streams[{i}].aggregator_args")
            for i, (s, d) in enumerate(zip(model_cfg.streams, in_dims, strict=True))]
    args = dict(model_cfg.head_args) | ({"outputs": outputs} if outputs > 1 else {})
    head = _build(HEADS, model_cfg.head, args, sum(a.out_dim for a in aggs), "model.head_args")
    return MemModel(aggs, head)


def check_builds(model_cfg) -> None:
    """Raise ConfigError unless the model of `model_cfg` builds at its encoders' widths: free-form aggregator and head
    args (e.g. a Bi-GRU's left beside aggregator=avg by --set) are only checked by building. A precomputed stream's
    width is known once its files are read: such a model is not checked here."""
    from mediaeval_mem.encoders import ENCODERS

    widths = [ENCODERS.info(s.encoder).width for s in model_cfg.streams]
    if any(not w for w in widths):
        return
    try:
        build_model(model_cfg, widths)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"the model does not build: {e}") from None


def count_trainable(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
