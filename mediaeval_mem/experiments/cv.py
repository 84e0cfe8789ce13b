"""`mem cv CONFIG --train D [--test D2] --folds K [--seeds ...] [--group-by COLUMN] [--repeats R]`: K-fold
cross-validation over D's labelled videos.

Folds are stratified on the score and seeded: the videos sorted by score are cut into blocks of K and
each block's videos are dealt to the K folds in a seeded random order, so every fold spans the whole
score range. With `--group-by COLUMN` (a column of the dataset's CSV: channel, brand) no group is split
across folds: scikit-learn's StratifiedGroupKFold deals whole groups to the folds, balancing the score's
quantile bins (`SCORE_BINS`) across them (`grouped_folds`), so a brand's style never leaks into its own
test fold. `--repeats R` folds again with R fold seeds per model seed (`fold_seed`: repeat 0 is the seed's
own folding, as without --repeats); the parent reports the pooled out-of-fold SROCC of each repeat and
their mean and sd. For each (seed, fold) a model is trained on the other folds (model selection on a seeded
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

import math
import statistics
import time
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Callable

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold

from mediaeval_mem.config import RunConfig, apply_overrides
from mediaeval_mem.core.errors import ConfigError, MemError
from mediaeval_mem.core.io import file_lock
from mediaeval_mem.core.paths import data_root as resolve_root
from mediaeval_mem.core.paths import runs_dir
from mediaeval_mem.core.progress import progress_bar
from mediaeval_mem.core.runtime import resolve_device
from mediaeval_mem.core.schema import digest, key_dict
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
from mediaeval_mem.models import HEADS
from mediaeval_mem.tracking import record
from mediaeval_mem.tracking.record import Kind, Tag
from mediaeval_mem.training.batches import LabelledSplit, predict
from mediaeval_mem.training.bootstrap import bootstrap_interval, mse_rows, pearson_rows, spearman_rows
from mediaeval_mem.training.metrics import evaluate, mse, plcc, srocc
from mediaeval_mem.training.weights import column_weights

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


SCORE_BINS = 5  # quantile bins of the score that grouped folds balance (quintiles; fewer where videos are few)


def score_strata(scores: np.ndarray, bins: int, rng: np.random.Generator) -> np.ndarray:
    """(N,) bin in [0, bins) per video: quantile bins of the score (by rank, ties in stable order), each inner edge
    moved by a seeded draw of up to a quarter of a bin (so each bin keeps at least half its share of videos)."""
    n = len(scores)
    edges = (np.arange(1, bins) + rng.uniform(-0.25, 0.25, bins - 1)) * n / bins  # (bins - 1,) in ranks
    strata = np.empty(n, np.int64)
    strata[np.argsort(scores, kind="stable")] = np.searchsorted(edges, np.arange(n) + 0.5)
    return strata


def grouped_folds(scores: np.ndarray, groups: np.ndarray, k: int, seed: int, bins: int = SCORE_BINS) -> np.ndarray:
    """(N,) fold index in [0, k) per video: every group (a channel, a brand) in one fold, the folds stratified
    on the score's quantile bins (StratifiedGroupKFold, groups shuffled with `seed`).

    Five bins: the splitter can balance the folds only a whole group at a time, so a fine binning cannot be
    met (a channel of 20 ads spans every score level) and only makes its greedy choice noisier; quintiles
    still keep each fold from drawing mostly high or mostly low scores. Each bin holds at least k videos
    (fewer bins on a small pool), as the splitter asks. The bins' edges move a little with the seed: the
    splitter deals groups in order of how uneven their bin counts are and shuffles only ties, so with fixed
    edges most seeds give the same folding (12 channels of 28 videos, 5 folds: 4 distinct in 100 seeds).
    """
    if k < 2:
        raise ConfigError(f"--folds must be >= 2, got {k}")
    names = np.unique(groups)
    if len(names) < k:
        raise MemError(f"{len(names)} groups ({', '.join(map(str, names[:5]))}{', ...' if len(names) > 5 else ''}) "
                       f"are too few for {k} folds: lower --folds to {max(len(names), 2)} or less, or group by another column")
    strata = score_strata(scores, max(1, min(bins, len(scores) // (2 * k))), np.random.default_rng(seed))
    folds = np.full(len(scores), -1, np.int64)
    splitter = StratifiedGroupKFold(k, shuffle=True, random_state=seed)
    for f, (_, own) in enumerate(splitter.split(np.zeros(len(scores)), strata, groups)):
        folds[own] = f
    empty = [f + 1 for f in range(k) if not (folds == f).any()]
    if empty:  # a few large groups: some fold got none
        raise MemError(f"fold {empty[0]} of {k} got no group (the groups' sizes are too uneven): lower --folds")
    return folds


def fold_seed(seed: int, draw: int) -> int:
    """The seed of the `draw`-th folding tried for model seed `seed`: draw 0 folds as `seed` alone always did."""
    return seed if draw == 0 else int(np.random.SeedSequence([seed, draw]).generate_state(1)[0])


DRAWS_PER_REPEAT = 20  # fold seeds tried per repeat before distinct foldings are declared too few


def distinct_foldings(fold: Callable[[int], np.ndarray], seed: int, repeats: int) -> list[np.ndarray]:
    """`repeats` foldings for model seed `seed`, no two alike: `fold(fold_seed(seed, d))` for d = 0, 1, ..., a draw
    that repeats an earlier partition skipped: a few groups have few partitions (8 channels in 5 folds: 40 distinct
    in 100 seeds), and a folding drawn twice would train the same models again and shrink the sd."""
    found, seen = [], set()
    for d in range(DRAWS_PER_REPEAT * repeats):
        f = fold(fold_seed(seed, d))
        _, first = np.unique(f, return_index=True)  # the folds named by their first video: a relabelling is the same
        canon = tuple(np.argsort(np.argsort(first))[f])
        if canon not in seen:
            seen.add(canon)
            found.append(f)
            if len(found) == repeats:
                return found
    raise MemError(f"only {len(found)} distinct folding(s) of these videos in {DRAWS_PER_REPEAT * repeats} draws: "
                   f"lower --repeats to {len(found)}")


def pool_groups(items, ids: list[str], column: str, dataset: str) -> np.ndarray:
    """(N,) the `column` value of each pooled video (`items`: the dataset's VideoItems); a column no video has, or
    a video without a value, is refused in one line."""
    by_id = {it.video_id: it for it in items}
    values = [by_id[v].columns.get(column, "").strip() for v in ids]
    if not any(values):
        have = sorted({c for it in items for c in it.columns})
        raise ConfigError(f"--group-by {column}: {dataset} has no {column!r} column "
                          f"(its other columns: {', '.join(have) or 'none'}); add it to the dataset's CSV")
    missing = [v for v, g in zip(ids, values) if not g]
    if missing:
        raise MemError(f"--group-by {column}: {len(missing)} video(s) of {dataset} have no {column} "
                       f"({', '.join(missing[:3])}{', ...' if len(missing) > 3 else ''}): fill it in the dataset's CSV")
    return np.array(values, dtype=object)


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
    repeat: int = 0  # which folding (--repeats); 0: the seed's own


def fold_tag(seed: int, fold: int, repeat: int = 0) -> str:
    """The cv_fold tag of a fold run: 'seed:fold', ':repeat' added past repeat 0 (runs made before repeats keep theirs)."""
    return f"{seed}:{fold}" + (f":{repeat}" if repeat else "")


@dataclass
class CVResult:
    parent_id: str
    experiment: str
    folds: list[FoldRun]
    summary: dict[str, float] = field(default_factory=dict)  # cv_<m>_mean/_sd, oof_<m>, oof_<m>_ci_low/high, dev_<m>
    refit_epochs: int = 0


def _finished_child(key: str, seed: int, fold: int, since_ms: int = 0, repeat: int = 0) -> FoldRun | None:
    """A finished fold run of this cross-validation (started at `since_ms` or later), read back from MLflow
    (None if there is none)."""
    r = record.find_finished({Tag.CV_KEY: key, Tag.CV_FOLD: fold_tag(seed, fold, repeat)}, since_ms)
    if r is None:
        return None
    pred = record.read_fold_predictions(r.run_id)  # as the fold's trainer summarised them: a reused fold adds the same figures
    return FoldRun(seed, fold, r.run_id, {m: r.metrics[f"dev_{m}"] for m in METRICS}, r.best_epoch,
                   pred.oof, pred.dev, pred.test, True, repeat)


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
    groups: np.ndarray | None = None  # (N,) the pool's --group-by values; None: stratified folds
    group_by: str | None = None
    repeats: int = 1
    _foldings: dict = field(default_factory=dict, repr=False)  # seed -> its `repeats` foldings

    def fold_once(self, fseed: int) -> np.ndarray:
        """(N,) each pooled video's fold when folded with seed `fseed`."""
        if self.groups is None:
            return stratified_folds(self.pool.scores, self.folds, fseed)
        return grouped_folds(self.pool.scores, self.groups, self.folds, fseed)

    def fold_of(self, seed: int, repeat: int = 0) -> np.ndarray:
        """(N,) each pooled video's fold for model seed `seed` in repeat `repeat` (repeat 0: folded with `seed`)."""
        if repeat == 0:
            return self.fold_once(seed)
        if seed not in self._foldings:
            self._foldings[seed] = distinct_foldings(self.fold_once, seed, self.repeats)
        return self._foldings[seed][repeat]


def open_cv(cfg: RunConfig, train: str, test: str | None = None, folds: int = 5, data_root=None, with_dev: bool = False,
            progress: bool = True, echo: Echo = print, group_by: str | None = None, repeats: int = 1) -> CVData:
    """The datasets checked, the features extracted (what is not cached yet) and read: everything but the folds' runs.
    `group_by`: a column of `train` whose groups are never split across folds; `repeats`: foldings per seed."""

    if repeats < 1:
        raise ConfigError(f"--repeats must be >= 1, got {repeats}")

    if len(cfg.data.target_names) > 1:  # the folds' summaries and out-of-fold predictions are of one target
        raise ConfigError(f"mem cv cross-validates one target, not data.targets ({', '.join(cfg.data.target_names)}): "
                          f"cross-validate each (data.target: NAME), or train them together with mem run")
    test = test or train
    for s in cfg.model.streams:
        if trains_itself(s):
            raise ConfigError(f"{s.encoder} trains itself on the training videos before it extracts: in cross-validation "
                              f"every fold would see the others' held-out videos; give its stream fine-tuned weights (or choose its "
                              f"settings, e.g. lora.rank, with mem sweep on the holdout)")
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
    groups = None
    if group_by:
        groups = pool_groups([it for s in plan.train_splits for it in indexes[train].split(s)], pool.ids, group_by, train)
        grouped_folds(pool.scores, groups, folds, 0)  # too few groups: refused now, before any run starts
    data = CVData(cfg, train, test, folds, plan, device, indexes, features, pool, read(test, "dev", True),
                  read(test, "test", False), "", groups, group_by or None, repeats)
    if repeats > 1:
        data.fold_of(0, repeats - 1)  # too few distinct foldings: refused now too
    # the labelled videos and their scores, and the features, are in the key too: if either changes (an edited
    # CSV, a video that now decodes, re-extracted features), finished folds are not reused for a different pool
    # grouping and repeats enter only when set: a plain cross-validation's key does not depend on these options
    key = digest({"config": key_dict(cfg), "train": train, "test": test, "folds": folds, "with_dev": with_dev,
                  "data": str(resolve_root(data_root).resolve()),
                  "pool": digest([pool.ids, [round(float(x), 6) for x in pool.scores]]),
                  "features": [f.keys for f in features],
                  **({"group_by": group_by, "groups": digest(groups.tolist())} if group_by else {}),
                  **({"repeats": repeats} if repeats > 1 else {}),
                  **({"weights": digest(_pool_weights(cfg, indexes[train], plan.train_splits, pool.ids, train).tolist())}
                     if cfg.data.weight_column else {})})  # edited weight cells: not the same cross-validation
    return replace(data, key=key)


def _pool_weights(cfg: RunConfig, index, splits: tuple[str, ...], ids: list[str], train: str) -> np.ndarray:
    """(N,) the pool's loss weights (data.weight_column), for the key; a bad cell is refused here, before any fold."""
    return column_weights([it for s in splits for it in index.split(s)], ids, cfg.data.weight_column, train)


def run_fold(data: CVData, seed: int, k: int, parent_id: str, echo: Echo = print, progress: bool = False,
             repeat: int = 0) -> FoldRun:
    """Fold k of seed `seed` (in folding `repeat`): trained on the other folds (selected on a holdout of them), an
    MLflow child of `parent_id`. `progress`: a bar over its epochs on the terminal."""

    cfg, pool, report, predicted, folds = data.cfg, data.pool, data.report, data.predicted, data.folds
    fold_of = data.fold_of(seed, repeat)
    scfg = apply_overrides(cfg, [f"train.seed={seed}"])
    rest = np.flatnonzero(fold_of != k)
    held = np.random.default_rng(seed).permutation(rest)[: max(1, round(len(rest) * cfg.train.holdout_fraction))]
    fit_idx = np.setdiff1d(rest, held)
    own = np.flatnonzero(fold_of == k)
    splits = Splits(pool.subset(fit_idx), pool.subset(np.sort(held)), pool.subset(own), predicted)
    where = f"seed {seed}" + (f" repeat {repeat}" if repeat else "")
    selection = Selection([], [], f"cv {where} fold {k + 1}/{folds}: fit {len(fit_idx)}, select "
                                  f"{len(held)} (holdout of the other folds), out-of-fold {len(own)}")
    fold_plan = replace(data.plan, evaluate=(data.train, "train"))
    child_tags = {Tag.CV_KEY: data.key, Tag.CV_FOLD: fold_tag(seed, k, repeat), Tag.PARENT: parent_id,
                  Tag.KIND: Kind.CV_FOLD}
    name = f"{cfg.name} {data.plan.pair} cv seed{seed}{f' rep{repeat}' if repeat else ''} fold{k + 1}/{folds}"
    fold = {}

    def report_dev(log, model, outputs) -> None:  # the fold model's predictions of the reported split, logged too
        dev_pred = predict(model, report, device=data.device)
        log.run.write_predictions(record.REPORT_DEV, report.ids, dev_pred, report.scores)
        fold["pred"] = record.FoldPredictions(dict(zip(splits.dev.ids, outputs.dev_pred.tolist())),
                                              dict(zip(report.ids, dev_pred.tolist())),
                                              dict(zip(predicted.ids, outputs.test_pred.tolist())))
        log.run.write_fold_predictions(fold["pred"])

    closed = HEADS.info(scfg.model.head) is not None  # ridge, svr: fitted at once, no epochs to show
    with progress_bar(f"{where} fold {k + 1}/{folds} epochs", scfg.train.epochs, progress and not closed, unit=None) as bar:
        result = train_and_log(fold_plan, scfg, data.indexes, data.features, splits, selection, data.device, child_tags,
                               name, progress=False, echo=echo, finish=report_dev,
                               wrap_epoch=lambda logged, log: lambda epoch: (logged(epoch), bar.advance(1)))
    pred = fold["pred"]
    return FoldRun(seed, k, result.run_id, result.metrics, result.best_epoch, pred.oof, pred.dev, pred.test, False, repeat)


def fold_lock(key: str, seed: int, fold: int, repeat: int = 0):
    """runs/locks/cv/<key>-<seed>-<fold>[-r<repeat>].lock: held by the process training that fold (the OS frees it
    when that process ends, however it ends: a dead trainer's lock blocks nobody)."""

    return runs_dir() / "locks" / "cv" / f"{key}-{seed}-{fold}{f'-r{repeat}' if repeat else ''}.lock"


def claim_fold(data: CVData, seed: int, k: int, parent_id: str, echo: Echo = print, wait: bool = True,
               since_ms: int = 0, progress: bool = False, repeat: int = 0) -> FoldRun | None:
    """Fold (seed, k) of folding `repeat` under its lock: the run another process finished meanwhile (another
    `mem cv` of the same key), else trained here. With `wait` False, None when another process holds the fold."""

    where = f"seed {seed}" + (f" repeat {repeat}" if repeat else "") + f" fold {k + 1}/{data.folds}"
    waiting = lambda: echo(f"{where}: waiting for another process training it")  # noqa: E731
    with file_lock(fold_lock(data.key, seed, k, repeat), on_wait=waiting, wait=wait) as held:
        if not held:
            return None
        done = _finished_child(data.key, seed, k, since_ms, repeat)
        if done is not None:
            echo(f"{where}: trained by another process (run {done.run_id})")
            return done
        return run_fold(data, seed, k, parent_id, echo, progress, repeat)


def _adopt(done: FoldRun, parent_id: str) -> None:
    """Nest a reused fold run under this parent, unless it belongs to a live or finished cross-validation (a
    concurrent one's: its parent lists it too)."""
    record.adopt(done.run_id, parent_id)


def fold_task(cfg: RunConfig, train: str, test: str, folds: int, data_root, with_dev: bool, seed: int, k: int,
              parent_id: str, echo: Echo = print, since_ms: int = 0, progress: bool = False, group_by: str | None = None,
              repeats: int = 1, repeat: int = 0) -> FoldRun:
    """One fold on its own (a Ray task): the cross-validation's data read from the shared cache, then the fold
    trained under its lock (or found trained by another process)."""
    data = open_cv(cfg, train, test, folds, data_root, with_dev, False, echo, group_by, repeats)
    return claim_fold(data, seed, k, parent_id, echo, since_ms=since_ms, progress=progress, repeat=repeat)


def run_cv(cfg: RunConfig, train: str, test: str | None = None, folds: int = 5, seeds: tuple[int, ...] = (0,),
           data_root=None, with_dev: bool = False, progress: bool = True, echo: Echo = print,
           rerun: bool = False, ray=None, group_by: str | None = None, repeats: int = 1) -> CVResult:
    """Cross-validate `cfg` on `train`'s labelled videos; log the folds and the summary to MLflow.

    `group_by`: a column of `train` (channel, brand) whose groups no fold splits; `repeats`: R foldings per model
    seed (seeds x repeats x folds runs), the pooled out-of-fold SROCC reported per repeat with its mean and sd.

    `ray`: each missing (seed, fold) is a Ray task (`fold_task`, experiments/executor.py) under the parent run
    made here, after the features were extracted here; the same folds, tags and figures as without. A failed fold is
    reported in one line, the others go on, then the cv stops with one error.
    """

    if ray is not None:
        check_cluster(ray)
    data = open_cv(cfg, train, test, folds, data_root, with_dev, progress, echo, group_by, repeats)
    plan, pool, test = data.plan, data.pool, data.test
    grouped = (f", grouped by {group_by} ({len(np.unique(data.groups))} groups, none split)" if group_by else "")
    if progress:
        echo(f"{len(pool)} labelled {train} videos in {folds} folds{grouped} x {len(seeds)} seed(s)"
             f"{f' x {repeats} repeats' if repeats > 1 else ''}; starting the MLflow runs")
    experiment = plan.experiment_name
    selection = (f"cross-validation: {folds} folds stratified on score{grouped} over {len(pool)} labelled {train} "
                 f"videos ({'+'.join(plan.train_splits)})" + (f", folded {repeats} times per seed" if repeats > 1 else "")
                 + "; each fold's model selected on a holdout of the other folds")
    tags = {**record.identity_tags(Kind.CV, task=plan.task, train=train, test=test, pair=plan.pair, cfg=cfg,
                                   selection=selection, keys=record.feature_keys(data.features)),  # the folds' features
            Tag.CV_KEY: data.key, Tag.CV_FOLDS: folds, Tag.CV_SEEDS: ",".join(map(str, seeds))}
    since_ms = time.time_ns() // 1_000_000 if rerun else 0  # --rerun: only fold runs started from now on count
    with record.RecordWriter(experiment, f"{cfg.name} cv{folds} {plan.pair}", tags) as parent:
        parent.params({"cv.folds": folds, "cv.seeds": ",".join(map(str, seeds)), "cv.with_dev": with_dev,
                       "derived.n_labelled": len(pool), **({"cv.group_by": group_by} if group_by else {}),
                       **({"cv.repeats": repeats} if repeats > 1 else {})})
        tasks = _fold_tasks(data, seeds, data_root, with_dev, parent.run_id, since_ms, ray is not None)
        outcomes = execute(tasks, ray, done=partial(_done_fold, data.key, since_ms), echo=echo, progress=progress,
                           finished=lambda t, run: run.reused or _echo_fold(run, folds, echo))
        raise_failures(outcomes, "fold run")
        runs = [o.result if isinstance(o, Earlier) else o for o in outcomes]  # in (repeat, seed, fold) order, as the tasks
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
    for r in range(data.repeats):
        for seed in seeds:
            for k in range(data.folds):
                call = (partial(fold_task, data.cfg, data.train, data.test, data.folds, root, with_dev, seed, k, parent_id,
                                since_ms=since_ms, group_by=data.group_by, repeats=data.repeats, repeat=r) if on_ray
                        else partial(claim_fold, data, seed, k, parent_id, since_ms=since_ms, repeat=r))
                label = f"seed {seed}{f' repeat {r}' if r else ''} fold {k + 1}/{data.folds}"
                tasks.append(Task(label, call, (seed, k, r), tuple(data.cfg.plugins), claims=not on_ray))
    return tasks


def _done_fold(key: str, since_ms: int, task: Task) -> Earlier | None:
    """The executor's `done`: the fold's finished run (seed, fold, repeat = the task's key)."""
    seed, k, r = task.key
    run = _finished_child(key, seed, k, since_ms, r)
    return None if run is None else Earlier(run, run.run_id)


def _echo_fold(run: FoldRun, folds: int, echo: Echo) -> FoldRun:
    echo(f"seed {run.seed}{f' repeat {run.repeat}' if run.repeat else ''} fold {run.fold + 1}/{folds}: SROCC {run.metrics['srocc']:.4f}  PLCC {run.metrics['plcc']:.4f}  "
         f"MSE {run.metrics['mse']:.4f}  (best epoch {run.best_epoch}, run {run.run_id})")
    return run


def _sd(values: list[float]) -> float:
    """The sample sd of the folds' figures; NaN where one is NaN (a fold too small, or of one score, for a Spearman:
    statistics.stdev raises on a NaN), 0 for a single fold."""
    if len(values) < 2:
        return 0.0
    return statistics.stdev(values) if all(math.isfinite(v) for v in values) else float("nan")


def _summarise(runs: list[FoldRun], pool, report, predicted, parent, evaluate) -> tuple[dict[str, float], int]:
    """Per-fold mean and sd, pooled out-of-fold metrics with intervals, the fold models' mean predictions; logged."""

    summary = {}
    for m in METRICS:
        values = [r.metrics[m] for r in runs]
        summary[f"cv_{m}_mean"] = statistics.fmean(values)
        summary[f"cv_{m}_sd"] = _sd(values)
    y = pool.scores.astype(float)
    oof = np.array([np.mean([r.oof[v] for r in runs if v in r.oof]) for v in pool.ids])  # averaged over seeds
    for m, fn, rows in (("srocc", srocc, spearman_rows), ("plcc", plcc, pearson_rows), ("mse", mse, mse_rows)):
        summary[f"oof_{m}"] = fn(y, oof)
        summary[f"oof_{m}_ci_low"], summary[f"oof_{m}_ci_high"] = bootstrap_interval(y, oof, rows)  # all resamples at once
    summary.update(repeat_summary(runs, pool.ids, y))
    dev = np.array([np.mean([r.dev[v] for r in runs]) for v in report.ids])
    test = np.array([np.mean([r.test[v] for r in runs]) for v in predicted.ids])
    summary.update({f"dev_{k}": v for k, v in evaluate(report.scores, dev).items()})
    refit = int(statistics.median(r.best_epoch for r in runs))
    parent.metrics(summary)
    parent.tags({Tag.REFIT_EPOCHS: refit, Tag.BEST_EPOCH: refit, Tag.CHILDREN: ",".join(r.run_id for r in runs)})
    parent.write_predictions(record.OOF, pool.ids, oof, y)
    parent.write_predictions(record.DEV, report.ids, dev, report.scores)
    parent.write_predictions(record.TEST, predicted.ids, test)
    parent.write_folds([{"seed": r.seed, "fold": r.fold, **({"repeat": r.repeat} if r.repeat else {}), "run_id": r.run_id,
                         "best_epoch": r.best_epoch, **r.metrics} for r in runs])
    return summary, refit


def repeat_summary(runs: list[FoldRun], ids: list[str], y: np.ndarray) -> dict[str, float]:
    """With several foldings (--repeats): each repeat's pooled out-of-fold SROCC (its folds' predictions, averaged
    over seeds) as oof_srocc_r<i>, and their mean and sd (oof_srocc_repeats_mean/_sd); {} with one folding."""
    repeats = sorted({r.repeat for r in runs})
    if len(repeats) < 2:
        return {}
    out = {}
    for rep in repeats:
        mine = [r for r in runs if r.repeat == rep]
        oof = np.array([np.mean([r.oof[v] for r in mine if v in r.oof]) for v in ids])
        out[f"oof_srocc_r{rep}"] = srocc(y, oof)
    values = [out[f"oof_srocc_r{rep}"] for rep in repeats]
    out["oof_srocc_repeats_mean"], out["oof_srocc_repeats_sd"] = statistics.fmean(values), _sd(values)
    return out
