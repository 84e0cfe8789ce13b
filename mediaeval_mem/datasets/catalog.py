"""The datasets the harness knows, and `open_dataset`, which finds one on disk and reads it.

Built-in: memento10k and videomem, found by folder name under the data root, in any of their layouts.
Declared: any other dataset, registered under a name in `<data root>/datasets.yaml` or in a run config's
`data.datasets` (datasets/declared.py), read in the layout its declaration names (generic by default).
Both are detected, read and checked the same way.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Mapping

from mediaeval_mem.core.errors import ConfigError, DataError
from mediaeval_mem.core.paths import data_root as default_data_root
from mediaeval_mem.core.registry import Registry
import mediaeval_mem.datasets.generic  # noqa: F401  (registers the generic layout; the module, not the package, which imports this one)
from mediaeval_mem.datasets.declared import DECLARATIONS_FILE, DatasetDecl, read_declarations
from mediaeval_mem.datasets.layouts import DEFAULT_TARGET, LAYOUTS, read_csv
from mediaeval_mem.datasets.records import DatasetIndex


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    layouts: tuple[str, ...]  # tried in this order
    folders: tuple[str, ...]  # folder names under the data root, matched ignoring case


DATASETS: Registry = Registry("dataset")
DATASETS["memento10k"] = DatasetSpec("memento10k", ("mediaeval", "memento-json", "generic"), ("memento10k", "memento-10k", "memento"))
DATASETS["videomem"] = DatasetSpec("videomem", ("mediaeval", "videomem-csv", "generic"), ("videomem", "video-mem"))
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")  # a declared name also names folders and MLflow experiments


def dataset_dir(name: str, data_root: str | Path | None = None) -> Path:
    """The folder holding built-in dataset `name` under the data root (e.g. data/memento10k)."""
    spec = DATASETS[name]
    root = default_data_root(data_root)
    if not root.is_dir():
        raise DataError(
            f"data root {root} does not exist: pass --data-root or set MEM_DATA_ROOT "
            f"(`mem demo-data` generates a small stand-in)"
        )
    by_lower = {p.name.lower(): p for p in root.iterdir() if p.is_dir()}
    for folder in spec.folders:
        if folder in by_lower:
            return by_lower[folder]
    raise DataError(
        f"no {name} folder under {root} (looked for {', '.join(spec.folders)}; found: "
        f"{', '.join(sorted(by_lower)) or 'nothing'})"
    )


def detect_layout(name: str, folder: Path, layouts: tuple[str, ...]) -> str:
    """Which of `layouts` `folder` holds; raises naming the files each layout expects."""
    for layout in layouts:
        if LAYOUTS[layout].detect(folder):
            return layout
    raise DataError(f"{folder} matches no known {name} layout: expected "
                    + ", or ".join(LAYOUTS[layout].expects for layout in layouts))


def target_column(name: str, layout: str, folder: Path, target: str) -> str:
    """The column `layout` reads `target` from. A target this copy cannot serve (the layout has no such
    score, or its score files lack the column) is refused in one line saying where such scores come from.
    A layout that reads any column (generic) takes a target it does not name as the column of that name."""
    spec, where = LAYOUTS[layout], f"{name} ({layout} layout at {folder})"
    carriers = ", ".join(f"{lay.name} (column {lay.targets[target]})" for lay in LAYOUTS.values() if target in lay.targets)
    columns = ", ".join(lay.name for lay in LAYOUTS.values() if lay.columns)
    hint = (f"{target} scores come with the layouts {carriers}" if carriers
            else f"no layout has {target} scores; the {columns} layout reads any score column by its name")
    if target not in spec.targets and not spec.columns:
        raise DataError(f"{where} has no {target} scores (available: {', '.join(spec.targets)}); {hint}")
    column = spec.targets.get(target, target)
    if target != DEFAULT_TARGET:  # a missing short-term column is a broken file, listed by `mem data check`
        for file in spec.scored_files(folder):
            header = read_csv(file, [])[0]
            if header and column not in header:
                raise DataError(f"{where} has no {target} scores: {file} has no {column!r} column (it has "
                                f"{', '.join(header)}); add one, or use another target; {hint}")
    return column


def read_targets(name: str, layout: str, folder: Path, targets: tuple[str, ...], dev_fraction: float,
                 split_seed: int):
    """`layout`'s read of `folder` for `targets` (the first is each item's `score`, the others its `targets`,
    by target name); several targets need a layout that reads several columns (generic)."""
    spec = LAYOUTS[layout]
    columns = [target_column(name, layout, folder, t) for t in targets]
    if len(set(columns)) < len(columns):  # `long-term` and `long_term_score` are one column of the generic layout
        raise DataError(f"{name}: targets {', '.join(targets)} name the same column twice ({', '.join(columns)}): "
                        f"give each target once")
    column, *more = columns
    if not more:
        return spec.read(folder, column, dev_fraction, split_seed)
    if not spec.columns:
        raise DataError(f"{name} ({layout} layout at {folder}) reads one target at a time, not {', '.join(targets)}: "
                        f"train one target per run (data.target), or give the scores in the generic layout")
    read = spec.read(folder, column, dev_fraction, split_seed, more=tuple(more))
    names = dict(zip(more, targets[1:]))  # column -> target name (long_term_score -> long-term)
    splits = {s: [replace(it, targets={names[c]: v for c, v in it.targets.items()}) for it in items]
              for s, items in read.splits.items()}
    return replace(read, splits=splits)


def check_declared(declared: Mapping[str, DatasetDecl]) -> None:
    """Refuse a declared name that is a built-in dataset's or cannot name a folder (ConfigError naming the key)."""
    for name in declared:
        if name.lower() in DATASETS:
            raise ConfigError(f"datasets.{name}: {name!r} is a built-in dataset ({', '.join(DATASETS)}): "
                              f"declare yours under another name")
        if not NAME.fullmatch(name):
            raise ConfigError(f"datasets.{name}: a dataset name is letters, digits, '.', '_' and '-', starting "
                              f"with a letter or digit (it names folders and MLflow experiments)")


def declarations(data_root: str | Path | None = None, declared: Mapping[str, DatasetDecl] | None = None
                 ) -> dict[str, DatasetDecl]:
    """Every declared dataset: those of `<data_root>/datasets.yaml`, then `declared` (a run config's
    data.datasets), which wins for a name declared in both."""
    root = default_data_root(data_root)
    from_file = read_declarations(root)
    try:
        check_declared(from_file)
    except ConfigError as e:
        raise ConfigError(f"{root / DECLARATIONS_FILE}: {e}") from None
    check_declared(declared or {})
    return {**from_file, **(declared or {})}


def _has_folder(name: str, data_root) -> bool:
    try:
        dataset_dir(name, data_root)
    except DataError:
        return False
    return True


def default_names(data_root: str | Path | None = None, declared: Mapping[str, DatasetDecl] | None = None
                  ) -> tuple[list[str], list[str]]:
    """(what `mem data check` checks when named nothing, the built-ins it skips). Nothing declared: both
    built-ins (a missing one fails, naming what was looked for); otherwise the built-ins found and every declared one."""
    decls = declarations(data_root, declared)
    if not decls:
        return list(DATASETS), []
    found = [name for name in DATASETS if _has_folder(name, data_root)]
    return found + list(decls), [name for name in DATASETS if name not in found]


def find_declared(name: str, data_root: str | Path | None = None, declared: Mapping[str, DatasetDecl] | None = None
                  ) -> DatasetDecl | None:
    """None for a built-in dataset, the declaration of a declared one; an unknown name fails in one line
    listing the built-in and declared names and saying how to declare one."""
    if name in DATASETS:
        return None
    decls = declarations(data_root, declared)
    if name not in decls:
        raise DataError(
            f"unknown dataset {name!r}; built-in: {', '.join(DATASETS)}; declared: {', '.join(decls) or 'none'}; "
            f"declare one in {default_data_root(data_root) / DECLARATIONS_FILE} ({name}: {{folder: FOLDER}}) "
            f"or under data.datasets in a run config"
        )
    return decls[name]


def open_dataset(
    name: str,
    data_root: str | Path | None = None,
    target: str = DEFAULT_TARGET,
    dev_fraction: float = 0.2,
    split_seed: int = 0,
    declared: Mapping[str, DatasetDecl] | None = None,
    more_targets: tuple[str, ...] = (),
) -> DatasetIndex:
    """Find dataset `name` (built-in, or declared in `<data_root>/datasets.yaml` or in `declared`: a run
    config's data.datasets), detect its layout and read its splits.

    >>> ds = open_dataset("memento10k", "data/demo")
    >>> ds.layout, len(ds.split("train"))
    ('mediaeval', 120)

    Problems in the files are collected in `ds.problems`, not raised (see `mem data check`).
    `more_targets`: targets read beside `target` (a run's data.targets after the first), each item's `targets`.
    """
    root = default_data_root(data_root)
    decl = find_declared(name, root, declared)
    if decl is None:
        folder, layouts = dataset_dir(name, root), DATASETS[name].layouts
    else:
        folder, layouts = decl.path(root), (decl.layout,)
        if not folder.is_dir():
            raise DataError(f"{name}: folder {folder} not found (declared with folder {decl.folder!r}; "
                            f"a relative folder is under the data root {root})")
        dev_fraction = dev_fraction if decl.dev_fraction is None else decl.dev_fraction
        split_seed = split_seed if decl.split_seed is None else decl.split_seed
    layout = detect_layout(name, folder, layouts)
    read = read_targets(name, layout, folder, (target, *more_targets), dev_fraction, split_seed)
    return DatasetIndex(name, folder, layout, target, read.splits, read.problems, read.split_info, tuple(more_targets))
