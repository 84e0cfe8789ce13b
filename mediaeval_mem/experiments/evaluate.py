"""`mem eval RUN_ID --test DATASET`: a trained run's model scored on another dataset, without training it again.

The run's record (tracking/record.py read_trained) gives its resolved config, the weights each stream extracted
with and the trained model. DATASET's dev and test splits are extracted as the run extracted its own
(same encoders, weights, sampling and compute dtype, through the feature cache: what is cached is read
back), the model scores them, and the result is logged as a run of its own by the runner's log stage,
tagged `kind: eval` and `eval_of` (the source run), with what every run leaves (its config,
feature identities, dev and test predictions, the weights, figures): `mem results` lists it and
`mem package-submission` takes it. Its pair is the source's training dataset -> DATASET, hence its task
(Memento10k -> VideoMem is subtask 2). A `mem cv` parent is evaluated as it reports itself: its fold
models' mean prediction (that run logs the first fold's config and no weights of its own).

    >>> r = evaluate_run("3f2c...", "videomem", "data/demo")
    >>> r.metrics["srocc"], r.run_id
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from mediaeval_mem.core.errors import MemError
from mediaeval_mem.core.runtime import resolve_device
from mediaeval_mem.datasets.catalog import find_declared
from mediaeval_mem.experiments.predict import extract_as_run, stream_weights
from mediaeval_mem.experiments.run_log import RunLog
from mediaeval_mem.experiments.runner import (
    Echo,
    Outputs,
    RunResult,
    Selection,
    Splits,
    StreamFeatures,
    evaluate_and_predict,
    open_datasets,
    read_split,
    stream_labels,
)
from mediaeval_mem.experiments.tasks import plan_task
from mediaeval_mem.models import build_model
from mediaeval_mem.tracking import record, resolve_run_id
from mediaeval_mem.tracking.record import Kind, Tag
from mediaeval_mem.training.loop import TrainResult
from mediaeval_mem.training.metrics import evaluate_targets


@dataclass
class Source:
    """The run evaluated: its tags, and its trained model, or a cv parent's fold models (their predictions averaged)."""

    run: record.RunRecord
    models: list  # of record.TrainedRun, the same config but for train.seed, the same features
    trained_on_dev: bool  # the models trained on its training dataset's dev split (a refit; a cv --with-dev)

    @property
    def first(self):
        return self.models[0]


def read_source(run_id: str) -> Source:
    """The trained model(s) of run `run_id`; MemError in one line where it has none."""
    run = record.read_record(run_id)
    if run.kind == Kind.EVAL:
        raise MemError(f"run {run_id} is itself an evaluation of run {run.tag(Tag.EVAL_OF)}: evaluate that run")
    if run.kind == Kind.CV:
        if run.status != "FINISHED" or not run.children:  # its folds are listed when they all finished
            raise MemError(f"cross-validation {run_id} is {run.status} without all its folds: finish it (run the "
                           f"same `mem cv` again) before evaluating it")
        models = [record.read_trained(child) for child in run.children]
        return Source(run, models, run.params.get("cv.with_dev") == "True")
    return Source(run, [record.read_trained(run_id)], run.kind == Kind.REFIT)


def evaluate_run(run_id: str, test: str, data_root=None, progress: bool = True, echo: Echo = print) -> RunResult:
    """Evaluate run `run_id`'s model on `test`'s dev split and predict its test split; log it as an eval run."""

    run_id = resolve_run_id(run_id)  # any unique prefix, as every command takes
    source = read_source(run_id)
    cfg, train = source.first.config, source.run.train_dataset
    if not train:
        raise MemError(f"run {run_id} records no training dataset (its train_dataset tag): evaluate a run made by "
                       f"`mem run`")
    find_declared(test, data_root, cfg.data.datasets)  # an unknown name: one line, before anything is read
    plan = replace(plan_task(None, train, test, cfg.train.select_on), train_splits=())  # reads no training video
    device = resolve_device(cfg.train.device)
    indexes = open_datasets(plan, cfg, data_root, echo)
    features = extract_like(source.first, plan, indexes, progress, echo)
    splits = eval_splits(plan, indexes, features, echo)
    model, outputs = score(source, splits, device)
    honest = not (test == train and source.trained_on_dev)
    best = source.run.best_epoch  # a cv parent's: its folds' median, which a refit would train
    epochs = int(source.run.tag(Tag.EPOCHS_RUN) or best)
    made = f"the mean of the {len(source.models)} fold models of cross-validation {run_id}" \
        if source.run.kind == Kind.CV else f"the model of run {run_id}"
    selection = Selection([], [], f"eval: {made} (trained on {train}: {source.run.tag(Tag.SELECTION, '?')}); "
                                  f"not trained again")
    with RunLog(plan, cfg, indexes, features, splits, selection, {Tag.KIND: Kind.EVAL, Tag.EVAL_OF: run_id},
                honest_dev=honest, name=f"{cfg.name} {plan.pair} eval of {run_id[:8]}") as log:
        log.outputs(model, TrainResult(best_epoch=best), outputs)  # no history: 0 epochs run here
    if not honest:
        echo(f"note: run {run_id} trained on {test}'s dev split too: its dev figures here are no estimate (logged as "
             f"refit_dev_*)")
    return RunResult(log.run_id, plan.experiment_name, plan, cfg, outputs.metrics, best, epochs, splits.sizes)


def score(source: Source, splits: Splits, device):
    """(model, Outputs): the source's model on the dev and test splits; a cv parent's fold models averaged
    (model None: there is no one model)."""

    runs = []
    for trained in source.models:
        if splits.dev.dims != trained.in_dims:
            raise MemError(f"run {trained.run_id} was trained on features of widths {trained.in_dims}; the dataset "
                           f"evaluated gives {splits.dev.dims}: were the encoders' weights replaced since?")
        targets = trained.config.data.target_names
        model = build_model(trained.config.model, trained.in_dims, len(targets)).to(device)
        model.load_state_dict(trained.state)
        runs.append((model, evaluate_and_predict(model, splits, device, targets)))
    if len(runs) == 1:
        return runs[0]
    # (folds, N) -> (N,): the mean in float64, as the cv parent averages its folds' predictions
    dev, test = (np.mean([getattr(o, name).astype(np.float64) for _, o in runs], axis=0) for name in ("dev_pred", "test_pred"))
    return None, Outputs(evaluate_targets(splits.dev.scores, dev, source.models[0].config.data.target_names), dev, test)


def extract_like(run, plan, indexes, progress: bool, echo: Echo) -> list[StreamFeatures]:
    """Each stream's features of the splits `plan` reads, extracted as run `run` extracted its own (cached ones are
    read back; another weights, preprocessing or dtype is refused)."""

    cfg = run.config
    out = []
    for i, (stream, label, weights) in enumerate(zip(cfg.model.streams, stream_labels(cfg),
                                                     stream_weights(cfg, run.features, run.run_id))):
        feats = StreamFeatures(stream, label, weights)
        for name, splits in plan.needed_splits().items():
            report = extract_as_run(indexes[name], splits, run, i, weights, device=cfg.train.device, progress=progress)
            feats.folders[name], feats.keys[name] = report.cache_dir, report.key
            for line in report.repairs():
                echo(line)
        out.append(feats)
    return out


def eval_splits(plan, indexes, features: list[StreamFeatures], echo: Echo) -> Splits:
    """The dev and test splits of the evaluated dataset; nothing is fit (an empty fit split) or selected."""
    dev = read_split(indexes, features, *plan.evaluate, True, echo)
    return Splits(dev.subset(np.arange(0)), None, dev, read_split(indexes, features, *plan.predict, False, echo))
