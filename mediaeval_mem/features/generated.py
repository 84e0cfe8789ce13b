"""Generated captions: a vision-language model (encoders/vlm.py, Qwen2.5-VL) writes one caption per video, made
once and cached like transcripts (features/transcripts.py).

A caption stream with `source: generated` reads these in place of the dataset's captions (features/captions.py),
so caption encoders work for datasets without captions, for the commercials and for `mem predict` on new videos;
`mem captions generate` fills the cache for a whole dataset ahead of a run.

Layout: runs/captions/<model>/<digest>/, the digest of what fixes a caption (the model's name, weights identity
and video preprocessing, the prompt, the frame sampling, max_new_tokens, the compute dtype; key.json beside it
says which), one file per video:

    <file id>.json   {"file", "text", "frames"}
    .lock            held while this process generates (another waits, then finds the videos done)

A video's file id is its file's identity (resolved path, size, modification time: transcripts.py `audio_id`):
a replaced file is captioned again, one read again from the same place is not. Each file is written whole and
renamed into place: an interruption loses at most the video it was on, and the next call does only what is
missing; a second call on the same videos loads no model. Decoding is greedy (the same frames, the same text).

A video the VLM cannot read (a truncated file, no frames) is one line in `failed` for that video; it is not
cached (a repaired file is tried again) and the other videos go on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from mediaeval_mem.core.errors import ConfigError, DataError, DecodeError
from mediaeval_mem.core.io import atomic_write_json, keyed_folder
from mediaeval_mem.core.paths import runs_dir
from mediaeval_mem.core.progress import progress_bar
from mediaeval_mem.core.runtime import autocast, resolve_device, resolve_dtype
from mediaeval_mem.core.schema import digest
from mediaeval_mem.core.threads import with_threads
from mediaeval_mem.datasets import DatasetIndex, VideoItem, open_dataset
from mediaeval_mem.encoders.vlm import QWEN_ARCHS, FrameSizeError, VlmSource, vlm_source
from mediaeval_mem.features.pixels import frames_for
from mediaeval_mem.features.transcripts import audio_id as file_id  # a file's identity: path, size, mtime
from mediaeval_mem.features.transcripts import cached_text  # the per-video record of a text cache
from mediaeval_mem.video import Sampling

CAPTION_PROMPT = "Describe this video in one sentence."
DEFAULT_VLM = "qwen2.5-vl-3b"


@dataclass(frozen=True)
class CaptionOptions:
    """How a VLM captions a video: the `generated` text source's settings (a stream's `source_args`).

    >>> CaptionOptions(model="qwen2.5-vl-demo", sampling="uniform:4")
    """

    model: str = DEFAULT_VLM  # a VLM architecture (encoders/vlm.py QWEN_ARCHS)
    weights: str | None = None  # a save_pretrained folder, a hub id or 'random'; None: the model's own
    prompt: str = CAPTION_PROMPT
    sampling: str = "uniform:8"  # the frames the VLM reads (all or uniform:N)
    max_new_tokens: int = 48

    def __post_init__(self):
        if self.model not in QWEN_ARCHS:
            raise ConfigError(f"unknown VLM {self.model!r} for generated captions: use one of {', '.join(QWEN_ARCHS)}")
        if not isinstance(self.prompt, str) or not self.prompt.strip():
            raise ConfigError(f"prompt must be a non-empty text, not {self.prompt!r}")
        if Sampling.parse(self.sampling).kind == "segments":  # a bad sampling raises there, in one line
            raise ConfigError(f"sampling {self.sampling}: a caption reads its frames once; use uniform:N or all")
        if not isinstance(self.max_new_tokens, int) or self.max_new_tokens < 1:
            raise ConfigError(f"max_new_tokens must be an integer >= 1, not {self.max_new_tokens!r}")

    def vlm(self) -> VlmSource:
        """The VLM, resolved (its weights found, not loaded): a missing checkpoint is one line."""
        return vlm_source(self.model, self.weights)

    def describe(self, vlm: VlmSource | None = None) -> dict:
        """What fixes the captions, the device aside (for the caption features' key; their folder adds the dtype)."""
        vlm = vlm or self.vlm()
        return {"model": vlm.name, "weights": vlm.weights_id, "preprocess": vlm.transform.describe(),
                "prompt": self.prompt, "sampling": str(Sampling.parse(self.sampling)),
                "max_new_tokens": self.max_new_tokens}


@dataclass
class Captions:
    """What `generate_captions` gives: every video's caption but those that failed."""

    texts: dict[str, str]  # video id -> its caption
    failed: dict[str, str] = field(default_factory=dict)  # video id -> why (one line)
    generated: int = 0  # videos captioned by this call (the others were cached)
    folder: Path | None = None  # where the captions are cached


def captions_dir(described: dict) -> Path:
    """runs/captions/<model>/<digest of what fixes the captions>/."""
    return runs_dir() / "captions" / described["model"] / digest(described, 12)


def _take(out: Captions, it: VideoItem, folder: Path, rec: dict | None = None) -> bool:
    """Put video `it`'s caption (`rec`, else the cached one) into `out`; False where there is none yet."""
    if it.path is None or not Path(it.path).is_file():
        out.failed[it.video_id] = f"{it.path}: video file not found"
        return True
    rec = rec or cached_text(folder, file_id(it.path))
    if rec is None:
        return False
    out.texts[it.video_id] = rec["text"]
    return True


@with_threads("encode")  # the VLM's forward passes: every core this process may use
def generate_captions(items: list[VideoItem], opts: CaptionOptions, device: torch.device | str = "cpu",
                      progress: bool = False) -> Captions:
    """Every video's caption, from the cache or written now (the VLM loaded only if some video is missing).

    >>> index = open_dataset("memento10k", "data/demo")  # mem demo-data --scale 0.1
    >>> generate_captions(index.split("dev"), CaptionOptions("qwen2.5-vl-demo", max_new_tokens=5)).texts["13"]
    'odd circle medium moving sliding'
    """
    device = torch.device(device)
    vlm = opts.vlm()
    dtype = resolve_dtype("auto", device)  # bf16 where the device computes it natively: part of the folder's key
    described = {**opts.describe(vlm), "compute_dtype": dtype}
    folder = captions_dir(described)
    out = Captions({}, folder=folder)
    missing = [it for it in items if not _take(out, it, folder)]
    if not missing:
        return out
    with keyed_folder(folder, described, "writing captions"):
        todo = [it for it in missing if not _take(out, it, folder)]  # another process may have done them meanwhile
        if not todo:
            return out
        model = vlm.load().to(device)
        with progress_bar(f"captions ({opts.model})", len(todo), enabled=progress, unit="frames") as bar:
            for it in todo:
                try:
                    frames = frames_for(it.path, vlm.transform, opts.sampling)  # uint8 (T, 3, h, w)
                except FrameSizeError as e:  # frames the VLM's resize refuses (an aspect ratio over 200)
                    out.failed[it.video_id] = f"{it.path}: {opts.model} cannot read its frames: {e}"
                except DecodeError as e:
                    out.failed[it.video_id] = str(e)
                else:
                    pixels = vlm.transform.normalize(frames.to(device))  # float32 (T, 3, h, w)
                    with autocast(device, dtype):
                        text = model.caption(pixels, opts.prompt, opts.max_new_tokens)
                    rec = {"file": str(Path(it.path).resolve()), "text": text, "frames": len(frames)}
                    atomic_write_json(folder / f"{file_id(it.path)}.json", rec)
                    _take(out, it, folder, rec)
                    out.generated += 1
                    bar.advance(1, frames=len(frames))
                    continue
                bar.advance(1)
    return out


@dataclass
class CaptionReport:
    """What `caption_dataset` did: how many videos were captioned now, found cached, failed (with why)."""

    dataset: str
    model: str
    videos: int
    generated: int
    cached: int
    failed: dict[str, str]  # "split/video id" -> why (one line)
    folder: Path | None


def caption_dataset(dataset: str | DatasetIndex, opts: CaptionOptions, data_root: str | Path | None = None,
                    splits: tuple[str, ...] | None = None, device: str = "auto", progress: bool = True) -> CaptionReport:
    """`mem captions generate`: a caption for every video of `splits` (None: all) of a dataset, into the cache a
    `source: generated` stream with the same settings reads.

    >>> r = caption_dataset("memento10k", CaptionOptions("qwen2.5-vl-demo"), "data/demo")  # mem demo-data --scale 0.1
    >>> r.videos, r.generated, r.cached, r.failed
    (20, 20, 0, {})
    """
    index = dataset if isinstance(dataset, DatasetIndex) else open_dataset(dataset, data_root)
    names = tuple(index.splits) if splits is None else splits
    unknown = [s for s in names if s not in index.splits]
    if unknown:
        raise DataError(f"{index.name} has no split {unknown[0]!r}: use {', '.join(index.splits)}")
    where = {}  # video id -> its split (for the failure lines)
    items = []
    for split in names:
        for it in index.splits[split]:
            where.setdefault(it.video_id, split)
            items.append(it)
    out = generate_captions(items, opts, resolve_device(device), progress)
    failed = {f"{where[vid]}/{vid}": why for vid, why in out.failed.items()}
    return CaptionReport(index.name, opts.model, len(items), out.generated, len(out.texts) - out.generated, failed,
                         out.folder)
