"""Where things live: the data root, the runs folder and the submissions folder."""

from __future__ import annotations

import os
from pathlib import Path


def data_root(arg: str | os.PathLike | None = None) -> Path:
    """`--data-root` if given, else $MEM_DATA_ROOT, else ./data."""
    return Path(arg or os.environ.get("MEM_DATA_ROOT") or "data")


def runs_dir() -> Path:
    """Everything a run produces (features, checkpoints, MLflow store): $MEM_RUNS_DIR or ./runs."""
    return Path(os.environ.get("MEM_RUNS_DIR") or "runs")


def submissions_dir() -> Path:
    """Packaged prediction CSVs: $MEM_SUBMISSIONS_DIR or ./submissions."""
    return Path(os.environ.get("MEM_SUBMISSIONS_DIR") or "submissions")
