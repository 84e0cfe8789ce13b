"""`mem sweep SEARCH.yaml`: a seeded random search over config fields on Ray Tune, cut short by ASHA.

    # configs/sweeps/demo.yaml
    config: configs/demo.yaml
    train: memento10k
    trials: 8
    metric: select_srocc            # the selection split's (a holdout of the training videos), never dev
    space:
      train.lr: {loguniform: [1.0e-4, 1.0e-2]}
      train.batch_size: {choice: [8, 16, 32]}
    scheduler: {grace_period: 2, reduction_factor: 2}

Every sampled point is a list of `key=value` overrides of the base config (config.py `apply_overrides`),
so a key or value that does not fit fails when the search file is read. The driver extracts the
features before any trial starts; each trial then runs `mem run`'s stages (experiments/runner.py) as an
MLflow run tagged `kind: sweep-trial`, reporting the selection SROCC to Tune after every epoch but the
last, so that ASHA can stop it at a rung. A stopped trial's run ends KILLED with the reason in
`mem_end_reason`. The best trial (by its best selection value) is written as a complete config file
that `mem run --config` takes.
"""

from __future__ import annotations

import json
import math
import os
import sys
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mediaeval_mem.config import LoraCfg, RunConfig, apply_overrides, load_config
from mediaeval_mem.core.cluster import RayOptions, gpus_each, ray_session, worker_env
from mediaeval_mem.core.errors import ConfigError, MemError
from mediaeval_mem.core.io import atomic_write_text
from mediaeval_mem.core.paths import runs_dir
from mediaeval_mem.core.runtime import resolve_device
from mediaeval_mem.core.schema import digest, load_yaml, to_dict, to_yaml
from mediaeval_mem.experiments.executor import check_cluster, failed_line
from mediaeval_mem.experiments.grid import resolve_config_path
from mediaeval_mem.experiments.run_log import run_name
from mediaeval_mem.experiments.runner import (
    extract_first,
    load_splits,
    open_datasets,
    prepare_features,
    select_videos,
    train_and_log,
)
from mediaeval_mem.experiments.tasks import plan_task
from mediaeval_mem.models import check_builds
from mediaeval_mem.plugins import load_plugins
from mediaeval_mem.tracking import client, record
from mediaeval_mem.tracking.record import Kind, Tag

Echo = Callable[[str], None]
METRICS = {"select_srocc": "max", "select_loss": "min"}  # what the trials report per epoch, on the selection split


# --------------------------------------------------------------------------- the search file
@dataclass(frozen=True)
class Dimension:
    """One searched field: exactly one of a list of choices or a range (randint: low inclusive, high exclusive)."""

    choice: tuple[Any, ...] | None = None
    uniform: tuple[float, float] | None = None
    loguniform: tuple[float, float] | None = None
    randint: tuple[int, int] | None = None

    def __post_init__(self):
        given = [k for k in ("choice", "uniform", "loguniform", "randint") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ConfigError("give exactly one of choice: [...], uniform: [low, high], loguniform: [low, high], "
                              "randint: [low, high]")
        if self.choice is not None and not self.choice:
            raise ConfigError("choice: needs at least one value")
        for kind in ("uniform", "loguniform", "randint"):
            low_high = getattr(self, kind)
            if low_high is not None and not low_high[0] < low_high[1]:
                raise ConfigError(f"{kind}: low must be below high, got {list(low_high)}")
        if self.loguniform is not None and self.loguniform[0] <= 0:
            raise ConfigError(f"loguniform: low must be > 0, got {self.loguniform[0]}")

    def corners(self) -> list:
        """Values that every sample lies among or between: each choice, or a range's ends."""
        if self.choice is not None:
            return list(self.choice)
        if self.randint is not None:
            return [self.randint[0], self.randint[1] - 1]
        return list(self.uniform or self.loguniform)

    def tune_domain(self):
        from ray import tune

        if self.choice is not None:
            return tune.choice(list(self.choice))
        if self.randint is not None:
            return tune.randint(*self.randint)
        return tune.uniform(*self.uniform) if self.uniform is not None else tune.loguniform(*self.loguniform)


@dataclass(frozen=True)
class SchedulerCfg:
    """ASHA's rungs: a trial may be stopped after grace_period epochs, then at each reduction_factor times as many."""

    grace_period: int = 1
    reduction_factor: float = 2.0

    def __post_init__(self):
        if self.grace_period < 1 or self.reduction_factor <= 1:
            raise ConfigError("grace_period must be >= 1 and reduction_factor > 1")


@dataclass(frozen=True)
class SearchFile:
    """A search file as written (configs/sweeps/*.yaml)."""

    train: str
    space: Mapping[str, Dimension]  # dotted config field -> its values
    config: str | None = None  # the base run config (None: the defaults, the paper's model and recipe)
    test: str | None = None  # default: train
    task: int | None = None  # default: the pair's own
    name: str = ""  # default: the file's name
    trials: int = 8
    metric: str = "select_srocc"
    scheduler: SchedulerCfg = field(default_factory=SchedulerCfg)
    seed: int = 0
    set: tuple[str, ...] = ()  # overrides of the base config, before the searched ones

    def __post_init__(self):
        if not self.space:
            raise ConfigError("space: needs at least one field")
        if self.trials < 1:
            raise ConfigError("trials must be >= 1")
        if self.metric not in METRICS:
            raise ConfigError(f"metric must be one of {', '.join(METRICS)} (the selection split's; a sweep never "
                              f"watches the reported dev split), got {self.metric!r}")


@dataclass(frozen=True)
class Search:
    """A checked search: the base config with its overrides applied, and the space."""

    path: Path
    name: str
    base: RunConfig
    task: int | None
    train: str
    test: str
    trials: int
    metric: str
    space: Mapping[str, Dimension]
    scheduler: SchedulerCfg
    seed: int

    @property
    def mode(self) -> str:
        return METRICS[self.metric]


def overrides(point: Mapping[str, Any]) -> list[str]:
    """`key=value` overrides of one sampled point (values written as JSON, which YAML reads back as they were)."""
    return [f"{key}={json.dumps(value)}" for key, value in point.items()]


def load_search(path: str | Path, extra: tuple[str, ...] = ()) -> Search:
    """Read and check a search file: the base config loads, and each searched field takes each of its
    choices (a range: both ends), so a bad key or value fails now, in one line naming the file and key.

    >>> load_search("configs/sweeps/demo.yaml").space["train.lr"].loguniform
    (0.0001, 0.01)
    """

    path = Path(path)
    f = load_yaml(SearchFile, path, what="search file")
    base = load_config(resolve_config_path(f.config, path) if f.config else None, tuple(f.set) + tuple(extra))
    if base.train.select_on != "holdout" or "train.select_on" in f.space:
        raise ConfigError(f"{path}: a sweep selects on a holdout of the training videos (train.select_on: holdout), "
                          f"never on the reported dev split: leave train.select_on out of the config and the space")
    for key, dim in f.space.items():
        for value in dim.corners():
            try:
                check_builds(apply_overrides(base, overrides({key: value}), "space").model)
            except ConfigError as e:
                reason = str(e).removeprefix("space: ")
                raise ConfigError(f"{path}: space {key} = {value!r} does not fit the config: {reason}") from None
    return Search(path, f.name or path.stem, base, f.task, f.train, f.test or f.train, f.trials, f.metric,
                  dict(f.space), f.scheduler, f.seed)


def sample_points(search: Search) -> list[dict[str, Any]]:
    """The points a sweep of `search` tries, in trial order: drawn as Tune's BasicVariantGenerator draws them,
    from a numpy generator seeded with `search.seed` (the same seed, the same points), and handed to it as the
    points to evaluate, so that the driver knows every trial's config (and extracts its features) beforehand."""
    from ray.tune.search.variant_generator import generate_variants

    rng = np.random.default_rng(search.seed)
    space = {"config": {k: d.tune_domain() for k, d in search.space.items()}}
    points = []
    for _ in range(search.trials):
        _, spec = next(generate_variants(space, random_state=rng))
        points.append({k: _plain(spec["config"][k]) for k in search.space})
    return points


def _plain(value):
    """A sampled value as plain Python (numpy scalars -> int, float, str)."""
    return value.item() if isinstance(value, np.generic) else value


# --------------------------------------------------------------------------- results
@dataclass
class TrialRow:
    trial_id: str
    point: dict[str, Any]
    run_id: str | None  # its MLflow run (None: it failed before starting one)
    status: str  # the MLflow run's: FINISHED, KILLED (stopped by ASHA), FAILED
    select: float  # its best epoch's selection value (NaN: none)
    dev_srocc: float | None  # None: stopped or failed before it was evaluated
    epochs: int
    stopped_early: bool  # by ASHA
    error: str = ""


@dataclass
class SweepResult:
    name: str
    sweep_id: str
    metric: str
    trials: list[TrialRow]
    best: TrialRow
    best_config: RunConfig
    best_path: Path
    storage: Path  # Tune's own folder


# --------------------------------------------------------------------------- the trial (in a Ray worker)
class StoppedByScheduler(Exception):
    """ASHA stopped this trial (Tune exits the trial's thread from inside `tune.report`): its run ends KILLED."""

    run_status = "KILLED"  # how TrackedRun ends the run this leaves


def _trial(params: dict, *, search: Search, data_root: str | None, cwd: str, tags: dict[str, str]) -> None:
    """One trial: the base config with this point's overrides, trained and logged like `mem run`."""
    import atexit
    import threading

    from ray import tune


    # When Tune stops a trial, its worker exits right after this thread leaves tune.report: the exit waits
    # (a little) for the run to be closed first.
    if Path(cwd).is_dir():  # the driver's working directory, for a config's relative paths (as the executor's Ray tasks)
        os.chdir(cwd)
    load_plugins()  # installed plugins, as `mem` loads them (the config's own load with it below)
    here = threading.current_thread()
    if here is not threading.main_thread():
        atexit.register(here.join, 30)
    cfg = apply_overrides(search.base, overrides({k: params[k] for k in search.space}), "sweep")
    echo = lambda line: print(line, file=sys.stderr)
    plan = plan_task(search.task, search.train, search.test, cfg.train.select_on)
    device = resolve_device(cfg.train.device)
    indexes = open_datasets(plan, cfg, data_root, echo)
    selection = select_videos(plan, indexes, cfg)
    features = prepare_features(plan, cfg, indexes, selection, device, progress=False, echo=echo)  # the driver extracted
    splits = load_splits(plan, indexes, features, selection, echo)
    trial_id = tune.get_context().get_trial_id()

    def reporting(logged, log):  # each epoch logged, then reported to Tune, whose scheduler may stop the trial there
        def on_epoch(e) -> None:
            logged(e)
            if e.epoch >= cfg.train.epochs:  # the trial's last epoch is no rung: nothing left to save
                return
            try:
                tune.report({"select_srocc": e.select_srocc, "select_loss": e.select_loss, "epoch": e.epoch})
            except SystemExit:  # Tune's way of stopping a function trainable
                log.run.stopped(f"stopped by ASHA after epoch {e.epoch} ({search.metric} "
                                f"{getattr(e, search.metric):.4f} below its rung's cutoff)")
                raise StoppedByScheduler() from None

        return on_epoch

    try:
        name = run_name(cfg, plan.pair, [f"{search.name} trial", *overrides({k: params[k] for k in search.space})])
        train_and_log(plan, cfg, indexes, features, splits, selection, device, {**tags, Tag.SWEEP_TRIAL: trial_id}, name,
                      progress=False, wrap_epoch=reporting)
    except StoppedByScheduler:
        raise SystemExit(0) from None  # what Tune expects of a stopped trial


# --------------------------------------------------------------------------- the driver
def _feature_key(cfg: RunConfig) -> str:
    """What fixes a config's features: its streams' encoders, weights and sampling, extraction and data."""
    # a stream's text source only where it is not the default (the digests of caption streams stay as they were)
    streams = [(s.encoder, s.weights, s.sampling) + ((s.source, dict(s.source_args))
                                                     if s.source != "captions" or s.source_args else ())
               for s in cfg.model.streams]
    lora = {"lora": to_dict(cfg.lora)} if cfg.lora != LoraCfg() else {}  # (configs without LoRA keep their digest)
    return digest({"streams": streams,
                   "extract": to_dict(cfg.extract), "data": to_dict(cfg.data), "finetune": to_dict(cfg.finetune), **lora})


def trial_env() -> dict[str, str]:
    """What a trial's Ray worker must see as the driver does (core/cluster.py `worker_env`: runs folder, caches, the
    tracking store), with Tune's move into the trial's folder turned off (the trial works in the driver's)."""
    return {**worker_env(), "RAY_CHDIR_TO_TRIAL_DIR": "0"}


def run_sweep(search: Search, data_root=None, cluster: RayOptions | None = None, out: str | Path | None = None,
              progress: bool = True, echo: Echo = print) -> SweepResult:
    """Run `search`'s trials on Ray Tune with ASHA, each with the CPUs and GPUs `cluster` gives a run (None: a local
    Ray, 1 CPU a trial); write the best trial's config to `out` (default runs/sweeps/<name>/best.yaml). Tune
    schedules the trials (not experiments/executor.py); the Ray session and the failure lines are the executor's.

    >>> r = run_sweep(load_search("configs/sweeps/demo.yaml"), "data/demo")
    >>> r.best.select, r.best_path
    """
    cluster = cluster or RayOptions()
    check_cluster(cluster)  # Ray is installed; a cluster's trials have a tracking server
    import logging

    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search.basic_variant import BasicVariantGenerator


    data_root = str(Path(data_root).resolve()) if data_root else None
    points = sample_points(search)
    done = set()  # the features of every point, extracted here once: the trials only read the cache
    for point in points:
        cfg = apply_overrides(search.base, overrides(point), "sweep")
        if _feature_key(cfg) not in done:
            done.add(_feature_key(cfg))
            extract_first(search.task, search.train, search.test, cfg, data_root, progress, echo)

    client()  # the store set up once here, not raced by the first trials (and a server that is down fails now)
    sweep_id = uuid.uuid4().hex[:12]
    tags = {Tag.KIND: Kind.SWEEP_TRIAL, Tag.SWEEP: search.name, Tag.SWEEP_ID: sweep_id}
    storage = (runs_dir() / "sweeps" / search.name).resolve()
    with ray_session(cluster, runtime_env={"env_vars": trial_env()}, include_dashboard=False,
                     logging_level=logging.WARNING, log_to_driver=False) as ray:
        epochs = max(apply_overrides(search.base, overrides(p), "sweep").train.epochs for p in points)
        scheduler = ASHAScheduler(time_attr="training_iteration", max_t=max(epochs, search.scheduler.grace_period),
                                  grace_period=search.scheduler.grace_period,
                                  reduction_factor=search.scheduler.reduction_factor)
        trainable = tune.with_parameters(_trial, search=search, data_root=data_root, cwd=os.getcwd(), tags=tags)
        resources = {"cpu": cluster.cpus, "gpu": gpus_each(cluster, ray.cluster_resources(), "run")}
        tuner = tune.Tuner(
            tune.with_resources(trainable, resources),
            param_space={k: d.tune_domain() for k, d in search.space.items()},
            tune_config=tune.TuneConfig(metric=search.metric, mode=search.mode, num_samples=search.trials,
                                        scheduler=scheduler, search_alg=BasicVariantGenerator(points, random_state=search.seed),
                                        reuse_actors=True),  # one worker's imports serve several trials
            run_config=tune.RunConfig(name=f"tune-{sweep_id}", storage_path=str(storage), verbose=0,
                                      callbacks=[_progress(search, echo)] if progress else []),
        )
        echo(f"{search.trials} trial(s) on Ray, ASHA on {search.metric}; Tune's files in {storage}")
        grid = tuner.fit()
    trials = _collect(search, grid, sweep_id)
    finished = [t for t in trials if t.status == "FINISHED" and not math.isnan(t.select)] or \
        [t for t in trials if not math.isnan(t.select)]
    if not finished:
        first = next((t.error for t in trials if t.error), "see the trials' MLflow runs")
        raise MemError(f"no trial of sweep {search.name} trained an epoch: {first}")
    sign = 1 if search.mode == "max" else -1
    best = max(finished, key=lambda t: sign * t.select)
    name = {"name": f"{search.base.name}-{search.name}-best"}  # runs of it are told apart from the base config's
    best_cfg = apply_overrides(search.base, overrides({**best.point, **name}), "sweep")
    best_path = Path(out) if out else storage / "best.yaml"
    best_path.parent.mkdir(parents=True, exist_ok=True)

    header = (f"# the best trial of sweep {search.name} ({search.path}): {search.metric} {best.select:.4f}, "
              f"MLflow run {best.run_id}\n")
    atomic_write_text(best_path, header + to_yaml(best_cfg))
    return SweepResult(search.name, sweep_id, search.metric, trials, best, best_cfg, best_path, storage)


def _progress(search: Search, echo: Echo):
    """A Tune callback that says one line per trial that ends (Tune's own output is off)."""
    from ray import tune

    class Lines(tune.Callback):
        def __init__(self, echo: Echo):
            self.echo = echo

        def __getstate__(self):  # Tune saves its run config with the experiment; a console does not pickle
            return {"echo": print}

        def on_trial_complete(self, iteration, trials, trial, **info):
            last = trial.last_result or {}
            value = last.get(search.metric)
            self.echo(f"trial {trial.trial_id} ended: {', '.join(f'{k}={fmt_value(trial.config[k])}' for k in search.space)}; "
                 f"{search.metric} {value:.4f} at epoch {last.get('epoch')}" if value is not None else
                 f"trial {trial.trial_id} ended before its first rung")

        def on_trial_error(self, iteration, trials, trial, **info):
            self.echo(failed_line(f"trial {trial.trial_id}", f"see its MLflow run or {trial.path}"))

    return Lines(echo)


def fmt_value(value) -> str:
    """A sampled value, short (4 significant digits for floats)."""
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _collect(search: Search, grid, sweep_id: str) -> list[TrialRow]:
    """One row per trial, from its MLflow run (the record) and Tune's result (its point, its error)."""

    runs = {r.tag(Tag.SWEEP_TRIAL): r for r in record.find_runs({Tag.SWEEP_ID: sweep_id})}
    c, rows = client(), []
    for result in grid:
        trial_id = next((t for t in runs if t and t in (result.path or "")), "")  # trial folders are named by id
        run = runs.get(trial_id)
        point = {k: result.config[k] for k in search.space}
        error = str(result.error).strip().splitlines()[-1] if result.error else ""
        if run is None:
            rows.append(TrialRow(trial_id, point, None, "FAILED", math.nan, None, 0, False, error))
            continue
        run = _closed(run)
        run_id, status = run.run_id, run.status
        if status == "RUNNING":  # its worker exited before the run was closed (the atexit wait ran out)
            record.end_killed(run, "the trial's Ray worker exited before closing this run; marked KILLED by the "
                                   "sweep's driver")
            status = "KILLED"
        history = [m.value for m in c.get_metric_history(run_id, search.metric) if not math.isnan(m.value)]
        select = (max if search.mode == "max" else min)(history) if history else math.nan
        dev = run.metrics.get("dev_srocc")
        stopped = record.stopped_early(run) or (status == "KILLED" and dev is None)
        rows.append(TrialRow(trial_id, point, run_id, status, select, dev, len(c.get_metric_history(run_id, "train_loss")),
                             stopped, error))
    return rows


def _closed(run, wait_s: float = 15.0):
    """`run` (a record.RunRecord) as its trial left it: a stopped trial's thread may still be closing it when Tune
    reports the trial done (a reused worker gives it 2 s), so a RUNNING run is looked at again for up to `wait_s`."""
    import time

    deadline = time.monotonic() + wait_s
    while run.status == "RUNNING" and time.monotonic() < deadline:
        time.sleep(0.5)
        run = record.read_record(run.run_id)
    return run
