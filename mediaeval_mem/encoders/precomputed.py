"""`precomputed`: features someone already extracted (the organisers, another team, another tool) as a stream.

    model: {streams: [{encoder: precomputed, weights: /data/organisers/clip-features, aggregator: avg}]}

`weights` names the features' folder, in one of two shapes, each either directly in it or in a
subfolder per dataset (`<folder>/<dataset>/`, used where it exists):

- one `.npy` per video, named by its id (`00042.npy`, `42.npy` and `video42.npy` all match video 42
  of a dataset whose ids are 42 or video42): (T, D) one row per frame, or (D,) one per video;
- one array `features.npy`, (N, D) or (N, T, D), with `ids.txt` beside it: one video id per line, in
  the array's order.

A video with no file is recorded as failed and left out of runs, as a video that does not decode.
The rows are copied into the feature cache once, keyed by the identity (names, sizes and modification
times) of the files that dataset's rows are read from, and read from there like any other features: a file
added for another dataset leaves the entry valid.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mediaeval_mem.core.errors import DecodeError, WeightsError
from mediaeval_mem.datasets.layouts import canonical_id
from mediaeval_mem.encoders.base import ENCODERS, EncoderInfo, EncoderRecipe

ARRAY, IDS = "features.npy", "ids.txt"


@dataclass(frozen=True)
class FeatureFiles:
    """Where the features are, for the feature key (there is no preprocessing to describe)."""

    folder: str

    def describe(self) -> dict:
        return {"precomputed": self.folder}

    def files_id(self, dataset: str) -> str:
        """The identity of the files `dataset`'s rows are read from (another dataset's files are not in it)."""
        return files_digest(dataset_folder(Path(self.folder), dataset))


def dataset_folder(folder: Path, dataset: str) -> Path:
    """Where `dataset`'s features are: its subfolder `<folder>/<dataset>/` where it exists, else `folder`."""
    sub = folder / dataset
    return sub if sub.is_dir() else folder


def _canonical(stem: str) -> str:

    return canonical_id(stem)


class FeatureReader:
    """Rows of one video from the files of `folder` (per dataset subfolder where there is one)."""

    name = "precomputed"

    def __init__(self, folder: Path):
        self.folder = folder
        self._arrays: dict[Path, tuple[np.ndarray, dict[str, int]]] = {}
        self._files: dict[Path, dict[str, Path]] = {}

    def to(self, device):  # nothing to move: rows are read, not computed
        return self

    def base(self, dataset: str) -> Path:
        return dataset_folder(self.folder, dataset)

    def rows(self, dataset: str, video_id: str) -> np.ndarray:
        """(R, D) float32: R frames (or 1 for a per-video vector). Raises DecodeError naming what is missing."""
        base = self.base(dataset)
        key = _canonical(video_id)
        if (base / ARRAY).is_file():
            array, where = self._array(base)
            if key not in where:
                raise DecodeError(f"{video_id}: not listed in {base / IDS}")
            rows = np.asarray(array[where[key]])
        else:
            files = self._files.get(base)
            if files is None:
                files = self._files[base] = {_canonical(p.stem): p for p in sorted(base.glob("*.npy"))}
                files.update({_canonical(p.stem[len("video"):]): p for p in sorted(base.glob("video*.npy"))
                              if _canonical(p.stem[len("video"):]) not in files})
            path = files.get(key) or files.get(_canonical(video_id.removeprefix("video")))
            if path is None:
                raise DecodeError(f"{video_id}: no {video_id}.npy in {base}")
            try:
                rows = np.load(path, mmap_mode="r")
            except (OSError, ValueError, EOFError) as e:
                raise DecodeError(f"{path}: unreadable .npy ({e})") from None
        rows = np.asarray(rows, np.float32)
        if rows.ndim == 1:
            rows = rows[None]
        if rows.ndim != 2 or not len(rows) or not np.isfinite(rows).all():
            raise DecodeError(f"{video_id}: precomputed features of shape {rows.shape} in {base}: expected (T, D) or (D,) finite values")
        return rows

    def _array(self, base: Path) -> tuple[np.ndarray, dict[str, int]]:
        if base not in self._arrays:
            try:
                array = np.load(base / ARRAY, mmap_mode="r")
                ids = [line.strip() for line in (base / IDS).read_text().splitlines() if line.strip()]
            except (OSError, ValueError, EOFError) as e:
                raise WeightsError(f"precomputed features {base}: {e}: expected {ARRAY} with {IDS} beside it") from None
            if len(ids) != len(array):
                raise WeightsError(f"precomputed features {base}: {IDS} lists {len(ids)} ids, {ARRAY} has {len(array)} rows")
            self._arrays[base] = array, {_canonical(v): i for i, v in enumerate(ids)}
        return self._arrays[base]


def files_digest(folder: Path) -> str:
    """The identity of the files a reader reads in `folder` (the .npy files and ids.txt directly in it, not
    subfolders: another dataset's): names, sizes, modification times (no contents read)."""
    h = hashlib.sha256()
    for p in sorted(folder.iterdir()):
        if p.is_file() and not p.name.startswith(".") and (p.suffix == ".npy" or p.name == IDS):
            st = p.stat()
            h.update(f"{p.relative_to(folder)}:{st.st_size}:{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


@ENCODERS.register("precomputed", info=EncoderInfo(0, input="features"))
def precomputed(weights: str | None = None) -> EncoderRecipe:
    """Features already extracted, read from the folder `weights` names (see the module docstring)."""
    if not weights:
        raise WeightsError("precomputed: give the features' folder as the stream's weights "
                           "(e.g. {encoder: precomputed, weights: /data/features/clip})")
    folder = Path(weights).expanduser().resolve()
    if not folder.is_dir():
        raise WeightsError(f"precomputed: features folder {folder} not found")
    # the files' identity is per dataset (FeatureFiles.files_id), taken into the key when a dataset is extracted
    return EncoderRecipe("precomputed", "per dataset", FeatureFiles(str(folder)), lambda: FeatureReader(folder))
