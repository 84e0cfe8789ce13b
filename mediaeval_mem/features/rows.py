"""Filling a split's feature store from a source that gives each video's rows directly: caption
encoders (features/captions.py), features someone already extracted (encoders/precomputed.py), and
encoder actors on a Ray cluster (features/distributed.py), whose shards come back in any order.

Same guarantees as frame extraction (features/extract.py): one writer per split (the others wait),
resumable (videos already stored are skipped), a Ctrl-C or a failure keeps every stored chunk, one
bad video is recorded in the manifest and never stops the rest.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator

import numpy as np

from mediaeval_mem.core.progress import progress_bar
from mediaeval_mem.core.threads import with_threads
from mediaeval_mem.datasets import VideoItem
from mediaeval_mem.features.store import FeatureStore


@dataclass
class Rows:
    """What a source gives for one chunk of videos."""

    videos: list[tuple[str, np.ndarray]]  # (video id, (R, D) rows), in the chunk's order
    failed: dict[str, str] = field(default_factory=dict)  # video id -> why it has no rows
    notes: dict[str, dict] = field(default_factory=dict)  # manifest notes, e.g. {"uncaptioned": {id: treatment}}
    inputs: int = 0  # captions encoded or rows read, for the rate figure
    lost: dict[str, str] = field(default_factory=dict)  # not made this time (a lost Ray worker): reported, not recorded


def fill_store(load_source: Callable[[], object], items: list[VideoItem], store: FeatureStore,
               rows_for: Callable[[object, list[VideoItem]], Rows], chunk: int, report, progress: bool = True,
               unit: str = "frames"):
    """Store `rows_for(source, chunk_of_items)` for every video of `items` not in `store` yet.

    `load_source()` (a model load, say) runs only if some video is missing once this process holds
    the split's lock. Every `chunk` videos become one stored segment: what an interruption can lose.
    """
    def produce(source, todo: list[VideoItem]) -> Iterator[tuple[int, Rows]]:
        for start in range(0, len(todo), chunk):
            part = todo[start : start + chunk]
            yield len(part), rows_for(source, part)

    return store_rows(load_source, items, store, produce, report, progress, unit)


@with_threads("encode")  # caption encoders, precomputed copies: every usable core
def store_rows(load_source: Callable[[], object], items: list[VideoItem], store: FeatureStore,
               produce: Callable[[object, list[VideoItem]], Iterable[tuple[int, Rows]]], report, progress: bool = True,
               unit: str = "frames"):
    """Store what `produce(source, todo)` yields, (videos it covers, their Rows), one segment each, as it comes.

    `todo` is the videos of `items` not in `store` once this process holds the split's lock (the one
    writer); `load_source()` runs only if there are any. A Ctrl-C or an error keeps every stored chunk.
    """
    with store.writing() as repaired:
        report.repaired = repaired
        done = store.done_ids()
        todo = [it for it in items if it.video_id not in done]
        report.cached = len(items) - len(todo)
        if todo:
            source, t0 = load_source(), time.perf_counter()
            try:
                with progress_bar(report.split, len(todo), enabled=progress, unit=unit) as bar:
                    for n, rows in produce(source, todo):
                        if rows.videos or rows.failed or rows.notes:
                            store.append(rows.videos, rows.failed, notes=rows.notes)
                        report.extracted += len(rows.videos)
                        report.frames += rows.inputs
                        report.failed.update(rows.failed)
                        report.failed.update(rows.lost)
                        for name, per_video in rows.notes.items():
                            getattr(report, name).update(per_video)
                        bar.advance(n, frames=rows.inputs)
            finally:
                report.seconds = time.perf_counter() - t0
        store.consolidate()
    return report
