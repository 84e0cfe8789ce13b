"""Temporal aggregators: frame vectors (B, T, D) plus a mask (B, T) -> one vector per video (B, out_dim).

Every aggregator treats padding as absent: a video's output is the same alone or in a padded batch
(the means divide by the video's own T; recurrent layers run on packed sequences).
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from mediaeval_mem.core.registry import Registry

# name -> Aggregator class, built as cls(in_dim, **args); `cls.temporal` is known without building
AGGREGATORS: Registry = Registry("aggregator")


class Aggregator(nn.Module):
    out_dim: int
    temporal = False  # True: models the order of frames, so it needs frame-level features (T > 1)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:  # (B, T, D), (B, T) bool -> (B, out_dim)
        raise NotImplementedError


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(B, T, D), (B, T) -> (B, D): the mean over each video's own frames."""
    m = mask.unsqueeze(-1).to(x.dtype)
    return (x * m).sum(1) / m.sum(1).clamp_min(1.0)


def bigru_layers(in_dim: int, hidden: int, layers: int, dropout: float) -> nn.GRU:
    """The paper's recurrent block: a bidirectional GRU, dropout between its layers (nn.GRU's)."""
    return nn.GRU(in_dim, hidden, num_layers=layers, dropout=dropout if layers > 1 else 0.0, batch_first=True, bidirectional=True)


def run_gru(gru: nn.GRU, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Run a (bi)GRU over the valid frames only: (B, T, D) -> (B, T, H*dirs), zeros at padding."""
    if bool(mask.all()):  # no padding (e.g. every Memento10k clip has 90 frames): packing only costs time
        return gru(x)[0]
    lengths = mask.sum(1).cpu()
    packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
    out, _ = gru(packed)
    out, _ = pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])
    return out


@AGGREGATORS.register("avg")
class Average(Aggregator):
    """The temporal mean of the frame vectors."""

    def __init__(self, in_dim: int):
        super().__init__()
        self.out_dim = in_dim

    def forward(self, x, mask):
        return masked_mean(x, mask)


@AGGREGATORS.register("linear-avg")
class LinearAverage(Aggregator):
    """A per-frame linear projection D -> dim, then the temporal mean (the paper's "Linear+Avg")."""

    def __init__(self, in_dim: int, dim: int = 256):
        super().__init__()
        self.proj = nn.Linear(in_dim, dim)
        self.out_dim = dim

    def forward(self, x, mask):
        return masked_mean(self.proj(x), mask)  # (B, T, dim) -> (B, dim)


@AGGREGATORS.register("none")
class PassThrough(Aggregator):
    """For clip-level features (one vector per video, T = 1): the vector itself."""

    def __init__(self, in_dim: int):
        super().__init__()
        self.out_dim = in_dim

    def forward(self, x, mask):
        if x.shape[1] != 1:
            raise ValueError(f"aggregator 'none' takes one vector per video (a clip-level encoder), got T={x.shape[1]}: use avg")
        return x[:, 0]


@AGGREGATORS.register("bigru")
class BiGRUMean(Aggregator):
    """A Bi-GRU over the frames, then the mean of its outputs: (B, T, D) -> (B, 2*hidden)."""

    temporal = True

    def __init__(self, in_dim: int, hidden: int = 64, layers: int = 6, dropout: float = 0.2):
        super().__init__()
        self.gru = bigru_layers(in_dim, hidden, layers, dropout)
        self.out_dim = 2 * hidden

    def forward(self, x, mask):
        return masked_mean(run_gru(self.gru, x, mask), mask)


@AGGREGATORS.register("transformer")
class TransformerPool(Aggregator):
    """Linear D -> dim, sinusoidal positions, a transformer encoder over the valid frames, then the mean.

    The projected frames are scaled by sqrt(dim) before the position codes are added (as in Vaswani et
    al.), so that content, not position, dominates; a final LayerNorm closes the pre-norm stack.
    Padding is excluded from attention (key padding mask) and from the mean.
    """

    temporal = True

    def __init__(self, in_dim: int, dim: int = 256, layers: int = 2, heads: int = 4, ff: int = 512, dropout: float = 0.1):
        super().__init__()
        self.proj = nn.Linear(in_dim, dim)
        layer = nn.TransformerEncoderLayer(dim, heads, ff, dropout, batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, norm=nn.LayerNorm(dim), enable_nested_tensor=False)
        self.out_dim = dim

    @staticmethod
    def positions(t: int, dim: int, device) -> torch.Tensor:
        """(t, dim) sinusoidal position codes (Vaswani et al.): no length limit, nothing to learn."""
        pos = torch.arange(t, device=device, dtype=torch.float32)[:, None]
        freq = torch.exp(torch.arange(0, dim, 2, device=device, dtype=torch.float32) * (-math.log(10000.0) / dim))
        pe = torch.zeros(t, dim, device=device)
        pe[:, 0::2], pe[:, 1::2] = torch.sin(pos * freq), torch.cos(pos * freq)
        return pe

    def forward(self, x, mask):
        h = self.proj(x) * math.sqrt(self.out_dim) + self.positions(x.shape[1], self.out_dim, x.device)  # (B, T, dim)
        h = self.encoder(h, src_key_padding_mask=~mask)
        return masked_mean(h, mask)


@AGGREGATORS.register("bigru-attention")
class BiGRUAttention(Aggregator):
    """The paper's temporal attention: a Bi-GRU scores each frame, e_v = (1/T) sum_t e_t * w_t.

    GRU: `layers` layers, `hidden` units per direction, dropout between layers (nn.GRU's).
    H = BiGRU(E) is (B, T, 2*hidden); w = Linear(2*hidden -> 1)(H) is (B, T, 1), used as is: the
    paper applies no softmax, so the weights are free scalings of the frame vectors. out_dim = in_dim.
    """

    def __init__(self, in_dim: int, hidden: int = 64, layers: int = 6, dropout: float = 0.2):
        super().__init__()
        self.gru = bigru_layers(in_dim, hidden, layers, dropout)
        self.score = nn.Linear(2 * hidden, 1)
        self.out_dim = in_dim

    temporal = True

    def forward(self, x, mask):
        h = run_gru(self.gru, x, mask)  # (B, T, 2*hidden)
        w = self.score(h)  # (B, T, 1)
        return masked_mean(x * w, mask)  # (B, D)
