"""Where things live: the data root, the runs folder, the submissions folder and the files the repository ships."""

from __future__ import annotations

import os
from pathlib import Path

from mediaeval_mem.core.errors import MemError


def data_root(arg: str | os.PathLike | None = None) -> Path:
    """`--data-root` if given, else $MEM_DATA_ROOT, else ./data."""
    return Path(arg or os.environ.get("MEM_DATA_ROOT") or "data")


def runs_dir() -> Path:
    """Everything a run produces (features, checkpoints, MLflow store): $MEM_RUNS_DIR or ./runs."""
    return Path(os.environ.get("MEM_RUNS_DIR") or "runs")


def submissions_dir() -> Path:
    """Packaged prediction CSVs: $MEM_SUBMISSIONS_DIR or ./submissions."""
    return Path(os.environ.get("MEM_SUBMISSIONS_DIR") or "submissions")


def repo_file(rel: str | os.PathLike) -> Path:
    """A file shipped in the repository (configs/...), from the working directory or this checkout."""
    for base in (Path.cwd(), Path(__file__).resolve().parent.parent.parent):
        if (base / rel).is_file():
            return base / rel
    raise MemError(f"{rel} not found: run mem from the repository's root")
