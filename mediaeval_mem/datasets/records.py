"""The records every dataset adapter yields, whatever layout it read."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

from mediaeval_mem.core.errors import DataError

SPLITS = ("train", "dev", "test")


@dataclass(frozen=True)
class VideoItem:
    """One video of a split. `score` is None where the split's scores are hidden (test).

    `captions`: every caption or description the layout has for the video, in file order (Memento10k's
    five human captions; a MediaEval text-description file may have several rows per video); empty
    where it has none. `targets`: the scores of a run's other targets (`data.targets` after the first,
    whose score is `score`), by target name; empty for a one-target read and where the split hides them.
    `columns`: the layout's other columns for the video as raw strings (the generic layout's `channel`, `brand`,
    `weight`...), read by grouped cross-validation and loss weights; empty where the layout has none.
    """

    video_id: str
    path: Path | None  # None when the video file was not found
    score: float | None = None
    captions: tuple[str, ...] = ()
    targets: Mapping[str, float] = field(default_factory=dict, hash=False)
    columns: Mapping[str, str] = field(default_factory=dict, compare=False)

    def scores(self, names: tuple[str, ...]) -> list[float | None]:
        """This video's score of each target of `names` (the first is `score`, the others from `targets`)."""
        return [self.score] + [self.targets.get(n) for n in names[1:]]


@dataclass(frozen=True)
class Problem:
    """Something wrong in the data, located to a file and (where it has one) a row or line."""

    file: Path
    message: str
    row: int | None = None
    missing_video: bool = False  # the file is absent; the listing itself is fine

    def __str__(self) -> str:
        where = f"{self.file}:{self.row}" if self.row is not None else str(self.file)
        return f"{where}: {self.message}"


@dataclass
class DatasetIndex:
    """A dataset as read from disk: its layout, its splits and what was wrong on the way."""

    name: str
    root: Path
    layout: str
    target: str
    splits: dict[str, list[VideoItem]]
    problems: list[Problem] = field(default_factory=list)
    # How the splits were made where the layout has no official one (recorded by runs).
    split_info: dict[str, object] = field(default_factory=dict)
    more_targets: tuple[str, ...] = ()  # the targets read after `target` (each item's `targets` holds them)

    @property
    def targets(self) -> tuple[str, ...]:
        """Every target read, the first (each item's `score`) first."""
        return (self.target, *self.more_targets)

    def split(self, name: str) -> list[VideoItem]:
        if name not in self.splits:
            raise DataError(
                f"{self.name} ({self.layout} layout at {self.root}) has no {name!r} split; "
                f"it has: {', '.join(self.splits)}"
            )
        return self.splits[name]
