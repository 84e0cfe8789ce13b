"""`mem data check`: what a dataset copy holds per split, and everything wrong with it."""

from __future__ import annotations

from dataclasses import dataclass

from mediaeval_mem.datasets.records import DatasetIndex


@dataclass(frozen=True)
class SplitSummary:
    split: str
    videos: int
    missing_files: int
    scored: int
    score_min: float | None
    score_max: float | None
    score_mean: float | None
    captioned: int = 0  # videos with at least one caption
    captions: int = 0  # captions in all


def summarise(index: DatasetIndex) -> list[SplitSummary]:
    """One row per split: counts, missing files and the score range."""
    rows = []
    for split, items in index.splits.items():
        scores = [it.score for it in items if it.score is not None]
        rows.append(
            SplitSummary(
                split=split,
                videos=len(items),
                missing_files=sum(it.path is None for it in items),
                scored=len(scores),
                score_min=min(scores) if scores else None,
                score_max=max(scores) if scores else None,
                score_mean=sum(scores) / len(scores) if scores else None,
                captioned=sum(bool(it.captions) for it in items),
                captions=sum(len(it.captions) for it in items),
            )
        )
    return rows


def render_check(index: DatasetIndex, console) -> None:
    """Print the summary table and the problem list to a rich console."""
    from rich.table import Table

    info = ", ".join(f"{k}={v}" for k, v in index.split_info.items())
    table = Table(title=f"{index.name}: {index.layout} layout at {index.root} (target {', '.join(index.targets)}; {info})")
    for col in ("split", "videos", "missing files", "scored", "score min", "score max", "score mean",
                "with captions", "without", "captions"):
        table.add_column(col, justify="left" if col == "split" else "right")
    fmt = lambda x: "-" if x is None else f"{x:.4f}"  # noqa: E731
    for r in summarise(index):
        table.add_row(r.split, str(r.videos), str(r.missing_files), str(r.scored), fmt(r.score_min), fmt(r.score_max),
                      fmt(r.score_mean), str(r.captioned), str(r.videos - r.captioned), str(r.captions))
    console.print(table)
    if index.problems:
        console.print(f"[bold red]{len(index.problems)} problem(s):[/]")
        for p in index.problems:
            console.print(f"  {p}", highlight=False, soft_wrap=True)
    else:
        console.print("[green]no problems found[/]")
