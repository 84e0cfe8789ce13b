"""Caption features: every caption of a video encoded as one row, cached like frame features.

A video's rows are its captions in file order (Memento10k: five; a MediaEval description file: one
or more), so the stream's aggregator pools captions as it pools frames. A video without any caption
is encoded as the empty caption "" (the tokenizer's start and end tokens alone: a fixed output of the
model, not a zero vector) and listed in the split's manifest under `uncaptioned`; `mem extract`
reports how many, and runs record it (tag `uncaptioned_videos`).
"""

from __future__ import annotations

import numpy as np
import torch

from mediaeval_mem.core.runtime import autocast
from mediaeval_mem.core.schema import digest
from mediaeval_mem.datasets import DatasetIndex, VideoItem
from mediaeval_mem.features.rows import Rows

EMPTY_CAPTION = ""
NO_CAPTION = "no caption: the empty caption was encoded"
# What the feature key records about how captions become rows.
CAPTION_PATH = "every caption of a video one row, in file order; a video without captions: the empty caption"


def captions_digest(index: DatasetIndex) -> str:
    """A digest of every caption of every split: edited captions make a new cache entry."""
    return digest({split: [(it.video_id, list(it.captions)) for it in items] for split, items in index.splits.items()}, 12)


def caption_rows(encoder, items: list[VideoItem], device: torch.device, dtype: str, batch_size: int) -> Rows:
    """Encode the captions of `items`, `batch_size` captions per forward pass: one (n_captions, D) block per video."""
    texts, counts, notes = [], [], {}
    for it in items:
        captions = list(it.captions) or [EMPTY_CAPTION]
        if not it.captions:
            notes[it.video_id] = NO_CAPTION
        texts += captions
        counts.append(len(captions))
    out = []
    with torch.inference_mode(), autocast(device, dtype):
        for start in range(0, len(texts), batch_size):
            out.append(encoder.encode(texts[start : start + batch_size]).to(torch.float16).cpu().numpy())
    rows = np.concatenate(out)  # (sum of captions, D)
    bounds = np.cumsum([0] + counts)
    videos = [(it.video_id, rows[bounds[i] : bounds[i + 1]]) for i, it in enumerate(items)]
    return Rows(videos, notes={"uncaptioned": notes} if notes else {}, inputs=len(texts))
