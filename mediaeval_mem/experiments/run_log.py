"""The log stage of a run: what `mem run` (and refit, eval, a cv fold, a sweep trial) records, through the run's
record (tracking/record.py), plus the figures, which are made here.

    with RunLog(plan, cfg, indexes, features, splits, selection) as log:   # params, config, tags
        model, result = fit(cfg, splits, device, log.epoch_callback())     # per-epoch metrics
        log.outputs(model, result, outputs)                                # metrics, predictions, weights, figures

runner.train_and_log runs these steps. A run that raises is marked FAILED (KILLED for Ctrl-C), one whose
process dies is marked KILLED by the next process that opens the store.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from mediaeval_mem.config import RunConfig
from mediaeval_mem.core import threads
from mediaeval_mem.core.schema import flatten
from mediaeval_mem.datasets import DatasetIndex
from mediaeval_mem.experiments.report import Predictions, scatter_figure, worst_figure
from mediaeval_mem.experiments.tasks import TaskPlan
from mediaeval_mem.models import count_trainable
from mediaeval_mem.tracking import record
from mediaeval_mem.tracking.record import Kind, Tag
from mediaeval_mem.training.losses import describe_loss


def run_name(cfg: RunConfig, pair: str, overrides: tuple[str, ...] | list[str] = ()) -> str:
    """A run's readable default name: config, pair, seed, and the overrides that made it differ from its config
    file (`demo memento10k->memento10k seed0 model.head=ridge`)."""
    changed = [o for o in overrides if not o.replace(" ", "").startswith("train.seed=")]  # the seed is named already
    return " ".join([cfg.name, pair, f"seed{cfg.train.seed}", *changed])


class RunLog:
    def __init__(self, plan: TaskPlan, cfg: RunConfig, indexes: dict[str, DatasetIndex], features, splits, selection,
                 extra_tags: dict[str, str] | None = None, honest_dev: bool = True, name: str | None = None):
        self.plan, self.cfg, self.indexes, self.features, self.splits = plan, cfg, indexes, features, splits
        self.name = name or run_name(cfg, plan.pair)  # MLflow's run name
        self.selection, self.extra_tags = selection, extra_tags or {}
        # False where the model trained on the reported split (a same-dataset refit): its figures are no estimate
        self.dev_prefix = "dev" if honest_dev else "refit_dev"

    def __enter__(self) -> "RunLog":
        plan, cfg = self.plan, self.cfg
        keys = record.feature_keys(self.features)
        tags = {**record.identity_tags(Kind.RUN, task=plan.task, train=plan.train_dataset, test=plan.test_dataset,
                                       pair=plan.pair, cfg=cfg, selection=self.selection.description, keys=keys),
                **threads.describe(), **self.extra_tags}
        self.run = record.RecordWriter(plan.experiment_name, self.name, tags)
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
        run.params({**flatten(cfg), "derived.in_dims": self.splits.fit.dims,
                    **{f"derived.n_{k}": v for k, v in self.splits.sizes.items()}})
        run.write_config(cfg)
        streams = [{"label": f.label, "encoder": f.stream.encoder, "weights": f.weights} for f in self.features]
        run.write_features(record.FeatureRecord(keys, streams,  # weights: what extracted (a fine-tuned I3D's own)
                                                {n: {"split_info": ix.split_info, "layout": ix.layout}
                                                 for n, ix in self.indexes.items()}))
        if self.splits.select is not None:
            run.write_selection_ids(self.splits.select.ids)
        for f in self.features:
            if f.prepared is not None:  # an encoder that made its own weights (the fine-tuned I3D)
                run.tags(f.prepared.tags)
                for log in f.prepared.history:
                    run.metrics({f"finetune_{k}": v for k, v in log.items() if k not in ("epoch", "seconds")},
                                step=log["epoch"])
        def noted(note: str) -> int:  # videos of the splits read that a stream's manifests list under `note`
            return sum(len(f.store(n, s).manifest().get(note, {}))
                       for f in self.features for n, splits in plan.needed_splits().items() for s in splits)

        if padded := noted("padded"):
            run.tags({Tag.CLIPS_PADDED: padded})  # clip-level encoders: videos shorter than the network needs, repeated
        if uncaptioned := noted("uncaptioned"):
            run.tags({Tag.UNCAPTIONED: uncaptioned})  # caption streams: videos given the empty caption
        if no_speech := noted("no_speech"):
            run.tags({Tag.NO_SPEECH: no_speech})  # speech streams: videos given the empty transcript
        if silent := noted("silent"):
            run.tags({Tag.SILENT: silent})  # audio streams: videos without an audio track, encoded as silence

    def __exit__(self, exc_type, exc, tb) -> None:
        self.run.__exit__(exc_type, exc, tb)

    def epoch_callback(self, progress: bool = True, echo=print):
        """Log each epoch's metrics (and print a line when `progress`); a run without a selection split (a refit)
        has no selection figures to log or print."""

        loss = describe_loss(self.cfg.train.loss)
        selects = self.splits.select is not None

        def on_epoch(log) -> None:
            select = {"select_loss": log.select_loss, "select_srocc": log.select_srocc} if selects else {}
            self.run.metrics({"train_loss": log.train_loss, **select, "lr": log.lr, "epoch_seconds": log.seconds,
                              "data_wait_share": log.data_wait_share}, step=log.epoch)
            if progress:
                shown = f"select {loss} {log.select_loss:.4f}  select SROCC {log.select_srocc:.4f}  " if selects else ""
                echo(f"epoch {log.epoch:3d}  lr {log.lr:.2e}  train {loss} {log.train_loss:.4f}  {shown}({log.seconds:.1f}s)")

        return on_epoch

    def outputs(self, model, result, outputs) -> None:
        """Dev metrics, dev and test predictions, figures, the weights (`model` None: the outputs are several models'
        mean, `mem eval` of a cv parent, and there are no weights of one model to log)."""

        run, dev, test = self.run, self.splits.dev, self.splits.test
        run.params({**({} if model is None else {"derived.trainable_params": count_trainable(model)}), **result.params})
        run.metrics({f"{self.dev_prefix}_{k}": v for k, v in outputs.metrics.items()} | {"best_epoch": result.best_epoch})
        targets = self.cfg.data.target_names  # (N, K) predictions for K targets: a column each
        run.write_predictions(record.DEV, dev.ids, outputs.dev_pred, dev.scores, targets)
        self._figures(outputs.dev_pred)
        run.write_predictions(record.TEST, test.ids, outputs.test_pred, targets=targets)
        if model is not None:
            run.write_weights({k: v.detach().cpu() for k, v in model.state_dict().items()}, self.cfg, self.splits.fit.dims)
        run.tags({Tag.BEST_EPOCH: result.best_epoch, Tag.EPOCHS_RUN: len(result.history)})

    def _figures(self, pred) -> None:
        """Figure 2 (truth vs prediction) and Figure 3 (worst predictions) of this run, as artifacts."""

        dev, plan = self.splits.dev, self.plan
        truth = dev.scores if dev.scores.ndim == 1 else dev.scores[:, 0]  # several targets: the first one's figures
        pred = pred if pred.ndim == 1 else pred[:, 0]
        evaluated = self.indexes[plan.evaluate[0]]  # a dev split, or (cross-validation) the training videos
        paths = {it.video_id: it.path for items in evaluated.splits.values() for it in items}
        preds = Predictions(f"{self.cfg.name}\n{plan.train_dataset} -> {plan.test_dataset}", dev.ids, truth, pred, paths)
        with tempfile.TemporaryDirectory() as tmp:
            self.run.write_figures([scatter_figure([preds], Path(tmp) / "scatter.png"),
                                    worst_figure(preds, Path(tmp) / "worst.png")])
