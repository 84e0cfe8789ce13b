"""The `captions` kind: every caption of a video one row (features/captions.py); a new video has none."""

from __future__ import annotations

from mediaeval_mem.datasets import DatasetIndex, VideoItem
from mediaeval_mem.features.captions import CAPTION_PATH, caption_rows, captions_digest
from mediaeval_mem.features.inputs.base import Extraction, InputKind, register_kind
from mediaeval_mem.features.key import feature_key
from mediaeval_mem.features.report import SplitReport
from mediaeval_mem.features.rows import fill_store
from mediaeval_mem.features.store import FeatureStore
from mediaeval_mem.video import Sampling


@register_kind("captions")
class Captions(InputKind):
    """One vector per caption (CLIP text towers, sentence-transformers), `batch_size` captions per forward pass."""

    unit, reads = "caption", "captions"

    def key(self, index: DatasetIndex, recipe, sampling: Sampling, dtype: str) -> dict:
        # the captions themselves, by digest, in place of frame sampling
        return feature_key(index.name, index.root, recipe.identity(), f"captions:{captions_digest(index)}", dtype,
                           CAPTION_PATH)

    def fill(self, job: Extraction, items: list[VideoItem], store: FeatureStore, report: SplitReport) -> None:
        rows_for = lambda enc, part: caption_rows(enc, part, job.device, job.dtype, job.opts.batch_size)  # noqa: E731
        fill_store(job.load_encoder, items, store, rows_for, job.opts.flush_every, report, job.progress, "captions")

    def new_video_note(self, run_id: str, i: int, stream) -> str | None:
        return (f"note: stream {i} ({stream.encoder}) reads captions; these videos have none, so each gets the "
                f"empty caption (as videos without captions did in training)")
