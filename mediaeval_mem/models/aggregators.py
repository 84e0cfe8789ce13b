"""Temporal aggregators: frame vectors (B, T, D) plus a mask (B, T) -> one vector per video (B, out_dim).

Every aggregator treats padding as absent: a video's output is the same alone or in a padded batch
(the means divide by the video's own T; recurrent layers run on packed sequences).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from mediaeval_mem.registry import Registry

# name -> builder(in_dim: int, **args) -> Aggregator
AGGREGATORS: Registry = Registry("aggregator")


class Aggregator(nn.Module):
    out_dim: int

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:  # (B, T, D), (B, T) bool -> (B, out_dim)
        raise NotImplementedError


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(B, T, D), (B, T) -> (B, D): the mean over each video's own frames."""
    m = mask.unsqueeze(-1).to(x.dtype)
    return (x * m).sum(1) / m.sum(1).clamp_min(1.0)


def run_gru(gru: nn.GRU, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Run a (bi)GRU over the valid frames only: (B, T, D) -> (B, T, H*dirs), zeros at padding."""
    if bool(mask.all()):  # no padding (e.g. every Memento10k clip has 90 frames): packing only costs time
        return gru(x)[0]
    lengths = mask.sum(1).cpu()
    packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
    out, _ = gru(packed)
    out, _ = pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])
    return out


class Average(Aggregator):
    """The temporal mean of the frame vectors."""

    def __init__(self, in_dim: int):
        super().__init__()
        self.out_dim = in_dim

    def forward(self, x, mask):
        return masked_mean(x, mask)


class BiGRUAttention(Aggregator):
    """The paper's temporal attention: a Bi-GRU scores each frame, e_v = (1/T) sum_t e_t * w_t.

    GRU: `layers` layers, `hidden` units per direction, dropout between layers (nn.GRU's).
    H = BiGRU(E) is (B, T, 2*hidden); w = Linear(2*hidden -> 1)(H) is (B, T, 1), used as is: the
    paper applies no softmax, so the weights are free scalings of the frame vectors. out_dim = in_dim.
    """

    def __init__(self, in_dim: int, hidden: int = 64, layers: int = 6, dropout: float = 0.2):
        super().__init__()
        self.gru = nn.GRU(in_dim, hidden, num_layers=layers, dropout=dropout if layers > 1 else 0.0,
                          batch_first=True, bidirectional=True)
        self.score = nn.Linear(2 * hidden, 1)
        self.out_dim = in_dim

    def forward(self, x, mask):
        h = run_gru(self.gru, x, mask)  # (B, T, 2*hidden)
        w = self.score(h)  # (B, T, 1)
        return masked_mean(x * w, mask)  # (B, D)


@AGGREGATORS.register("avg")
def avg(in_dim: int) -> Aggregator:
    return Average(in_dim)


@AGGREGATORS.register("bigru-attention")
def bigru_attention(in_dim: int, hidden: int = 64, layers: int = 6, dropout: float = 0.2) -> Aggregator:
    return BiGRUAttention(in_dim, hidden, layers, dropout)
