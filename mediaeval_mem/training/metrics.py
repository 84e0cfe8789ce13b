"""The organisers' metrics: Spearman (official), Pearson and MSE over a whole split."""

from __future__ import annotations

import warnings

import numpy as np


def _corr(fn, y_true, y_pred) -> float:
    y_true, y_pred = np.asarray(y_true, float), np.asarray(y_pred, float)
    if len(y_true) < 2 or np.ptp(y_true) == 0 or np.ptp(y_pred) == 0:
        return float("nan")  # undefined for a constant input
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(fn(y_true, y_pred)[0])


def srocc(y_true, y_pred) -> float:
    """Spearman's rank correlation; tied values take their average rank (scipy.stats.spearmanr)."""
    from scipy.stats import spearmanr

    return _corr(spearmanr, y_true, y_pred)


def plcc(y_true, y_pred) -> float:
    """Pearson's linear correlation."""
    from scipy.stats import pearsonr

    return _corr(pearsonr, y_true, y_pred)


def mse(y_true, y_pred) -> float:
    return float(np.mean((np.asarray(y_true, float) - np.asarray(y_pred, float)) ** 2))


def evaluate(y_true, y_pred) -> dict[str, float]:
    return {"plcc": plcc(y_true, y_pred), "srocc": srocc(y_true, y_pred), "mse": mse(y_true, y_pred)}


def evaluate_targets(y_true, y_pred, names: tuple[str, ...] = ()) -> dict[str, float]:
    """`evaluate` of each target: (N,) arrays give plcc / srocc / mse; (N, K) arrays of the targets `names` give the
    first target's under those names and each other's as `<name>_plcc` ... (`dev_brand_score_srocc` once logged)."""
    y_true, y_pred = np.asarray(y_true, float), np.asarray(y_pred, float)
    if y_pred.ndim == 1:
        return evaluate(y_true, y_pred)
    out = evaluate(y_true[:, 0], y_pred[:, 0])
    for k, name in enumerate(names[1:], start=1):
        out |= {f"{name}_{m}": v for m, v in evaluate(y_true[:, k], y_pred[:, k]).items()}
    return out
