"""`mem run ... --refit RUN_ID`: train on every labelled video for the epochs that selection found, for the submission.

Model selection needs videos the model does not train on; once it has chosen the number of epochs
(a run's best epoch, or a `mem cv` parent's median best epoch), the final model can train on all of
the training dataset's labelled videos (its train and dev splits: the challenge publishes both) for
that many epochs, with no early stopping, and predict the test split. The run is tagged `kind: refit`
with `refit_of` (the run that chose the epochs). Where the reported dev split is among the videos it
trained on (same-dataset pairs), its dev figures are no estimate: they are logged as `refit_dev_*`,
not `dev_*`, and `mem results` leaves the run out; the test predictions package like any run's.
"""

from __future__ import annotations

from dataclasses import replace

from mediaeval_mem.config import RunConfig, apply_overrides
from mediaeval_mem.core.errors import ConfigError, MemError
from mediaeval_mem.core.runtime import resolve_device
from mediaeval_mem.core.schema import flatten
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
from mediaeval_mem.tracking import record, resolve_run_id
from mediaeval_mem.tracking.record import Kind, Tag
from mediaeval_mem.training.batches import LabelledSplit


def check_source(run_id: str, cfg: RunConfig, train: str) -> None:
    """Refuse, in one line naming what differs, a source run that trained another model or on another dataset:
    the epochs it chose are not this refit's to use."""
    run = record.read_record(run_id)
    trained_on = run.train_dataset
    if trained_on and trained_on != train:
        raise ConfigError(f"run {run_id} trained on {trained_on}, this refit on {train}: refit with --train {trained_on}, "
                          f"or give a run (or cv) of {train}")
    diff = model_differences(source_config(run), cfg)
    if diff:
        raise ConfigError(f"run {run_id} trained another model than this refit's ({'; '.join(diff)}): refit with the "
                          f"source's --config and --set, or give a run of this model")


def source_config(run: record.RunRecord) -> RunConfig:
    """The config a run ran with; a cv parent's is its first fold's (the folds differ in train.seed only)."""
    if run.kind == Kind.CV and run.children:
        return record.read_config(run.children[0])
    return record.read_config(run.run_id)


def model_differences(source: RunConfig, cfg: RunConfig) -> list[str]:
    """'field: run X, refit Y' for each model field that differs; the weights of a stream whose encoder made its
    own in the source run (the fine-tuned I3D) are not compared: the refit is given them."""

    theirs, ours = flatten(source.model), flatten(cfg.model)
    made = {f"streams.{i}.weights" for i, s in enumerate(source.model.streams) if trains_itself(s)}
    return [f"model.{k}: run {theirs.get(k)!r}, refit {ours.get(k)!r}"
            for k in sorted(theirs.keys() | ours.keys()) if k not in made and theirs.get(k) != ours.get(k)]


def epochs_from(run_id: str) -> tuple[int, str]:
    """(epochs, how they were chosen) from a finished run: a cv parent's refit_epochs, or a run's best epoch."""
    run = record.read_record(run_id)
    if run.status != "FINISHED":
        raise MemError(f"run {run_id} is {run.status}: refit from a finished run")
    if run.kind == Kind.CV and int(run.tag(Tag.REFIT_EPOCHS) or 0) > 0:
        return int(run.tag(Tag.REFIT_EPOCHS)), f"the median best epoch of cross-validation {run_id}"
    if run.best_epoch > 0:
        return run.best_epoch, f"the best epoch of run {run_id}"
    raise MemError(f"run {run_id} records no best epoch (a closed-form baseline's?): refit a trained head from a "
                   f"`mem run` or `mem cv` run of it")


def run_refit(task: int | None, train: str, test: str, cfg: RunConfig, source: str, data_root=None,
              progress: bool = True, echo=print, name: str | None = None):
    """Train `cfg` on all of `train`'s labelled videos for the epochs `source` chose; log it as a refit run."""

    source = resolve_run_id(source)  # a whole id or a unique prefix: the refit records the whole one
    for s in cfg.model.streams:
        if trains_itself(s):
            raise ConfigError(f"{s.encoder} selects its own fine-tuning epochs on held-out videos; a refit has none: "
                              f"give its stream the fine-tuned weights of the run being refit")
    check_source(source, cfg, train)
    if HEADS.info(cfg.model.head) is not None:  # ridge, svr: no epochs; the inner CV chooses again on all videos
        epochs, chosen = 0, f"a closed-form {cfg.model.head} with its inner cross-validation"
    else:
        epochs, chosen = epochs_from(source)
        cfg = apply_overrides(cfg, [f"train.epochs={epochs}"])
    plan = replace(plan_task(task, train, test, "holdout"), train_splits=("train", "dev"))
    device = resolve_device(cfg.train.device)
    indexes = open_datasets(plan, cfg, data_root, echo)
    labelled = [it for s in plan.train_splits for it in indexes[train].split(s) if it.path is not None]
    selection = Selection(labelled, [], f"refit: all {len(labelled)} labelled {train} videos (train + dev), "
                                        f"{f'{epochs} epochs' if epochs else 'fitted'} ({chosen}); no model selection")
    features = prepare_features(plan, cfg, indexes, selection, device, progress, echo)

    read = lambda dataset, split, scored: read_split(indexes, features, dataset, split, scored, echo)  # noqa: E731
    splits = Splits(LabelledSplit.concat([read(train, s, True) for s in plan.train_splits]), None, read(test, "dev", True),
                    read(test, "test", False))
    honest = test != train  # else the reported dev split is among the videos it trains on
    tags = {Tag.KIND: Kind.REFIT, Tag.REFIT_OF: source, Tag.REFIT_EPOCHS: epochs}
    name = name or f"{cfg.name} {plan.pair} refit of {source[:8]}"
    result = train_and_log(plan, cfg, indexes, features, splits, selection, device, tags, name, honest, progress, echo)
    if not honest:
        echo(f"note: {test}'s dev split is among the videos this refit trained on: its dev figures are no estimate "
             f"(logged as refit_dev_*); the test predictions are what it is for")
    return result
