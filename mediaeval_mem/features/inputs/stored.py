"""The `features` kind: rows someone already extracted, copied into the cache as they are
(encoders/precomputed.py reads them); a new video has none, so `mem predict` refuses it."""

from __future__ import annotations

from mediaeval_mem.core.errors import DecodeError, MemError
from mediaeval_mem.datasets import DatasetIndex, VideoItem
from mediaeval_mem.features.inputs.base import Extraction, InputKind, register_kind
from mediaeval_mem.features.key import feature_key
from mediaeval_mem.features.report import SplitReport
from mediaeval_mem.features.rows import Rows, fill_store
from mediaeval_mem.features.store import FeatureStore
from mediaeval_mem.video import Sampling


@register_kind("features")
class StoredFeatures(InputKind):
    """Rows read from files, one (R, D) block per video: no sampling, no compute."""

    unit, reads, files_per_dataset = "row", "stored features", True

    def key(self, index: DatasetIndex, recipe, sampling: Sampling, dtype: str) -> dict:
        # keyed on this dataset's files (precomputed's files_id; a plugin's reader may have none)
        files_id = getattr(recipe.transform, "files_id", None)
        identity = {**recipe.identity(), **({"weights": files_id(index.name)} if files_id else {})}
        return feature_key(index.name, index.root, identity, "as stored", "none", "precomputed files")

    def fill(self, job: Extraction, items: list[VideoItem], store: FeatureStore, report: SplitReport) -> None:
        fill_store(job.load_encoder, items, store, lambda reader, part: precomputed_rows(reader, job.index.name, part),
                   job.opts.flush_every, report, job.progress, "rows")

    def new_video_note(self, run_id: str, i: int, stream) -> str | None:
        raise MemError(f"run {run_id}: stream {i} reads precomputed features ({stream.weights}); only runs whose "
                       f"streams read videos or captions can score new videos")


def precomputed_rows(reader, dataset: str, items: list[VideoItem]) -> Rows:
    """The stored rows of `items` from a precomputed-features reader; a video without a file is recorded as failed."""
    videos, failed = [], {}
    for it in items:
        try:
            videos.append((it.video_id, reader.rows(dataset, it.video_id)))
        except DecodeError as e:
            failed[it.video_id] = str(e)
    dims = {rows.shape[1] for _, rows in videos}
    if len(dims) > 1:
        raise MemError(f"precomputed features of {dataset} have several widths ({sorted(dims)}) in {reader.folder}")
    return Rows(videos, failed, inputs=sum(len(rows) for _, rows in videos))
