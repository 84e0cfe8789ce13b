"""`mem run` as stages: plan -> open and check datasets -> prepare each stream's features -> fit ->
evaluate and predict -> log. Each stage takes and returns plain values and can be called alone (by
`mem grid`, tests, cross-validation or a cluster worker); MLflow is written by the log stage only
(plus an epoch callback while fitting).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from mediaeval_mem.config import RunConfig, StreamCfg
from mediaeval_mem.core.errors import DataError
from mediaeval_mem.core.runtime import resolve_device
from mediaeval_mem.core.threads import with_threads
from mediaeval_mem.datasets import DatasetIndex, VideoItem, open_dataset
from mediaeval_mem.datasets.catalog import find_declared
from mediaeval_mem.encoders import ENCODERS
from mediaeval_mem.experiments.run_log import RunLog
from mediaeval_mem.experiments.tasks import TaskPlan, plan_task
from mediaeval_mem.features.captions import stream_source
from mediaeval_mem.features.extract import extract_features
from mediaeval_mem.features.store import FeatureStore
from mediaeval_mem.models import HEADS, build_model
from mediaeval_mem.training.batches import LabelledSplit, predict
from mediaeval_mem.training.closed_form import fit_closed_form
from mediaeval_mem.training.loop import seed_everything, train_model
from mediaeval_mem.training.metrics import evaluate_targets
from mediaeval_mem.training.trainers import TRAINERS, PrepareContext
from mediaeval_mem.training.weights import with_weights

Echo = Callable[[str], None]


# --------------------------------------------------------------------------- values passed between stages
@dataclass
class Selection:
    """Which training videos fit the model and which ones model selection watches."""

    fit: list[VideoItem]
    select: list[VideoItem]
    description: str  # recorded with the run


@dataclass
class StreamFeatures:
    """One stream's features, ready in the cache: its folder and key per dataset, and how its weights came."""

    stream: StreamCfg
    label: str  # the encoder's name, numbered if two streams share it
    weights: str | None
    folders: dict[str, Path] = field(default_factory=dict)  # dataset -> cache folder (one subfolder per split)
    keys: dict[str, dict] = field(default_factory=dict)  # dataset -> feature key
    prepared: object | None = None  # training.trainers.Prepared, where the encoder made its own weights first

    def store(self, dataset: str, split: str) -> FeatureStore:
        return FeatureStore(self.folders[dataset] / split)


@dataclass
class Splits:
    fit: LabelledSplit
    select: LabelledSplit | None  # None: a refit, which selects nothing
    dev: LabelledSplit  # the reported split: the test dataset's dev split
    test: LabelledSplit  # the predicted split: the test dataset's test split

    def __post_init__(self):
        """Every split must have the fit split's feature widths (precomputed features of another width, say)."""
        for name, split in (("select", self.select), ("dev", self.dev), ("test", self.test)):
            if split is not None and split.dims != self.fit.dims:
                raise DataError(f"the streams' feature widths differ between splits: train {self.fit.dims}, {name} "
                                f"{split.dims}; every dataset a run reads must give each stream the same width "
                                f"(precomputed features of another width?)")

    @property
    def sizes(self) -> dict[str, int]:
        return {"train": len(self.fit), "select": len(self.select or ()), "dev": len(self.dev), "test": len(self.test)}


@dataclass
class Outputs:
    metrics: dict[str, float]  # dev plcc / srocc / mse (the first target's), <target>_srocc ... (the others')
    dev_pred: np.ndarray
    test_pred: np.ndarray


@dataclass
class RunResult:
    run_id: str
    experiment: str
    plan: TaskPlan
    config: RunConfig
    metrics: dict[str, float]  # dev plcc / srocc / mse of the test dataset
    best_epoch: int
    epochs: int
    sizes: dict[str, int] = field(default_factory=dict)


# --------------------------------------------------------------------------- the stages
def open_checked(name: str, data_root, cfg: RunConfig, echo: Echo) -> DatasetIndex:
    """Open a dataset and refuse to train on broken files; missing videos are only warned about."""
    first, *more = cfg.data.target_names
    index = open_dataset(name, data_root, first, cfg.data.dev_fraction, cfg.data.split_seed, cfg.data.datasets,
                         tuple(more))
    missing = [p for p in index.problems if p.missing_video]
    other = [p for p in index.problems if p not in missing]
    if other:
        config = " --config CONFIG" if name in cfg.data.datasets else ""  # declared in the run config only
        raise DataError(
            f"{name} has {len(other)} problem(s) in its files, e.g. {other[0]}: "
            f"run `mem data check {name}{config}` for the full list"
        )
    if missing:
        echo(f"warning: {name}: {len(missing)} video file(s) missing (e.g. {missing[0].file}); they are left out")
    return index


def open_datasets(plan: TaskPlan, cfg: RunConfig, data_root, echo: Echo) -> dict[str, DatasetIndex]:
    """Every dataset the run reads, opened and checked; a split the run reads must hold videos."""
    indexes = {name: open_checked(name, data_root, cfg, echo) for name in plan.needed_splits()}
    for name, splits in plan.needed_splits().items():
        index = indexes[name]
        for split in splits:
            if not index.split(split):
                raise DataError(f"{name} ({index.layout} layout at {index.root}) has no {split} videos: "
                                f"the run reads its {split} split (see `mem data check {name}`)")
    return indexes


def holdout_ids(index: DatasetIndex, fraction: float, seed: int) -> set[str]:
    """The training videos held out for model selection: a seeded slice of the train split's videos."""
    ids = [it.video_id for it in index.split("train") if it.path is not None]
    perm = np.random.default_rng(seed).permutation(len(ids))
    return {ids[i] for i in perm[: max(1, int(round(len(ids) * fraction)))]}


def select_videos(plan: TaskPlan, indexes: dict[str, DatasetIndex], cfg: RunConfig) -> Selection:
    """Fit on the training split; select on a seeded holdout slice of it, or on the dev split (the paper's protocol)."""
    train = indexes[plan.train_dataset]
    items = [it for it in train.split("train") if it.path is not None]
    if cfg.train.select_on == "dev":
        dev = [it for it in indexes[plan.test_dataset].split("dev") if it.path is not None]
        return Selection(items, dev, f"dev: selected on the reported split ({plan.test_dataset} dev), the paper's protocol")
    held = holdout_ids(train, cfg.train.holdout_fraction, cfg.train.seed)
    return Selection([it for it in items if it.video_id not in held], [it for it in items if it.video_id in held],
                     f"holdout: {len(held)} of {len(items)} {plan.train_dataset} train videos (seed {cfg.train.seed})")


def prepare_features(plan: TaskPlan, cfg: RunConfig, indexes: dict[str, DatasetIndex], selection: Selection,
                     device: torch.device, progress: bool = True, echo: Echo = print) -> list[StreamFeatures]:
    """Each stream's features in the cache for every split the run reads: encoders that train first
    (their EncoderInfo.trainer) make their weights on the run's training videos, then everything not
    cached yet is extracted."""

    out = []
    for stream, label in zip(cfg.model.streams, stream_labels(cfg)):
        feats = StreamFeatures(stream, label, stream.weights)
        if trains_itself(stream):
            context = PrepareContext(indexes[plan.train_dataset], selection.fit, selection.select, cfg, device, echo,
                                     stream.encoder, stream.sampling)
            feats.prepared = TRAINERS[ENCODERS.info(stream.encoder).trainer](context)
            feats.weights = feats.prepared.weights
        _extract_stream(feats, plan, cfg, indexes, progress, echo)
        out.append(feats)
    return out


def stream_labels(cfg: RunConfig) -> list[str]:
    """Each stream's name in feature keys and the run's record: its encoder's, numbered where two streams share it."""
    names = [s.encoder for s in cfg.model.streams]
    return [n if names.count(n) == 1 else f"{n}.{i}" for i, n in enumerate(names)]


def trains_itself(stream: StreamCfg) -> bool:
    """Whether a stream's encoder is made on the run's training videos before it extracts (no weights given)."""

    return ENCODERS.info(stream.encoder).trainer is not None and not stream.weights


def _extract_stream(feats: StreamFeatures, plan: TaskPlan, cfg: RunConfig, indexes: dict[str, DatasetIndex],
                    progress: bool, echo: Echo) -> None:
    """Whatever of one stream's features is not cached yet, for every split the run reads."""

    for name, splits in plan.needed_splits().items():
        report = extract_features(indexes[name], feats.stream.encoder, splits, feats.weights,
                                  sampling=feats.stream.sampling, opts=cfg.extract, device=cfg.train.device,
                                  progress=progress, source=stream_source(feats.stream))
        feats.folders[name], feats.keys[name] = report.cache_dir, report.key
        for line in report.repairs():
            echo(line)


def extract_first(task: int | None, train: str, test: str, cfg: RunConfig, data_root=None, progress: bool = True,
                  echo: Echo = print) -> None:
    """A run's features into the cache ahead of the run (a cluster's driver, before its tasks only read them);
    a stream that trains itself first depends on the run's seed and is left to the run."""
    plan = plan_task(task, train, test, cfg.train.select_on)
    indexes = open_datasets(plan, cfg, data_root, echo)
    for stream in cfg.model.streams:
        if not trains_itself(stream):
            _extract_stream(StreamFeatures(stream, stream.encoder, stream.weights), plan, cfg, indexes, progress, echo)


def load_split(index: DatasetIndex, split: str, stores: list[FeatureStore], scored: bool, echo: Echo,
               only: set[str] | None = None, sampling: list[str] | None = None) -> LabelledSplit:
    """A split's cached features in every stream (of the videos in `only`, if given); videos without
    features (they failed to decode) are left out with a warning. `sampling`: each store's stream's
    (a segments:N stream picks its frames as batches are cut); None: every cached frame of each."""
    done = [store.done_ids() for store in stores]
    wanted = [it for it in index.split(split) if only is None or it.video_id in only]
    items = [it for it in wanted if all(it.video_id in d for d in done)]
    if len(items) < len(wanted):
        echo(f"warning: {index.name}/{split}: {len(wanted) - len(items)} video(s) have no features and are left out")
    if not items:
        raise DataError(f"{index.name}/{split}: no video has features in {stores[0].folder}")
    # (N,), or (N, K) for a read of K targets (data.targets): each video's score of each, in the index's order
    scores = None if not scored else np.array([it.scores(index.targets) if index.more_targets else it.score
                                               for it in items], np.float32)
    ids = [it.video_id for it in items]
    return LabelledSplit([store.load(ids) for store in stores], scores, tuple(sampling or ()))


def read_split(indexes: dict[str, DatasetIndex], features: list[StreamFeatures], dataset: str, split: str,
               scored: bool, echo: Echo = print, only: set[str] | None = None) -> LabelledSplit:
    """One split of `dataset` in every stream of `features` (of the videos in `only`, if given): `load_split` over
    the streams' stores, each cutting batches with its own sampling."""
    stores = [f.store(dataset, split) for f in features]
    return load_split(indexes[dataset], split, stores, scored, echo, only, [f.stream.sampling for f in features])


def load_splits(plan: TaskPlan, indexes: dict[str, DatasetIndex], features: list[StreamFeatures],
                selection: Selection, echo: Echo = print) -> Splits:
    """The fit, select, dev and test splits, read from the feature cache (memory-mapped)."""
    train, (test_ds, dev_split), test_split = plan.train_dataset, plan.evaluate, plan.predict[1]
    fit = read_split(indexes, features, train, "train", True, echo, {it.video_id for it in selection.fit})
    dev = read_split(indexes, features, test_ds, dev_split, True, echo)
    select = dev if plan.select == "dev" else read_split(indexes, features, train, "train", True, echo,
                                                         {it.video_id for it in selection.select})
    return Splits(fit, select, dev, read_split(indexes, features, test_ds, test_split, False, echo))


MIN_VIDEOS = 20  # fewer, and a Spearman's 95% interval is several tenths wide (±0.45 near zero at 20 videos)


def warn_small_splits(splits: Splits, plan: TaskPlan, cfg: RunConfig, echo: Echo) -> None:
    """One line when the reported split or the selection split holds too few videos for its Spearman to mean much."""
    small = []
    if len(splits.dev) < MIN_VIDEOS:
        small.append(f"the reported split ({plan.test_dataset} {plan.evaluate[1]}) has {len(splits.dev)}: add videos to it")
    if splits.select is not None and splits.select is not splits.dev and len(splits.select) < MIN_VIDEOS:
        small.append(f"the selection split (a holdout of {plan.train_dataset} train) has {len(splits.select)}: raise "
                     f"train.holdout_fraction (now {cfg.train.holdout_fraction:g}) or train on more videos")
    if small:
        echo(f"warning: too few videos for a Spearman to mean much (under {MIN_VIDEOS}, its 95% interval is several "
             f"tenths wide): " + "; ".join(small))


def _training_line(cfg: RunConfig, splits: Splits, run_id: str) -> str:
    """What the fit stage is about to do, said before it starts (its first epoch can take minutes)."""

    if HEADS.info(cfg.model.head) is not None:  # ridge, svr: no epochs
        return f"fitting {cfg.model.head} on {len(splits.fit)} videos (inner cross-validation); MLflow run {run_id}"
    epochs = f"{cfg.train.epochs} epoch{'s' if cfg.train.epochs != 1 else ''}"
    return (f"training on {len(splits.fit)} videos, at most {epochs}, selecting on "
            f"{len(splits.select or ())}; MLflow run {run_id}")


def fit(cfg: RunConfig, splits: Splits, device: torch.device, on_epoch=None):
    """Build the model from the features' widths (initial weights follow the seed) and train it: (model, TrainResult)."""

    seed_everything(cfg.train.seed)
    model = build_model(cfg.model, splits.fit.dims, len(cfg.data.target_names))
    closed = HEADS.info(cfg.model.head)
    if closed is not None:  # ridge, svr: fitted by scikit-learn, hyperparameters by inner CV (models/baselines.py)
        # the fit videos only: the inner CV selects, and the selection split may be the reported one (select_on dev)
        return model, fit_closed_form(model, splits.fit, cfg.train, closed.fit, device)
    return model, train_model(model, splits.fit, splits.select, cfg.train, device, on_epoch)


@with_threads("train")  # the small model's forward passes: latency-bound like its training
def evaluate_and_predict(model, splits: Splits, device: torch.device, targets: tuple[str, ...] = ()) -> Outputs:
    """Metrics on the dev split, predictions for the dev and test splits. `targets`: the run's (data.targets), whose
    model predicts (N, K): each target's metrics (training/metrics.py `evaluate_targets` names them)."""

    dev_pred = predict(model, splits.dev, device=device)
    return Outputs(evaluate_targets(splits.dev.scores, dev_pred, targets), dev_pred,
                   predict(model, splits.test, device=device))


# --------------------------------------------------------------------------- the whole run
def train_and_log(plan: TaskPlan, cfg: RunConfig, indexes: dict[str, DatasetIndex], features: list[StreamFeatures],
                  splits: Splits, selection: Selection, device: torch.device, tags: dict[str, str] | None = None,
                  name: str | None = None, honest_dev: bool = True, progress: bool = True, echo: Echo = print,
                  announce: bool = False, wrap_epoch=None, finish=None) -> RunResult:
    """The fit, evaluate and log stages of one run: an MLflow run opened (tags, config, feature identities), the model
    fitted (each epoch logged, and printed when `progress`), the dev and test splits predicted, all of it logged.
    Every run that trains goes through here: `mem run`, refit, a cv fold, a sweep trial.

    `announce`: say what fitting is about to do first. Hooks: `wrap_epoch(logged, log)` returns the epoch
    callback given the one that logs (a sweep reports to Tune, a cv fold advances its bar); `finish(log, model,
    outputs)` logs more before the run closes (a cv fold's predictions of the reported split).

    >>> r = train_and_log(plan, cfg, indexes, features, splits, selection, device, {Tag.KIND: Kind.REFIT})
    >>> r.metrics["srocc"], r.run_id
    """
    if cfg.data.weight_column:  # the fit videos' loss weights, from a column of the training dataset
        closed = cfg.model.head if HEADS.info(cfg.model.head) is not None else None
        splits = replace(splits, fit=with_weights(splits.fit, indexes[plan.train_dataset], cfg.data.weight_column,
                                                  cfg.train.loss, closed))
    with RunLog(plan, cfg, indexes, features, splits, selection, tags, honest_dev=honest_dev, name=name) as log:
        if announce:
            echo(_training_line(cfg, splits, log.run_id))
        on_epoch = log.epoch_callback(progress, echo)
        model, result = fit(cfg, splits, device, on_epoch if wrap_epoch is None else wrap_epoch(on_epoch, log))
        outputs = evaluate_and_predict(model, splits, device, cfg.data.target_names)
        log.outputs(model, result, outputs)
        if finish is not None:
            finish(log, model, outputs)
    return RunResult(log.run_id, plan.experiment_name, plan, cfg, outputs.metrics, result.best_epoch,
                     len(result.history), splits.sizes)


def run_experiment(
    task: int | None,
    train: str,
    test: str,
    cfg: RunConfig,
    data_root: str | Path | None = None,
    progress: bool = True,
    echo: Echo = print,
    extra_tags: dict[str, str] | None = None,
    name: str | None = None,
) -> RunResult:
    """Train `cfg` on `train`, evaluate on `test`'s dev split, predict its test split, log it all to MLflow.
    `task` None: the pair's own (experiments/tasks.py `infer_task`). `name`: the MLflow run name (default
    run_log.run_name's: config, pair, seed).

    >>> r = run_experiment(1, "memento10k", "memento10k", load_config("configs/demo.yaml"), "data/demo")
    >>> r.metrics["srocc"], r.run_id
    """

    for dataset in (train, test):  # an unknown name fails here, in one line, before the task is judged
        find_declared(dataset, data_root, cfg.data.datasets)
    plan = plan_task(task, train, test, cfg.train.select_on)
    device = resolve_device(cfg.train.device)
    indexes = open_datasets(plan, cfg, data_root, echo)
    selection = select_videos(plan, indexes, cfg)
    features = prepare_features(plan, cfg, indexes, selection, device, progress, echo)
    if progress:  # what happens before epoch 1 takes a while (MLflow's import and run, the model): say so
        echo(f"reading the cached features, then starting the MLflow run and building the model ({cfg.name})")
    splits = load_splits(plan, indexes, features, selection, echo)
    warn_small_splits(splits, plan, cfg, echo)
    return train_and_log(plan, cfg, indexes, features, splits, selection, device, extra_tags, name, progress=progress,
                         echo=echo, announce=progress)
