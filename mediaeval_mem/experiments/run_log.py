"""The log stage of a run: everything `mem run` records in MLflow, in one place; and reading it back.

    with RunLog(plan, cfg, indexes, features, splits, selection) as log:   # params, config, tags
        model, result = fit(cfg, splits, device, log.epoch_callback())     # per-epoch metrics
        log.outputs(model, result, outputs)                                # metrics, predictions, weights, figures

A run that raises is marked FAILED (KILLED for Ctrl-C), one whose process dies is marked KILLED by
the next process that opens the store.

`read_config` and `read_trained` read what a finished run left (its resolved config, features.json, the
model's weights) for the commands that reuse a trained model (predict, eval, refit's checks).
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

from mediaeval_mem.config import RunConfig
from mediaeval_mem.core import threads
from mediaeval_mem.core.errors import MemError
from mediaeval_mem.core.schema import flatten, to_dict, to_yaml
from mediaeval_mem.datasets import DatasetIndex
from mediaeval_mem.experiments.tasks import TaskPlan
from mediaeval_mem.features.key import key_digest


def run_name(cfg: RunConfig, pair: str, overrides: tuple[str, ...] | list[str] = ()) -> str:
    """A run's readable default name: config, pair, seed, and the overrides that made it differ from its config
    file (`demo memento10k->memento10k seed0 model.head=ridge`)."""
    changed = [o for o in overrides if not o.replace(" ", "").startswith("train.seed=")]  # the seed is named already
    return " ".join([cfg.name, pair, f"seed{cfg.train.seed}", *changed])


def feature_keys(features) -> dict[str, dict]:
    """Each stream's feature key per dataset read, named `<dataset>.<stream label>` (runner.StreamFeatures)."""
    return {f"{name}.{f.label}": key for f in features for name, key in f.keys.items()}


def feature_key_tags(keys: dict[str, dict]) -> dict[str, str]:
    """The `feature_key.<dataset>.<stream>` tags of a run: the digest of each feature key it read."""
    return {f"feature_key.{n}": key_digest(k) for n, k in keys.items()}


class RunLog:
    def __init__(self, plan: TaskPlan, cfg: RunConfig, indexes: dict[str, DatasetIndex], features, splits, selection,
                 extra_tags: dict[str, str] | None = None, honest_dev: bool = True, name: str | None = None):
        self.plan, self.cfg, self.indexes, self.features, self.splits = plan, cfg, indexes, features, splits
        self.name = name or run_name(cfg, plan.pair)  # MLflow's run name
        self.selection, self.extra_tags = selection, extra_tags or {}
        # False where the model trained on the reported split (a same-dataset refit): its figures are no estimate
        self.dev_prefix = "dev" if honest_dev else "refit_dev"

    def __enter__(self) -> "RunLog":
        from mediaeval_mem.tracking import TrackedRun, git_commit

        plan, cfg, streams = self.plan, self.cfg, self.cfg.model.streams
        keys = feature_keys(self.features)
        tags = {
            "kind": "run", "task": plan.task, "train_dataset": plan.train_dataset, "test_dataset": plan.test_dataset,
            "pair": plan.pair,
            "config": cfg.name, "encoder": "+".join(s.encoder for s in streams),
            "aggregator": "+".join(s.aggregator for s in streams), "head": cfg.model.head,
            "selection": self.selection.description, "git_commit": git_commit(), **threads.describe(),
            **feature_key_tags(keys), **self.extra_tags,
        }
        self.run = TrackedRun(plan.experiment_name, self.name, tags)
        self.run_id = self.run.run_id
        try:
            self._start(keys)
        except BaseException as e:  # the run exists: end it as FAILED (or KILLED), never left RUNNING
            self.run.__exit__(type(e), e, e.__traceback__)
            raise
        return self

    def _start(self, keys: dict) -> None:
        """What is known before training: params, the resolved config, feature keys, the selection, fine-tuning."""
        run, cfg, plan = self.run, self.cfg, self.plan
        run.log_params({**flatten(cfg), "derived.in_dims": self.splits.fit.dims,
                        **{f"derived.n_{k}": v for k, v in self.splits.sizes.items()}})
        run.log_text(to_yaml(cfg), "config.yaml")
        streams = [{"label": f.label, "encoder": f.stream.encoder, "weights": f.weights} for f in self.features]
        run.log_text(json.dumps({"keys": keys, "streams": streams,  # weights: what extracted (a fine-tuned I3D's own)
                                 "datasets": {n: {"split_info": ix.split_info, "layout": ix.layout}
                                              for n, ix in self.indexes.items()}}, indent=1, default=str), "features.json")
        if self.splits.select is not None:
            run.log_text("\n".join(self.splits.select.ids) + "\n", "selection_ids.txt")
        for f in self.features:
            if f.prepared is not None:  # an encoder that made its own weights (the fine-tuned I3D)
                run.set_tags(f.prepared.tags)
                for log in f.prepared.history:
                    run.log_metrics({f"finetune_{k}": v for k, v in log.items() if k not in ("epoch", "seconds")},
                                    step=log["epoch"])
        def noted(note: str) -> int:  # videos of the splits read that a stream's manifests list under `note`
            return sum(len(f.store(n, s).manifest().get(note, {}))
                       for f in self.features for n, splits in plan.needed_splits().items() for s in splits)

        if padded := noted("padded"):
            run.set_tags({"clips_padded": padded})  # clip-level encoders: videos shorter than the network needs, repeated
        if uncaptioned := noted("uncaptioned"):
            run.set_tags({"uncaptioned_videos": uncaptioned})  # caption streams: videos given the empty caption

    def __exit__(self, exc_type, exc, tb) -> None:
        self.run.__exit__(exc_type, exc, tb)

    def epoch_callback(self, progress: bool = True, echo=print):
        """Log each epoch's metrics (and print a line when `progress`); a run without a selection split (a refit)
        has no selection figures to log or print."""
        from mediaeval_mem.training.losses import describe_loss

        loss = describe_loss(self.cfg.train.loss)
        selects = self.splits.select is not None

        def on_epoch(log) -> None:
            select = {"select_loss": log.select_loss, "select_srocc": log.select_srocc} if selects else {}
            self.run.log_metrics({"train_loss": log.train_loss, **select, "lr": log.lr, "epoch_seconds": log.seconds,
                                  "data_wait_share": log.data_wait_share}, step=log.epoch)
            if progress:
                shown = f"select {loss} {log.select_loss:.4f}  select SROCC {log.select_srocc:.4f}  " if selects else ""
                echo(f"epoch {log.epoch:3d}  lr {log.lr:.2e}  train {loss} {log.train_loss:.4f}  {shown}({log.seconds:.1f}s)")

        return on_epoch

    def outputs(self, model, result, outputs) -> None:
        """Dev metrics, dev and test predictions, figures, the weights (`model` None: the outputs are several models'
        mean, `mem eval` of a cv parent, and there are no weights of one model to log)."""
        from mediaeval_mem.models import count_trainable

        run, dev, test = self.run, self.splits.dev, self.splits.test
        run.log_params({**({} if model is None else {"derived.trainable_params": count_trainable(model)}), **result.params})
        run.log_metrics({f"{self.dev_prefix}_{k}": v for k, v in outputs.metrics.items()} | {"best_epoch": result.best_epoch})
        run.log_csv(["video_id", "ground_truth", "prediction"],
                    ((v, f"{t:.6f}", f"{p:.6f}") for v, t, p in zip(dev.ids, dev.scores, outputs.dev_pred)), "dev_predictions.csv")
        self._figures(outputs.dev_pred)
        run.log_csv(["video_id", "prediction"], ((v, f"{p:.6f}") for v, p in zip(test.ids, outputs.test_pred)),
                    "test_predictions.csv")
        if model is not None:
            run.log_state_dict({k: v.detach().cpu() for k, v in model.state_dict().items()},
                               metadata={"config": json.dumps(to_dict(self.cfg)), "in_dims": json.dumps(self.splits.fit.dims)})
        run.set_tags({"best_epoch": result.best_epoch, "epochs_run": len(result.history)})

    def _figures(self, pred) -> None:
        """Figure 2 (truth vs prediction) and Figure 3 (worst predictions) of this run, as artifacts."""
        from mediaeval_mem.experiments.report import Predictions, scatter_figure, worst_figure

        dev, plan = self.splits.dev, self.plan
        evaluated = self.indexes[plan.evaluate[0]]  # a dev split, or (cross-validation) the training videos
        paths = {it.video_id: it.path for items in evaluated.splits.values() for it in items}
        preds = Predictions(f"{self.cfg.name}\n{plan.train_dataset} -> {plan.test_dataset}", dev.ids, dev.scores, pred, paths)
        with tempfile.TemporaryDirectory() as tmp:
            self.run.log_file(scatter_figure([preds], Path(tmp) / "scatter.png"), "figures")
            self.run.log_file(worst_figure(preds, Path(tmp) / "worst.png"), "figures")


# --------------------------------------------------------------------------- reading a finished run back
@dataclass
class TrainedRun:
    """A finished run's trained model and what made it."""

    run_id: str
    config: RunConfig  # config.yaml: the resolved config it ran with
    features: dict  # features.json: feature keys per dataset and stream, each stream's weights
    state: dict  # model.safetensors
    in_dims: list[int]  # each stream's feature width, from the weights' metadata


# kinds of run that hold no single trained model, and what to use instead
NO_MODEL = {
    "cv": "a cross-validation parent: its folds' models have no single model of their own; use its refit "
          "(`mem run ... --refit {run_id}`) or one fold's run (its `children` tag)",
    "ensemble": "an ensemble: it combines its members' predictions and has no model of its own; use one of its members",
}


def read_config(run_id: str) -> RunConfig:
    """The resolved config a run ran with (its config.yaml)."""
    import yaml

    from mediaeval_mem.config import config_from_dict
    from mediaeval_mem.tracking import read_artifact_text

    return config_from_dict(yaml.safe_load(read_artifact_text(run_id, "config.yaml")), f"run {run_id} config.yaml")


def read_trained(run_id: str) -> TrainedRun:
    """A finished run's model, config and features.json; MemError in one line for any other run."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file, safe_open

    from mediaeval_mem.tracking import download_artifact, get_run, read_artifact_text

    run = get_run(run_id)
    if run.info.status != "FINISHED":
        raise MemError(f"run {run_id} is {run.info.status}, not FINISHED: it has no trained model")
    kind = run.data.tags.get("kind", "")
    if kind in NO_MODEL:
        raise MemError(f"run {run_id} is {NO_MODEL[kind].format(run_id=run_id)}")
    cfg = read_config(run_id)
    features = json.loads(read_artifact_text(run_id, "features.json"))
    with tempfile.TemporaryDirectory() as tmp:
        weights = download_artifact(run_id, "model.safetensors", tmp)
        try:
            with safe_open(str(weights), "pt") as f:
                in_dims = json.loads(f.metadata()["in_dims"])
            state = load_file(str(weights))
        except (SafetensorError, KeyError, ValueError, OSError) as e:
            raise MemError(f"run {run_id}: its model.safetensors cannot be read ({e})") from None
    return TrainedRun(run_id, cfg, features, state, in_dims)
