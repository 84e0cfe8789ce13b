"""Realistic footage for the pixel-parity tests (video/footage.py: real photographs, camera motion, grain), and its
frames read straight from the decoder libraries, not through the harness: the reference side of every parity check."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mediaeval_mem.video.footage import FootageSpec, write_footage


def write_all(root: Path, specs: dict[str, FootageSpec]) -> dict[str, Path]:
    """Each spec written once under `root`, by name."""
    return {name: write_footage(root / f"{name}{spec.suffix}", spec) for name, spec in specs.items()}


def raw_frames(path, backend: str = "pyav") -> np.ndarray:
    """(T, H, W, 3) uint8 at full size, straight from the decoder library (decord or PyAV)."""
    if backend == "decord":
        import decord

        vr = decord.VideoReader(str(path))
        return vr.get_batch(list(range(len(vr)))).asnumpy()
    import av

    with av.open(str(path)) as c:
        return np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])
