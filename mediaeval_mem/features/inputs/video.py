"""The video kinds, `frames` (one vector per frame: CLIP) and `clip` (one vector per video: I3D): two
registrations over one class. Frames are decoded and encoded by the engine (features/engine.py), in this
process or on Ray encoder actors."""

from __future__ import annotations

from mediaeval_mem.datasets import DatasetIndex, VideoItem
from mediaeval_mem.encoders import ENCODERS
from mediaeval_mem.features import engine
from mediaeval_mem.features.captions import captions_digest
from mediaeval_mem.features.inputs.base import Extraction, InputKind, register_kind
from mediaeval_mem.features.key import feature_key
from mediaeval_mem.features.pixels import pixel_path
from mediaeval_mem.features.report import SplitReport
from mediaeval_mem.features.store import FeatureStore
from mediaeval_mem.video import Sampling


class VideoFrames(InputKind):
    """Decoded video frames, as a stream's sampling picks them; a video the file alone gives."""

    unit, counts, reads_video, ray = "frame", "frame", True, True

    def key(self, index: DatasetIndex, recipe, sampling: Sampling, dtype: str) -> dict:
        # a clip-level encoder's vector combines windows of CLIP_WINDOW frames: another window is another vector
        # (read at call time: a test narrows it); an encoder module given as it is says so itself
        clip_level = self.per_video or getattr(recipe, "clip_level", False)
        window = engine.CLIP_WINDOW if clip_level else None
        identity = recipe.identity()
        if identity["preprocess"].get("reads_caption"):  # a VLM prompted with the caption: edited captions, new key
            identity = {**identity, "captions": captions_digest(index)}
        return feature_key(index.name, index.root, identity, str(sampling), dtype, pixel_path(recipe.transform), window)

    def fill(self, job: Extraction, items: list[VideoItem], store: FeatureStore, report: SplitReport) -> None:
        if job.pool is not None:
            job.pool.extract_split(items, store, job.opts, report, job.progress)
        else:
            engine.extract_split(job.load_encoder, items, store, job.sampling, job.opts, job.device, job.dtype,
                                 report, job.progress)


@register_kind("frames")
class Frames(VideoFrames):
    """One vector per video frame (CLIP): frames packed across videos into batches."""


@register_kind("clip")
class Clip(VideoFrames):
    """One vector per video (I3D): one video per forward pass, in windows of at most CLIP_WINDOW frames. Its
    extraction still counts decoded frames."""

    unit, per_video = "video", True

    def new_video_note(self, run_id: str, i: int, stream) -> str | None:
        if not ENCODERS.info(stream.encoder).reads_caption:
            return None
        return (f"note: stream {i} ({stream.encoder}) reads each video's caption with its frames; these videos have "
                f"none, so each is read with the empty caption")
