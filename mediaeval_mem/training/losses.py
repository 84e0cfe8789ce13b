"""Training losses: a registry of name -> builder, and weighted sums of them (`train.loss` in a config).

    train: {loss: l1}                          # one loss (the paper's)
    train: {loss: {l1: 1.0, spearman: 0.5}}    # a weighted sum

Every loss maps predictions (B,) and targets (B,) to a scalar; with several targets (B, K) the weighted sum
is taken per target and summed over them. `spearman` is 1 - Spearman's rho on
soft ranks (`soft_rank`), so it is computed per batch: over a training batch of 8 it is a coarse but
valid signal, and larger batches approximate the challenge's metric better.

With per-video weights w (B,) (`data.weight_column`), each loss takes its weighted form, registered with it
(`LOSSES.info(name)`): l1 and mse are sum_i w_i * err_i / sum_i w_i; spearman is the weighted Pearson of the
ranks over the videos of weight > 0 (ranked among themselves: a weight of 0 removes a video).
"""

from __future__ import annotations

import math
from typing import Callable, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from mediaeval_mem.core.errors import ConfigError
from mediaeval_mem.core.registry import Registry

# name -> builder() -> loss(pred (B,), target (B,)) -> scalar
LOSSES: Registry = Registry("loss")

LossSpec = str | Mapping[str, float]  # a name, or name -> weight

TAU = 0.1  # the soft ranks' temperature, in standard deviations of the batch's predictions


def _per_video(w: torch.Tensor, err: torch.Tensor) -> torch.Tensor:
    """sum_i w_i * err_i / sum_i w_i; err (B,) or (B, ...) (one column per target), w (B,); 0 if every weight is 0."""
    w = w.to(err.dtype).reshape(-1, *[1] * (err.dim() - 1))  # (B, 1, ...) to broadcast over err's other dims
    return (w * err).sum() / (w.sum() * (err[0].numel() if err.dim() > 1 else 1)).clamp_min(1e-12)


def weighted_l1(pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    return _per_video(weight, (pred - target).abs())


def weighted_mse(pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    return _per_video(weight, (pred - target) ** 2)


def weighted_spearman(pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor, tau: float = TAU) -> torch.Tensor:
    """1 - the weighted Pearson of soft_rank(pred) and rank(target) over the videos of weight > 0 (ranked among
    themselves); with equal weights, `spearman_loss`."""
    keep = weight > 0
    if int(keep.sum()) < 2:  # a batch of zero-weight videos (or one kept): no ranking, 1 and no gradient
        return (pred * 0).sum() + 1
    pred, target, w = pred[keep], target[keep], weight[keep].to(pred.dtype)
    r, s = soft_rank(pred, tau), rank(target.detach()).to(pred.dtype)  # (B',), (B',)
    w = w / w.sum().clamp_min(1e-12)
    r, s = r - (w * r).sum(), s - (w * s).sum()
    # clamped under the root: one kept video, or every target tied, gives 1 and a zero gradient (not 0 * inf)
    return 1 - (w * r * s).sum() / ((w * r * r).sum() * (w * s * s).sum()).clamp_min(1e-16).sqrt()


@LOSSES.register("l1", info=weighted_l1)
def l1() -> nn.Module:
    """Mean absolute error (the paper's)."""
    return nn.L1Loss()


@LOSSES.register("mse", info=weighted_mse)
def mse() -> nn.Module:
    """Mean squared error."""
    return nn.MSELoss()


@LOSSES.register("spearman", info=weighted_spearman)
def spearman() -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """1 - Spearman's rho on soft ranks of the predictions (`spearman_loss`)."""
    return spearman_loss


def _ranks(x: torch.Tensor, step: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """(n,) -> (n,): 0.5 + sum_j step(x_i - x_j), over blocks of rows to bound memory at (4096, n)."""
    return 0.5 + torch.cat([step(x[i:i + 4096, None] - x).sum(1) for i in range(0, len(x), 4096)])


def rank(x: torch.Tensor) -> torch.Tensor:
    """(n,) -> (n,) exact ranks from 1, ties given their average rank (as scipy.stats.rankdata)."""
    return _ranks(x, lambda d: (d > 0).to(x.dtype) + 0.5 * (d == 0).to(x.dtype))  # the j = i term gives the 0.5


def soft_rank(x: torch.Tensor, tau: float = TAU) -> torch.Tensor:
    """(n,) -> (n,) differentiable ranks: rank_i = 0.5 + sum_j sigmoid((x_i - x_j) / (tau * std(x))).

    The pairwise-sigmoid relaxation of the rank (Qin, Liu & Li, "A general approximation framework for
    direct optimization of information retrieval measures", Information Retrieval 13(4), 2010): the
    step function of `rank` replaced by a sigmoid; O(n^2) time. The differences are measured in
    standard deviations of `x`, so that `tau` does not depend on the scale of the head's outputs (nor
    does Spearman). As tau -> 0 the soft ranks tend to the exact ones (ties absent); the default 0.1
    keeps neighbours of a batch of 8 (about 0.4 sd apart) distinct while every pair has a gradient.
    (Blondel et al. 2020, "Fast Differentiable Sorting and Ranking", torchsort's operator, is the exact
    O(n log n) alternative.)
    """
    z = (x - x.mean()) / x.std(correction=0).clamp_min(1e-12)  # (n,) standardised
    return _ranks(z, lambda d: torch.sigmoid(d / tau))


def spearman_loss(pred: torch.Tensor, target: torch.Tensor, tau: float = TAU) -> torch.Tensor:
    """1 - pearson(soft_rank(pred), rank(target)): 0 for a perfectly ordered batch, 2 for a reversed one.

    The targets' ranks are exact (they need no gradient). A batch whose Spearman is undefined (one
    item, or every target tied) gives 1 and no gradient.
    """
    r, s = soft_rank(pred, tau), rank(target.detach()).to(pred.dtype)  # (B,), (B,)
    return 1 - F.cosine_similarity(r - r.mean(), s - s.mean(), dim=0)  # Pearson = cosine of the centred vectors


def loss_terms(spec: LossSpec) -> dict[str, float]:
    """name -> weight for a `train.loss` value; an unknown name or a weight <= 0 raises ConfigError."""
    terms = {spec: 1.0} if isinstance(spec, str) else dict(spec)
    if not terms:
        raise ConfigError(f"give a loss name or a mapping of names to weights; valid names: {', '.join(sorted(LOSSES))}")
    for name, weight in terms.items():
        LOSSES[name]  # an unknown name raises, listing the valid ones
        if not (weight > 0 and math.isfinite(weight)):
            raise ConfigError(f"the weight of {name} must be a number > 0, got {weight!r}")
    return terms


def describe_loss(spec: LossSpec) -> str:
    """A readable form: 'l1', or 'l1 + 0.5*spearman'."""
    return " + ".join(name if w == 1 else f"{w:g}*{name}" for name, w in loss_terms(spec).items())


class WeightedLoss(nn.Module):
    """sum_k w_k * loss_k(pred, target) over the terms of a `train.loss`: `WeightedLoss("l1")`,
    `WeightedLoss({"l1": 1.0, "spearman": 0.5})`; a name alone is that loss (its weight is 1)."""

    def __init__(self, spec: LossSpec):
        super().__init__()
        self.terms = [(weight, LOSSES.build(name)) for name, weight in loss_terms(spec).items()]
        self.weighted = {name: LOSSES.info(name) for name in loss_terms(spec)}  # name -> weighted form (None: none)

    def forward(self, pred: torch.Tensor, target: torch.Tensor, video_weight: torch.Tensor | None = None) -> torch.Tensor:
        """(B,), (B,)[, per-video weights (B,)] -> (); (B, K), (B, K): several targets, each its own terms (a
        per-target Spearman), summed. Without weights, the plain losses."""
        if pred.dim() == 2:
            return sum(self(pred[:, k], target[:, k], video_weight) for k in range(pred.shape[1]))
        if video_weight is None:
            return sum(weight * fn(pred, target) for weight, fn in self.terms)
        lacking = [name for name, fn in self.weighted.items() if fn is None]
        if lacking:
            raise ConfigError(f"loss {lacking[0]} has no weighted form: drop data.weight_column, or use "
                              f"{', '.join(n for n in sorted(LOSSES) if LOSSES.info(n) is not None)}")
        return sum(weight * self.weighted[name](pred, target, video_weight)
                   for (weight, _), name in zip(self.terms, self.weighted))
