"""`mem predict RUN_ID VIDEO_OR_FOLDER ...`: a trained run scores any videos, no dataset layout needed.

The run's record (tracking/record.py) gives everything: its resolved config, the weights each stream
extracted with (a fine-tuned I3D's own), and the trained model.
The videos go through the same extraction as training (same encoders, preprocessing, sampling,
chunked decoding, per-video errors); their features are cached under the dataset name `predict`,
keyed on the folder, so scoring the same folder again is immediate.

    >>> result = predict_videos("3f2c...", [Path("my_videos/")])
    >>> result.scores[:2]
    [('holiday', PosixPath('my_videos/holiday.mp4'), 0.7312), ...]
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

from mediaeval_mem.core.errors import DataError, MemError
from mediaeval_mem.core.runtime import resolve_device
from mediaeval_mem.core.schema import digest
from mediaeval_mem.datasets import DatasetIndex, VideoItem
from mediaeval_mem.datasets.layouts import VIDEO_EXTS
from mediaeval_mem.encoders import ENCODERS
from mediaeval_mem.experiments.runner import load_split
from mediaeval_mem.features.captions import stream_source
from mediaeval_mem.features.extract import extract_features
from mediaeval_mem.features.inputs import input_kind
from mediaeval_mem.features.store import FeatureStore
from mediaeval_mem.models import build_model
from mediaeval_mem.tracking import resolve_run_id
from mediaeval_mem.tracking.record import read_trained
from mediaeval_mem.training.batches import predict

SPLIT = "predict"


@dataclass
class PredictResult:
    run_id: str
    config: str
    scores: list[tuple[str, Path, float]]  # (video id, file, score), in input order; score: the first target's
    failed: dict[str, str] = field(default_factory=dict)  # video id -> why it has no score
    # a run of several targets (data.targets): each other target's scores, in the order of `scores`
    more: dict[str, list[float]] = field(default_factory=dict)


def collect_videos(inputs: list[Path]) -> list[VideoItem]:
    """Video files given directly or found in the given folders (recursively); a video's id is its path
    relative to the files' common folder, without its extension (with it where two files differ only there)."""

    files: list[Path] = []
    for p in inputs:
        if p.is_dir():
            found = sorted(f for f in p.rglob("*") if f.suffix.lower() in VIDEO_EXTS and not f.name.startswith("."))
            if not found:
                raise DataError(f"{p}: no video files ({', '.join(VIDEO_EXTS)}) in this folder")
            files += found
        elif p.is_file():
            files.append(p)
        else:
            raise DataError(f"{p}: no such file or folder")
    files = list(dict.fromkeys(f.resolve() for f in files))
    root = Path(_common_folder(files))
    names = [f.relative_to(root).with_suffix("").as_posix() for f in files]
    ids = [n if names.count(n) == 1 else f.relative_to(root).as_posix() for f, n in zip(files, names)]
    return [VideoItem(vid, f) for vid, f in zip(ids, files)]


def files_digest(items: list[VideoItem]) -> str:
    """The identity of the files scored: ids, sizes, modification times (a changed file is extracted again)."""

    return digest([(it.video_id, it.path.stat().st_size, it.path.stat().st_mtime_ns) for it in items], 12)


def stream_weights(cfg, features, run_id: str) -> list[str | None]:
    """The weights each stream extracted with in the run (`features`: its record.FeatureRecord, which lists its
    streams since this was recorded)."""

    recorded = features.streams
    out = []
    for i, s in enumerate(cfg.model.streams):
        weights = recorded[i]["weights"] if recorded else s.weights
        if weights is None and ENCODERS.info(s.encoder).trainer is not None:
            raise MemError(f"run {run_id}: stream {i} ({s.encoder}) made its own weights, and this run does not "
                           f"record where: rerun it with this version of mem")
        out.append(weights)
    return out


def extract_as_run(index: DatasetIndex, splits: tuple[str, ...], run, i: int, weights: str | None,
                   extract: dict | None = None, device: str = "auto", progress: bool = True):
    """Stream `i`'s features of `splits` of `index`, extracted as run `run` (a TrainedRun) extracted its own: the
    run's extract options (its compute dtype, whatever 'auto' gives on this machine) updated by `extract`;
    refused where the result would differ from the run's (replaced weights, another preprocessing).
    Returns the ExtractReport."""

    stream = run.config.model.streams[i]
    recorded = _recorded_key(run.features, i, stream.encoder)
    opts = replace(run.config.extract, **(extract or {}))
    if recorded and "dtype" not in (extract or {}) and recorded.get("compute_dtype") in ("bf16", "fp32"):
        opts = replace(opts, dtype=recorded["compute_dtype"])
    report = extract_features(index, stream.encoder, splits, weights, sampling=stream.sampling, opts=opts,
                              device=device, progress=progress, source=stream_source(stream))
    _same_extraction(recorded, report.key, i, stream.encoder, run.run_id)
    return report


def predict_videos(run_id: str, inputs: list[Path], extract: dict | None = None, device: str = "auto",
                   progress: bool = True, echo: Callable[[str], None] = print) -> PredictResult:
    """Score the videos of `inputs` (files or folders) with the model of MLflow run `run_id` (or a unique prefix of it).

    Extraction runs with the run's own `extract` options (its compute dtype, hence the same features),
    updated by `extract` (e.g. {"batch_size": 16}).
    """

    run_id = resolve_run_id(run_id)
    run = read_trained(run_id)
    cfg, in_dims = run.config, run.in_dims
    # what a bare video file means for each stream (an input kind that needs more refuses here, before any work)
    notes = [input_kind(s.encoder).new_video_note(run_id, i, s) for i, s in enumerate(cfg.model.streams)]
    weights = stream_weights(cfg, run.features, run_id)
    items = collect_videos([Path(p) for p in inputs])
    root = Path(_common_folder([it.path for it in items]))
    # cached under runs/features/predict-<digest>/: the same files scored again are read back, changed ones are not
    index = DatasetIndex(f"{SPLIT}-{files_digest(items)}", root, "videos", cfg.data.target, {SPLIT: items})
    dev = resolve_device(device)
    stores, failed = [], {}
    for i, w in enumerate(weights):
        if notes[i]:
            echo(notes[i])
        report = extract_as_run(index, (SPLIT,), run, i, w, extract, device, progress)
        for s in report.splits:
            failed.update(s.failed)
        stores.append(FeatureStore(report.cache_dir / SPLIT))
    ok = [it for it in items if it.video_id not in failed]
    if not ok:
        raise DataError(f"none of the {len(items)} video(s) could be read: e.g. {next(iter(failed.values()))}")
    split = load_split(index, SPLIT, stores, False, echo, {it.video_id for it in ok},
                       [s.sampling for s in cfg.model.streams])
    if split.dims != in_dims:
        raise MemError(f"run {run_id} was trained on features of widths {in_dims}; these videos give {split.dims}: "
                       f"were the encoders' weights replaced since?")
    targets = cfg.data.target_names
    model = build_model(cfg.model, in_dims, len(targets))
    model.load_state_dict(run.state)
    scores = predict(model.to(dev), split, device=dev).reshape(len(split), -1)  # (N, K), a column per target
    paths = {it.video_id: it.path for it in items}
    return PredictResult(run_id, cfg.name, [(vid, paths[vid], float(s)) for vid, s in zip(split.ids, scores[:, 0])],
                         failed, {t: [float(s) for s in scores[:, k]] for k, t in enumerate(targets[1:], start=1)})


def _recorded_key(features, i: int, encoder: str) -> dict | None:
    """The feature key stream `i` had in the run (of its training dataset; None for runs that did not record it)."""
    return features.key_of(features.streams[i]["label"] if features.streams else encoder)


# What must match between the run's features and these videos' (the dataset and its captions may differ; a speech
# stream's transcriber and language, a generated one's VLM and prompt may not)
SAME = ("format", "encoder", "weights", "preprocess", "decode", "compute_dtype", "source")


def _same_extraction(recorded: dict | None, key: dict, i: int, encoder: str, run_id: str) -> None:
    """Refuse features made otherwise than the run's: replaced weights, another dtype or preprocessing."""

    key = json.loads(json.dumps(key, default=str))  # as the run recorded it (tuples become lists)
    fields = SAME + (() if key["sampling"].startswith(("captions:", "speech:", "generated:")) else ("sampling",))
    if input_kind(encoder).files_per_dataset:  # its key's weights identify one dataset's files (the run's
        fields = tuple(f for f in fields if f != "weights")  # folder, read for another dataset: other files)
    diff = [f for f in fields if recorded is not None and recorded.get(f) != key.get(f)]
    if diff:
        raise MemError(f"run {run_id}: stream {i} ({encoder}) was extracted with other {', '.join(diff)} "
                       f"({'; '.join(f'{f}: run {recorded.get(f)!r}, now {key.get(f)!r}' for f in diff)}): "
                       f"its scores would not be the run's")


def _common_folder(paths: list[Path]) -> str:
    import os

    return os.path.commonpath([str(p.parent) for p in paths])


def write_scores(result: PredictResult, out) -> None:
    """CSV: video_id, path, score, [score_<target> for a run's other targets,] run_id (every row says which run made it)."""
    import csv

    w = csv.writer(out, lineterminator="\n")
    w.writerow(["video_id", "path", "score", *(f"score_{t}" for t in result.more), "run_id"])
    for i, (vid, path, score) in enumerate(result.scores):
        w.writerow([vid, str(path), f"{score:.6f}", *(f"{v[i]:.6f}" for v in result.more.values()), result.run_id])

