"""Heads: a video vector (B, D) -> a memorability score (B,) in [0, 1] (a final sigmoid)."""

from __future__ import annotations

import torch
from torch import nn

from mediaeval_mem.core.registry import Registry

# name -> builder(in_dim: int, **args) -> nn.Module
HEADS: Registry = Registry("head")


class ScoreHead(nn.Module):
    def __init__(self, layers: nn.Sequential):
        super().__init__()
        self.layers = layers

    def forward(self, v: torch.Tensor) -> torch.Tensor:  # (B, D) -> (B,)
        return torch.sigmoid(self.layers(v)).squeeze(-1)


@HEADS.register("mlp")
def mlp(in_dim: int, hidden: tuple[int, ...] = (512, 128), dropout: float = 0.0) -> nn.Module:
    """The paper's MLP: in_dim -> 512 -> 128 -> 1, ReLU after each hidden layer, sigmoid at the end."""
    layers, width = [], in_dim
    for h in hidden:
        layers += [nn.Linear(width, h), nn.ReLU()] + ([nn.Dropout(dropout)] if dropout else [])
        width = h
    return ScoreHead(nn.Sequential(*layers, nn.Linear(width, 1)))


@HEADS.register("linear")
def linear(in_dim: int) -> nn.Module:
    """One linear layer to a score, sigmoid at the end."""
    return ScoreHead(nn.Sequential(nn.Linear(in_dim, 1)))
