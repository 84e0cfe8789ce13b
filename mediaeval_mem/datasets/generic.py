"""The `generic` layout: any memorability dataset, as one CSV (or one per split) beside its videos.

    commercials-2026/
      videos.csv            video_id,path,score[,long_term_score][,caption...][,split]
      clips/ad-001.mp4      (`path` is relative to the folder, or absolute)

or `train.csv`, `dev.csv` and `test.csv` with the same columns and no split column (test.csv may leave
out the score columns). Any score column can be a run's target by its name (`data.target: brand_score`), and
several at once (`data.targets: [score, brand_score]`). Every column whose name starts with `caption` holds a caption
(kept in column order, empty cells skipped). Any other column (`channel`, `brand`, `weight`...) is kept on each video
as a raw string (VideoItem.columns: `mem cv --group-by`, `data.weight_column`). Test rows may leave the score empty.
With neither a split column nor
per-split files, the scored rows are split into train/dev by the seeded draw of the original VideoMem
(`data.dev_fraction`, `data.split_seed`, recorded in split_info) and the unscored rows form the test split.
Every problem is collected with its file and row, as by the other readers.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from mediaeval_mem.datasets.layouts import (
    LAYOUTS, Layout, LayoutRead, canonical_id, make_items, parse_score, read_csv, require_columns, seeded_info, seeded_split,
)
from mediaeval_mem.datasets.records import SPLITS, Problem

VIDEOS_CSV = "videos.csv"
SPLIT_CSVS = {split: f"{split}.csv" for split in SPLITS}
CAPTION_PREFIX = "caption"
OWN_COLUMNS = ("video_id", "path", "split")  # read by the layout itself; with the score and caption columns, not kept
Row = tuple[str, float | None, tuple[str, ...], Path, int]  # (video id, score, captions, CSV, line): make_items' rows


def _detect(root: Path) -> bool:
    return (root / VIDEOS_CSV).is_file() or any((root / f).is_file() for f in SPLIT_CSVS.values())


def _scored_files(root: Path) -> list[Path]:
    """The CSVs whose rows carry scores: videos.csv, else train.csv and dev.csv."""
    if (root / VIDEOS_CSV).is_file():
        return [root / VIDEOS_CSV]
    return [root / SPLIT_CSVS[s] for s in ("train", "dev") if (root / SPLIT_CSVS[s]).is_file()]


def _read_rows(path: Path, root: Path, column: str, split: str | None, problems: list[Problem],
               more: tuple[str, ...] = (), values: dict[str, dict[str, float]] | None = None
               ) -> tuple[list[tuple[Row, Path, str | None, dict[str, str]]], bool]:
    """Each good row of one CSV as (row, video path, split, its other columns) and whether the CSV has a split column.

    `split` is the split every row of the file belongs to (a per-split CSV), or None (videos.csv: its
    split column, or the seeded draw for the scored rows and the test split for the others).
    `more`: the columns of the other targets; each row's scores of them go into `values` (canonical id ->
    column -> score; a duplicate id keeps its first row's, as make_items keeps its first row).
    """
    header, lines = read_csv(path, problems)
    needed = ["video_id", "path"] + ([] if split == "test" else [column, *more])
    if not require_columns(path, header, needed, problems):
        return [], False
    has_split = "split" in header
    if has_split and split is not None:
        problems.append(Problem(path, f"a split column in {path.name}: the file names the split; drop the column", 1))
    captions = [h for h in header if h.startswith(CAPTION_PREFIX)]
    others = [h for h in header if h not in OWN_COLUMNS and h not in (column, *more) and not h.startswith(CAPTION_PREFIX)]
    out = []
    for line, r in lines:
        vid, where = r["video_id"], split
        if not vid or not r["path"]:
            problems.append(Problem(path, f"empty {'video_id' if not vid else 'path'}", line))
            continue
        if has_split and split is None:
            where = r["split"].lower()
            if where not in SPLITS:
                problems.append(Problem(path, f"split {r['split']!r} is not one of {', '.join(SPLITS)}", line))
                continue
        scores, bad = {}, False  # column -> score, of the target columns whose cell holds one
        for col in (column, *more):
            raw = r.get(col, "")
            if not raw and where in ("train", "dev"):
                problems.append(Problem(path, f"column {col!r} is empty: {where} rows need a score", line))
                bad = True
                break
            if raw:
                scores[col] = parse_score(raw, path, line, col, problems)
                if scores[col] is None:
                    bad = True
                    break
        missing = [c for c in more if c not in scores]
        if not bad and where is None and column in scores and missing:  # a scored row of the seeded draw lacks one
            problems.append(Problem(path, f"column {missing[0]!r} is empty: a row with a {column} needs every "
                                          f"target's score", line))
            bad = True
        if bad:
            continue
        if more and values is not None:
            values.setdefault(canonical_id(vid), {c: scores[c] for c in more if c in scores})
        score = scores.get(column)
        video = Path(r["path"]).expanduser()
        row: Row = (vid, score, tuple(r[c] for c in captions if r[c]), path, line)
        out.append((row, video if video.is_absolute() else root / video, where, {c: r[c] for c in others}))
    return out, has_split


def _read(root: Path, column: str, dev_fraction: float, split_seed: int, more: tuple[str, ...] = ()) -> LayoutRead:
    """`more`: the columns of the run's other targets (each item's `targets`, by column name)."""
    problems: list[Problem] = []
    values: dict[str, dict[str, float]] = {}
    per_split = [f for f in SPLIT_CSVS.values() if (root / f).is_file()]
    seeded = False
    if (root / VIDEOS_CSV).is_file():
        if per_split:
            problems.append(Problem(root, f"both {VIDEOS_CSV} and {', '.join(per_split)}: keep one ({VIDEOS_CSV} was read)"))
        rows, has_split = _read_rows(root / VIDEOS_CSV, root, column, None, problems, more, values)
        seeded = not has_split
        info = seeded_info(VIDEOS_CSV, dev_fraction, split_seed) if seeded else {"source": f"split column of {VIDEOS_CSV}"}
    else:
        rows, info = [], {"source": ", ".join(SPLIT_CSVS.values())}
        for split, name in SPLIT_CSVS.items():
            if (root / name).is_file():
                rows += _read_rows(root / name, root, column, split, problems, more, values)[0]
            elif split != "test":
                problems.append(Problem(root / name, f"file not found: the {split} split needs it"))

    first: dict[str, tuple[Path, str | None]] = {}  # id -> (video, split) of its first row; a duplicate is reported, not read
    columns: dict[str, dict[str, str]] = {}  # id -> the other columns of its first row
    for (vid, *_), video, split, other in rows:
        first.setdefault(canonical_id(vid), (video, split))
        columns.setdefault(canonical_id(vid), other)
    found = {key: video for key, (video, _) in first.items() if video.is_file()}
    items = make_items([row for row, _, _, _ in rows], found, lambda vid: str(first[canonical_id(vid)][0]), problems)
    if more:
        items = [replace(it, targets=values.get(canonical_id(it.video_id), {})) for it in items]
    items = [replace(it, columns=columns[canonical_id(it.video_id)]) if columns[canonical_id(it.video_id)] else it
             for it in items]
    if seeded:
        train, dev = seeded_split([it for it in items if it.score is not None], dev_fraction, split_seed)
        splits = {"train": train, "dev": dev, "test": [it for it in items if it.score is None]}
    else:
        splits = {s: [it for it in items if first[canonical_id(it.video_id)][1] == s] for s in SPLITS}
    return LayoutRead(splits, problems, info)


LAYOUTS.add("generic", Layout(
    "generic", _detect, _read, {"short-term": "score", "long-term": "long_term_score"},
    f"{VIDEOS_CSV}, or {', '.join(SPLIT_CSVS.values())} (generic layout)", _scored_files, columns=True))
