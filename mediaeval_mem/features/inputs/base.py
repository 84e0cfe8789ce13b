"""The input-kind registry and the interface every kind implements (the package docstring says what a kind is)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch

from mediaeval_mem.core.registry import Registry
from mediaeval_mem.datasets import DatasetIndex, VideoItem
from mediaeval_mem.encoders import ENCODERS, EncoderInfo
from mediaeval_mem.features.options import ExtractOptions
from mediaeval_mem.features.report import SplitReport
from mediaeval_mem.features.store import FeatureStore
from mediaeval_mem.video import Sampling

# name -> the InputKind instance (registered with @register_kind on its class)
INPUT_KINDS: Registry = Registry("input kind")


@dataclass
class Extraction:
    """One extraction's settings, as a kind's `fill` gets them (features/extract.py makes it)."""

    index: DatasetIndex
    recipe: Any  # an EncoderRecipe, or an encoder module given as it is
    sampling: Sampling  # as extracted (segments:N is all)
    opts: ExtractOptions
    device: torch.device
    dtype: str  # the compute dtype, resolved
    progress: bool
    load_encoder: Callable[[], Any]  # the encoder, loaded once, and only if some video is not cached
    pool: Any = None  # the Ray encoder actors (features/distributed.py EncoderPool), for kinds with `ray`
    source: Any = None  # where a text kind's texts come from (features/captions.py TextSource); None: its default


class InputKind:
    """What an encoder reads, and how a dataset item becomes its rows. Subclass, set the class attributes,
    give `key` and `fill`, and register it with @register_kind(name)."""

    name: str  # its registered name (EncoderInfo.input)
    unit: str = "row"  # what one row of its features stands for: "one vector per <unit>" (mem describe)
    counts: str | None = None  # what an extraction's count stands for (ExtractReport.unit); None: `unit`
    reads: str = "its own input"  # what it reads, in words, for a refused sampling ("captions")
    reads_video = False  # its rows come from the frames a stream's sampling picks (else it takes sampling 'all' only)
    per_video = False  # one row per video: the aggregator sees (B, 1, D), so one that models frame order is refused
    ray = False  # its videos can be sharded over Ray encoder actors (mem extract --ray)
    files_per_dataset = False  # its key's weights name one dataset's files: not compared for another dataset's videos
    takes_source = False  # reads texts from a text source (features/captions.py TEXT_SOURCES): its `key` takes `source`

    def __init__(self, name: str):
        self.name = name

    @property
    def report_unit(self) -> str:
        return self.counts or self.unit

    def sampling_refusal(self, encoder: str, sampling: str) -> str | None:
        """Why `encoder`, of this kind, cannot take `sampling`, as the words after "sampling <sampling> "; None where
        it can. A kind that reads no sampled frames takes 'all' only."""
        if self.reads_video or sampling == "all":
            return None
        return f"picks video frames; {encoder} reads {self.reads}"

    def key(self, index: DatasetIndex, recipe, sampling: Sampling, dtype: str) -> dict:
        """The feature key (features/key.py feature_key) of `recipe`'s features of `index`: what its rows are made from."""
        raise NotImplementedError

    def fill(self, job: Extraction, items: list[VideoItem], store: FeatureStore, report: SplitReport) -> None:
        """Store the rows of every video of `items` not yet in `store` (one writer: the store's lock), counting in `report`."""
        raise NotImplementedError

    def new_video_note(self, run_id: str, i: int, stream) -> str | None:
        """What scoring a new video file (no captions, no stored features) means for stream `i` (a StreamCfg) of run
        `run_id`: None where its file is all it needs, a note to show, or a MemError where it cannot be scored."""
        return None


def register_kind(name: str):
    """Class decorator: register one instance of an InputKind subclass as input kind `name` (a taken name raises)."""
    def deco(cls: type[InputKind]) -> type[InputKind]:
        INPUT_KINDS.add(name, cls(name))
        return cls

    return deco


def input_kind(encoder: str | EncoderInfo) -> InputKind:
    """The kind of input `encoder` (a registered encoder name, or its EncoderInfo) reads; an unknown encoder or
    kind is refused in one line that lists the valid names."""
    info = ENCODERS.info(encoder) if isinstance(encoder, str) else encoder
    return INPUT_KINDS[info.input]
