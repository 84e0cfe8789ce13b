"""`mem grid GRID_FILE`: every (config x task pair x seed) of a grid, resumable, then the paper's table.

A grid file lists configs (each optionally with the paper's figures for comparison), task pairs and
seeds. Every run is tagged with a key of its fully resolved config, pair and data folder; a run whose
key already has a finished MLflow run is not run again, so an interrupted grid resumes where it
stopped. Feature sets are shared through the feature cache: each (dataset, encoder) is extracted once.

With `cv: {folds: 5, group_by: channel, repeats: 2}` at the top of the file, each (config x pair) is a
cross-validation instead (`mem cv` over the grid's seeds, experiments/cv.py, resumable by its own key) and the
table shows its pooled out-of-fold figures: SROCC with its 95% interval, PLCC, and with repeats the mean ± sd of
the repeats' SROCC.

A profile (e.g. configs/profiles/demo.yaml) swaps in stand-ins for what a machine lacks: other
encoders, weights, and overrides, applied to every config of the grid (and recorded in each run).
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Callable, Mapping

from mediaeval_mem.config import RunConfig, apply_overrides, config_from_dict, load_config
from mediaeval_mem.core.cluster import Failed, RayOptions
from mediaeval_mem.core.errors import ConfigError, MemError
from mediaeval_mem.core.paths import data_root as resolve_root
from mediaeval_mem.core.schema import digest, key_dict, load_yaml, to_dict
from mediaeval_mem.encoders import ENCODERS
from mediaeval_mem.experiments.cv import run_cv
from mediaeval_mem.experiments.executor import Earlier, Task, check_cluster, execute
from mediaeval_mem.experiments.run_log import run_name
from mediaeval_mem.experiments.runner import extract_first, run_experiment
from mediaeval_mem.experiments.tasks import infer_task
from mediaeval_mem.features.captions import text_source
from mediaeval_mem.features.inputs import input_kind
from mediaeval_mem.tracking import record
from mediaeval_mem.tracking.record import Tag


@dataclass(frozen=True)
class PairCfg:
    train: str
    test: str
    task: int | None = None  # None: the pair's own (1, 2, or 0 for a reference or a declared dataset)


@dataclass(frozen=True)
class EntryCfg:
    config: str  # a config file, relative to the working directory or the grid's repository
    paper: tuple[float, float] | None = None  # the paper's (PLCC, SROCC) for this row, if given


@dataclass(frozen=True)
class GridCV:
    """`cv:` in a grid file: every row cross-validated on its pair's training dataset (`mem cv`'s options)."""

    folds: int = 5
    group_by: str | None = None  # a column of the training dataset (channel, brand): no group split across folds
    repeats: int = 1  # foldings per seed
    with_dev: bool = False  # fold the training dataset's dev split in too

    def __post_init__(self):
        if self.folds < 2:
            raise ConfigError(f"cv.folds must be >= 2, got {self.folds}")
        if self.repeats < 1:
            raise ConfigError(f"cv.repeats must be >= 1, got {self.repeats}")


@dataclass(frozen=True)
class GridFile:
    """A grid file as written (configs/grids/*.yaml)."""

    title: str = ""
    layout: str = "table1"  # table1: one row per config; table2: rows train dataset, columns test dataset
    configs: tuple[EntryCfg | str, ...] = ()  # {config: PATH, paper: [PLCC, SROCC]} or just PATH
    pairs: tuple[PairCfg, ...] = ()
    seeds: tuple[int, ...] = (0,)
    set: tuple[str, ...] = ()  # overrides applied to every config
    cv: GridCV | None = None  # cross-validate every row instead of single runs

    def __post_init__(self):
        if not self.configs or not self.pairs:
            raise ConfigError("needs at least one entry in configs and in pairs")
        if self.layout not in ("table1", "table2"):
            raise ConfigError("layout must be table1 or table2")


@dataclass(frozen=True)
class GridEntry:
    path: Path
    paper: tuple[float, float] | None = None


@dataclass(frozen=True)
class Grid:
    title: str
    layout: str
    entries: tuple[GridEntry, ...]
    pairs: tuple[tuple[int, str, str], ...]
    seeds: tuple[int, ...]
    overrides: tuple[str, ...] = ()
    cv: GridCV | None = None


@dataclass(frozen=True)
class Profile:
    """Stand-ins for what a machine lacks (configs/profiles/*.yaml), applied to every config of a grid."""

    encoders: Mapping[str, str] = field(default_factory=dict)  # encoder name -> stand-in encoder name
    weights: Mapping[str, str] = field(default_factory=dict)  # encoder name -> weights (where a stream gives none)
    sampling: str | None = None  # frame sampling of every stream that reads video (caption streams have none)
    set: tuple[str, ...] = ()  # overrides


def resolve_config_path(p: str, grid_file: Path) -> Path:
    """A config path as written in a grid (or a search file): relative to the working directory, else to the
    file's repository."""
    for base in (Path.cwd(), grid_file.parent, grid_file.parent.parent, grid_file.parent.parent.parent):
        if (base / p).is_file():
            return base / p
    raise ConfigError(f"{grid_file}: config {p} not found")


def load_grid(path: str | Path) -> Grid:
    """Read and check a grid file (every config in it is loaded once, so a bad one fails now)."""
    path = Path(path)
    data = load_yaml(GridFile, path, what="grid file", defaults={"title": path.stem})
    entries = []
    for e in data.configs:
        e = e if isinstance(e, EntryCfg) else EntryCfg(e)  # a bare path is the short form
        entry = GridEntry(resolve_config_path(e.config, path), e.paper)
        load_config(entry.path)
        entries.append(entry)
    pairs = tuple((infer_task(p.train, p.test) if p.task is None else p.task, p.train, p.test) for p in data.pairs)
    if data.cv is not None and data.layout != "table1":
        raise ConfigError(f"{path}: cv rows are shown in the table1 layout (one row per config); drop layout: {data.layout}")
    return Grid(data.title, data.layout, tuple(entries), pairs, data.seeds, data.set, data.cv)


def load_profile(path: str | Path, data_root: str | Path | None) -> Profile:
    """A profile, with {data_root} in its values replaced by the data root in use."""
    profile = load_yaml(Profile, path, what="profile")
    root = str(Path(data_root or "data"))
    fill = lambda v: None if v is None else str(v).replace("{data_root}", root)  # noqa: E731
    return Profile({k: fill(v) for k, v in profile.encoders.items()}, {k: fill(v) for k, v in profile.weights.items()},
                   profile.sampling, tuple(fill(v) for v in profile.set))


def apply_profile(cfg: RunConfig, profile: Profile) -> RunConfig:
    """Swap each stream's encoder (and the model a text source names: the generated captions' VLM), fill in weights
    where a stream gives none, set the video streams' sampling, apply the profile's overrides (those of lora only to
    configs that train LoRA adapters)."""

    d = to_dict(cfg)
    for stream in d["model"]["streams"]:
        stream["encoder"] = profile.encoders.get(stream["encoder"], stream["encoder"])
        source, args = stream.get("source", "captions"), stream.get("source_args") or {}
        model = getattr(text_source(source, args), "model", None)  # as given, or the source's default
        if model in profile.encoders:
            stream["source_args"] = {**args, "model": profile.encoders[model]}
        if stream.get("weights") is None and stream["encoder"] in profile.weights:
            stream["weights"] = profile.weights[stream["encoder"]]
        if profile.sampling and input_kind(stream["encoder"]).reads_video:
            stream["sampling"] = profile.sampling
    profiled = apply_overrides(config_from_dict(d, "profile"), profile.set, "profile")
    # the profile's lora settings only where a stream trains LoRA adapters: lora is a LATER section (left out of run
    # keys at its defaults), so every other config keeps the run key it had before the section existed
    if not any(ENCODERS.info(s.encoder).trainer == "vlm-lora" for s in profiled.model.streams):
        profiled = replace(profiled, lora=cfg.lora)
    return profiled


def run_key(cfg: RunConfig, task: int, train: str, test: str, data_root) -> str:
    """What makes two grid runs the same run: the resolved config, the pair and the data folder."""

    return digest({"config": key_dict(cfg), "pair": [task, train, test], "data": str(resolve_root(data_root).resolve())})


@dataclass
class GridRow:
    entry: GridEntry
    cfg: RunConfig
    task: int
    train: str
    test: str
    seeds: list[int] = field(default_factory=list)
    metrics: list[dict] = field(default_factory=list)  # one per finished seed
    run_ids: list[str] = field(default_factory=list)
    reused: int = 0
    failed: list[str] = field(default_factory=list)
    cv: dict[str, float] | None = None  # a cv row: the parent run's summary (experiments/cv.py _summarise)

    def stat(self, key: str) -> tuple[float, float] | None:
        values = [m[key] for m in self.metrics]
        if not values:
            return None
        return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def finished_run(key: str):
    """The record (tracking/record.py RunRecord) of a finished run tagged with grid key `key`, or None."""
    return record.find_finished({Tag.GRID_KEY: key})


@dataclass
class _Planned:
    """One (config, pair, seed) of a grid: its row, resolved config, key and label."""

    row: GridRow
    seed: int
    cfg: RunConfig
    key: str
    label: str
    name: str = ""  # the MLflow run name


def grid_run_name(cfg: RunConfig, written: RunConfig, pair: str, overrides: tuple[str, ...],
                  profile: Profile | None) -> str:
    """run_log.run_name with the grid's overrides and, under a profile, the encoders it swapped into the config
    as `written` (a profile-swapped paper-best is not the paper's model)."""

    used = dict.fromkeys(s.encoder for s in written.model.streams)
    swaps = [f"{a}->{profile.encoders[a]}" for a in used if profile and profile.encoders.get(a, a) != a]
    return run_name(cfg, pair, overrides + ((f"profile[{' '.join(swaps)}]",) if swaps else ()))


def run_grid(
    grid: Grid,
    data_root=None,
    profile: Profile | None = None,
    overrides: tuple[str, ...] = (),
    progress: bool = True,
    echo: Callable[[str], None] = print,
    rerun: bool = False,
    ray: RayOptions | None = None,
) -> list[GridRow]:
    """Run every missing (config, pair, seed) of `grid` (every one with `rerun`); one row per (config, pair).

    A run counts as done when a finished MLflow run has the same key; the key does not cover the code,
    so after changing the code, rerun. `ray`: the missing runs as Ray tasks (experiments/executor.py), the
    features extracted here first; the same runs, keys and results as without.
    """
    if ray is not None:
        check_cluster(ray)
    if grid.cv is not None:
        return run_cv_grid(grid, data_root, profile, overrides, progress, echo, rerun, ray)
    rows, written = [], {}
    for entry in grid.entries:
        base = written[entry.path] = load_config(entry.path)
        if profile is not None:
            base = apply_profile(base, profile)
        base = apply_overrides(base, grid.overrides + tuple(overrides))
        for task, train, test in grid.pairs:
            rows.append(GridRow(entry, base, task, train, test))
    planned = []
    for row in rows:
        for seed in grid.seeds:
            cfg = apply_overrides(row.cfg, [f"train.seed={seed}"])
            label = f"[{len(planned) + 1}/{len(rows) * len(grid.seeds)}] {cfg.name} task {row.task} {row.train}->{row.test} seed {seed}"
            name = grid_run_name(cfg, written[row.entry.path], f"{row.train}->{row.test}", grid.overrides + tuple(overrides),
                                 profile)
            planned.append(_Planned(row, seed, cfg, run_key(cfg, row.task, row.train, row.test, data_root), label, name))
    outcomes = execute(_tasks(grid, planned, data_root, ray is not None), ray, done=None if rerun else _done(planned),
                       echo=echo, progress=progress, prepare=_extract_first(planned, data_root, progress, echo),
                       started=None if ray else (lambda t: echo(f"{t.label}: running")),
                       finished=_said(echo) if ray else None)
    for p, outcome in zip(planned, outcomes):  # rows filled in the grid's order, on Ray as without
        if isinstance(outcome, Failed):
            p.row.failed.append(outcome.why)
        elif isinstance(outcome, Earlier):
            _reused(p, outcome.result)
        else:
            _finished(p, outcome)
    return rows


def run_cv_grid(grid: Grid, data_root=None, profile: Profile | None = None, overrides: tuple[str, ...] = (),
                progress: bool = True, echo: Callable[[str], None] = print, rerun: bool = False,
                ray: RayOptions | None = None) -> list[GridRow]:
    """A grid with `cv`: each (config, pair) cross-validated over the grid's seeds (its folds through the executor,
    on Ray where given; finished folds reused by their cv key); one row each, holding the parent's summary. A row
    whose cross-validation fails is reported in one line and the others go on."""
    cv, rows = grid.cv, []
    for entry in grid.entries:
        base = load_config(entry.path)
        if profile is not None:
            base = apply_profile(base, profile)
        base = apply_overrides(base, grid.overrides + tuple(overrides))
        for task, train, test in grid.pairs:
            rows.append(GridRow(entry, base, task, train, test))
    for i, row in enumerate(rows, 1):
        label = f"[{i}/{len(rows)}] {row.cfg.name} {row.train}->{row.test} cv{cv.folds}" + (
            f" by {cv.group_by}" if cv.group_by else "") + (f" x{cv.repeats}" if cv.repeats > 1 else "")
        echo(f"{label}: cross-validating")
        try:
            r = run_cv(row.cfg, row.train, row.test, cv.folds, tuple(grid.seeds), data_root, cv.with_dev,
                       progress=progress, echo=echo, rerun=rerun, ray=ray, group_by=cv.group_by, repeats=cv.repeats)
        except MemError as e:
            echo(f"{label}: failed: {e}")
            row.failed.append(str(e))
            continue
        row.cv, row.seeds, row.run_ids = r.summary, list(grid.seeds), [r.parent_id]
        row.reused = sum(f.reused for f in r.folds)
        row.metrics = [{m: r.summary[f"oof_{m}"] for m in ("srocc", "plcc", "mse")}]
    return rows


def _tasks(grid: Grid, planned: list[_Planned], data_root, on_ray: bool) -> list[Task]:
    """One task per planned run (key: its index in `planned`); on Ray with the data root made absolute, for every node."""

    root = str(resolve_root(data_root).resolve()) if on_ray else data_root
    return [Task(p.label, partial(run_experiment, p.row.task, p.row.train, p.row.test, p.cfg, root,
                                  extra_tags={Tag.GRID_KEY: p.key, Tag.GRID: grid.title}, name=p.name), i, tuple(p.cfg.plugins))
            for i, p in enumerate(planned)]


def _done(planned: list[_Planned]):
    """The executor's `done`: a planned run's finished MLflow run with the same grid key."""

    def done(task: Task) -> Earlier | None:
        run = finished_run(planned[task.key].key)
        return None if run is None else Earlier(run, run.run_id)

    return done


def _extract_first(planned: list[_Planned], data_root, progress: bool, echo):
    """The executor's `prepare` on Ray: each row's features into the shared cache once, before its tasks go out."""
    extracted: dict[int, str | None] = {}  # id(row) -> why its features could not be made (None: made)

    def prepare(task: Task) -> str | None:
        p = planned[task.key]
        if id(p.row) not in extracted:
            echo(f"{p.cfg.name} task {p.row.task} {p.row.train}->{p.row.test}: features for the Ray tasks")
            try:
                extract_first(p.row.task, p.row.train, p.row.test, p.cfg, data_root, progress, echo)
                extracted[id(p.row)] = None
            except MemError as e:
                extracted[id(p.row)] = str(e)
        return extracted[id(p.row)]

    return prepare


def _said(echo):
    """The executor's `finished` on Ray: a run's metrics in one line (here, the run says its own)."""
    return lambda task, result: echo(f"{task.label}: SROCC {result.metrics['srocc']:.4f}  "
                                     f"PLCC {result.metrics['plcc']:.4f}  (run {result.run_id})")


def _reused(p: _Planned, done) -> None:
    p.row.metrics.append(done.dev_metrics)
    p.row.run_ids.append(done.run_id)
    p.row.seeds.append(p.seed)
    p.row.reused += 1


def _finished(p: _Planned, result) -> None:
    p.row.metrics.append(result.metrics)
    p.row.run_ids.append(result.run_id)
    p.row.seeds.append(p.seed)


def _labels(cfg: RunConfig) -> tuple[str, str, str]:
    streams = cfg.model.streams
    encoder = " + ".join(s.encoder for s in streams)
    aggs = [s.aggregator for s in streams]
    aggregator = aggs[0] if len(set(aggs)) == 1 else " / ".join(aggs)
    if len(streams) > 1:
        aggregator += " + concat"
    return encoder, aggregator, cfg.model.head


def _fmt(stat: tuple[float, float] | None, n: int) -> str:
    if stat is None:
        return "-"
    return f"{stat[0]:.4f}" + (f" ± {stat[1]:.4f}" if n > 1 else "")


def cv_table_rows(grid: Grid, rows: list[GridRow]) -> tuple[list[str], list[list[str]]]:
    """(header, rows) of a cv grid: per config (and pair), the pooled out-of-fold SROCC with its 95% interval, PLCC,
    MSE, the per-fold SROCC's mean ± sd, and with repeats the repeats' pooled SROCC as mean ± sd."""
    pairs, repeats = len(grid.pairs) > 1, grid.cv.repeats > 1
    how = f"{grid.cv.folds}-fold" + (f" by {grid.cv.group_by}" if grid.cv.group_by else "")
    header = (["train->test"] * pairs + ["encoder", "temporal aggregator", "predictor", f"OOF SROCC [95% CI] ({how})",
              "OOF PLCC", "OOF MSE", "fold SROCC mean ± sd"] + [f"OOF SROCC over {grid.cv.repeats} repeats"] * repeats
              + ["parent run"])
    out = []
    for r in rows:
        s = r.cv
        if s is None:
            cells = ["-"] * (4 + repeats) + [f"failed: {r.failed[0]}" if r.failed else "-"]
        else:
            cells = [f"{s['oof_srocc']:.4f} [{s['oof_srocc_ci_low']:.4f}, {s['oof_srocc_ci_high']:.4f}]",
                     f"{s['oof_plcc']:.4f}", f"{s['oof_mse']:.4f}", f"{s['cv_srocc_mean']:.4f} ± {s['cv_srocc_sd']:.4f}"]
            if repeats:  # the repeats' figures exist only where there were repeats
                cells.append(f"{s['oof_srocc_repeats_mean']:.4f} ± {s['oof_srocc_repeats_sd']:.4f}")
            cells.append(r.run_ids[0])
        out.append([f"{r.train}->{r.test}"] * pairs + [*_labels(r.cfg), *cells])
    return header, out


def table_rows(grid: Grid, rows: list[GridRow]) -> tuple[list[str], list[list[str]]]:
    """(header, rows) of the grid's table in the paper's layout (a cv grid: `cv_table_rows`)."""
    if grid.cv is not None:
        return cv_table_rows(grid, rows)
    if grid.layout == "table1":  # one row per config; with several pairs, grouped by pair (a pair column first)
        pairs, papers = len(grid.pairs) > 1, any(e.paper for e in grid.entries)
        header = ["train->test"] * pairs + ["encoder", "temporal aggregator", "predictor", "PLCC", "SROCC", "MSE",
                                           "runs"] + ["paper PLCC / SROCC"] * papers
        order = {(train, test): i for i, (_, train, test) in enumerate(grid.pairs)}
        out = []
        for r in sorted(rows, key=lambda r: order.get((r.train, r.test), 0)) if pairs else rows:
            paper = f"{r.entry.paper[0]:.4f} / {r.entry.paper[1]:.4f}" if r.entry.paper else "-"
            runs = f"{len(r.metrics)}" + (f" ({len(r.failed)} failed)" if r.failed else "")
            out.append([f"{r.train}->{r.test}"] * pairs + [*_labels(r.cfg), _fmt(r.stat("plcc"), len(r.metrics)),
                       _fmt(r.stat("srocc"), len(r.metrics)), _fmt(r.stat("mse"), len(r.metrics)), runs]
                       + [paper] * papers)
        return header, out
    tests = sorted({r.test for r in rows})
    header = ["config", "training set"] + [f"{t} dev PLCC / SROCC" for t in tests]
    out = []
    for (name, train) in dict.fromkeys((r.cfg.name, r.train) for r in rows):
        cells = []
        for t in tests:
            match = [r for r in rows if r.cfg.name == name and r.train == train and r.test == t]
            cells.append(f"{_fmt(match[0].stat('plcc'), len(match[0].metrics))} / {_fmt(match[0].stat('srocc'), len(match[0].metrics))}"
                         if match and match[0].metrics else "-")
        out.append([name, train, *cells])
    return header, out
