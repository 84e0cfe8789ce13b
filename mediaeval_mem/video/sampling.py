"""Which frames of a video to keep: `all` (the paper's default), `uniform:N` or `segments:N`.

all and uniform:N choose their frames at extraction. segments:N (TSN's sampling) chooses them each
time a batch is cut, from every frame's cached vector: a random frame of each of N equal segments in
training (a fresh draw every epoch), the centre frame (uniform:N's) when evaluating or predicting.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mediaeval_mem.core.errors import MemError

KINDS = ("all", "uniform", "segments")


def segment_centres(n_frames: int, k: int) -> np.ndarray:
    """The centre frame of each of `k` equal segments of `n_frames` frames (k > n_frames repeats frames)."""
    return ((np.arange(k) + 0.5) * n_frames / k).astype(np.int64)


@dataclass(frozen=True)
class Sampling:
    kind: str  # "all" | "uniform" | "segments"
    n: int = 0

    @classmethod
    def parse(cls, text: str | "Sampling") -> "Sampling":
        """'all', 'uniform:N' or 'segments:N' (N >= 1)."""
        if isinstance(text, Sampling):
            return text
        text = text.strip().lower()
        if text == "all":
            return cls("all")
        kind, _, n = text.partition(":")
        try:
            n = int(n) if kind in KINDS[1:] else 0
        except ValueError:
            n = 0
        if n >= 1:
            return cls(kind, n)
        raise MemError(f"bad sampling {text!r}: use 'all', 'uniform:N' or 'segments:N' with N >= 1 "
                       f"(e.g. uniform:16, segments:8)")

    @property
    def extracted(self) -> "Sampling":
        """What extraction decodes and caches: segments:N needs every frame, as all does."""
        return Sampling("all") if self.kind == "segments" else self

    def indices(self, n_frames: int) -> np.ndarray:
        """Frame indices extraction keeps from a video of `n_frames` frames, in temporal order.

        uniform:N takes the centre frame of N equal segments; a shorter video keeps all its frames.
        all and segments:N keep every frame.
        """
        if self.kind != "uniform" or n_frames <= self.n:
            return np.arange(n_frames)
        return segment_centres(n_frames, self.n)

    def rows(self, n_rows: int, rng: np.random.Generator | None = None) -> np.ndarray:
        """Which of a video's `n_rows` cached rows (one per frame) a batch takes, in temporal order.

        segments:N: one per segment, the frame shown at a random time of the segment with `rng` (a training
        batch), at its centre without (uniform:N's frames); a video of at most N frames keeps every row.
        all and uniform:N chose their frames at extraction: every row.

        >>> s = Sampling.parse("segments:2")
        >>> s.rows(10).tolist(), s.rows(10, np.random.default_rng(0)).tolist()
        ([2, 7], [4, 8])
        """
        if self.kind != "segments" or n_rows <= self.n:
            return np.arange(n_rows)
        if rng is None:
            return Sampling("uniform", self.n).indices(n_rows)
        # segment k spans the times [k n/N, (k+1) n/N) (in frames); a time drawn in steps of 1/N frame keeps the
        # arithmetic exact: (k n + r) / N with r in [0, n). A frame that straddles two segments can come from either.
        return (np.arange(self.n) * n_rows + rng.integers(0, n_rows, self.n)) // self.n

    def __str__(self) -> str:
        return "all" if self.kind == "all" else f"{self.kind}:{self.n}"
