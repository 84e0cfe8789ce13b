"""The feature cache of one split: frame vectors stored in segments, listed by an atomic manifest.

Layout of a split folder:
    manifest.json        {"dim", "dtype", "segments": [{"file", "ids", "lengths", "bytes", "crc32"}],
                          "failed": {id: reason}, "padded": {id: frames}, "uncaptioned": {id: treatment},
                          "silent": {id: treatment}}
    seg-<hex>.npy        (sum of T, D) float16, the frames of the videos the segment lists, in order
    .lock                held by the one writer (others wait for it)

Writing a segment: the .npy is written and renamed into place first, then the manifest is replaced
(also by rename). A segment the manifest does not name is an orphan from an interrupted run and is
removed the next time a writer opens the folder; a video therefore counts as cached exactly when
the manifest lists it, and nothing half-written is ever read back. At the end of an extraction the
segments are merged into one, so a split reads as one contiguous memory-mapped array.

What is read is checked: each segment's size and CRC-32 are recorded when it is written and compared
before its frames are used (once per process and file state: about 0.4 s per GB). A damaged segment
(truncated, overwritten, missing) never counts as cached: `load` refuses it in one line naming the
folder and the command that repairs it, and the next writer drops it, so its videos are extracted again.

Storage dtype: float16. Frame vectors are L2-normalised (values well inside fp16's range) and the
fp16 round trip keeps the cosine to fp32 above 0.99999.
"""

from __future__ import annotations

import io
import json
import os
import sys
import time
import uuid
import zlib
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mediaeval_mem.core.errors import DamagedError, MemError
from mediaeval_mem.core.io import (
    NO_SPACE,
    TMP_MARK,
    atomic_write_bytes,
    atomic_write_json,
    file_lock,
    free_bytes,
    npy_bytes,
    write_error,
)
from mediaeval_mem.features.key import repair_command

STORE_DTYPE = np.float16
MANIFEST = "manifest.json"
_CHUNK = 16 << 20  # bytes read or written at a time when checksumming or merging

# str(path) -> (size, mtime_ns, crc32) of segments this process has verified: a file is hashed once
_VERIFIED: dict[str, tuple[int, int, int | None]] = {}


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


def file_crc32(path: Path) -> int:
    """CRC-32 of a whole file, read in chunks (zlib: about 2.4 GB/s on this project's CPUs)."""
    crc = 0
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            crc = zlib.crc32(chunk, crc)
    return crc


class FeatureStore:
    """Cached features of one split of one dataset under one feature key."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)

    # ------------------------------------------------------------------ reading
    def manifest(self) -> dict:
        """The manifest as written; raises DamagedError if it cannot be read."""
        path = self.folder / MANIFEST
        try:
            m = json.loads(path.read_text())
            if not isinstance(m, dict) or not isinstance(m.get("segments"), list) or not all(
                    isinstance(seg, dict) and isinstance(seg.get("file"), str) and isinstance(seg.get("ids"), list)
                    and isinstance(seg.get("lengths"), list) and len(seg["ids"]) == len(seg["lengths"])
                    for seg in m["segments"]):
                raise ValueError("not a feature manifest")
        except FileNotFoundError:
            return {"segments": [], "failed": {}}
        except (ValueError, UnicodeDecodeError) as e:
            raise DamagedError(f"damaged feature cache {self.folder}: {MANIFEST} is unreadable ({e}); "
                               f"{self.repair_hint()}") from None
        return m

    def damaged(self) -> dict[str, str]:
        """{segment file: what is wrong} for every listed segment that does not match what was written."""
        return self.checked()[1]

    def checked(self, attempts: int = 5) -> tuple[dict, dict[str, str]]:
        """(manifest, {segment file: what is wrong}), the segments checked against a manifest that held still.

        A writer merging segments replaces the manifest before it deletes the old files: a segment found
        missing (or otherwise wrong) while the manifest changed is read again, never reported as damage.
        """
        for _ in range(attempts):
            m = self.manifest()
            bad = self._bad(m)
            if not bad or self.manifest() == m:
                return m, bad
        raise DamagedError(f"feature cache {self.folder} keeps changing under this reader: run the command again")

    def _bad(self, m: dict) -> dict[str, str]:
        return {seg["file"]: why for seg in m["segments"] if (why := self._check_segment(seg, m.get("dim")))}

    def _check_segment(self, seg: dict, dim: int | None) -> str | None:
        path = self.folder / seg["file"]
        try:
            st = path.stat()
        except FileNotFoundError:
            return "missing"
        rows = sum(seg["lengths"])
        if "bytes" in seg and st.st_size != seg["bytes"]:
            return f"{st.st_size} bytes on disk, {seg['bytes']} written (truncated or overwritten)"
        state = (st.st_size, st.st_mtime_ns, seg.get("crc32"))
        if _VERIFIED.get(str(path)) == state:
            return None
        try:  # the header must describe the frames the manifest lists (the only check for old manifests)
            shape = np.load(path, mmap_mode="r").shape
        except (ValueError, OSError, EOFError) as e:
            return f"unreadable ({e})"
        if shape != (rows, dim if dim is not None else shape[-1]):
            return f"holds an array of shape {shape}, the manifest lists {rows} frames of width {dim}"
        try:
            if "crc32" in seg and file_crc32(path) != seg["crc32"]:
                return "contents differ from what was written (checksum mismatch)"
        except FileNotFoundError:  # removed since (a writer's merge): the caller reads the manifest again
            return "missing"
        except OSError as e:
            return f"unreadable ({e})"
        _VERIFIED[str(path)] = state
        return None

    def done_ids(self) -> set[str]:
        """Videos whose features are cached in an intact segment (none if the manifest is unreadable)."""
        try:
            m, bad = self.checked()
        except DamagedError:
            return set()
        return {vid for seg in m["segments"] if seg["file"] not in bad for vid in seg["ids"]}

    def failed(self) -> dict[str, str]:
        return dict(self.manifest().get("failed", {}))

    def repair_hint(self) -> str:
        return f"`{repair_command(self.folder)}` (or the same `mem run` again) extracts the affected videos again"

    def load(self, ids: list[str] | None = None) -> SplitFeatures:
        """The features of `ids` (default: every cached video, in stored order).

        One segment (the state after an extraction finishes) is memory-mapped, not read. Raises
        DamagedError if a segment fails its check, MemError listing the ids that are not cached.
        """
        segments, arrays = self._open_segments()
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

    def _open_segments(self) -> tuple[list[dict], list[np.ndarray]]:
        """The manifest's segments, checked, and each one memory-mapped."""
        for attempt in range(5):
            m, bad = self.checked()
            if bad:
                file, why = next(iter(bad.items()))
                n = sum(len(seg["ids"]) for seg in m["segments"] if seg["file"] in bad)
                raise DamagedError(f"damaged feature cache {self.folder}: {file} {why}, {n} video(s) affected; "
                                   f"{self.repair_hint()}")
            try:
                return m["segments"], [np.load(self.folder / seg["file"], mmap_mode="r") for seg in m["segments"]]
            except FileNotFoundError:
                time.sleep(0.05 * (attempt + 1))
        raise DamagedError(f"feature cache {self.folder} keeps changing under this reader: run the command again")

    # ------------------------------------------------------------------ writing
    @contextmanager
    def writing(self):
        """Hold the split's write lock (waiting for another writer), then repair what a crash or damage left.

        Yields {segment file: reason} of the damaged segments it dropped (their videos are no longer cached).
        """
        def waiting():
            print(f"waiting: another process is writing {self.folder}", file=sys.stderr, flush=True)

        with file_lock(self.folder / ".lock", on_wait=waiting):
            yield self._repair()

    def _repair(self) -> dict[str, str]:
        """Under the lock: drop damaged segments and an unreadable manifest, remove orphans."""
        try:
            m = self.manifest()
        except DamagedError:
            self._replace_manifest({"segments": [], "failed": {}})
            self._remove_orphans()
            return {MANIFEST: "unreadable: every video of the split is extracted again"}
        bad = self._bad(m)
        if bad:
            m["segments"] = [seg for seg in m["segments"] if seg["file"] not in bad]
            self._replace_manifest(m)
        self._remove_orphans()
        return bad

    def _replace_manifest(self, m: dict) -> None:
        atomic_write_json(self.folder / MANIFEST, m)

    def _remove_orphans(self) -> None:
        named = {seg["file"] for seg in self.manifest()["segments"]}
        for p in self.folder.iterdir():
            if (p.name.startswith("seg-") and p.name not in named) or TMP_MARK in p.name:
                p.unlink(missing_ok=True)

    def append(self, videos: list[tuple[str, np.ndarray]], failed: dict[str, str] | None = None,
               padded: dict[str, int] | None = None, notes: dict[str, dict] | None = None) -> None:
        """Add finished videos [(id, (T, D) array)] as one segment; record failures, padded clips and
        other per-video notes ({"uncaptioned": {id: why}}: each a mapping of the manifest).

        Call inside `writing()`.
        """
        m = self.manifest()
        m.setdefault("failed", {})
        m.setdefault("padded", {}).update(padded or {})
        for name, per_video in (notes or {}).items():
            m.setdefault(name, {}).update(per_video)
        listed = {vid for seg in m["segments"] for vid in seg["ids"]}
        videos = [(vid, f) for vid, f in videos if vid not in listed]  # a video is stored once, whatever happens
        if videos:
            dim = videos[0][1].shape[1]
            if m.get("dim", dim) != dim:
                raise MemError(f"feature width {dim} does not match the cached {m['dim']} in {self.folder}")
            name = f"seg-{uuid.uuid4().hex[:12]}.npy"
            data = npy_bytes(np.concatenate([f for _, f in videos]).astype(STORE_DTYPE))
            atomic_write_bytes(self.folder / name, data)
            m["segments"].append({"file": name, "ids": [v for v, _ in videos], "lengths": [len(f) for _, f in videos],
                                  "bytes": len(data), "crc32": zlib.crc32(data)})
            m.update(dim=dim, dtype=np.dtype(STORE_DTYPE).name)
            for vid, _ in videos:
                m["failed"].pop(vid, None)
        m["failed"].update(failed or {})
        self._replace_manifest(m)

    def consolidate(self) -> bool:
        """Merge all segments into one, streamed (memory stays flat) and checksummed. Call inside `writing()`.

        Returns False, leaving the segments as they are (a split reads the same either way), when the
        disk lacks room for the merged copy.
        """
        m = self.manifest()
        if len(m["segments"]) <= 1:
            return True
        total = sum(sum(seg["lengths"]) for seg in m["segments"])
        head = io.BytesIO()  # the .npy header of the merged (total, D) array
        np.lib.format.write_array_header_1_0(head, {"descr": np.lib.format.dtype_to_descr(np.dtype(STORE_DTYPE)),
                                                    "fortran_order": False, "shape": (total, m["dim"])})
        size = head.tell() + total * m["dim"] * np.dtype(STORE_DTYPE).itemsize
        free = free_bytes(self.folder)
        if free is not None and free < size + (16 << 20):
            return False
        name = f"seg-{uuid.uuid4().hex[:12]}.npy"
        tmp = self.folder / f"{name}{TMP_MARK}{os.getpid()}"
        crc = zlib.crc32(head.getvalue())
        try:
            with open(tmp, "wb") as out:
                out.write(head.getvalue())
                for seg in m["segments"]:
                    a = np.load(self.folder / seg["file"], mmap_mode="r")
                    step = max(1, _CHUNK // max(1, a.strides[0]))
                    for i in range(0, len(a), step):
                        chunk = np.ascontiguousarray(a[i : i + step]).tobytes()
                        out.write(chunk)
                        crc = zlib.crc32(chunk, crc)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, self.folder / name)
        except OSError as e:
            tmp.unlink(missing_ok=True)
            if e.errno in NO_SPACE:  # the segments stay, a later run merges them
                return False
            raise write_error(e, self.folder / name, size) from None
        old = [seg["file"] for seg in m["segments"]]
        m["segments"] = [{
            "file": name,
            "ids": [v for seg in m["segments"] for v in seg["ids"]],
            "lengths": [n for seg in m["segments"] for n in seg["lengths"]],
            "bytes": size,
            "crc32": crc,
        }]
        self._replace_manifest(m)
        for f in old:
            (self.folder / f).unlink(missing_ok=True)
        return True
