"""`mem eval RUN_ID --test DATASET`: a trained run's model scored on another dataset, without training it again.

The run's record (run_log.read_trained) gives its resolved config, the weights each stream extracted
with and the trained model. DATASET's dev and test splits are extracted as the run extracted its own
(same encoders, weights, sampling and compute dtype, through the feature cache: what is cached is read
back), the model scores them, and the result is logged as a run of its own by the runner's log stage,
tagged `kind: eval` and `eval_of` (the source run), with what every run leaves (config.yaml,
features.json, dev and test predictions, the weights, figures): `mem results` lists it and
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
from mediaeval_mem.experiments.runner import Echo, RunResult, Splits, StreamFeatures


@dataclass
class Source:
    """The run evaluated: its tags, and its trained model, or a cv parent's fold models (their predictions averaged)."""

    run_id: str
    tags: dict[str, str]
    models: list  # of run_log.TrainedRun, the same config but for train.seed, the same features
    trained_on_dev: bool  # the models trained on its training dataset's dev split (a refit; a cv --with-dev)

    @property
    def first(self):
        return self.models[0]


def read_source(run_id: str) -> Source:
    """The trained model(s) of run `run_id`; MemError in one line where it has none."""
    from mediaeval_mem.experiments.run_log import read_trained
    from mediaeval_mem.tracking import get_run

    run = get_run(run_id)
    tags, kind = dict(run.data.tags), run.data.tags.get("kind")
    if kind == "eval":
        raise MemError(f"run {run_id} is itself an evaluation of run {tags.get('eval_of')}: evaluate that run")
    if kind == "cv":
        if run.info.status != "FINISHED" or not tags.get("children"):  # its folds are listed when they all finished
            raise MemError(f"cross-validation {run_id} is {run.info.status} without all its folds: finish it (run the "
                           f"same `mem cv` again) before evaluating it")
        models = [read_trained(child) for child in tags["children"].split(",")]
        return Source(run_id, tags, models, run.data.params.get("cv.with_dev") == "True")
    return Source(run_id, tags, [read_trained(run_id)], kind == "refit")


def evaluate_run(run_id: str, test: str, data_root=None, progress: bool = True, echo: Echo = print) -> RunResult:
    """Evaluate run `run_id`'s model on `test`'s dev split and predict its test split; log it as an eval run."""
    from mediaeval_mem.core.runtime import resolve_device
    from mediaeval_mem.datasets.catalog import find_declared
    from mediaeval_mem.experiments.run_log import RunLog
    from mediaeval_mem.experiments.runner import Selection, open_datasets
    from mediaeval_mem.experiments.tasks import plan_task
    from mediaeval_mem.training.loop import TrainResult

    from mediaeval_mem.tracking import resolve_run_id

    run_id = resolve_run_id(run_id)  # any unique prefix, as every command takes
    source = read_source(run_id)
    cfg, train = source.first.config, source.tags.get("train_dataset")
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
    best = int(source.tags.get("best_epoch") or 0)  # a cv parent's: its folds' median, which a refit would train
    epochs = int(source.tags.get("epochs_run") or best)
    made = f"the mean of the {len(source.models)} fold models of cross-validation {run_id}" \
        if source.tags.get("kind") == "cv" else f"the model of run {run_id}"
    selection = Selection([], [], f"eval: {made} (trained on {train}: {source.tags.get('selection', '?')}); "
                                  f"not trained again")
    with RunLog(plan, cfg, indexes, features, splits, selection, {"kind": "eval", "eval_of": run_id},
                honest_dev=honest, name=f"{cfg.name} {plan.pair} eval of {run_id[:8]}") as log:
        log.outputs(model, TrainResult(best_epoch=best), outputs)  # no history: 0 epochs run here
    if not honest:
        echo(f"note: run {run_id} trained on {test}'s dev split too: its dev figures here are no estimate (logged as "
             f"refit_dev_*)")
    return RunResult(log.run_id, plan.experiment_name, plan, cfg, outputs.metrics, best, epochs, splits.sizes)


def score(source: Source, splits: Splits, device):
    """(model, Outputs): the source's model on the dev and test splits; a cv parent's fold models averaged
    (model None: there is no one model)."""
    from mediaeval_mem.experiments.runner import Outputs, evaluate_and_predict
    from mediaeval_mem.models import build_model
    from mediaeval_mem.training.metrics import evaluate

    runs = []
    for trained in source.models:
        if splits.dev.dims != trained.in_dims:
            raise MemError(f"run {trained.run_id} was trained on features of widths {trained.in_dims}; the dataset "
                           f"evaluated gives {splits.dev.dims}: were the encoders' weights replaced since?")
        model = build_model(trained.config.model, trained.in_dims).to(device)
        model.load_state_dict(trained.state)
        runs.append((model, evaluate_and_predict(model, splits, device)))
    if len(runs) == 1:
        return runs[0]
    # (folds, N) -> (N,): the mean in float64, as the cv parent averages its folds' predictions
    dev, test = (np.mean([getattr(o, name).astype(np.float64) for _, o in runs], axis=0) for name in ("dev_pred", "test_pred"))
    return None, Outputs(evaluate(splits.dev.scores, dev), dev, test)


def extract_like(run, plan, indexes, progress: bool, echo: Echo) -> list[StreamFeatures]:
    """Each stream's features of the splits `plan` reads, extracted as run `run` extracted its own (cached ones are
    read back; another weights, preprocessing or dtype is refused)."""
    from mediaeval_mem.experiments.predict import extract_as_run, stream_weights
    from mediaeval_mem.experiments.runner import stream_labels

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
    from mediaeval_mem.experiments.runner import load_split

    def read(dataset: str, split: str, scored: bool):
        return load_split(indexes[dataset], split, [f.store(dataset, split) for f in features], scored, echo, None,
                          [f.stream.sampling for f in features])

    dev = read(*plan.evaluate, True)
    return Splits(dev.subset(np.arange(0)), None, dev, read(*plan.predict, False))
