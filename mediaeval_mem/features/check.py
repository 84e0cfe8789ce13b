"""`mem cache check`: every split folder of the feature cache, each segment checked against its manifest."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from mediaeval_mem.core.errors import DamagedError
from mediaeval_mem.core.paths import runs_dir
from mediaeval_mem.features.key import repair_command
from mediaeval_mem.features.store import MANIFEST, FeatureStore


@dataclass
class CacheEntry:
    folder: Path  # runs/features/<dataset>/<encoder>/<key>/<split>
    videos: int = 0
    frames: int = 0
    damaged: dict[str, str] = field(default_factory=dict)  # file -> what is wrong
    affected: int = 0  # videos in damaged files

    @property
    def ok(self) -> bool:
        return not self.damaged

    def problem_line(self) -> str:
        what = "; ".join(f"{f} {why}" for f, why in self.damaged.items())
        return (f"{self.folder}: {what} ({self.affected} video(s)); repair: `{repair_command(self.folder)}` "
                f"(or the `mem run` that needs it) extracts them again")


def check_cache(root: Path | None = None) -> list[CacheEntry]:
    """Check every split folder under `root` (default runs/features); reads every segment once (CRC-32)."""
    root = Path(root) if root is not None else runs_dir() / "features"
    entries = []
    for manifest in sorted(root.glob(f"*/*/*/*/{MANIFEST}")):
        store, entry = FeatureStore(manifest.parent), CacheEntry(manifest.parent)
        try:  # one manifest for the counts and the check: a writer's merge meanwhile is read again, not damage
            m, entry.damaged = store.checked()
        except DamagedError:
            entry.damaged = {MANIFEST: "is unreadable"}
            entries.append(entry)
            continue
        for seg in m["segments"]:
            entry.videos += len(seg["ids"])
            entry.frames += sum(seg["lengths"])
            if seg["file"] in entry.damaged:
                entry.affected += len(seg["ids"])
        entries.append(entry)
    return entries
