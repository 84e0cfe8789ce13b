"""`mem cv CONFIG --train D [--test D2] --folds K [--seeds ...]`: K-fold cross-validation over D's labelled videos.

Folds are stratified on the score and seeded: the videos sorted by score are cut into blocks of K and
each block's videos are dealt to the K folds in a seeded random order, so every fold spans the whole
score range. For each (seed, fold) a model is trained on the other folds (model selection on a seeded
holdout slice of them, as in `mem run`) and predicts its own fold (out-of-fold), the test dataset's
dev split and its test split. Each is an MLflow child run of one parent run, which holds the summary:

- per-fold SROCC, PLCC, MSE: mean and sd over every (seed, fold);
- the pooled out-of-fold predictions (averaged over seeds): SROCC, PLCC, MSE with bootstrap intervals;
- the fold models' mean prediction of the dev and test splits (`dev_*` metrics, test predictions:
  the parent is an ensemble of its folds, and packages like a run), and `refit_epochs`, the median
  best epoch, for `mem run --refit PARENT`.

Resumable like `mem grid`: a (seed, fold) whose child run finished with the same key is not run again. Two
`mem cv` of one key at once share the folds: a fold is trained under a lock (runs/locks/cv/), by one process;
the other trains the folds nobody holds, then waits for the rest and reuses their runs.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Callable

import numpy as np

from mediaeval_mem.config import RunConfig, apply_overrides
from mediaeval_mem.core.errors import ConfigError, MemError
from mediaeval_mem.core.io import file_lock
from mediaeval_mem.core.paths import data_root as resolve_root
from mediaeval_mem.core.paths import runs_dir
from mediaeval_mem.core.progress import progress_bar
from mediaeval_mem.core.runtime import resolve_device
from mediaeval_mem.core.schema import digest, key_dict, to_dict
from mediaeval_mem.experiments.executor import Earlier, Task, check_cluster, execute, raise_failures
from mediaeval_mem.experiments.runner import (
    Selection,
    Splits,
    open_datasets,
    prepare_features,
    read_split,
    train_and_log,
    trains_itself,
)
from mediaeval_mem.experiments.tasks import plan_task
from mediaeval_mem.tracking import record
from mediaeval_mem.tracking.record import Kind, Tag
from mediaeval_mem.training.batches import LabelledSplit, predict
from mediaeval_mem.training.bootstrap import bootstrap_interval, per_row
from mediaeval_mem.training.metrics import evaluate, mse, plcc, srocc

Echo = Callable[[str], None]
METRICS = ("srocc", "plcc", "mse")


def stratified_folds(scores: np.ndarray, k: int, seed: int) -> np.ndarray:
    """(N,) fold index in [0, k) per video: sorted by score, each block of k dealt to the k folds at random."""
    if k < 2:
        raise ConfigError(f"--folds must be >= 2, got {k}")
    if len(scores) < 2 * k:
        raise MemError(f"{len(scores)} labelled videos are too few for {k} folds (at least {2 * k})")
    order = np.argsort(scores, kind="stable")
    rng = np.random.default_rng(seed)
    folds = np.empty(len(scores), np.int64)
    for start in range(0, len(order), k):
        block = order[start : start + k]
        folds[block] = rng.permutation(k)[: len(block)]
    return folds


@dataclass
class FoldRun:
    seed: int
    fold: int
    run_id: str
    metrics: dict[str, float]
    best_epoch: int
    oof: dict[str, float]  # video id -> prediction of its own fold
    dev: dict[str, float]  # the test dataset's dev split
    test: dict[str, float]
    reused: bool = False


@dataclass
class CVResult:
    parent_id: str
    experiment: str
    folds: list[FoldRun]
    summary: dict[str, float] = field(default_factory=dict)  # cv_<m>_mean/_sd, oof_<m>, oof_<m>_ci_low/high, dev_<m>
    refit_epochs: int = 0


def _finished_child(key: str, seed: int, fold: int, since_ms: int = 0) -> FoldRun | None:
    """A finished fold run of this cross-validation (started at `since_ms` or later), read back from MLflow
    (None if there is none)."""
    r = record.find_finished({Tag.CV_KEY: key, Tag.CV_FOLD: f"{seed}:{fold}"}, since_ms)
    if r is None:
        return None
    pred = record.read_fold_predictions(r.run_id)  # as the fold's trainer summarised them: a reused fold adds the same figures
    return FoldRun(seed, fold, r.run_id, {m: r.metrics[f"dev_{m}"] for m in METRICS}, r.best_epoch,
                   pred.oof, pred.dev, pred.test, True)


@dataclass
class CVData:
    """What every fold of a cross-validation reads: the datasets, the features, the pool of labelled videos."""

    cfg: RunConfig
    train: str
    test: str
    folds: int
    plan: object  # experiments.tasks.TaskPlan
    device: object  # torch.device
    indexes: dict
    features: list
    pool: object  # LabelledSplit: the labelled videos folded
    report: object  # the test dataset's dev split
    predicted: object  # its test split
    key: str  # what makes two cross-validations the same (the cv_key tag)


def open_cv(cfg: RunConfig, train: str, test: str | None = None, folds: int = 5, data_root=None, with_dev: bool = False,
            progress: bool = True, echo: Echo = print) -> CVData:
    """The datasets checked, the features extracted (what is not cached yet) and read: everything but the folds' runs."""

    if len(cfg.data.target_names) > 1:  # the folds' summaries and out-of-fold predictions are of one target
        raise ConfigError(f"mem cv cross-validates one target, not data.targets ({', '.join(cfg.data.target_names)}): "
                          f"cross-validate each (data.target: NAME), or train them together with mem run")
    test = test or train
    for s in cfg.model.streams:
        if trains_itself(s):
            raise ConfigError(f"{s.encoder} trains itself on the training videos before it extracts: in cross-validation "
                              f"every fold would see the others' held-out videos; give its stream fine-tuned weights")
    plan = plan_task(None, train, test, "holdout")
    if with_dev and test == train:
        raise MemError(f"--with-dev: {train}'s dev split is the one reported for this pair; it cannot also be in the folds")
    plan = replace(plan, train_splits=("train", "dev") if with_dev else ("train",))
    device = resolve_device(cfg.train.device)
    indexes = open_datasets(plan, cfg, data_root, echo)
    features = prepare_features(plan, cfg, indexes, Selection([], [], "cross-validation"), device, progress, echo)
    read = lambda dataset, split, scored: read_split(indexes, features, dataset, split, scored, echo)  # noqa: E731

    pool = [read(train, s, True) for s in plan.train_splits]
    pool = LabelledSplit.concat(pool)
    # the labelled videos and their scores, and the features, are in the key too: if either changes (an edited
    # CSV, a video that now decodes, re-extracted features), finished folds are not reused for a different pool
    key = digest({"config": key_dict(cfg), "train": train, "test": test, "folds": folds, "with_dev": with_dev,
                  "data": str(resolve_root(data_root).resolve()),
                  "pool": digest([pool.ids, [round(float(x), 6) for x in pool.scores]]),
                  "features": [f.keys for f in features]})
    return CVData(cfg, train, test, folds, plan, device, indexes, features, pool, read(test, "dev", True),
                  read(test, "test", False), key)


def run_fold(data: CVData, seed: int, k: int, parent_id: str, echo: Echo = print, progress: bool = False) -> FoldRun:
    """Fold k of seed `seed`: trained on the other folds (selected on a holdout of them), an MLflow child of `parent_id`.
    `progress`: a bar over its epochs on the terminal."""

    cfg, pool, report, predicted, folds = data.cfg, data.pool, data.report, data.predicted, data.folds
    fold_of = stratified_folds(pool.scores, folds, seed)
    scfg = apply_overrides(cfg, [f"train.seed={seed}"])
    rest = np.flatnonzero(fold_of != k)
    held = np.random.default_rng(seed).permutation(rest)[: max(1, round(len(rest) * cfg.train.holdout_fraction))]
    fit_idx = np.setdiff1d(rest, held)
    own = np.flatnonzero(fold_of == k)
    splits = Splits(pool.subset(fit_idx), pool.subset(np.sort(held)), pool.subset(own), predicted)
    selection = Selection([], [], f"cv seed {seed} fold {k + 1}/{folds}: fit {len(fit_idx)}, select "
                                  f"{len(held)} (holdout of the other folds), out-of-fold {len(own)}")
    fold_plan = replace(data.plan, evaluate=(data.train, "train"))
    child_tags = {Tag.CV_KEY: data.key, Tag.CV_FOLD: f"{seed}:{k}", Tag.PARENT: parent_id, Tag.KIND: Kind.CV_FOLD}
    name = f"{cfg.name} {data.plan.pair} cv seed{seed} fold{k + 1}/{folds}"
    fold = {}

    def report_dev(log, model, outputs) -> None:  # the fold model's predictions of the reported split, logged too
        dev_pred = predict(model, report, device=data.device)
        log.run.write_predictions(record.REPORT_DEV, report.ids, dev_pred, report.scores)
        fold["pred"] = record.FoldPredictions(dict(zip(splits.dev.ids, outputs.dev_pred.tolist())),
                                              dict(zip(report.ids, dev_pred.tolist())),
                                              dict(zip(predicted.ids, outputs.test_pred.tolist())))
        log.run.write_fold_predictions(fold["pred"])

    with progress_bar(f"seed {seed} fold {k + 1}/{folds} epochs", scfg.train.epochs, progress, unit=None) as bar:
        result = train_and_log(fold_plan, scfg, data.indexes, data.features, splits, selection, data.device, child_tags,
                               name, progress=False, echo=echo, finish=report_dev,
                               wrap_epoch=lambda logged, log: lambda epoch: (logged(epoch), bar.advance(1)))
    pred = fold["pred"]
    return FoldRun(seed, k, result.run_id, result.metrics, result.best_epoch, pred.oof, pred.dev, pred.test)


def fold_lock(key: str, seed: int, fold: int):
    """runs/locks/cv/<key>-<seed>-<fold>.lock: held by the process training that fold (the OS frees it when that
    process ends, however it ends: a dead trainer's lock blocks nobody)."""

    return runs_dir() / "locks" / "cv" / f"{key}-{seed}-{fold}.lock"


def claim_fold(data: CVData, seed: int, k: int, parent_id: str, echo: Echo = print, wait: bool = True,
               since_ms: int = 0, progress: bool = False) -> FoldRun | None:
    """Fold (seed, k) under its lock: the run another process finished meanwhile (another `mem cv` of the same
    key), else trained here. With `wait` False, None when another process holds the fold."""

    waiting = lambda: echo(f"seed {seed} fold {k + 1}/{data.folds}: waiting for another process training it")  # noqa: E731
    with file_lock(fold_lock(data.key, seed, k), on_wait=waiting, wait=wait) as held:
        if not held:
            return None
        done = _finished_child(data.key, seed, k, since_ms)
        if done is not None:
            echo(f"seed {seed} fold {k + 1}/{data.folds}: trained by another process (run {done.run_id})")
            return done
        return run_fold(data, seed, k, parent_id, echo, progress)


def _adopt(done: FoldRun, parent_id: str) -> None:
    """Nest a reused fold run under this parent, unless it belongs to a live or finished cross-validation (a
    concurrent one's: its parent lists it too)."""
    record.adopt(done.run_id, parent_id)


def fold_task(cfg: RunConfig, train: str, test: str, folds: int, data_root, with_dev: bool, seed: int, k: int,
              parent_id: str, echo: Echo = print, since_ms: int = 0, progress: bool = False) -> FoldRun:
    """One fold on its own (a Ray task): the cross-validation's data read from the shared cache, then the fold
    trained under its lock (or found trained by another process)."""
    data = open_cv(cfg, train, test, folds, data_root, with_dev, False, echo)
    return claim_fold(data, seed, k, parent_id, echo, since_ms=since_ms, progress=progress)


def run_cv(cfg: RunConfig, train: str, test: str | None = None, folds: int = 5, seeds: tuple[int, ...] = (0,),
           data_root=None, with_dev: bool = False, progress: bool = True, echo: Echo = print,
           rerun: bool = False, ray=None) -> CVResult:
    """Cross-validate `cfg` on `train`'s labelled videos; log the folds and the summary to MLflow.

    `ray`: each missing (seed, fold) is a Ray task (`fold_task`, experiments/executor.py) under the parent run
    made here, after the features were extracted here; the same folds, tags and figures as without. A failed fold is
    reported in one line, the others go on, then the cv stops with one error.
    """

    if ray is not None:
        check_cluster(ray)
    data = open_cv(cfg, train, test, folds, data_root, with_dev, progress, echo)
    plan, pool, test = data.plan, data.pool, data.test
    if progress:
        echo(f"{len(pool)} labelled {train} videos in {folds} folds x {len(seeds)} seed(s); starting the MLflow runs")
    experiment = plan.experiment_name
    selection = (f"cross-validation: {folds} folds stratified on score over {len(pool)} labelled {train} videos "
                 f"({'+'.join(plan.train_splits)}); each fold's model selected on a holdout of the other folds")
    tags = {**record.identity_tags(Kind.CV, task=plan.task, train=train, test=test, pair=plan.pair, cfg=cfg,
                                   selection=selection, keys=record.feature_keys(data.features)),  # the folds' features
            Tag.CV_KEY: data.key, Tag.CV_FOLDS: folds, Tag.CV_SEEDS: ",".join(map(str, seeds))}
    since_ms = time.time_ns() // 1_000_000 if rerun else 0  # --rerun: only fold runs started from now on count
    with record.RecordWriter(experiment, f"{cfg.name} cv{folds} {plan.pair}", tags) as parent:
        parent.params({"cv.folds": folds, "cv.seeds": ",".join(map(str, seeds)), "cv.with_dev": with_dev,
                       "derived.n_labelled": len(pool)})
        tasks = _fold_tasks(data, seeds, data_root, with_dev, parent.run_id, since_ms, ray is not None)
        outcomes = execute(tasks, ray, done=partial(_done_fold, data.key, since_ms), echo=echo, progress=progress,
                           finished=lambda t, run: run.reused or _echo_fold(run, folds, echo))
        raise_failures(outcomes, "fold run")
        runs = [o.result if isinstance(o, Earlier) else o for o in outcomes]  # in (seed, fold) order, as the tasks
        for r in runs:
            if r.reused:
                _adopt(r, parent.run_id)
        summary, refit = _summarise(runs, pool, data.report, data.predicted, parent, evaluate)
    return CVResult(parent.run_id, experiment, runs, summary, refit)


def _fold_tasks(data: CVData, seeds: tuple[int, ...], data_root, with_dev: bool, parent_id: str, since_ms: int,
                on_ray: bool) -> list[Task]:
    """One task per (seed, fold), its key. Here a fold is claimed under its lock, shared with another `mem cv` of the
    same key (first each fold no other process is training, then, waiting for them, the others: reused once finished,
    trained if not); on Ray (`fold_task`) each worker reads the data from the shared cache and waits for its lock."""

    root = str(resolve_root(data_root).resolve())
    tasks = []
    for seed in seeds:
        for k in range(data.folds):
            call = (partial(fold_task, data.cfg, data.train, data.test, data.folds, root, with_dev, seed, k, parent_id,
                            since_ms=since_ms) if on_ray else partial(claim_fold, data, seed, k, parent_id, since_ms=since_ms))
            tasks.append(Task(f"seed {seed} fold {k + 1}/{data.folds}", call, (seed, k), tuple(data.cfg.plugins),
                              claims=not on_ray))
    return tasks


def _done_fold(key: str, since_ms: int, task: Task) -> Earlier | None:
    """The executor's `done`: the fold's finished run (seed, fold = the task's key)."""
    run = _finished_child(key, *task.key, since_ms)
    return None if run is None else Earlier(run, run.run_id)


def _echo_fold(run: FoldRun, folds: int, echo: Echo) -> FoldRun:
    echo(f"seed {run.seed} fold {run.fold + 1}/{folds}: SROCC {run.metrics['srocc']:.4f}  PLCC {run.metrics['plcc']:.4f}  "
         f"MSE {run.metrics['mse']:.4f}  (best epoch {run.best_epoch}, run {run.run_id})")
    return run


def _summarise(runs: list[FoldRun], pool, report, predicted, parent, evaluate) -> tuple[dict[str, float], int]:
    """Per-fold mean and sd, pooled out-of-fold metrics with intervals, the fold models' mean predictions; logged."""

    summary = {}
    for m in METRICS:
        values = [r.metrics[m] for r in runs]
        summary[f"cv_{m}_mean"] = statistics.fmean(values)
        summary[f"cv_{m}_sd"] = statistics.stdev(values) if len(values) > 1 else 0.0
    y = pool.scores.astype(float)
    oof = np.array([np.mean([r.oof[v] for r in runs if v in r.oof]) for v in pool.ids])  # averaged over seeds
    for m, fn in (("srocc", srocc), ("plcc", plcc), ("mse", mse)):
        summary[f"oof_{m}"] = fn(y, oof)
        summary[f"oof_{m}_ci_low"], summary[f"oof_{m}_ci_high"] = bootstrap_interval(y, oof, per_row(fn))
    dev = np.array([np.mean([r.dev[v] for r in runs]) for v in report.ids])
    test = np.array([np.mean([r.test[v] for r in runs]) for v in predicted.ids])
    summary.update({f"dev_{k}": v for k, v in evaluate(report.scores, dev).items()})
    refit = int(statistics.median(r.best_epoch for r in runs))
    parent.metrics(summary)
    parent.tags({Tag.REFIT_EPOCHS: refit, Tag.BEST_EPOCH: refit, Tag.CHILDREN: ",".join(r.run_id for r in runs)})
    parent.write_predictions(record.OOF, pool.ids, oof, y)
    parent.write_predictions(record.DEV, report.ids, dev, report.scores)
    parent.write_predictions(record.TEST, predicted.ids, test)
    parent.write_folds([{"seed": r.seed, "fold": r.fold, "run_id": r.run_id, "best_epoch": r.best_epoch, **r.metrics}
                        for r in runs])
    return summary, refit
