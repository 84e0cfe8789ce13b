"""Caption features: every caption of a video encoded as one row, cached like frame features.

A video's rows are its captions in file order (Memento10k: five; a MediaEval description file: one
or more), so the stream's aggregator pools captions as it pools frames. A video without any caption
is encoded as the empty caption "" (the tokenizer's start and end tokens alone: a fixed output of the
model, not a zero vector) and listed in the split's manifest under `uncaptioned`; `mem extract`
reports how many, and runs record it (tag `uncaptioned_videos`).

Where a caption stream's texts come from is its text source (TEXT_SOURCES, a stream's `source`):

    captions  the dataset's captions (the default; its feature keys are what they were before sources existed)
    speech    each video's transcript (features/transcripts.py: Whisper, cached), one row per video; a video
              without speech gets the empty transcript and is listed under `no_speech`; one whose audio
              cannot be decoded fails alone
    generated each video's caption written by a vision-language model (features/generated.py: Qwen2.5-VL, greedy,
              cached), one row per video; a video the model cannot read fails alone
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

import numpy as np
import torch

from mediaeval_mem.core.errors import ConfigError, MemError
from mediaeval_mem.core.registry import Registry
from mediaeval_mem.core.runtime import autocast
from mediaeval_mem.core.schema import build, digest
from mediaeval_mem.datasets import DatasetIndex, VideoItem
from mediaeval_mem.features.generated import CaptionOptions, generate_captions
from mediaeval_mem.features.rows import Rows
from mediaeval_mem.features.transcripts import SpeechOptions, audio_id, transcribe_videos

EMPTY_CAPTION = ""
NO_CAPTION = "no caption: the empty caption was encoded"
# What the feature key records about how captions become rows.
CAPTION_PATH = "every caption of a video one row, in file order; a video without captions: the empty caption"
SPEECH_PATH = "a video's transcript one row; a video without speech: the empty transcript"
GENERATED_PATH = "a video's generated caption one row; an empty one: the empty caption"


def captions_digest(index: DatasetIndex) -> str:
    """A digest of every caption of every split: edited captions make a new cache entry."""
    return digest({split: [(it.video_id, list(it.captions)) for it in items] for split, items in index.splits.items()}, 12)


def video_files_digest(index: DatasetIndex) -> str:
    """A digest of every video's file identity (a stat each: transcripts.py audio_id; None for a missing file),
    split by split: a replaced file makes a new cache entry, as edited captions do."""
    return digest({split: [(it.video_id, audio_id(it.path) if it.path is not None and it.path.is_file() else None)
                           for it in items] for split, items in index.splits.items()}, 12)


@dataclass
class Texts:
    """What a text source gives for a list of videos."""

    per_video: dict[str, list[str]]  # video id -> its texts, one row each ([] -> the empty caption, noted)
    failed: dict[str, str] = field(default_factory=dict)  # video id -> why it has no texts (no rows are stored)
    notes: dict[str, dict[str, str]] = field(default_factory=dict)  # manifest notes: {"no_speech": {id: why}}


# name -> a TextSource class, built from a stream's `source_args` (its fields are the valid keys)
TEXT_SOURCES: Registry = Registry("text source")


class TextSource:
    """Where a caption stream's texts come from. Subclass as a frozen dataclass (its fields: the settings a stream
    gives as `source_args`) and register it in TEXT_SOURCES."""

    name: str
    path: str = CAPTION_PATH  # what the feature key records about how its texts become rows

    def key(self, index: DatasetIndex) -> tuple[str, dict]:
        """(the feature key's `sampling`, extra key fields): what fixes the texts of `index`'s videos."""
        raise NotImplementedError

    def texts(self, items: list[VideoItem], device: torch.device, progress: bool) -> Texts:
        raise NotImplementedError

    def new_video_note(self, i: int, encoder: str) -> str | None:
        """What scoring new video files means for stream `i` (reading `encoder`) with this source; None: nothing to say."""
        return None


@dataclass(frozen=True)
class DatasetCaptions(TextSource):
    """The dataset's own captions (captions.txt, a MediaEval description file)."""

    name = "captions"

    def key(self, index: DatasetIndex) -> tuple[str, dict]:
        return f"captions:{captions_digest(index)}", {}  # the key captions streams always had

    def texts(self, items: list[VideoItem], device: torch.device, progress: bool) -> Texts:
        return Texts({it.video_id: list(it.captions) for it in items})


@dataclass(frozen=True)
class Speech(SpeechOptions, TextSource):
    """Each video's speech, transcribed once (features/transcripts.py), as one text per video."""

    name = "speech"
    path = SPEECH_PATH

    def key(self, index: DatasetIndex) -> tuple[str, dict]:
        return f"speech:{video_files_digest(index)}", {"source": {"name": self.name, **self.describe()}}

    def texts(self, items: list[VideoItem], device: torch.device, progress: bool) -> Texts:
        t = transcribe_videos(items, self, device, progress)
        return Texts({vid: [text] if text else [] for vid, text in t.texts.items()}, t.failed,
                     {"no_speech": t.no_speech} if t.no_speech else {})


@dataclass(frozen=True)
class Generated(CaptionOptions, TextSource):
    """Each video's caption written by a vision-language model (features/generated.py), one text per video."""

    name = "generated"
    path = GENERATED_PATH

    def key(self, index: DatasetIndex) -> tuple[str, dict]:
        # the videos' file identities, and what fixes a caption (the model's weights, prompt, frames, length)
        return f"generated:{video_files_digest(index)}", {"source": {"name": self.name, **self.describe()}}

    def texts(self, items: list[VideoItem], device: torch.device, progress: bool) -> Texts:
        c = generate_captions(items, self, device, progress)
        return Texts({vid: [text] if text else [] for vid, text in c.texts.items()}, c.failed)

    def new_video_note(self, i: int, encoder: str) -> str | None:
        return (f"note: stream {i} ({encoder}) reads captions that {self.model} writes: each new video is captioned "
                f"now (cached), as the run's videos were")


TEXT_SOURCES.add("captions", DatasetCaptions)
TEXT_SOURCES.add("speech", Speech)
TEXT_SOURCES.add("generated", Generated)


def text_source(name: str = "captions", args: Mapping | None = None) -> TextSource:
    """Text source `name` with `args` (a stream's source and source_args); an unknown name or key is one line.

    >>> text_source("speech", {"transcriber": "whisper-small", "language": "en"}).name
    'speech'
    """
    cls = TEXT_SOURCES[name]  # an unknown name lists the valid ones
    try:
        return build(cls, dict(args or {}), "source_args")
    except ConfigError:
        raise
    except MemError as e:
        raise ConfigError(f"source_args: {e}") from None


def stream_source(stream) -> TextSource | None:
    """The text source of a stream (a StreamCfg: its `source` and `source_args`); None for the dataset's captions,
    the default, which extraction needs no word about."""
    name, args = getattr(stream, "source", "captions"), getattr(stream, "source_args", None) or {}
    return None if name == "captions" and not args else text_source(name, args)


def caption_rows(encoder, items: list[VideoItem], device: torch.device, dtype: str, batch_size: int,
                 given: Texts | None = None) -> Rows:
    """Encode the texts of `items` (`given` by a text source; None: their captions), `batch_size` per forward pass:
    one (n_texts, D) block per video. A video with no text gets the empty caption, noted (`uncaptioned` for a
    video without captions; a source's own note, `no_speech`, where it gave one); one the source failed gets none."""
    given = given or Texts({it.video_id: list(it.captions) for it in items})
    texts, counts, notes, done = [], [], {}, []
    for it in items:
        if it.video_id in given.failed:
            continue
        captions = given.per_video.get(it.video_id) or [EMPTY_CAPTION]
        noted = [name for name, per_video in given.notes.items() if it.video_id in per_video]
        for name in noted:
            notes.setdefault(name, {})[it.video_id] = given.notes[name][it.video_id]
        if not given.per_video.get(it.video_id) and not noted:
            notes.setdefault("uncaptioned", {})[it.video_id] = NO_CAPTION
        texts += captions
        counts.append(len(captions))
        done.append(it)
    failed = {it.video_id: given.failed[it.video_id] for it in items if it.video_id in given.failed}
    if not texts:
        return Rows([], failed=failed, notes=notes)
    out = []
    with torch.inference_mode(), autocast(device, dtype):
        for start in range(0, len(texts), batch_size):
            out.append(encoder.encode(texts[start : start + batch_size]).to(torch.float16).cpu().numpy())
    rows = np.concatenate(out)  # (sum of captions, D)
    bounds = np.cumsum([0] + counts)
    videos = [(it.video_id, rows[bounds[i] : bounds[i + 1]]) for i, it in enumerate(done)]
    return Rows(videos, failed=failed, notes=notes, inputs=len(texts))
