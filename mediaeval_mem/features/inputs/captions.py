"""The `captions` kind: every text of a video one row (features/captions.py), the texts from the stream's text
source (the dataset's captions, each video's speech transcribed, or a caption a VLM writes); a new video has no
captions of its own."""

from __future__ import annotations

from mediaeval_mem.datasets import DatasetIndex, VideoItem
from mediaeval_mem.features.captions import DatasetCaptions, caption_rows, stream_source
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
    takes_source = True

    def key(self, index: DatasetIndex, recipe, sampling: Sampling, dtype: str, source=None) -> dict:
        # the texts themselves in place of frame sampling: the captions by digest, or the transcriber's (the VLM's)
        # settings and the video files' identities (the `captions` source's key is the one caption streams always had)
        source = source or DatasetCaptions()
        texts, extra = source.key(index)
        return {**feature_key(index.name, index.root, recipe.identity(), texts, dtype, source.path), **extra}

    def fill(self, job: Extraction, items: list[VideoItem], store: FeatureStore, report: SplitReport) -> None:
        source = job.source or DatasetCaptions()
        # the texts of the videos not stored yet, at once (a transcriber loads only for videos not transcribed yet)
        given = source.texts([it for it in items if it.video_id not in store.done_ids()], job.device, job.progress)

        def rows_for(encoder, part: list[VideoItem]):
            missing = [it for it in part if it.video_id not in given.per_video and it.video_id not in given.failed]
            if missing:  # dropped from the store since (a damaged segment repaired under the lock)
                more = source.texts(missing, job.device, False)
                given.per_video.update(more.per_video)
                given.failed.update(more.failed)
                for name, per_video in more.notes.items():
                    given.notes.setdefault(name, {}).update(per_video)
            return caption_rows(encoder, part, job.device, job.dtype, job.opts.batch_size, given)

        fill_store(job.load_encoder, items, store, rows_for, job.opts.flush_every, report, job.progress, "captions")

    def new_video_note(self, run_id: str, i: int, stream) -> str | None:
        source = stream_source(stream)
        if source is not None:  # its texts come from the video itself (transcribed, or captioned by the run's VLM)
            return source.new_video_note(i, stream.encoder)
        return (f"note: stream {i} ({stream.encoder}) reads captions; these videos have none, so each gets the "
                f"empty caption (as videos without captions did in training)")
