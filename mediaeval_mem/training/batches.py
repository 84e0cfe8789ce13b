"""Batches cut straight from a split's feature array: no file per video, no DataLoader.

A batch of videos i_1..i_B becomes x (B, T_max, D) float32, zero-padded, and mask (B, T_max) bool.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from mediaeval_mem.features.store import SplitFeatures


@dataclass
class LabelledSplit:
    """Features of a list of videos, with their scores where known."""

    features: SplitFeatures
    scores: np.ndarray | None  # (N,) float32, None for an unscored (test) split

    def __len__(self) -> int:
        return len(self.features)

    @property
    def ids(self) -> list[str]:
        return self.features.ids

    def subset(self, idx: np.ndarray) -> "LabelledSplit":
        f = self.features
        feats = SplitFeatures([f.ids[i] for i in idx], f.frames, f.starts[idx], f.lengths[idx])
        return LabelledSplit(feats, None if self.scores is None else self.scores[idx])


def collate(split: LabelledSplit, idx: np.ndarray, shuffle_rng: np.random.Generator | None = None):
    """Videos `idx` of `split` -> (x (B, T, D) float32, mask (B, T) bool, y (B,) or None).

    shuffle_rng: permute each video's frame order (the paper's training augmentation).
    """
    f = split.features
    lengths = f.lengths[idx]
    t_max = int(lengths.max())
    x = np.zeros((len(idx), t_max, f.dim), np.float32)
    for row, i in enumerate(idx):
        frames = f[i]
        if shuffle_rng is not None:
            frames = frames[shuffle_rng.permutation(len(frames))]
        x[row, : len(frames)] = frames
    mask = np.arange(t_max)[None, :] < lengths[:, None]
    y = None if split.scores is None else torch.from_numpy(split.scores[idx])
    return torch.from_numpy(x), torch.from_numpy(mask), y


def batch_indices(n: int, batch_size: int, rng: np.random.Generator | None = None) -> list[np.ndarray]:
    """Split range(n) into batches; shuffled when an rng is given."""
    order = rng.permutation(n) if rng is not None else np.arange(n)
    return [order[i : i + batch_size] for i in range(0, n, batch_size)]
