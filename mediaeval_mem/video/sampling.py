"""Which frames of a video to keep: `all` (the paper's default) or `uniform:N`."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mediaeval_mem.core.errors import MemError


@dataclass(frozen=True)
class Sampling:
    kind: str  # "all" | "uniform"
    n: int = 0

    @classmethod
    def parse(cls, text: str | "Sampling") -> "Sampling":
        """'all' or 'uniform:N' (N >= 1)."""
        if isinstance(text, Sampling):
            return text
        text = text.strip().lower()
        if text == "all":
            return cls("all")
        if text.startswith("uniform:"):
            try:
                n = int(text.split(":", 1)[1])
            except ValueError:
                n = 0
            if n >= 1:
                return cls("uniform", n)
        raise MemError(f"bad sampling {text!r}: use 'all' or 'uniform:N' with N >= 1 (e.g. uniform:16)")

    def indices(self, n_frames: int) -> np.ndarray:
        """Frame indices to keep from a video of `n_frames` frames, in temporal order.

        uniform:N takes the centre frame of N equal segments; a shorter video keeps all its frames.
        """
        if self.kind == "all" or n_frames <= self.n:
            return np.arange(n_frames)
        return ((np.arange(self.n) + 0.5) * n_frames / self.n).astype(np.int64)

    def __str__(self) -> str:
        return "all" if self.kind == "all" else f"uniform:{self.n}"
