# examples/my_lab/parts.py
import torch
from torch import nn

from mediaeval_mem.models.aggregators import AGGREGATORS, Aggregator
from mediaeval_mem.models.heads import HEADS, ScoreHead


@AGGREGATORS.register("lab-max")
class MaxPool(Aggregator):
    """The per-dimension maximum over a video's frames."""

    def __init__(self, in_dim: int):
        super().__init__()
        self.out_dim = in_dim

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:  # (B, T, D), (B, T) bool -> (B, D)
        return x.masked_fill(~mask.unsqueeze(-1), -1e4).max(1).values


@HEADS.register("lab-linear")
def lab_linear(in_dim: int) -> nn.Module:
    return ScoreHead(nn.Sequential(nn.Linear(in_dim, 1)))
