"""Transcripts: each video's speech as text (encoders/whisper.py), computed once and cached like features.

A caption stream with `source: speech` reads these in place of the dataset's captions (features/captions.py).

Layout: runs/transcripts/<transcriber>/<digest>/, the digest of what fixes a transcript (the transcriber's
name, weights and settings, and the language setting; key.json beside it says which), one file per video:

    <audio id>.json   {"file", "text", "language", "windows", "speech_windows", "no_speech"}
    .lock             held while this process transcribes (another waits, then finds the videos done)

A video's audio id is a digest of its file's resolved path, size and modification time (the identity
`mem predict` gives the files it scores): a replaced or re-encoded file is transcribed again, one read
again from the same place is not. Each file is written whole and renamed into place (core/io.py, as the
feature store writes its segments and manifest): an interrupted transcription loses at most the video it
was on, never leaves half a file, and the next call does only what is missing. A second call on the same
videos loads no model.

A video without an audio track, or whose track holds no speech (silent, or Whisper hears none), gets the
empty transcript "" and is listed with why (`no_speech`). A track that cannot be decoded (a truncated
file, a codec FFmpeg lacks) is one line in `failed` for that video; it is not cached (a repaired file is
tried again) and the other videos go on.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from mediaeval_mem.core.errors import ConfigError, DecodeError, MemError
from mediaeval_mem.core.io import atomic_write_json, keyed_folder
from mediaeval_mem.core.paths import runs_dir
from mediaeval_mem.core.progress import progress_bar
from mediaeval_mem.core.schema import digest
from mediaeval_mem.core.threads import with_threads
from mediaeval_mem.datasets import VideoItem
from mediaeval_mem.encoders.whisper import RATE, TRANSCRIBERS, WINDOW_S, TranscriberRecipe, transcriber_recipe
from mediaeval_mem.video.audio import has_audio, iter_windows

NO_AUDIO = "no audio track: the empty transcript was encoded"
NO_SPEECH = "no speech heard: the empty transcript was encoded"


@dataclass(frozen=True)
class SpeechOptions:
    """How a video's speech becomes its text: the `speech` text source's settings (a stream's `source_args`).

    >>> SpeechOptions(transcriber="whisper-small", language="en")
    """

    transcriber: str = "whisper-large-v3-turbo"  # a TRANSCRIBERS name (encoders/whisper.py)
    weights: str | None = None  # a save_pretrained folder or a hub id; None: the transcriber's own
    language: str | None = None  # a Whisper language code (en, de, ...); None: detected in each 30 s window
    batch_size: int = 8  # 30 s windows per forward pass (how, not what: not in any key)

    def __post_init__(self):
        if self.transcriber not in TRANSCRIBERS:
            TRANSCRIBERS[self.transcriber]  # raises, listing the valid names
        if self.batch_size < 1:
            raise ConfigError("batch_size must be >= 1")
        if self.language is not None and (not isinstance(self.language, str) or not self.language.strip()):
            raise ConfigError(f"language must be a Whisper language code such as en, or null to detect it, "
                              f"not {self.language!r}")

    def recipe(self) -> TranscriberRecipe:
        return transcriber_recipe(self.transcriber, self.weights, self.batch_size)

    def describe(self, recipe: TranscriberRecipe | None = None) -> dict:
        """What fixes the transcripts (for their folder and the caption features' key)."""
        return {**(recipe or self.recipe()).identity(), "language": self.language}


@dataclass
class Transcripts:
    """What `transcribe_videos` gives: every video's text but those that failed."""

    texts: dict[str, str]  # video id -> its transcript ("" for no speech)
    failed: dict[str, str] = field(default_factory=dict)  # video id -> why (one line)
    no_speech: dict[str, str] = field(default_factory=dict)  # video id -> NO_AUDIO or NO_SPEECH
    transcribed: int = 0  # videos transcribed by this call (the others were cached)


def audio_id(path: Path) -> str:
    """The identity of a video's audio: its file's resolved path, size and modification time."""
    st = Path(path).stat()
    return digest([str(Path(path).resolve()), st.st_size, st.st_mtime_ns], 16)


def transcripts_dir(described: dict) -> Path:
    """runs/transcripts/<transcriber>/<digest of what fixes the transcripts>/."""
    return runs_dir() / "transcripts" / described["transcriber"] / digest(described, 12)


def cached_text(folder: Path, fid: str) -> dict | None:
    """The record {"text": ...} a per-video text cache (transcripts, generated captions) holds for file id `fid`;
    None where there is none or it is unreadable (then it is made again)."""
    import json

    try:
        rec = json.loads((folder / f"{fid}.json").read_text())
        return rec if isinstance(rec, dict) and isinstance(rec.get("text"), str) else None
    except (OSError, ValueError):
        return None


@with_threads("encode")  # Whisper's encoder is a large batched product: every core this process may use
def transcribe_videos(items: list[VideoItem], opts: SpeechOptions, device: torch.device | str = "cpu",
                      progress: bool = False) -> Transcripts:
    """Every video's transcript, from the cache or made now (the model loaded only if some video is missing).

    >>> transcribe_videos(index.split("train"), SpeechOptions("whisper-demo")).texts["ad-001"]
    'hello and welcome ...'
    """
    recipe = opts.recipe()
    described = opts.describe(recipe)
    folder = transcripts_dir(described)
    out = Transcripts({})
    missing = [it for it in items if not _take(out, it, folder)]
    if not missing:
        return out
    with keyed_folder(folder, described, "transcribing"):
        todo = [it for it in missing if not _take(out, it, folder)]  # another process may have done them meanwhile
        if not todo:
            return out
        model = recipe.load().to(torch.device(device))
        _check_language(model, opts)
        with progress_bar(f"transcribe ({opts.transcriber})", len(todo), enabled=progress, unit="videos") as bar:
            for it in todo:
                try:
                    rec = _transcribe(model, it, opts.language)
                except DecodeError as e:
                    out.failed[it.video_id] = str(e)
                else:
                    atomic_write_json(folder / f"{audio_id(it.path)}.json", rec)
                    _take(out, it, folder, rec)
                    out.transcribed += 1
                bar.advance(1, frames=1)
    return out


def _take(out: Transcripts, it: VideoItem, folder: Path, rec: dict | None = None) -> bool:
    """Put video `it`'s transcript (`rec`, else the cached one) into `out`; False where there is none yet."""
    if it.path is None or not Path(it.path).is_file():
        out.failed[it.video_id] = f"{it.path}: video file not found"
        return True
    rec = rec or cached_text(folder, audio_id(it.path))
    if rec is None:
        return False
    out.texts[it.video_id] = rec["text"]
    if rec.get("no_speech"):
        out.no_speech[it.video_id] = rec["no_speech"]
    return True


def _transcribe(model, it: VideoItem, language: str | None) -> dict:
    """One video's transcript record; raises DecodeError (one line naming the file) for a track that cannot be read."""
    base = {"file": str(it.path)}
    if not has_audio(it.path):
        return {**base, "text": "", "language": language, "windows": 0, "speech_windows": 0, "no_speech": NO_AUDIO}
    t = model.transcribe(iter_windows(it.path, RATE, WINDOW_S), language)
    rec = {**base, **asdict(t)}
    if not t.text:
        rec["no_speech"] = NO_SPEECH
    return rec


def _check_language(model, opts: SpeechOptions) -> None:
    """A language the model has no token for is refused in one line (before any video is read)."""
    known = sorted(t.strip("<|>") for t in getattr(model.model.generation_config, "lang_to_id", {}))
    if opts.language is not None and known and opts.language.lower() not in known:
        from transformers.models.whisper.tokenization_whisper import TO_LANGUAGE_CODE

        if TO_LANGUAGE_CODE.get(opts.language.lower()) not in known:
            raise MemError(f"{opts.transcriber} knows no language {opts.language!r}: give one of {', '.join(known)}, "
                           f"or language null to detect it")
