"""`mem run`: features (extracted where not cached) -> train -> evaluate on dev -> predict test -> MLflow."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from mediaeval_mem.config import RunConfig, flatten, to_dict, to_yaml
from mediaeval_mem.datasets import DatasetIndex, open_dataset
from mediaeval_mem.errors import DataError
from mediaeval_mem.features.extract import ExtractOptions, extract_features
from mediaeval_mem.features.key import key_digest
from mediaeval_mem.features.store import FeatureStore
from mediaeval_mem.tasks import TaskPlan, plan_task
from mediaeval_mem.training.batches import LabelledSplit


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


def open_checked(name: str, data_root, cfg: RunConfig, echo: Callable[[str], None]) -> DatasetIndex:
    """Open a dataset and refuse to train on broken files; missing videos are only warned about."""
    index = open_dataset(name, data_root, cfg.data.target, cfg.data.dev_fraction, cfg.data.split_seed)
    missing = [p for p in index.problems if p.missing_video]
    other = [p for p in index.problems if p not in missing]
    if other:
        raise DataError(
            f"{name} has {len(other)} problem(s) in its files, e.g. {other[0]}: "
            f"run `mem data check {name}` for the full list"
        )
    if missing:
        echo(f"warning: {name}: {len(missing)} video file(s) missing (e.g. {missing[0].file}); they are left out")
    return index


def load_split(index: DatasetIndex, split: str, stores: list[FeatureStore], scored: bool, echo) -> LabelledSplit:
    """A split's cached features in every stream; videos without features (failed to decode) are left out."""
    done = [store.done_ids() for store in stores]
    items = [it for it in index.split(split) if all(it.video_id in d for d in done)]
    if len(items) < len(index.split(split)):
        echo(f"warning: {index.name}/{split}: {len(index.split(split)) - len(items)} video(s) have no features and are left out")
    if not items:
        raise DataError(f"{index.name}/{split}: no video has features in {stores[0].folder}")
    scores = np.array([it.score for it in items], np.float32) if scored else None
    ids = [it.video_id for it in items]
    return LabelledSplit([store.load(ids) for store in stores], scores)


def holdout_ids(index: DatasetIndex, fraction: float, seed: int) -> set[str]:
    """The training videos held out for model selection: a seeded slice of the train split's videos."""
    ids = [it.video_id for it in index.split("train") if it.path is not None]
    perm = np.random.default_rng(seed).permutation(len(ids))
    return {ids[i] for i in perm[: max(1, int(round(len(ids) * fraction)))]}


def split_rows(train: LabelledSplit, held: set[str]) -> tuple[LabelledSplit, LabelledSplit]:
    """(fit, select) rows of `train` by membership in `held`."""
    inside = np.array([vid in held for vid in train.ids])
    return train.subset(np.flatnonzero(~inside)), train.subset(np.flatnonzero(inside))


def run_experiment(
    task: int,
    train: str,
    test: str,
    cfg: RunConfig,
    data_root: str | Path | None = None,
    progress: bool = True,
    echo: Callable[[str], None] = print,
    extra_tags: dict[str, str] | None = None,
) -> RunResult:
    """Train `cfg` on `train`, evaluate on `test`'s dev split, predict its test split, log it all to MLflow.

    >>> r = run_experiment(1, "memento10k", "memento10k", load_config("configs/demo.yaml"), "data/demo")
    >>> r.metrics["srocc"], r.run_id
    """
    from mediaeval_mem.models import build_model, count_trainable
    from mediaeval_mem.models.model import check_compatible, streams_of
    from mediaeval_mem.runtime import resolve_device
    from mediaeval_mem.tracking import TrackedRun, git_commit
    from mediaeval_mem.training.loop import predict, seed_everything, train_model
    from mediaeval_mem.training.metrics import evaluate

    plan = plan_task(task, train, test, cfg.train.select_on)
    streams = streams_of(cfg)
    for encoder, _, aggregator, _, where in streams:
        check_compatible(encoder, aggregator, where)  # before any extraction
    needed = {plan.train_dataset: set(plan.train_splits)}
    needed.setdefault(plan.test_dataset, set()).update({plan.evaluate[1], plan.predict[1]})
    f = cfg.features
    opts = ExtractOptions(sampling=f.sampling, batch_size=f.batch_size, dtype=f.dtype, workers=f.workers, device=cfg.train.device)
    device = resolve_device(cfg.train.device)
    indexes = {name: open_checked(name, data_root, cfg, echo) for name in needed}
    held = holdout_ids(indexes[train], cfg.train.holdout_fraction, cfg.train.seed)
    weights_of = [w for _, w, *_ in streams]
    finetuned = None
    if any(e == "i3d-finetune" and not w for e, w, *_ in streams):  # make the fine-tuned I3D first
        from mediaeval_mem.training.finetune import finetune_i3d

        items = [it for it in indexes[train].split("train") if it.path is not None]
        fit_items = [it for it in items if it.video_id not in held]
        select_items = [it for it in items if it.video_id in held] if cfg.train.select_on == "holdout" else \
            [it for it in indexes[test].split("dev") if it.path is not None]
        finetuned = finetune_i3d(indexes[train], fit_items, select_items, cfg, device, echo)
        weights_of = [str(finetuned.checkpoint) if e == "i3d-finetune" and not w else w for e, w, *_ in streams]
    folders, keys = {}, {}  # folders[(dataset, stream)] = the feature cache folder
    for name, splits in needed.items():
        for i, (encoder, *_) in enumerate(streams):
            weights = weights_of[i]
            report = extract_features(indexes[name], encoder, tuple(s for s in ("train", "dev", "test") if s in splits),
                                      weights, opts=opts, progress=progress)
            folders[name, i], keys[f"{name}.{encoder}"] = report.cache_dir, report.key
            for line in report.repairs():
                echo(line)

    def stores(name: str, split: str) -> list[FeatureStore]:
        return [FeatureStore(folders[name, i] / split) for i in range(len(streams))]

    train_all = load_split(indexes[train], "train", stores(train, "train"), True, echo)
    dev = load_split(indexes[test], "dev", stores(test, "dev"), True, echo)
    test_split = load_split(indexes[test], "test", stores(test, "test"), False, echo)
    if cfg.train.select_on == "holdout":
        fit, select = split_rows(train_all, held)
        selection = f"holdout: {len(select)} of {len(train_all)} {train} train videos (seed {cfg.train.seed})"
    else:
        fit, select = train_all, dev
        selection = f"dev: selected on the reported split ({test} dev), the paper's protocol"

    seed_everything(cfg.train.seed)  # the initial weights follow the seed too
    model = build_model(cfg, train_all.dims)
    sizes = {"train": len(fit), "select": len(select), "dev": len(dev), "test": len(test_split)}
    tags = {
        "task": task, "train_dataset": train, "test_dataset": test, "pair": plan.pair, "config": cfg.name,
        "encoder": "+".join(e for e, *_ in streams), "aggregator": cfg.model.aggregator, "head": cfg.model.head, "selection": selection,
        "git_commit": git_commit(), **{f"feature_key.{n}": key_digest(k) for n, k in keys.items()},
        **(extra_tags or {}),
    }
    with TrackedRun(plan.experiment_name, f"{cfg.name} {plan.pair} seed{cfg.train.seed}", tags) as run:
        run.log_params({**flatten(cfg), "derived.in_dims": train_all.dims,
                        "derived.trainable_params": count_trainable(model), **{f"derived.n_{k}": v for k, v in sizes.items()}})
        run.log_text(to_yaml(cfg), "config.yaml")
        run.log_text(json.dumps({"keys": keys, "datasets": {n: {"split_info": ix.split_info, "layout": ix.layout}
                                 for n, ix in indexes.items()}}, indent=1, default=str), "features.json")
        run.log_text("\n".join(select.ids) + "\n", "selection_ids.txt")
        if finetuned is not None:
            run.set_tags({"finetune_checkpoint": finetuned.checkpoint, "finetune_best_epoch": finetuned.best_epoch,
                          "finetune_cached": finetuned.cached})
            for log in finetuned.history:
                run.log_metrics({f"finetune_{k}": v for k, v in log.items() if k not in ("epoch", "seconds")}, step=log["epoch"])
        padded = sum(len(FeatureStore(folders[n, i] / s).manifest().get("padded", {}))
                     for n, splits in needed.items() for i in range(len(streams)) for s in splits)
        if padded:
            run.set_tags({"clips_padded": padded})  # clip-level encoders: videos shorter than the network needs, repeated

        def on_epoch(log):
            run.log_metrics({"train_loss": log.train_loss, "select_loss": log.select_loss, "select_srocc": log.select_srocc,
                             "lr": log.lr, "epoch_seconds": log.seconds, "data_wait_share": log.data_wait_share}, step=log.epoch)
            if progress:
                echo(f"epoch {log.epoch:3d}  lr {log.lr:.2e}  train {cfg.train.loss} {log.train_loss:.4f}  "
                     f"select {cfg.train.loss} {log.select_loss:.4f}  select SROCC {log.select_srocc:.4f}  ({log.seconds:.1f}s)")

        result = train_model(model, fit, select, cfg.train, device, on_epoch)
        dev_pred = predict(model, dev, device=device)
        metrics = evaluate(dev.scores, dev_pred)
        run.log_metrics({f"dev_{k}": v for k, v in metrics.items()} | {"best_epoch": result.best_epoch})
        run.log_csv(["video_id", "ground_truth", "prediction"],
                    ((v, f"{t:.6f}", f"{p:.6f}") for v, t, p in zip(dev.ids, dev.scores, dev_pred)), "dev_predictions.csv")
        _log_figures(run, cfg, plan, indexes[test], dev, dev_pred)
        test_pred = predict(model, test_split, device=device)
        run.log_csv(["video_id", "prediction"], ((v, f"{p:.6f}") for v, p in zip(test_split.ids, test_pred)), "test_predictions.csv")
        run.log_state_dict({k: v.detach().cpu() for k, v in model.state_dict().items()},
                           metadata={"config": json.dumps(to_dict(cfg)), "in_dims": json.dumps(train_all.dims)})
        run.set_tags({"best_epoch": result.best_epoch, "epochs_run": len(result.history)})
    return RunResult(run.run_id, plan.experiment_name, plan, cfg, metrics, result.best_epoch, len(result.history), sizes)


def _log_figures(run, cfg: RunConfig, plan: TaskPlan, index: DatasetIndex, dev: LabelledSplit, pred: np.ndarray) -> None:
    """Figure 2 (truth vs prediction) and Figure 3 (worst predictions) of this run, as artifacts."""
    import tempfile

    from mediaeval_mem.report import Predictions, scatter_figure, worst_figure

    paths = {it.video_id: it.path for it in index.split("dev")}
    preds = Predictions(f"{cfg.name}\n{plan.train_dataset} -> {plan.test_dataset}", dev.ids, dev.scores, pred, paths)
    with tempfile.TemporaryDirectory() as tmp:
        run.log_file(scatter_figure([preds], Path(tmp) / "scatter.png"), "figures")
        run.log_file(worst_figure(preds, Path(tmp) / "worst.png"), "figures")
