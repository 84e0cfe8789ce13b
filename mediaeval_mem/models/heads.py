"""Heads: a video vector (B, D) -> a memorability score (B,) in [0, 1] (a final sigmoid); with `outputs` K > 1
(several targets, data.targets), one score per target (B, K) from the same body."""

from __future__ import annotations

import torch
from torch import nn

from mediaeval_mem.core.registry import Registry

# name -> builder(in_dim: int, **args[, outputs: int]) -> nn.Module (outputs is passed only where K > 1)
HEADS: Registry = Registry("head")


class ScoreHead(nn.Module):
    def __init__(self, layers: nn.Sequential):
        super().__init__()
        self.layers = layers

    def forward(self, v: torch.Tensor) -> torch.Tensor:  # (B, D) -> (B,), or (B, K) for K targets
        out = torch.sigmoid(self.layers(v))  # (B, K)
        return out.squeeze(-1) if out.shape[-1] == 1 else out


@HEADS.register("mlp")
def mlp(in_dim: int, hidden: tuple[int, ...] = (512, 128), dropout: float = 0.0, outputs: int = 1) -> nn.Module:
    """The paper's MLP: in_dim -> 512 -> 128 -> 1, ReLU after each hidden layer, sigmoid at the end
    (-> `outputs`, one per target, sharing the hidden layers)."""
    layers, width = [], in_dim
    for h in hidden:
        layers += [nn.Linear(width, h), nn.ReLU()] + ([nn.Dropout(dropout)] if dropout else [])
        width = h
    return ScoreHead(nn.Sequential(*layers, nn.Linear(width, outputs)))


@HEADS.register("linear")
def linear(in_dim: int, outputs: int = 1) -> nn.Module:
    """One linear layer to a score (one per target), sigmoid at the end."""
    return ScoreHead(nn.Sequential(nn.Linear(in_dim, outputs)))
