"""The datasets the harness knows, and `open_dataset`, which finds one on disk and reads it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mediaeval_mem.core.errors import DataError
from mediaeval_mem.core.paths import data_root as default_data_root
from mediaeval_mem.core.registry import Registry
from mediaeval_mem.datasets.layouts import LAYOUTS, TARGET_COLUMNS
from mediaeval_mem.datasets.records import DatasetIndex


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    layouts: tuple[str, ...]  # tried in this order
    folders: tuple[str, ...]  # folder names under the data root, matched ignoring case


DATASETS: Registry = Registry("dataset")
DATASETS["memento10k"] = DatasetSpec("memento10k", ("mediaeval", "memento-json"), ("memento10k", "memento-10k", "memento"))
DATASETS["videomem"] = DatasetSpec("videomem", ("mediaeval", "videomem-csv"), ("videomem", "video-mem"))


def dataset_dir(name: str, data_root: str | Path | None = None) -> Path:
    """The folder holding dataset `name` under the data root (e.g. data/memento10k)."""
    spec = DATASETS[name]
    root = default_data_root(data_root)
    if not root.is_dir():
        raise DataError(
            f"data root {root} does not exist: pass --data-root or set MEM_DATA_ROOT "
            f"(`mem demo-data` generates a small stand-in)"
        )
    by_lower = {p.name.lower(): p for p in root.iterdir() if p.is_dir()}
    for folder in spec.folders:
        if folder in by_lower:
            return by_lower[folder]
    raise DataError(
        f"no {name} folder under {root} (looked for {', '.join(spec.folders)}; found: "
        f"{', '.join(sorted(by_lower)) or 'nothing'})"
    )


def detect_layout(name: str, folder: Path) -> str:
    """Which of the dataset's layouts `folder` holds; raises naming the files each layout expects."""
    spec = DATASETS[name]
    for layout in spec.layouts:
        if LAYOUTS[layout].detect(folder):
            return layout
    raise DataError(
        f"{folder} matches no known {name} layout: expected split folders with *_scores.csv "
        f"(mediaeval release)"
        + (", or memento_train_data.json (original Memento10k)" if "memento-json" in spec.layouts else "")
        + (", or ground-truth_dev-set.csv (original VideoMem)" if "videomem-csv" in spec.layouts else "")
    )


def open_dataset(
    name: str,
    data_root: str | Path | None = None,
    target: str = "short-term",
    dev_fraction: float = 0.2,
    split_seed: int = 0,
) -> DatasetIndex:
    """Find dataset `name` under the data root, detect its layout and read its splits.

    >>> ds = open_dataset("memento10k", "data/demo")
    >>> ds.layout, len(ds.split("train"))
    ('mediaeval', 120)

    Problems in the files are collected in `ds.problems`, not raised (see `mem data check`).
    """
    folder = dataset_dir(name, data_root)
    layout = detect_layout(name, folder)
    columns = TARGET_COLUMNS[layout]
    if target not in columns:
        raise DataError(
            f"target {target!r} is not available in the {layout} layout of {name}; "
            f"available: {', '.join(columns)}"
        )
    read = LAYOUTS[layout].read(folder, columns[target], dev_fraction, split_seed)
    return DatasetIndex(name, folder, layout, target, read.splits, read.problems, read.split_info)
