"""Feature-cache keys: what fixes a set of features, hashed into the cache folder's name."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from mediaeval_mem.paths import runs_dir

FORMAT_VERSION = 1


def feature_key(dataset_name: str, dataset_root: Path, encoder_identity: dict, sampling: str, dtype: str) -> dict:
    """Dataset (name and folder), encoder (name, weights, preprocessing), sampling and compute dtype."""
    return {
        "format": FORMAT_VERSION,
        "dataset": dataset_name,
        "data": str(Path(dataset_root).resolve()),
        **encoder_identity,
        "sampling": sampling,
        "compute_dtype": dtype,
        "decode": "decoder resizes to the short side",
        "storage": "float16",
    }


def key_digest(key: dict) -> str:
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]


def cache_dir(key: dict) -> Path:
    """runs/features/<dataset>/<encoder>/<digest>/ (one subfolder per split)."""
    return runs_dir() / "features" / key["dataset"] / key["encoder"] / key_digest(key)
