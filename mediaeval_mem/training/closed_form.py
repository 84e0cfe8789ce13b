"""Fitting a closed-form head (ridge, SVR: models/baselines.py) instead of running the training loop.

The streams' aggregators pool each video over time (B, T, D) -> (B, D); the pooled vectors of the fit
videos go to scikit-learn (its inner cross-validation chooses the hyperparameters: the selection split
is not used, as it may be the reported one), and the fitted estimator lands in the head's buffers.
"""

from __future__ import annotations

import numpy as np
import torch

from mediaeval_mem.core.threads import with_threads
from mediaeval_mem.training.batches import LabelledSplit, batch_indices, collate, to_device
from mediaeval_mem.training.loop import TrainResult, seed_everything


@torch.inference_mode()
def pooled(model, split: LabelledSplit, device: torch.device, batch_size: int = 256) -> np.ndarray:
    """(N, D) the concatenated outputs of the model's aggregators for every video of `split`, in order."""
    model.eval()
    out = []
    for idx in batch_indices(len(split), batch_size):
        streams, _ = collate(split, idx)
        out.append(torch.cat([agg(x, m) for agg, (x, m) in zip(model.aggregators, to_device(streams, device))], -1).cpu())
    return torch.cat(out).numpy().astype(np.float64)


@with_threads("train")  # scikit-learn's small fits: one BLAS thread
def fit_closed_form(model, fit: LabelledSplit, cfg, fit_head, device: torch.device) -> TrainResult:
    """Fit `model.head` with `fit_head(head, X, y, seed)` on the pooled fit videos."""
    seed_everything(cfg.seed)
    X = pooled(model.to(device), fit, device)
    chosen = fit_head(model.head, X, fit.scores.astype(np.float64), cfg.seed)
    return TrainResult(best_epoch=0, params={f"fit.{k}": v for k, v in chosen.items()})
