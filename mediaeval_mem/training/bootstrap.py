"""The 95% percentile bootstrap interval of a metric over resampled videos: one implementation for `mem results`,
ensembles and cross-validation's out-of-fold figures."""

from __future__ import annotations

from typing import Callable

import numpy as np


CHUNK_VALUES = 500_000  # resampled values scored at once: (rows, n) arrays of about 4 MB each, whatever n


def bootstrap_interval(y_true, y_pred, metric_rows: Callable[[np.ndarray, np.ndarray], np.ndarray], n_boot: int = 1000,
                       seed: int = 0, q: tuple[float, float] = (2.5, 97.5)) -> tuple[float, float]:
    """Percentiles `q` of `metric_rows` over `n_boot` resamples of the videos (seeded: the same inputs give the same
    interval). `metric_rows` takes the resampled truth and predictions, each (B, n), and returns (B,) values; NaNs
    (a constant resample) are left out. The resamples are drawn and scored a chunk of rows at a time, so memory stays
    at a few (rows, n) arrays of CHUNK_VALUES values whatever n."""
    y, p = np.asarray(y_true, float), np.asarray(y_pred, float)
    rng, rows = np.random.default_rng(seed), max(1, CHUNK_VALUES // max(1, len(y)))
    values = []
    for i in range(0, n_boot, rows):  # one Generator drawn chunk by chunk gives the draws of one (B, n) call
        idx = rng.integers(0, len(y), (min(rows, n_boot - i), len(y)))  # (rows, n) video indices
        values.append(metric_rows(y[idx], p[idx]))
    values = np.concatenate(values)
    lo, hi = np.nanpercentile(values, list(q))
    return float(lo), float(hi)


def rank_rows(a: np.ndarray) -> np.ndarray:
    """(B, n) -> (B, n) float ranks from 1 within each row, ties given their average rank, a row holding a NaN all NaN:
    scipy.stats.rankdata(a, axis=1)'s values, by one sort per row and a few vectorised passes."""
    b, n = a.shape
    order = np.argsort(a, axis=1)  # (B, n) positions in sorted order (the order within a tie does not matter)
    s = np.take_along_axis(a, order, axis=1)
    first = np.ones((b, n), bool)  # True where a run of equal values starts in the sorted row
    first[:, 1:] = s[:, 1:] != s[:, :-1]
    last = np.ones((b, n), bool)  # ... and where one ends
    last[:, :-1] = first[:, 1:]
    pos = np.arange(n)
    start = np.maximum.accumulate(np.where(first, pos, 0), axis=1)  # (B, n) sorted position where each run starts
    end = np.minimum.accumulate(np.where(last, pos, n)[:, ::-1], axis=1)[:, ::-1]  # ... and ends
    ranks = np.empty((b, n))
    np.put_along_axis(ranks, order, (start + end) / 2 + 1, axis=1)  # a run's average of positions, from 1
    ranks[np.isnan(a).any(1)] = np.nan  # as scipy: a NaN has no rank, and the row none that means anything
    return ranks


def pearson_rows(ys: np.ndarray, ps: np.ndarray) -> np.ndarray:
    """(B,) Pearson's correlation of each row of ys and ps, (B, n) each; NaN for a constant row (as metrics._corr:
    its deviations from a rounded mean would be ~1e-17, not 0, and give a meaningless value)."""
    constant = (np.ptp(ys, 1) == 0) | (np.ptp(ps, 1) == 0)
    ys = ys - ys.mean(1, keepdims=True)
    ps = ps - ps.mean(1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (ys * ps).sum(1) / np.sqrt((ys**2).sum(1) * (ps**2).sum(1))
    r[constant] = np.nan
    return r


def spearman_rows(ys: np.ndarray, ps: np.ndarray) -> np.ndarray:
    """(B,) Spearman's correlation of each row of ys and ps, (B, n) each: Pearson's of their ranks."""
    return pearson_rows(rank_rows(ys), rank_rows(ps))


def mse_rows(ys: np.ndarray, ps: np.ndarray) -> np.ndarray:
    """(B,) mean squared error of each row."""
    return ((ys - ps) ** 2).mean(1)


def bootstrap_srocc_ci(y_true, y_pred, n_boot: int = 1000, seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of Spearman's correlation over resampled videos (`mem results`, ensembles)."""
    return bootstrap_interval(y_true, y_pred, spearman_rows, n_boot, seed, ((1 - level) / 2 * 100, (1 + level) / 2 * 100))
