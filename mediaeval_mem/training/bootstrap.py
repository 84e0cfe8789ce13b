"""The 95% percentile bootstrap interval of a metric over resampled videos: one implementation for `mem results`,
ensembles and cross-validation's out-of-fold figures."""

from __future__ import annotations

from typing import Callable

import numpy as np


def bootstrap_interval(y_true, y_pred, metric_rows: Callable[[np.ndarray, np.ndarray], np.ndarray], n_boot: int = 1000,
                       seed: int = 0, q: tuple[float, float] = (2.5, 97.5)) -> tuple[float, float]:
    """Percentiles `q` of `metric_rows` over `n_boot` resamples of the videos (seeded: the same inputs give the same
    interval). `metric_rows` takes the resampled truth and predictions, each (B, n), and returns (B,) values; NaNs
    (a constant resample) are left out."""
    y, p = np.asarray(y_true, float), np.asarray(y_pred, float)
    idx = np.random.default_rng(seed).integers(0, len(y), (n_boot, len(y)))  # (B, n) video indices
    lo, hi = np.nanpercentile(metric_rows(y[idx], p[idx]), list(q))
    return float(lo), float(hi)


def per_row(metric: Callable) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """A metric of one (truth, prediction) pair applied to each resample, row by row."""
    return lambda ys, ps: np.array([metric(y, p) for y, p in zip(ys, ps)])


def spearman_rows(ys: np.ndarray, ps: np.ndarray) -> np.ndarray:
    """(B,) Spearman's correlation of each row of ys and ps, (B, n) each, all rows at once."""
    from scipy.stats import rankdata

    ry, rp = rankdata(ys, axis=1), rankdata(ps, axis=1)  # (B, n), ties share their average rank
    ry -= ry.mean(1, keepdims=True)
    rp -= rp.mean(1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (ry * rp).sum(1) / np.sqrt((ry**2).sum(1) * (rp**2).sum(1))


def bootstrap_srocc_ci(y_true, y_pred, n_boot: int = 1000, seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of Spearman's correlation over resampled videos (`mem results`, ensembles)."""
    return bootstrap_interval(y_true, y_pred, spearman_rows, n_boot, seed, ((1 - level) / 2 * 100, (1 + level) / 2 * 100))
