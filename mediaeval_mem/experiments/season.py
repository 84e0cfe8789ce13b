"""`mem season PLAN.yaml`: a season's planned stages run in order, each one's run remembered, resumable.

The README's protocol (cross-validations, baselines, an ensemble, a refit, the run files) as one command: no run
id is copied by hand from one command's output into the next. A plan file names every part once:

    # configs/seasons/demo.yaml
    name: demo-season                # the state file: <runs>/seasons/demo-season.json
    train: memento10k                # the pair (test: the same by default); the subtask is the pair's own
    team: myteam
    folds: 5
    seeds: [0, 1, 2]
    models:                          # cross-validated (mem cv): name -> a config and its overrides
      video: {config: configs/demo.yaml}
      fused: {config: configs/demo-fused.yaml}
    baselines:                       # single runs (mem run)
      ridge: {config: configs/demo.yaml, set: [model.head=ridge, model.streams.0.aggregator=avg]}
    ensemble: {of: [video, fused], method: weighted}
    refit: fused                     # trained on every labelled video for the epochs its cross-validation chose
    package: [ensemble, refit, fused, video, ridge]   # the run files, in this order (at most 5)

Config paths are found as a grid file's are (experiments/grid.py `resolve_config_path`): from the working
directory, else from the plan's folder or the folders above it (the repository's root for configs/seasons/).

The stages run in the order cross-validations, baselines, ensemble, refit, package, each through the function its
own command calls (run_cv, run_experiment, ensemble, run_refit; the packager is given by the caller:
submission.py is a layer above this one). After each stage the state file records its run (or the files it wrote)
and a digest of what made it: its resolved config and plan fields, the data root, and the run ids it took from
the stages before it. A later call skips a stage whose digest is unchanged and whose run is still FINISHED in the
store (the run files still as written); any other stage runs again, and with it every stage that takes its run.
An interrupted cross-validation resumes by itself: `run_cv` reuses the folds that finished.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from mediaeval_mem.config import RunConfig, load_config
from mediaeval_mem.models import check_builds
from mediaeval_mem.core.errors import ConfigError, MemError
from mediaeval_mem.core.io import atomic_write_text
from mediaeval_mem.core.paths import data_root as resolve_root
from mediaeval_mem.core.paths import runs_dir, submissions_dir
from mediaeval_mem.core.schema import digest, key_dict, load_yaml
from mediaeval_mem.experiments.ensemble import METHODS
from mediaeval_mem.experiments.grid import resolve_config_path
from mediaeval_mem.experiments.tasks import infer_task
from mediaeval_mem.tracking import record

Echo = Callable[[str], None]
# (team, subtask, run ids in order, data root) -> the files written (run files, then the manifest); raises MemError
# on a run that does not validate. `mem season` passes submission.py's package_submission.
Packager = Callable[[str, int, list[str], Any], list[Path]]
RESERVED = ("ensemble", "refit", "package")  # stage names of their own: no model or baseline may take them
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
MAX_RUN_FILES = 5  # the challenge's run files per subtask and team (submission.py SubmissionCfg.max_runs)


# --------------------------------------------------------------------------- the plan file
@dataclass(frozen=True)
class ModelEntry:
    """A model of the plan: a run config and `--set` style overrides of it."""

    config: str
    set: tuple[str, ...] = ()


@dataclass(frozen=True)
class EnsembleEntry:
    of: tuple[str, ...]  # models and baselines of the plan
    method: str = "weighted"

    def __post_init__(self):
        if self.method not in METHODS:
            raise ConfigError(f"ensemble.method: {self.method!r} is not one of {', '.join(METHODS)}")
        if len(set(self.of)) < 2 or len(set(self.of)) < len(self.of):
            raise ConfigError(f"ensemble.of: name at least two different models or baselines, got {list(self.of)}")


@dataclass(frozen=True)
class SeasonFile:
    """A plan file as written (configs/seasons/*.yaml)."""

    name: str  # the state file's (default: the plan file's name)
    train: str
    test: str | None = None  # None: the training dataset
    team: str | None = None  # needed where the plan packages
    folds: int = 5
    seeds: tuple[int, ...] = (0,)
    # name -> {config: PATH, set: [...]}, or just PATH
    models: Mapping[str, ModelEntry | str] = field(default_factory=dict)  # cross-validated
    baselines: Mapping[str, ModelEntry | str] = field(default_factory=dict)  # single runs
    set: tuple[str, ...] = ()  # overrides applied to every model and baseline (before their own)
    ensemble: EnsembleEntry | None = None
    refit: str | None = None  # a model's name
    package: tuple[str, ...] = ()  # model, baseline, 'ensemble', 'refit' names: run 1, 2, ...

    def __post_init__(self):
        if not NAME.fullmatch(self.name):
            raise ConfigError(f"name: {self.name!r} names the state file: use letters, digits, '-', '_' or '.'")
        if self.folds < 2:
            raise ConfigError(f"folds must be >= 2, got {self.folds}")
        if not self.seeds or len(set(self.seeds)) < len(self.seeds):
            raise ConfigError(f"seeds: give one or more different seeds, got {list(self.seeds)}")
        if not self.models and not self.baselines:
            raise ConfigError("give at least one entry in models or baselines")
        both = sorted(set(self.models) & set(self.baselines))
        if both:
            raise ConfigError(f"{both[0]!r} is both a model and a baseline: give each a name of its own")
        for section, names in (("models", self.models), ("baselines", self.baselines)):
            for n in names:
                if n in RESERVED or not NAME.fullmatch(n):
                    raise ConfigError(f"{section}.{n}: a name of letters, digits, '-', '_' or '.', other than "
                                      f"{', '.join(RESERVED)}")
        runs = {**self.models, **self.baselines}
        if self.ensemble is not None:
            self._known("ensemble.of", self.ensemble.of, runs)
        if self.refit is not None and self.refit not in self.models:
            raise ConfigError(f"refit: {self.refit!r} is not a model of this plan (its cross-validation chooses the "
                              f"epochs; models: {', '.join(self.models) or 'none'})")
        made = [*runs, *(["ensemble"] if self.ensemble else []), *(["refit"] if self.refit else [])]
        self._known("package", self.package, made)
        if len(self.package) > MAX_RUN_FILES:
            raise ConfigError(f"package: {len(self.package)} runs; the challenge takes at most {MAX_RUN_FILES} run "
                              f"files per subtask")
        if len(set(self.package)) < len(self.package):
            raise ConfigError(f"package: a run is named twice in {list(self.package)}")
        if self.package and not self.team:
            raise ConfigError("team: the run files are named for a team; give team: NAME")

    @staticmethod
    def _known(where: str, names, valid) -> None:
        for n in names:
            if n not in valid:
                raise ConfigError(f"{where}: {n!r} is not a stage of this plan (valid: {', '.join(valid) or 'none'})")


@dataclass(frozen=True)
class SeasonPlan:
    """A plan read and checked: every config loaded (with its overrides), the pair's subtask known."""

    path: Path
    file: SeasonFile
    task: int
    test: str
    configs: dict[str, RunConfig]  # model and baseline name -> its resolved config
    overrides: dict[str, tuple[str, ...]]  # ... -> the overrides that made it (for run names)


def load_plan(path: str | Path) -> SeasonPlan:
    """Read and check a plan file; every config in it is loaded now, so a bad one fails before anything runs."""
    path = Path(path)
    f = load_yaml(SeasonFile, path, what="season plan", defaults={"name": path.stem})
    test = f.test or f.train
    task = infer_task(f.train, test)
    if f.package and task not in (1, 2):
        raise ConfigError(f"{path}: package: {f.train} -> {test} is no subtask of the challenge (subtask 1: memento10k "
                          f"-> memento10k; 2: across memento10k and videomem); leave package out")
    configs, overrides = {}, {}
    for name, entry in {**f.models, **f.baselines}.items():
        entry = entry if isinstance(entry, ModelEntry) else ModelEntry(entry)  # a bare path is the short form
        sets = (*f.set, *entry.set)
        try:
            configs[name] = load_config(resolve_config_path(entry.config, path), sets)
            check_builds(configs[name].model)  # args --set leaves behind (a Bi-GRU's beside aggregator=avg) fail here
        except ConfigError as e:
            raise ConfigError(f"{path}: {name}: {e}") from None
        overrides[name] = sets
    return SeasonPlan(path, f, task, test, configs, overrides)


# --------------------------------------------------------------------------- the stages
@dataclass(frozen=True)
class Stage:
    name: str  # a model or baseline name, or ensemble, refit, package
    kind: str  # cv, run, ensemble, refit, package
    what: dict  # what makes it, besides the runs it takes (digested)
    needs: tuple[str, ...] = ()  # the stages whose runs it takes, in order


def plan_stages(plan: SeasonPlan, data_root=None) -> list[Stage]:
    """The plan's stages in the order they run: cross-validations, baselines, ensemble, refit, package."""
    f = plan.file
    pair = {"train": f.train, "test": plan.test, "data": str(resolve_root(data_root).resolve())}
    stages = [Stage(n, "cv", {"config": key_dict(plan.configs[n]), **pair, "folds": f.folds, "seeds": list(f.seeds)})
              for n in f.models]
    stages += [Stage(n, "run", {"config": key_dict(plan.configs[n]), **pair}) for n in f.baselines]
    if f.ensemble is not None:
        stages.append(Stage("ensemble", "ensemble", {"method": f.ensemble.method}, tuple(f.ensemble.of)))
    if f.refit is not None:
        stages.append(Stage("refit", "refit", {"config": key_dict(plan.configs[f.refit]), **pair}, (f.refit,)))
    if f.package:
        stages.append(Stage("package", "package", {"team": f.team, "subtask": plan.task, "data": pair["data"],
                                                   "out": str(submissions_dir().resolve())}, tuple(f.package)))
    return stages


def stage_digest(stage: Stage, ids: Mapping[str, str]) -> str:
    """What made a stage: its own fields and the runs it takes (a stage before it that ran again changes it)."""
    return digest({"kind": stage.kind, **stage.what, "after": [[n, ids[n]] for n in stage.needs]})


def state_path(name: str) -> Path:
    """<runs>/seasons/<name>.json: what each stage of season `name` made."""
    return runs_dir() / "seasons" / f"{name}.json"


def read_state(name: str) -> dict:
    """The season's state file ({} before its first stage finished)."""
    path = state_path(name)
    if not path.is_file():
        return {}
    try:
        state = json.loads(path.read_text())
    except ValueError:
        raise MemError(f"{path}: not valid JSON (edited by hand?): delete it and the season runs every stage again, "
                       f"reusing the folds its cross-validations finished") from None
    return state if isinstance(state, dict) and isinstance(state.get("stages"), dict) else {}


def _file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def still_there(entry: Mapping) -> bool:
    """A recorded stage's output as it left it: its run FINISHED in the store, or its files unchanged."""
    if "files" in entry:
        return all(Path(p).is_file() and _file_digest(Path(p)) == d for p, d in entry["files"].items())
    if not entry.get("run_id"):  # a state file edited by hand
        return False
    try:
        return record.read_record(entry["run_id"]).status == "FINISHED"
    except MemError:  # the run was deleted from the store
        return False


@dataclass
class StageOutcome:
    name: str
    kind: str
    run_id: str | None  # None for package
    ran: bool  # False: skipped, its recorded run reused
    seconds: float = 0.0
    dev_srocc: float | None = None  # the reported split's (None: no honest figure, e.g. a same-dataset refit)
    oof_srocc: float | None = None  # a cross-validation's pooled out-of-fold SROCC
    files: list[str] = field(default_factory=list)  # package: the files written (run files, then the manifest)


@dataclass
class SeasonResult:
    name: str
    state: Path
    stages: list[StageOutcome]

    @property
    def files(self) -> list[str]:
        return [p for s in self.stages for p in s.files]


@dataclass
class DryRunLine:
    name: str
    kind: str
    action: str  # 'run' or 'skip'
    why: str


def dry_run(plan: SeasonPlan, data_root=None) -> list[DryRunLine]:
    """Which stages a `mem season` would run now and which it would skip, and why; nothing runs."""
    entries = read_state(plan.file.name).get("stages", {})
    ids: dict[str, str] = {}
    pending: set[str] = set()
    lines = []
    for st in plan_stages(plan, data_root):
        entry = entries.get(st.name)
        redo = [n for n in st.needs if n in pending]
        if redo:
            why = f"after {', '.join(redo)}"
        elif entry is None:
            why = "not run yet"
        elif entry.get("digest") != stage_digest(st, ids):
            why = "its config or plan fields changed" if not st.needs else "its fields or the runs it takes changed"
        elif not still_there(entry):
            why = "its run files changed" if st.kind == "package" else f"run {entry['run_id']} is no longer FINISHED"
        else:
            ids[st.name] = entry.get("run_id", "")
            lines.append(DryRunLine(st.name, st.kind, "skip", f"done: {entry.get('run_id') or 'files unchanged'}"))
            continue
        pending.add(st.name)
        lines.append(DryRunLine(st.name, st.kind, "run", why))
    return lines


def run_season(plan: SeasonPlan, data_root=None, packager: Packager | None = None, progress: bool = True,
               echo: Echo = print, ray=None) -> SeasonResult:
    """Run the plan's stages in order, skipping those done before (same digest, run still FINISHED); returns each
    stage's run and figures. `packager` writes the run files (needed where the plan packages); `ray` (RayOptions)
    runs the cross-validations' folds as Ray tasks (several sharing a GPU), as `mem cv --ray` does.

    >>> from mediaeval_mem.submission import package_submission
    >>> pack = lambda team, subtask, ids, root: package_submission(team, subtask, ids, root).written
    >>> run_season(load_plan("configs/seasons/demo.yaml"), "data/demo", pack).stages[0].run_id
    """
    f = plan.file
    stages = plan_stages(plan, data_root)
    if f.package and packager is None:
        raise MemError("this plan packages run files: give run_season a packager (submission.package_submission)")
    path = state_path(f.name)
    state = read_state(f.name)
    state = {"plan": str(plan.path.resolve()), "name": f.name, "stages": dict(state.get("stages", {}))}
    ids: dict[str, str] = {}
    outcomes = []
    quiet = lambda line: None  # noqa: E731
    for i, st in enumerate(stages, 1):
        where = f"season {f.name} [{i}/{len(stages)}] {st.name} ({st.kind})"
        d = stage_digest(st, ids)
        entry = state["stages"].get(st.name)
        if entry is not None and entry.get("digest") == d and still_there(entry):
            done = StageOutcome(st.name, st.kind, entry.get("run_id"), False, files=list(entry.get("files", {})))
            if progress:
                echo(f"{where}: done before ({done.run_id or 'files unchanged'}), skipped")
        else:
            if progress:
                echo(f"{where}: running")
            t0 = time.perf_counter()
            done = _run_stage(plan, st, ids, data_root, packager, progress, echo if progress else quiet, ray)
            done.seconds = time.perf_counter() - t0
            entry = {"kind": st.kind, "digest": d, **({"run_id": done.run_id} if done.run_id else {}),
                     **({"files": {p: _file_digest(Path(p)) for p in done.files}} if st.kind == "package" else {}),
                     "finished": time.strftime("%Y-%m-%dT%H:%M:%S")}
            state["stages"][st.name] = entry
            # after each stage (in plan order, unsorted): an interrupted season keeps what finished
            atomic_write_text(path, json.dumps(state, indent=1) + "\n")
            if progress:
                echo(f"{where}: finished in {done.seconds:.0f} s" + (f", run {done.run_id}" if done.run_id else ""))
        if done.run_id:
            ids[st.name] = done.run_id
            _figures(done)
        outcomes.append(done)
    return SeasonResult(f.name, path, outcomes)


def _figures(done: StageOutcome) -> None:
    """The stage's dev SROCC (and a cross-validation's pooled out-of-fold SROCC) from its run's record."""
    metrics = record.read_record(done.run_id).metrics
    done.dev_srocc = metrics.get("dev_srocc")
    done.oof_srocc = metrics.get("oof_srocc")


def _run_stage(plan: SeasonPlan, st: Stage, ids: Mapping[str, str], data_root, packager: Packager | None,
               progress: bool, echo: Echo, ray=None) -> StageOutcome:
    """Run one stage through its command's own function."""
    f = plan.file
    if st.kind == "cv":
        from mediaeval_mem.experiments.cv import run_cv

        r = run_cv(plan.configs[st.name], f.train, plan.test, f.folds, tuple(f.seeds), data_root, progress=progress,
                   echo=echo, ray=ray)
        return StageOutcome(st.name, st.kind, r.parent_id, True)
    if st.kind == "run":
        from mediaeval_mem.experiments.run_log import run_name
        from mediaeval_mem.experiments.runner import run_experiment

        cfg = plan.configs[st.name]
        name = f"{run_name(cfg, f'{f.train}->{plan.test}', plan.overrides[st.name])} ({f.name} {st.name})"
        r = run_experiment(None, f.train, plan.test, cfg, data_root, progress=progress, echo=echo, name=name)
        return StageOutcome(st.name, st.kind, r.run_id, True)
    if st.kind == "ensemble":
        from mediaeval_mem.experiments.ensemble import ensemble

        r = ensemble([ids[n] for n in st.needs], f.ensemble.method, echo)
        return StageOutcome(st.name, st.kind, r.run_id, True)
    if st.kind == "refit":
        from mediaeval_mem.experiments.refit import run_refit

        source = st.needs[0]
        r = run_refit(None, f.train, plan.test, plan.configs[source], ids[source], data_root, progress, echo)
        return StageOutcome(st.name, st.kind, r.run_id, True)
    written = packager(f.team, plan.task, [ids[n] for n in st.needs], data_root)
    return StageOutcome(st.name, st.kind, None, True, files=[str(p) for p in written])
