"""Readers for the on-disk layouts a dataset copy can have (DESIGN.md).

- `mediaeval`: the challenge release, one folder per split (`train_set/`, `dev_set/`, `test_set/`)
  with `<part>_scores.csv`, `<part>_video_urls.csv`, `<part>_text_descriptions.csv` and `Videos/`.
- `memento-json`: the original Memento10k, `memento_{train,val,test}_data.json` plus a video folder.
- `videomem-csv`: the original VideoMem, `ground-truth_dev-set.csv` plus `videoN.webm` files; it has
  no official train/dev split, so one is drawn with a seed (recorded in `split_info`).
- `generic`: any memorability dataset, one CSV (or one per split) beside its videos (datasets/generic.py).

Each layout registers what it reads with its reader: the column (or JSON key) of each target it has.

Readers never stop at the first bad row: every problem is collected (file, row, message) so that
`mem data check` can list them all.
"""

from __future__ import annotations

import csv
import json
import math
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping

from mediaeval_mem.core.errors import DataError
from mediaeval_mem.core.registry import Registry
from mediaeval_mem.datasets.records import Problem, VideoItem

VIDEO_EXTS = (".mp4", ".webm", ".mkv", ".avi", ".mov", ".m4v")

DEFAULT_TARGET = "short-term"  # the normalised short-term score: the challenge's target, every layout has it


@dataclass(frozen=True)
class LayoutRead:
    splits: dict[str, list[VideoItem]]
    problems: list[Problem]
    split_info: dict[str, object]


def _no_files(root: Path) -> list[Path]:
    return []


@dataclass(frozen=True)
class Layout:
    name: str
    detect: Callable[[Path], bool]
    read: Callable[..., LayoutRead]  # read(root, column, dev_fraction, split_seed[, more=(column, ...)])
    targets: Mapping[str, str]  # target name -> the column (or JSON key) holding it
    expects: str  # what `detect` looks for, said for people
    scored_files: Callable[[Path], list[Path]] = _no_files  # the CSVs whose header must hold a target's column
    # any column of its score files is a target of that name, and its reader reads several (`more`) at once
    columns: bool = False


LAYOUTS: Registry = Registry("layout")


def canonical_id(stem: str) -> str:
    """Ids compare without zero padding: '00042', '042' and '42' are the same video."""
    return str(int(stem)) if stem.isdigit() else stem


def index_videos(folder: Path, recursive: bool = False) -> dict[str, Path]:
    """Map canonical video id (file stem) -> path for every video file in `folder`."""
    if not folder.is_dir():
        return {}
    files = folder.rglob("*") if recursive else folder.iterdir()
    found: dict[str, Path] = {}
    for p in sorted(files):
        if p.suffix.lower() in VIDEO_EXTS and not p.name.startswith("."):
            found.setdefault(canonical_id(p.stem), p)
    return found


def read_csv(path: Path, problems: list[Problem]) -> tuple[list[str], list[tuple[int, dict]]]:
    """Rows of a CSV as (line number, row dict); header problems are recorded, not raised."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            header = [h.strip() for h in (reader.fieldnames or [])]
            reader.fieldnames = header
            rows = []
            for row in reader:
                rows.append((reader.line_num, {k: (v or "").strip() for k, v in row.items() if k}))
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        problems.append(Problem(path, f"cannot read CSV: {e}"))
        return [], []
    if not header:
        problems.append(Problem(path, "empty file: expected a header row", row=1))
    return header, rows


def parse_score(value, file: Path, row: int | None, column: str, problems: list[Problem]) -> float | None:
    """A score in [0, 1]; anything else becomes a problem naming the file, row and column."""
    where = f"column {column!r}"
    try:
        score = float(value)
    except (TypeError, ValueError):
        problems.append(Problem(file, f"{where}: {value!r} is not a number", row))
        return None
    if not math.isfinite(score):
        problems.append(Problem(file, f"{where}: {value!r} is not a finite number", row))
        return None
    if not 0.0 <= score <= 1.0:
        problems.append(Problem(file, f"{where}: {value!r} is outside [0, 1]", row))
        return None
    return score


def require_columns(path: Path, header: list[str], needed: list[str], problems: list[Problem]) -> bool:
    """Whether `header` has every column in `needed`; if not, one problem lists the missing ones."""
    missing = [c for c in needed if c not in header]
    if missing and header:
        problems.append(
            Problem(path, f"missing column(s) {', '.join(missing)}; columns are: {', '.join(header)}", row=1)
        )
    return not missing


def make_items(
    rows: list[tuple[str, float | None, tuple[str, ...], Path, int | None]],
    videos: dict[str, Path],
    video_hint: Callable[[str], str],
    problems: list[Problem],
) -> list[VideoItem]:
    """Turn (id, score, captions, source file, row) tuples into VideoItems, checking duplicates and files."""
    seen: dict[str, tuple[Path, int | None]] = {}
    items = []
    for vid, score, captions, src, row in rows:
        key = canonical_id(vid)
        if key in seen:
            first = seen[key]
            problems.append(Problem(src, f"duplicate video id {vid!r} (first seen at {first[0].name}:{first[1]})", row))
            continue
        seen[key] = (src, row)
        path = videos.get(key)
        if path is None:
            problems.append(Problem(Path(video_hint(vid)), f"video file not found (listed in {src.name}:{row})", missing_video=True))
        items.append(VideoItem(vid, path, score, captions))
    return items


# --------------------------------------------------------------------------- mediaeval release
SPLIT_DIRS = {
    "train": ("train_set", "training_set", "train"),
    "dev": ("dev_set", "development_set", "validation_set", "val_set", "dev"),
    "test": ("test_set", "testing_set", "test"),
}
_PART_FILES = ("_scores.csv", "_video_urls.csv", "_text_descriptions.csv")


def _child(root: Path, names: tuple[str, ...]) -> Path | None:
    """The first child of `root` whose name matches one of `names`, ignoring case."""
    if not root.is_dir():
        return None
    by_lower = {p.name.lower(): p for p in root.iterdir() if p.is_dir()}
    for n in names:
        if n.lower() in by_lower:
            return by_lower[n.lower()]
    return None


def _part_file(folder: Path, suffix: str, problems: list[Problem]) -> Path | None:
    found = sorted(p for p in folder.glob(f"*{suffix}") if not p.name.startswith("."))
    if len(found) > 1:
        problems.append(Problem(folder, f"several *{suffix} files: {', '.join(p.name for p in found)}; keep one"))
    return found[0] if found else None


def _mediaeval_detect(root: Path) -> bool:
    for names in SPLIT_DIRS.values():
        d = _child(root, names)
        if d is not None and any(any(d.glob(f"*{s}")) for s in _PART_FILES):
            return True
    return False


def _mediaeval_read(root: Path, column: str, dev_fraction: float, split_seed: int) -> LayoutRead:
    problems: list[Problem] = []
    splits: dict[str, list[VideoItem]] = {}
    for split, names in SPLIT_DIRS.items():
        folder = _child(root, names)
        if folder is None:
            problems.append(Problem(root, f"no {split} split folder (expected one of {', '.join(names)})"))
            continue
        scores_f = _part_file(folder, "_scores.csv", problems)
        urls_f = _part_file(folder, "_video_urls.csv", problems)
        desc_f = _part_file(folder, "_text_descriptions.csv", problems)
        if split != "test" and scores_f is None:
            problems.append(Problem(folder, f"no *_scores.csv: the {split} split needs its scores"))
        ids_f = scores_f or urls_f or desc_f
        if ids_f is None:
            problems.append(Problem(folder, "no *_scores.csv, *_video_urls.csv or *_text_descriptions.csv to list its videos"))
            continue

        captions: dict[str, list[str]] = {}  # every description row of a video, in file order
        if desc_f is not None:
            header, rows = read_csv(desc_f, problems)
            if require_columns(desc_f, header, ["video_id", "description"], problems):
                for _, r in rows:
                    if (r["description"] or "").strip():
                        captions.setdefault(canonical_id(r["video_id"]), []).append(r["description"].strip())

        header, rows = read_csv(ids_f, problems)
        has_scores = ids_f is scores_f
        needed = ["video_id"] + ([column] if has_scores else [])
        if not require_columns(ids_f, header, needed, problems):
            continue
        parsed = []
        for line, r in rows:
            vid = r["video_id"]
            if not vid:
                problems.append(Problem(ids_f, "empty video_id", line))
                continue
            score = parse_score(r[column], ids_f, line, column, problems) if has_scores else None
            parsed.append((vid, score, tuple(captions.get(canonical_id(vid), ())), ids_f, line))

        vdir = _child(folder, ("Videos", "videos")) or folder / "Videos"
        if not vdir.is_dir():
            problems.append(Problem(vdir, "video folder not found"))
        videos = index_videos(vdir)
        hint = lambda vid, vdir=vdir: str(vdir / f"{vid.zfill(5) if vid.isdigit() else vid}.mp4")
        splits[split] = make_items(parsed, videos, hint, problems)
    return LayoutRead(splits, problems, {"source": "official splits"})


# --------------------------------------------------------------------------- original Memento10k
MEMENTO_FILES = {"train": "memento_train_data.json", "dev": "memento_val_data.json", "test": "memento_test_data.json"}


def _memento_read(root: Path, column: str, dev_fraction: float, split_seed: int) -> LayoutRead:
    problems: list[Problem] = []
    splits: dict[str, list[VideoItem]] = {}
    videos = index_videos(root, recursive=True)
    for split, fname in MEMENTO_FILES.items():
        path = root / fname
        if not path.is_file():
            problems.append(Problem(path, f"file not found: the {split} split needs it"))
            continue
        try:
            records = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            problems.append(Problem(path, f"not valid JSON: {e}"))
            continue
        if not isinstance(records, list):
            problems.append(Problem(path, "expected a JSON list of video records"))
            continue
        parsed = []
        for i, rec in enumerate(records, start=1):
            if not isinstance(rec, dict) or not rec.get("filename"):
                problems.append(Problem(path, f"record {i}: no 'filename'"))
                continue
            vid = Path(rec["filename"]).stem
            score = None
            if split != "test" or column in rec:
                if column not in rec:
                    problems.append(Problem(path, f"record {i} ({vid}): no {column!r}"))
                    continue
                score = parse_score(rec[column], path, None, f"record {i} {column}", problems)
            caps = rec.get("captions") or []
            caps = [caps] if isinstance(caps, str) else caps if isinstance(caps, list) else []
            parsed.append((vid, score, tuple(c.strip() for c in caps if isinstance(c, str) and c.strip()), path, i))
        files = {Path(r["filename"]).stem: r["filename"] for r in records if isinstance(r, dict) and r.get("filename")}
        splits[split] = make_items(parsed, videos, lambda vid, files=files: str(root / "videos" / files.get(vid, vid)), problems)
    return LayoutRead(splits, problems, {"source": "official splits"})


# --------------------------------------------------------------------------- original VideoMem
VIDEOMEM_GT = "ground-truth_dev-set.csv"


def _videomem_read(root: Path, column: str, dev_fraction: float, split_seed: int) -> LayoutRead:
    """VideoMem's public 8000-video set has no dev split: draw one, seeded and deterministic.

    Videos present on disk but absent from the ground truth form the (score-less) test split.
    """
    problems: list[Problem] = []
    path = root / VIDEOMEM_GT
    header, rows = read_csv(path, problems)
    videos = index_videos(root, recursive=True)
    parsed = []
    if require_columns(path, header, ["video", column], problems):
        for line, r in rows:
            if not r["video"]:
                problems.append(Problem(path, "empty 'video' cell", line))
                continue
            vid = Path(r["video"]).stem
            parsed.append((vid, parse_score(r[column], path, line, column, problems), (), path, line))
    labelled = make_items(parsed, videos, lambda vid: str(root / "videos" / f"{vid}.webm"), problems)
    train, dev = seeded_split(labelled, dev_fraction, split_seed)
    known = {canonical_id(it.video_id) for it in labelled}
    test = [VideoItem(p.stem, p) for key, p in sorted(videos.items()) if key not in known]
    return LayoutRead({"train": train, "dev": dev, "test": test}, problems, seeded_info(VIDEOMEM_GT, dev_fraction, split_seed))


# --------------------------------------------------------------------------- a drawn train/dev split
def seeded_split(items: list[VideoItem], dev_fraction: float, split_seed: int) -> tuple[list[VideoItem], list[VideoItem]]:
    """(train, dev) for a layout without an official dev split: round(n * dev_fraction) videos drawn with
    `split_seed`, the same draw whatever the file order; both keep the items' order.

    >>> train, dev = seeded_split(items, 0.2, 0)   # 10 items -> 8 train, 2 dev
    """
    if not 0.0 < dev_fraction < 1.0:
        raise DataError(f"dev_fraction must lie in (0, 1), got {dev_fraction}")
    order = sorted(items, key=lambda it: it.video_id)
    random.Random(split_seed).shuffle(order)
    dev_ids = {it.video_id for it in order[: round(len(order) * dev_fraction)]}
    return [it for it in items if it.video_id not in dev_ids], [it for it in items if it.video_id in dev_ids]


def seeded_info(source: str, dev_fraction: float, split_seed: int) -> dict[str, object]:
    """The split_info a run records for a split drawn by `seeded_split` from the file `source`."""
    return {"source": f"seeded split of {source}", "dev_fraction": dev_fraction, "split_seed": split_seed}


def _mediaeval_scored(root: Path) -> list[Path]:
    folders = [_child(root, SPLIT_DIRS[split]) for split in ("train", "dev")]
    files = [_part_file(folder, "_scores.csv", []) for folder in folders if folder is not None]
    return [f for f in files if f is not None]


LAYOUTS.add("mediaeval", Layout(
    "mediaeval", _mediaeval_detect, _mediaeval_read,
    {"short-term": "scores_normalized_short_term", "short-term-raw": "scores_raw_short_term",
     "long-term": "scores_normalized_long_term"},
    "split folders with *_scores.csv (mediaeval release)", _mediaeval_scored))
LAYOUTS.add("memento-json", Layout(
    "memento-json", lambda r: (r / MEMENTO_FILES["train"]).is_file(), _memento_read, {"short-term": "mem_score"},
    f"{MEMENTO_FILES['train']} (original Memento10k)"))
LAYOUTS.add("videomem-csv", Layout(
    "videomem-csv", lambda r: (r / VIDEOMEM_GT).is_file(), _videomem_read,
    {"short-term": "short-term_memorability", "long-term": "long-term_memorability"},
    f"{VIDEOMEM_GT} (original VideoMem)", lambda r: [r / VIDEOMEM_GT]))
