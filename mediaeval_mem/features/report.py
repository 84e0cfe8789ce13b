"""What an extraction did: per split (extracted, cached, failed, ...) and for the whole call."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class SplitReport:
    split: str
    total: int
    extracted: int = 0
    cached: int = 0
    frames: int = 0
    seconds: float = 0.0
    failed: dict[str, str] = field(default_factory=dict)
    padded: dict[str, int] = field(default_factory=dict)  # clip-level encoders: videos shorter than the network needs
    repaired: dict[str, str] = field(default_factory=dict)  # damaged cache files dropped (file -> why): their videos redone
    uncaptioned: dict[str, str] = field(default_factory=dict)  # caption streams: videos given the empty caption
    no_speech: dict[str, str] = field(default_factory=dict)  # speech streams: videos given the empty transcript
    silent: dict[str, str] = field(default_factory=dict)  # audio streams: videos without sound, given a window of silence


@dataclass
class ExtractReport:
    dataset: str
    encoder: str
    cache_dir: Path
    key: dict
    splits: list[SplitReport]
    unit: str = "frame"  # what SplitReport.frames counts: frame, caption or row (the input kind's `counts`)

    @property
    def failed(self) -> int:
        return sum(len(s.failed) for s in self.splits)

    def repairs(self) -> list[str]:
        """One line per damaged cache file that this extraction found, dropped and made again."""
        return [f"repaired damaged feature cache {self.cache_dir / s.split}: {file} {why}; its videos were extracted again"
                for s in self.splits for file, why in s.repaired.items()]
