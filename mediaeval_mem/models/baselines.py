"""Classic baselines that papers report: ridge regression and an RBF SVR on time-pooled features.

They are heads like `linear` and `mlp` (registered in HEADS, so `mem run`, `mem grid`, `mem cv`,
`mem ensemble`, `mem predict` and the packager treat them alike), but they are fitted in closed form
by scikit-learn instead of by the training loop: `HEADS.info(name).fit` does it. The streams are
pooled over time by their aggregator (`avg`, or `none` for clip-level features; the config is
refused otherwise), standardised, and the hyperparameters (ridge: alpha; SVR: C and gamma) are
chosen by a seeded 5-fold inner cross-validation on the training videos (scikit-learn's GridSearchCV,
Spearman as the score). The fitted estimator is then copied into the head's buffers (standardisation,
coefficients; for the SVR its support vectors and dual coefficients), so a baseline is saved, logged
and loaded as a state dict like any model, and predicts in torch. Outputs are clipped to [0, 1].
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from torch import nn

from mediaeval_mem.models.heads import HEADS

INNER_FOLDS = 5
GRIDS = {
    "ridge": {"alpha": [0.01, 0.1, 1.0, 10.0, 100.0, 1000.0]},
    "svr": {"C": [0.1, 1.0, 10.0], "gamma": ["scale", 0.01, 0.1], "epsilon": [0.01]},
}


@dataclass(frozen=True)
class ClosedForm:
    """Head metadata: the head is fitted by `fit(head, X (N, D), y (N,), seed) -> {chosen hyperparameters}`."""

    fit: Callable[[nn.Module, np.ndarray, np.ndarray, int], dict]


class _Resizable(nn.Module):
    """Buffers whose shapes come from the fitted estimator: loading a state dict takes its shapes."""

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        for name, buf in list(self._buffers.items()):
            if prefix + name in state_dict and buf is not None:
                self._buffers[name] = torch.empty_like(state_dict[prefix + name], device=buf.device)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


class RidgeHead(_Resizable):
    """(B, D) -> (B,): standardise, then a linear map fitted by ridge regression."""

    def __init__(self, in_dim: int):
        super().__init__()
        for name, value in (("mean", torch.zeros(in_dim)), ("scale", torch.ones(in_dim)), ("coef", torch.zeros(in_dim)),
                            ("intercept", torch.zeros(()))):
            self.register_buffer(name, value)

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        z = (v - self.mean) / self.scale
        return (z @ self.coef + self.intercept).clamp(0, 1)


class SVRHead(_Resizable):
    """(B, D) -> (B,): standardise, then an RBF-kernel support vector regression."""

    def __init__(self, in_dim: int):
        super().__init__()
        for name, value in (("mean", torch.zeros(in_dim)), ("scale", torch.ones(in_dim)),
                            ("support", torch.zeros(0, in_dim)), ("dual", torch.zeros(0)), ("intercept", torch.zeros(())),
                            ("gamma", torch.ones(()))):
            self.register_buffer(name, value)

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        z = (v - self.mean) / self.scale  # (B, D)
        kernel = torch.exp(-self.gamma * torch.cdist(z, self.support).pow(2))  # (B, n_support)
        return (kernel @ self.dual + self.intercept).clamp(0, 1)


def _search(estimator, grid: dict, X: np.ndarray, y: np.ndarray, seed: int):
    """GridSearchCV over `grid` with a seeded inner K-fold, scored by Spearman; the best estimator refit on all."""
    from scipy.stats import spearmanr
    from sklearn.metrics import make_scorer
    from sklearn.model_selection import GridSearchCV, KFold

    folds = KFold(min(INNER_FOLDS, len(y)), shuffle=True, random_state=seed)
    score = make_scorer(lambda a, b: 0.0 if np.ptp(b) == 0 else spearmanr(a, b)[0])
    return GridSearchCV(estimator, grid, scoring=score, cv=folds).fit(X, y)


def _standardise(head: nn.Module, X: np.ndarray) -> np.ndarray:
    mean, scale = X.mean(0), X.std(0)
    scale[scale == 0] = 1.0
    head.mean.copy_(torch.from_numpy(mean).float())
    head.scale.copy_(torch.from_numpy(scale).float())
    return (X - mean) / scale


@torch.no_grad()
def fit_ridge(head: RidgeHead, X: np.ndarray, y: np.ndarray, seed: int) -> dict:
    from sklearn.linear_model import Ridge

    search = _search(Ridge(), GRIDS["ridge"], _standardise(head, X), y, seed)
    best = search.best_estimator_
    head.coef.copy_(torch.from_numpy(best.coef_).float())
    head.intercept.fill_(float(best.intercept_))
    return {**search.best_params_, "inner_cv_srocc": float(search.best_score_)}


@torch.no_grad()
def fit_svr(head: SVRHead, X: np.ndarray, y: np.ndarray, seed: int) -> dict:
    from sklearn.svm import SVR

    Z = _standardise(head, X)
    search = _search(SVR(kernel="rbf"), GRIDS["svr"], Z, y, seed)
    best = search.best_estimator_
    gamma = best._gamma  # 'scale' resolved by scikit-learn: 1 / (D * Z.var())
    device = head.mean.device  # the head may already be on CUDA
    head._buffers["support"] = torch.from_numpy(best.support_vectors_).float().to(device)
    head._buffers["dual"] = torch.from_numpy(best.dual_coef_[0]).float().to(device)
    head.intercept.fill_(float(best.intercept_[0]))
    head.gamma.fill_(float(gamma))
    return {**search.best_params_, "gamma_value": float(gamma), "support_vectors": len(best.support_),
            "inner_cv_srocc": float(search.best_score_)}


@HEADS.register("ridge", info=ClosedForm(fit_ridge))
def ridge(in_dim: int) -> nn.Module:
    """Ridge regression on the standardised pooled features, alpha chosen by inner 5-fold CV (scikit-learn)."""
    return RidgeHead(in_dim)


@HEADS.register("svr", info=ClosedForm(fit_svr))
def svr(in_dim: int) -> nn.Module:
    """An RBF support vector regression on the standardised pooled features, C and gamma chosen by inner 5-fold CV."""
    return SVRHead(in_dim)
