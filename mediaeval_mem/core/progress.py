"""A rich progress bar on stderr that reports items and frames per second, or nothing at all."""

from __future__ import annotations

import time
from contextlib import contextmanager


class _Bar:
    def __init__(self, progress, task):
        self.progress, self.task, self.frames, self.t0 = progress, task, 0, time.perf_counter()

    def advance(self, n: int = 1, frames: int = 0) -> None:
        self.frames += frames
        if self.progress is not None:
            rate = self.frames / max(time.perf_counter() - self.t0, 1e-9)
            self.progress.update(self.task, advance=n, fps=f"{rate:,.0f}")


@contextmanager
def progress_bar(description: str, total: int, enabled: bool = True, unit: str = "frames"):
    """`with progress_bar("train", 100) as bar: bar.advance(1, frames=90)`; `unit` names what `frames` counts
    ("captions" for caption encoders); unit None shows no rate (a bar over epochs)."""
    if not enabled:
        yield _Bar(None, None)
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        *([TextColumn("{task.fields[fps]} " + unit + "/s")] if unit else []),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=False,
    ) as progress:
        yield _Bar(progress, progress.add_task(description, total=total, fps="-"))
