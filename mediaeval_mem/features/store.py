"""The feature cache of one split: frame vectors stored in segments, listed by an atomic manifest.

Layout of a split folder:
    manifest.json        {"dim", "dtype", "segments": [{"file", "ids", "lengths"}], "failed": {id: reason}}
    seg-<hex>.npy        (sum of T, D) float16, the frames of the videos the segment lists, in order

Writing a segment: the .npy is written and renamed into place first, then the manifest is replaced
(also by rename). A segment the manifest does not name is an orphan from an interrupted run and is
removed the next time a writer opens the folder; a video therefore counts as cached exactly when
the manifest lists it, and nothing half-written is ever read back. At the end of an extraction the
segments are merged into one, so a split reads as one contiguous memory-mapped array.

Storage dtype: float16. Frame vectors are L2-normalised (values well inside fp16's range) and the
fp16 round trip keeps the cosine to fp32 above 0.99999.
"""

from __future__ import annotations

import fcntl
import json
import os
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mediaeval_mem.errors import MemError
from mediaeval_mem.io import TMP_MARK, atomic_save_npy, atomic_write_json

STORE_DTYPE = np.float16
MANIFEST = "manifest.json"


@dataclass
class SplitFeatures:
    """Frame features of a list of videos, cut from one (memory-mapped) array without copying.

    frames: (total frames, D) float16; video i is frames[starts[i] : starts[i] + lengths[i]].
    """

    ids: list[str]
    frames: np.ndarray
    starts: np.ndarray  # (N,) int64
    lengths: np.ndarray  # (N,) int64

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def dim(self) -> int:
        return self.frames.shape[1]

    def __getitem__(self, i: int) -> np.ndarray:
        """(T_i, D) float16 view of video i."""
        s = self.starts[i]
        return self.frames[s : s + self.lengths[i]]

    def get(self, video_id: str) -> np.ndarray:
        return self[self.ids.index(video_id)]

    def subset(self, idx: np.ndarray) -> "SplitFeatures":
        """Videos `idx` (positions), sharing the same array."""
        return SplitFeatures([self.ids[i] for i in idx], self.frames, self.starts[idx], self.lengths[idx])


class FeatureStore:
    """Cached features of one split of one dataset under one feature key."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)

    # ------------------------------------------------------------------ reading
    def manifest(self) -> dict:
        path = self.folder / MANIFEST
        if not path.is_file():
            return {"segments": [], "failed": {}}
        return json.loads(path.read_text())

    def done_ids(self) -> set[str]:
        return {vid for seg in self.manifest()["segments"] for vid in seg["ids"]}

    def failed(self) -> dict[str, str]:
        return dict(self.manifest().get("failed", {}))

    def load(self, ids: list[str] | None = None) -> SplitFeatures:
        """The features of `ids` (default: every cached video, in stored order).

        One segment (the state after an extraction finishes) is memory-mapped, not read; raises
        MemError listing the ids that are not cached.
        """
        segments = self.manifest()["segments"]
        arrays = [np.load(self.folder / seg["file"], mmap_mode="r") for seg in segments]
        frames = arrays[0] if len(arrays) == 1 else (np.concatenate(arrays) if arrays else np.zeros((0, 0), STORE_DTYPE))
        all_ids = [vid for seg in segments for vid in seg["ids"]]
        lengths = np.array([n for seg in segments for n in seg["lengths"]], dtype=np.int64)
        starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64) if len(lengths) else lengths
        if ids is None:
            return SplitFeatures(all_ids, frames, starts, lengths)
        where = {vid: i for i, vid in enumerate(all_ids)}
        missing = [vid for vid in ids if vid not in where]
        if missing:
            raise MemError(
                f"{len(missing)} video(s) have no cached features in {self.folder} "
                f"(e.g. {', '.join(missing[:5])}): run `mem extract` for this split"
            )
        return SplitFeatures(all_ids, frames, starts, lengths).subset(np.array([where[vid] for vid in ids], dtype=np.int64))

    # ------------------------------------------------------------------ writing
    @contextmanager
    def writing(self):
        """Hold the split's write lock; clear orphans left by an interrupted writer."""
        self.folder.mkdir(parents=True, exist_ok=True)
        with open(self.folder / ".lock", "w") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise MemError(f"another `mem extract` is writing {self.folder}; wait for it to finish") from None
            self._remove_orphans()
            yield self

    def _remove_orphans(self) -> None:
        named = {seg["file"] for seg in self.manifest()["segments"]}
        for p in self.folder.iterdir():
            if (p.name.startswith("seg-") and p.name not in named) or TMP_MARK in p.name:
                p.unlink()

    def append(self, videos: list[tuple[str, np.ndarray]], failed: dict[str, str] | None = None,
               padded: dict[str, int] | None = None) -> None:
        """Add finished videos [(id, (T, D) array)] as one segment; record failures and padded clips.

        Call inside `writing()`.
        """
        m = self.manifest()
        m.setdefault("failed", {})
        m.setdefault("padded", {}).update(padded or {})
        if videos:
            dim = videos[0][1].shape[1]
            if m.get("dim", dim) != dim:
                raise MemError(f"feature width {dim} does not match the cached {m['dim']} in {self.folder}")
            name = f"seg-{uuid.uuid4().hex[:12]}.npy"
            atomic_save_npy(self.folder / name, np.concatenate([f for _, f in videos]).astype(STORE_DTYPE))
            m["segments"].append({"file": name, "ids": [v for v, _ in videos], "lengths": [len(f) for _, f in videos]})
            m.update(dim=dim, dtype=np.dtype(STORE_DTYPE).name)
            for vid, _ in videos:
                m["failed"].pop(vid, None)
        m["failed"].update(failed or {})
        atomic_write_json(self.folder / MANIFEST, m)

    def consolidate(self) -> None:
        """Merge all segments into one (streamed through a memmap, so memory stays flat). Call inside `writing()`."""
        m = self.manifest()
        if len(m["segments"]) <= 1:
            return
        total = sum(sum(seg["lengths"]) for seg in m["segments"])
        name = f"seg-{uuid.uuid4().hex[:12]}.npy"
        tmp = self.folder / f"{name}{TMP_MARK}{os.getpid()}"
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=STORE_DTYPE, shape=(total, m["dim"]))
        pos = 0
        for seg in m["segments"]:
            a = np.load(self.folder / seg["file"], mmap_mode="r")
            out[pos : pos + len(a)] = a
            pos += len(a)
        out.flush()
        del out
        os.replace(tmp, self.folder / name)
        old = [seg["file"] for seg in m["segments"]]
        m["segments"] = [{
            "file": name,
            "ids": [v for seg in m["segments"] for v in seg["ids"]],
            "lengths": [n for seg in m["segments"] for n in seg["lengths"]],
        }]
        atomic_write_json(self.folder / MANIFEST, m)
        for f in old:
            (self.folder / f).unlink(missing_ok=True)
