"""Per-video loss weights read from a dataset column (`data.weight_column`, e.g. the number of annotations).

A weighted loss is sum_i w_i * loss_i / sum_i w_i over a batch (training/losses.py): a video of weight 0 counts
for nothing, one of weight 2 as much as two of weight 1. Only the fit split is weighted; model selection and every
reported metric stay unweighted, so runs with and without weights compare on the same figures.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Iterable

import numpy as np

from mediaeval_mem.core.errors import ConfigError, DataError
from mediaeval_mem.datasets.records import DatasetIndex, VideoItem
from mediaeval_mem.training.batches import LabelledSplit
from mediaeval_mem.training.losses import LOSSES, LossSpec, loss_terms


def column_weights(items: Iterable[VideoItem], ids: list[str], column: str, dataset: str) -> np.ndarray:
    """(N,) float32 weight of each video of `ids` from its `column` value; a missing column, an empty, non-numeric,
    negative or infinite value, or all weights zero, is refused in one line naming the video."""
    by_id = {it.video_id: it for it in items}
    if not any(column in by_id[v].columns for v in ids):
        have = sorted({c for v in ids for c in by_id[v].columns})
        raise DataError(f"data.weight_column {column}: {dataset} has no {column!r} column (its other columns: "
                        f"{', '.join(have) or 'none'}); add it to the dataset's CSV or drop the setting")
    out = np.empty(len(ids), np.float32)
    for i, v in enumerate(ids):
        raw = by_id[v].columns.get(column, "").strip()
        try:
            w = float(raw)
        except ValueError:
            w = math.nan
        if not (math.isfinite(w) and w >= 0):
            raise DataError(f"data.weight_column {column}: video {v} of {dataset} has {column} {raw!r}; give a number "
                            f">= 0 (0 leaves the video out of the loss)")
        out[i] = w
    if not out.any():
        raise DataError(f"data.weight_column {column}: every training video of {dataset} has weight 0")
    return out


def with_weights(fit: LabelledSplit, index: DatasetIndex, column: str, loss: LossSpec, closed_form: str | None = None
                 ) -> LabelledSplit:
    """The fit split with its videos' loss weights from `column` of `index` (the training dataset, every split: a
    cross-validation folds train and dev). Refused in one line before training where weights cannot apply: a head
    fitted in closed form (`closed_form`: its name), or a loss without a weighted form."""
    if closed_form:
        raise ConfigError(f"data.weight_column: head {closed_form} is fitted in closed form without loss weights; "
                          f"use a trained head (mlp) or drop the setting")
    lacking = [name for name in loss_terms(loss) if LOSSES.info(name) is None]
    if lacking:
        raise ConfigError(f"data.weight_column: loss {lacking[0]} has no weighted form; use "
                          f"{', '.join(n for n in sorted(LOSSES) if LOSSES.info(n) is not None)} or drop the setting")
    items = [it for split in index.splits.values() for it in split]
    return replace(fit, weights=column_weights(items, fit.ids, column, index.name))
