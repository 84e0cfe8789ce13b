"""The `audio` kind: a video's sound, one row per window (CLAP, AST: encoders/audio.py).

Each video's first audio track is decoded as it is read (video/audio.py: mono float32 at the
encoder's rate, windows of `transform.window_s` seconds, the last one shorter, dropped if under MIN_TAIL_S
after a full one), and each window goes
through the encoder's own feature extractor as it arrives; extractor outputs (CLAP 1001x64, AST
1024x128 floats: 0.25-0.5 MB) are packed across videos into forward passes of at most
WINDOWS_PER_FORWARD windows. So a video's length never shows in memory: only its rows, one per
window, are kept (a 10-minute video: 60 rows).

A video without an audio track is encoded as silence (one window of zeros, whatever the encoder
makes of it: a fixed output of the model, not a zero vector), listed in the split's manifest under
`silent`; `mem extract` reports how many, and runs record it (tag `silent_videos`). A track that
cannot be decoded fails that video, in one line naming the file; the others go on.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from mediaeval_mem.core.errors import DecodeError
from mediaeval_mem.core.runtime import autocast
from mediaeval_mem.datasets import DatasetIndex, VideoItem
from mediaeval_mem.features.inputs.base import Extraction, InputKind, register_kind
from mediaeval_mem.features.key import feature_key
from mediaeval_mem.features.report import SplitReport
from mediaeval_mem.features.rows import Rows, fill_store
from mediaeval_mem.features.store import FeatureStore
from mediaeval_mem.video import Sampling
from mediaeval_mem.video.audio import has_audio, iter_windows

# What the feature key records about how sound becomes rows (the rate, window and extractor are in `preprocess`).
AUDIO_PATH = ("first audio track, PyAV: resampled by swresample, the mean of the channels, one row per window, the "
              "last window shorter, dropped under 1 s after a full one; no audio track: one window of silence")
NO_AUDIO = "no audio track: one window of silence was encoded"
# A window is seconds of sound, far more than a frame (`batch_size` counts frames): at most this many windows per
# forward pass. Each window's activations cost about 10 MB even in the tiny CLAP stand-in (its 1001x64 log-mel
# becomes a 256x256 image of 4,096 tokens), so a video's peak memory grows with the windows of one forward,
# measured for a 10-minute video over a 10-second one: 8 windows +63 MB, 4 +41, 2 +21, 1 +0.
WINDOWS_PER_FORWARD = 2
# A last window shorter than this, after a full one, is dropped: it is mostly the encoder's padding at the track's
# end (AAC, Opus: 20-45 ms), which CLAP's extractor would repeat to fill 10 s: a row of nothing.
MIN_TAIL_S = 1.0


@register_kind("audio")
class Audio(InputKind):
    """One vector per window of a video's sound; no frame sampling."""

    unit, reads = "window", "a video's sound in windows of its own"

    def key(self, index: DatasetIndex, recipe, sampling: Sampling, dtype: str) -> dict:
        # the rate, the window and the feature extractor's settings are the recipe's preprocess (AudioPreprocess)
        return feature_key(index.name, index.root, recipe.identity(), str(sampling), dtype, AUDIO_PATH)

    def fill(self, job: Extraction, items: list[VideoItem], store: FeatureStore, report: SplitReport) -> None:
        forward = max(1, min(job.opts.batch_size, WINDOWS_PER_FORWARD))
        rows_for = lambda enc, part: audio_rows(enc, part, job.device, job.dtype, forward)  # noqa: E731
        fill_store(job.load_encoder, items, store, rows_for, job.opts.flush_every, report, job.progress, "windows")


@dataclass
class _Pending:
    """Extractor outputs waiting for a forward pass, and whose windows they are."""

    owners: list[str] = field(default_factory=list)  # video id per window
    inputs: list[dict[str, torch.Tensor]] = field(default_factory=list)  # one window's model input each (1, ...)


def audio_rows(encoder, items: list[VideoItem], device: torch.device, dtype: str, forward: int) -> Rows:
    """Encode the sound of `items`, `forward` windows per forward pass: one (n_windows, D) float16 block per video.

    A video without an audio track gets one window of silence (noted `silent`); one whose track cannot be
    decoded is failed (its windows already encoded are dropped)."""
    rate, size = encoder.transform.rate, int(round(encoder.transform.rate * encoder.transform.window_s))
    rows: dict[str, list[np.ndarray]] = {it.video_id: [] for it in items}  # id -> (1, D) rows in window order
    failed, silent, pending, windows = {}, {}, _Pending(), 0

    def run() -> None:
        if not pending.owners:
            return
        batch = {k: torch.cat([x[k] for x in pending.inputs]).to(device) for k in pending.inputs[0]}
        with torch.inference_mode(), autocast(device, dtype):
            out = encoder.embed(batch).to(torch.float16).cpu().numpy()  # (n, D)
        for vid, row in zip(pending.owners, out):
            if vid in rows:
                rows[vid].append(row[None])
        pending.owners.clear()
        pending.inputs.clear()

    def add(vid: str, window: np.ndarray) -> None:  # window (n,) float32 -> its model input, pending
        pending.owners.append(vid)
        pending.inputs.append(encoder.inputs([window]))
        if len(pending.owners) == forward:
            run()

    for it in items:
        if it.path is None:  # the dataset lists it, the file is gone (a warning when the run opened the dataset)
            failed[it.video_id] = f"{it.video_id}: video file not found"
            rows.pop(it.video_id)
            continue
        try:
            n = 0
            if has_audio(it.path):
                for window in iter_windows(it.path, rate, encoder.transform.window_s, MIN_TAIL_S):
                    add(it.video_id, window)
                    n += 1
            if not n:  # no audio track, or one without a single sample
                silent[it.video_id] = NO_AUDIO
                add(it.video_id, np.zeros(size, np.float32))
            windows += max(n, 1)
        except (DecodeError, ValueError) as e:  # ValueError: the extractor refuses a track of a few samples
            failed[it.video_id] = str(e) if isinstance(e, DecodeError) else f"{it.path}: sound too short to featurise ({e})"
            rows.pop(it.video_id)
            keep = [i for i, vid in enumerate(pending.owners) if vid != it.video_id]
            pending.owners[:] = [pending.owners[i] for i in keep]
            pending.inputs[:] = [pending.inputs[i] for i in keep]
    run()
    videos = [(it.video_id, np.concatenate(rows[it.video_id])) for it in items if it.video_id in rows]
    return Rows(videos, failed, notes={"silent": silent} if silent else {}, inputs=windows)
