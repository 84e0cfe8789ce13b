"""Figures a person reads: ground truth against prediction (the paper's Figure 2, one panel per run) and
a sheet of the worst predictions, one frame each with predicted and true score (Figure 3).

Written by `mem report RUN_ID ...` and logged as artifacts of every run (figures/).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mediaeval_mem.core.errors import MemError
from mediaeval_mem.datasets import open_dataset
from mediaeval_mem.tracking import record, resolve_run_ids
from mediaeval_mem.tracking.record import Tag
from mediaeval_mem.training.metrics import evaluate
from mediaeval_mem.video import decode


@dataclass
class Predictions:
    label: str  # two lines: config, then pair ("paper-best\nmemento10k -> videomem")
    ids: list[str]
    truth: np.ndarray
    pred: np.ndarray
    paths: dict[str, Path | None]  # video id -> file, where the dataset could be found


def _plt():
    import matplotlib

    matplotlib.use("Agg")  # headless
    import matplotlib.pyplot as plt

    return plt


def scatter_figure(runs: list[Predictions], out: Path) -> Path:
    """One panel per run: predicted (y) against ground truth (x), the diagonal, PLCC and SROCC in the title."""

    plt = _plt()
    n = len(runs)
    cols = min(n, 4)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols, 4.6 * rows), squeeze=False)
    for ax, r in zip(axes.flat, runs):
        m = evaluate(r.truth, r.pred)
        ax.scatter(r.truth, r.pred, s=10, alpha=0.6, edgecolors="none")
        lo, hi = min(r.truth.min(), r.pred.min()), max(r.truth.max(), r.pred.max())
        ax.plot([lo, hi], [lo, hi], color="grey", lw=1, ls="--", label="prediction = truth")
        ax.set_xlabel("ground-truth memorability (dev)")
        ax.set_ylabel("predicted memorability")
        ax.set_title(f"{r.label}\nPLCC {m['plcc']:.3f}  SROCC {m['srocc']:.3f}  n={len(r.ids)}", fontsize=9)
        ax.legend(loc="upper left", fontsize=7)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def _frame(path: Path | None) -> np.ndarray | None:
    """The middle frame of a video, or None if it cannot be read."""

    if path is None:
        return None
    try:
        return decode(path, "uniform:1")[0].numpy()
    except MemError:
        return None


def worst_figure(run: Predictions, out: Path, k: int = 8) -> Path:
    """The k dev videos with the largest |prediction - truth|: middle frame, predicted and true score."""
    plt = _plt()
    err = np.abs(run.pred - run.truth)
    worst = np.argsort(-err)[:k]
    cols = min(len(worst), 4)
    rows = -(-len(worst) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 3.0 * rows + 0.6), squeeze=False)
    for ax, i in zip(axes.flat, worst):
        vid = run.ids[i]
        frame = _frame(run.paths.get(vid))
        if frame is not None:
            ax.imshow(frame)
        else:
            ax.text(0.5, 0.5, "frame unavailable", ha="center", va="center", transform=ax.transAxes)
        ax.set_title(f"video {vid}\npredicted {run.pred[i]:.3f}  (true {run.truth[i]:.3f})", fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
    for ax in list(axes.flat)[len(worst):]:
        ax.axis("off")
    fig.suptitle(f"Worst predictions: {run.label.replace(chr(10), ', ')}", fontsize=11)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def run_predictions(run_id: str, data_root=None) -> Predictions:
    """A run's dev predictions from MLflow, with the video files found through its logged feature keys."""

    run = record.read_record(run_id)
    rows = record.read_predictions(run_id, record.DEV).rows
    test = run.tag(Tag.TEST, "")
    paths: dict[str, Path | None] = {}
    roots = [data_root] if data_root else []
    try:  # where the features came from: the dataset folder is recorded in the feature key
        keys = record.read_features(run_id).keys
        roots += [str(Path(k["data"]).parent) for k in keys.values() if k.get("dataset") == test]
    except (MemError, KeyError, ValueError):
        pass
    for root in roots:
        try:
            paths = {it.video_id: it.path for it in open_dataset(test, root).split("dev")}
            break
        except MemError:
            continue
    label = f"{run.tag(Tag.CONFIG, '?')}\n{run.tag(Tag.TRAIN, '?')} -> {test}"
    return Predictions(label, [r["video_id"] for r in rows], np.array([float(r["ground_truth"]) for r in rows]),
                       np.array([float(r["prediction"]) for r in rows]), paths)


def scatter_name(run_ids: list[str]) -> str:
    """scatter-<run>[-<run>...].png, named by the runs it shows so that another report never overwrites it;
    past four runs: the first one's prefix and a digest of them all."""
    import hashlib

    if len(run_ids) <= 4:
        return "scatter-" + "-".join(r[:8] for r in run_ids) + ".png"
    digest = hashlib.sha256(",".join(run_ids).encode()).hexdigest()[:8]
    return f"scatter-{run_ids[0][:8]}-and-{len(run_ids) - 1}-more-{digest}.png"


def make_report(run_ids: list[str], out_dir: Path, data_root=None, k: int = 8) -> list[Path]:
    """scatter-<runs>.png (all runs in one figure) and worst-<run>.png (one per run) under out_dir; a run is given
    by its id or a unique prefix of it."""

    run_ids = resolve_run_ids(run_ids)
    runs = [run_predictions(r, data_root) for r in run_ids]
    written = [scatter_figure(runs, out_dir / scatter_name(run_ids))]
    for run_id, r in zip(run_ids, runs):
        written.append(worst_figure(r, out_dir / f"worst-{run_id[:8]}.png", k))
    return written
