"""`mem eval RUN_ID --test DATASET`: a trained run's model scored on another dataset, without training it again.

The run's record (run_log.read_trained) gives its resolved config, the weights each stream extracted
with and the trained model. DATASET's dev and test splits are extracted as the run extracted its own
(same encoders, weights, sampling and compute dtype, through the feature cache: what is cached is read
back), the model scores them, and the result is logged as a run of its own by the runner's log stage,
tagged `kind: eval` and `eval_of` (the source run), with what every run leaves (config.yaml,
features.json, dev and test predictions, the weights, figures): `mem results` lists it and
`mem package-submission` takes it. Its pair is the source's training dataset -> DATASET, hence its task
(Memento10k -> VideoMem is subtask 2).

    >>> r = evaluate_run("3f2c...", "videomem", "data/demo")
    >>> r.metrics["srocc"], r.run_id
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from mediaeval_mem.core.errors import MemError
from mediaeval_mem.experiments.runner import Echo, RunResult, Splits, StreamFeatures


def evaluate_run(run_id: str, test: str, data_root=None, progress: bool = True, echo: Echo = print) -> RunResult:
    """Evaluate run `run_id`'s model on `test`'s dev split and predict its test split; log it as an eval run."""
    from mediaeval_mem.core.runtime import resolve_device
    from mediaeval_mem.datasets.catalog import find_declared
    from mediaeval_mem.experiments.run_log import RunLog, read_trained
    from mediaeval_mem.experiments.runner import Selection, evaluate_and_predict, open_datasets
    from mediaeval_mem.experiments.tasks import plan_task
    from mediaeval_mem.models import build_model
    from mediaeval_mem.training.loop import TrainResult

    run = read_trained(run_id)
    cfg, train, kind = run.config, run.tags.get("train_dataset"), run.tags.get("kind")
    if kind == "eval":
        raise MemError(f"run {run_id} is itself an evaluation of run {run.tags.get('eval_of')}: evaluate that run")
    if not train:
        raise MemError(f"run {run_id} records no training dataset (its train_dataset tag): evaluate a run made by "
                       f"`mem run`")
    find_declared(test, data_root, cfg.data.datasets)  # an unknown name: one line, before anything is read
    plan = replace(plan_task(None, train, test, cfg.train.select_on), train_splits=())  # reads no training video
    device = resolve_device(cfg.train.device)
    indexes = open_datasets(plan, cfg, data_root, echo)
    features = extract_like(run, plan, indexes, progress, echo)
    splits = eval_splits(plan, indexes, features, echo)
    if splits.dev.dims != run.in_dims:
        raise MemError(f"run {run_id} was trained on features of widths {run.in_dims}; {test} gives {splits.dev.dims}: "
                       f"were the encoders' weights replaced since?")
    model = build_model(cfg.model, run.in_dims)
    model.load_state_dict(run.state)
    model.to(device)
    honest = not (test == train and kind == "refit")  # a refit trained on its dataset's dev split too
    best, epochs = int(run.tags.get("best_epoch") or 0), int(run.tags.get("epochs_run") or 0)
    selection = Selection([], [], f"eval: the model of run {run_id} (trained on {train}: {run.tags.get('selection', '?')}); "
                                  f"not trained again")
    with RunLog(plan, cfg, indexes, features, splits, selection, {"kind": "eval", "eval_of": run_id},
                honest_dev=honest) as log:
        outputs = evaluate_and_predict(model, splits, device)
        log.outputs(model, TrainResult(best_epoch=best), outputs)  # no history: 0 epochs run here
    if not honest:
        echo(f"note: run {run_id} is a refit that trained on {test}'s dev split: its dev figures are no estimate "
             f"(logged as refit_dev_*)")
    return RunResult(log.run_id, plan.experiment_name, plan, cfg, outputs.metrics, best, epochs, splits.sizes)


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
