"""The record of a run: what every kind of run leaves in MLflow, written and read by this module only.

A run (`mem run`), a refit, an evaluation, a cross-validation parent and its folds, a sweep trial and an ensemble
all leave the same kind of record: tags saying what it is (kind, name, task, pair, datasets, config, parent,
members or children), its resolved config (config.yaml), each stream's feature identity (features.json: the
feature keys read and the weights each stream extracted with), its dev/test (and out-of-fold) predictions, and
a model's weights with their metadata. The artifact file names and tag names are constants here only; every
other module writes through `RecordWriter` and reads through `read_record`, `read_config`, `read_features`,
`read_predictions`, `read_trained` and `find_finished`.

    with RecordWriter("Task 1: ...", "demo memento10k->memento10k seed0", tags) as rec:
        rec.write_config(cfg); rec.write_predictions(DEV, ids, pred, truth)
    read_predictions(rec.run_id, DEV).by_id()   # {video id: prediction}
"""

from __future__ import annotations

import csv
import io
import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from mediaeval_mem.config import RunConfig, config_from_dict
from mediaeval_mem.core.errors import MemError
from mediaeval_mem.core.schema import to_dict, to_yaml
from mediaeval_mem.features.key import key_digest
from mediaeval_mem.tracking.liveness import END_REASON
from mediaeval_mem.tracking.runs import TrackedRun, download_artifact, get_run, git_commit, read_artifact_text, search_runs
from mediaeval_mem.tracking.store import client

# --------------------------------------------------------------------------- artifact files
CONFIG = "config.yaml"  # the resolved config the run ran with
FEATURES = "features.json"  # FeatureRecord
SELECTION_IDS = "selection_ids.txt"  # the videos model selection watched, one a line
WEIGHTS = "model.safetensors"  # the trained model, metadata: its config and each stream's feature width
FOLD_PREDICTIONS = "fold_predictions.json"  # a cv fold's out-of-fold, report-dev and test predictions, full precision
FOLDS = "folds.json"  # a cv parent's folds: seed, fold, run id, best epoch, metrics
ENSEMBLE = "ensemble.json"  # an ensemble's method and members' weights
FIGURES = "figures"  # the folder of a run's figures

# which predictions: the reported (dev) split, the test split, a cv parent's out-of-fold predictions of the
# labelled videos, a cv fold's predictions of the test dataset's dev split (its own dev is its held-out fold)
DEV, TEST, OOF, REPORT_DEV = "dev", "test", "oof", "report_dev"
DEFAULT_TARGET = RunConfig().data.target
PREDICTION = "prediction"  # the first target's column; another target's is prediction_<target>
_PREDICTION_FILE = {DEV: "dev_predictions.csv", TEST: "test_predictions.csv", OOF: "oof_predictions.csv",
                    REPORT_DEV: "report_dev_predictions.csv"}


class Kind:
    """The `kind` tag: what made the run."""

    RUN, REFIT, EVAL, CV, CV_FOLD = "run", "refit", "eval", "cv", "cv-fold"
    ENSEMBLE, SWEEP_TRIAL = "ensemble", "sweep-trial"


class Tag:
    """The names of a run's tags."""

    KIND = "kind"
    TASK, PAIR, TRAIN, TEST = "task", "pair", "train_dataset", "test_dataset"
    CONFIG, ENCODER, AGGREGATOR, HEAD = "config", "encoder", "aggregator", "head"
    SELECTION, GIT_COMMIT = "selection", "git_commit"
    FEATURE_KEY = "feature_key."  # + `<dataset>.<stream label>`: the digest of the feature key read
    BEST_EPOCH, EPOCHS_RUN = "best_epoch", "epochs_run"
    CLIPS_PADDED, UNCAPTIONED = "clips_padded", "uncaptioned_videos"
    NO_SPEECH, SILENT = "no_speech_videos", "silent_videos"
    PARENT = "mlflow.parentRunId"  # MLflow's own: the UI nests a child under it
    REFIT_OF, REFIT_EPOCHS, EVAL_OF = "refit_of", "refit_epochs", "eval_of"
    CV_KEY, CV_FOLD, CV_FOLDS, CV_SEEDS, CHILDREN = "cv_key", "cv_fold", "cv_folds", "cv_seeds", "children"
    MEMBERS, WEIGHTS_FIT_ON = "members", "weights_fit_on"
    GRID_KEY, GRID = "grid_key", "grid"
    SWEEP, SWEEP_ID, SWEEP_TRIAL, STOPPED_EARLY = "sweep", "sweep_id", "sweep_trial", "sweep_stopped_early"
    END_REASON = END_REASON  # why a run ended KILLED (liveness.py writes it for a dead process's run)


# --------------------------------------------------------------------------- feature identity
def feature_key_name(dataset: str, label: str) -> str:
    """How features.json and the feature_key tags name one stream's key of one dataset."""
    return f"{dataset}.{label}"


def feature_keys(features) -> dict[str, dict]:
    """Each stream's feature key per dataset read (runner.StreamFeatures: `label`, `keys`), by feature_key_name."""
    return {feature_key_name(name, f.label): key for f in features for name, key in f.keys.items()}


def feature_key_tags(keys: dict[str, dict]) -> dict[str, str]:
    """The `feature_key.<dataset>.<stream>` tags of a run: the digest of each feature key it read."""
    return {f"{Tag.FEATURE_KEY}{n}": key_digest(k) for n, k in keys.items()}


@dataclass
class FeatureRecord:
    """features.json: what identifies the features a run read."""

    keys: dict[str, dict]  # feature_key_name(dataset, label) -> the feature key read
    streams: list[dict] | None = None  # per stream: label, encoder, weights (what extracted); None: an older run
    datasets: dict = field(default_factory=dict)  # dataset -> split_info, layout

    def key_of(self, label: str) -> dict | None:
        """The key stream `label` read (of the run's first dataset that has it), None where none is recorded."""
        return next((k for name, k in self.keys.items() if name.endswith(f".{label}")), None)

    def to_json(self) -> str:
        body = {"keys": self.keys, **({"streams": self.streams} if self.streams is not None else {}),
                "datasets": self.datasets}
        return json.dumps(body, indent=1, default=str)

    @classmethod
    def from_json(cls, text: str) -> "FeatureRecord":
        body = json.loads(text)
        return cls(body.get("keys", {}), body.get("streams"), body.get("datasets", {}))


# --------------------------------------------------------------------------- the typed record
@dataclass
class RunRecord:
    """A run as the store holds it: its identity and figures (tags, params, metrics); artifacts are read apart."""

    run_id: str
    name: str
    status: str
    experiment_id: str
    tags: dict[str, str]
    params: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)

    @classmethod
    def of(cls, run) -> "RunRecord":
        """From an MLflow Run."""
        return cls(run.info.run_id, run.info.run_name or "", run.info.status, run.info.experiment_id,
                   dict(run.data.tags), dict(run.data.params), dict(run.data.metrics))

    def tag(self, name: str, default: str | None = None) -> str | None:
        return self.tags.get(name, default)

    kind = property(lambda self: self.tags.get(Tag.KIND, Kind.RUN))
    task = property(lambda self: self.tags.get(Tag.TASK))
    pair = property(lambda self: self.tags.get(Tag.PAIR))
    train_dataset = property(lambda self: self.tags.get(Tag.TRAIN))
    test_dataset = property(lambda self: self.tags.get(Tag.TEST))
    config_name = property(lambda self: self.tags.get(Tag.CONFIG))
    encoder = property(lambda self: self.tags.get(Tag.ENCODER))
    aggregator = property(lambda self: self.tags.get(Tag.AGGREGATOR))
    head = property(lambda self: self.tags.get(Tag.HEAD))
    selection = property(lambda self: self.tags.get(Tag.SELECTION))
    git_commit = property(lambda self: self.tags.get(Tag.GIT_COMMIT))
    parent = property(lambda self: self.tags.get(Tag.PARENT))

    @property
    def best_epoch(self) -> int:
        """0 where none is recorded (a closed-form head)."""
        return int(self.tags.get(Tag.BEST_EPOCH) or 0)

    @property
    def children(self) -> list[str]:
        """A cv parent's fold runs (listed once they all finished)."""
        return self.tags[Tag.CHILDREN].split(",") if self.tags.get(Tag.CHILDREN) else []

    @property
    def members(self) -> list[str] | None:
        """An ensemble's member runs (None for any other run)."""
        return self.tags[Tag.MEMBERS].split(",") if Tag.MEMBERS in self.tags else None

    @property
    def feature_key_tags(self) -> dict[str, str]:
        return {k: v for k, v in self.tags.items() if k.startswith(Tag.FEATURE_KEY)}

    @property
    def dev_metrics(self) -> dict[str, float]:
        """The reported split's figures (`dev_plcc` ... without the prefix)."""
        return {k[4:]: v for k, v in self.metrics.items() if k.startswith("dev_")}


def experiment_name(run: RunRecord) -> str:
    """The name of the experiment a run belongs to."""
    return client().get_experiment(run.experiment_id).name


def read_record(run_id: str) -> RunRecord:
    """Run `run_id`'s record; MemError naming it if the store has none."""
    return RunRecord.of(get_run(run_id))


def find_runs(tags: dict[str, str], finished: bool = False, since_ms: int | None = None,
              experiments: list[str] | None = None) -> list[RunRecord]:
    """Runs whose tags have these values (only FINISHED ones, started at `since_ms` or later), newest first."""
    terms = [f"tags.{k} = '{v}'" for k, v in tags.items()]
    terms += ["attributes.status = 'FINISHED'"] if finished else []
    terms += [f"attributes.start_time >= {since_ms}"] if since_ms is not None else []
    return [RunRecord.of(r) for r in search_runs(experiments, filter_string=" and ".join(terms))]


def find_finished(tags: dict[str, str], since_ms: int | None = None) -> RunRecord | None:
    """The newest finished run with these tag values (started at `since_ms` or later), or None."""
    runs = find_runs(tags, finished=True, since_ms=since_ms)
    return runs[0] if runs else None


def finished_records(experiments: list[str] | None = None) -> list[RunRecord]:
    """Every finished run of the named experiments (default all), newest first."""
    return [RunRecord.of(r) for r in search_runs(experiments, filter_string="attributes.status = 'FINISHED'")]


# --------------------------------------------------------------------------- artifacts read back
def read_config(run_id: str) -> RunConfig:
    """The resolved config a run ran with (its config.yaml)."""
    import yaml


    return config_from_dict(yaml.safe_load(read_artifact_text(run_id, CONFIG)), f"run {run_id} {CONFIG}")


def read_targets(run_id: str) -> tuple[str, ...]:
    """The targets a run predicts, its first first (its predictions' `prediction` column): its config's data targets;
    an ensemble's, as it recorded them (an ensemble of an older version: its members' first target alone); a cv
    parent's, its first fold's (the folds differ in their seed only)."""
    try:
        return read_config(run_id).data.target_names
    except MemError:
        children = read_record(run_id).children
        if children:
            return read_config(children[0]).data.target_names
        body = json.loads(read_artifact_text(run_id, ENSEMBLE))  # neither: MemError naming the run and the file
        return tuple(body.get("targets") or (DEFAULT_TARGET,))


def read_features(run_id: str) -> FeatureRecord:
    """What identifies the features a run read (its features.json)."""
    return FeatureRecord.from_json(read_artifact_text(run_id, FEATURES))


@dataclass
class PredictionTable:
    """One predictions CSV of a run, as written: video_id, ground_truth (dev, oof), prediction."""

    source: str  # "run <id> <file>", for messages
    text: str

    @property
    def rows(self) -> list[dict[str, str]]:
        return list(csv.DictReader(io.StringIO(self.text)))

    @property
    def ids(self) -> list[str]:
        return [r["video_id"] for r in self.rows]

    @property
    def more_targets(self) -> list[str]:
        """The targets after the first whose predictions the CSV holds (prediction_<name> columns)."""
        header = next(csv.reader(io.StringIO(self.text)), [])
        return [h.removeprefix(PREDICTION + "_") for h in header if h.startswith(PREDICTION + "_")]

    def by_id(self, target: str | None = None) -> dict[str, float]:
        """video id -> prediction (of `target`, one of `more_targets`; None: the first target's)."""
        column = PREDICTION if target is None else f"{PREDICTION}_{target}"
        return {r["video_id"]: float(r[column]) for r in self.rows}

    def truth_and_prediction(self, target: str | None = None) -> dict[str, tuple[float, float]]:
        """video id -> (ground truth, prediction) (of `target`, one of `more_targets`; None: the first target's)."""
        suffix = "" if target is None else f"_{target}"
        return {r["video_id"]: (float(r[f"ground_truth{suffix}"]), float(r[f"{PREDICTION}{suffix}"])) for r in self.rows}


def read_predictions(run_id: str, which: str) -> PredictionTable:
    """A run's predictions of DEV, TEST, OOF (a cv parent) or REPORT_DEV (a cv fold); MemError where it has none."""
    name = _PREDICTION_FILE[which]
    return PredictionTable(f"run {run_id} {name}", read_artifact_text(run_id, name))


@dataclass
class FoldPredictions:
    """A cv fold's predictions: of its own fold (out-of-fold), the test dataset's dev split, its test split."""

    oof: dict[str, float]
    dev: dict[str, float]
    test: dict[str, float]


def read_fold_predictions(run_id: str) -> FoldPredictions:
    """The predictions as the fold's trainer summarised them (full precision); a fold run of an older version: its
    CSVs (6 decimals)."""
    try:
        pred = json.loads(read_artifact_text(run_id, FOLD_PREDICTIONS))
        return FoldPredictions(pred["oof"], pred["dev"], pred["test"])
    except MemError:
        return FoldPredictions(*(read_predictions(run_id, w).by_id() for w in (DEV, REPORT_DEV, TEST)))


@dataclass
class TrainedRun:
    """A finished run's trained model and what made it."""

    run_id: str
    config: RunConfig  # config.yaml: the resolved config it ran with
    features: FeatureRecord  # features.json: feature keys per dataset and stream, each stream's weights
    state: dict  # model.safetensors
    in_dims: list[int]  # each stream's feature width, from the weights' metadata


# kinds of run that hold no single trained model, and what to use instead
NO_MODEL = {
    Kind.CV: "a cross-validation parent: its folds' models have no single model of their own; use its refit "
             "(`mem run ... --refit {run_id}`) or one fold's run (its `children` tag)",
    Kind.ENSEMBLE: "an ensemble: it combines its members' predictions and has no model of its own; use one of its members",
}


def read_trained(run_id: str) -> TrainedRun:
    """A finished run's model, config and features.json; MemError in one line for any other run."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file, safe_open

    run = read_record(run_id)
    if run.status != "FINISHED":
        raise MemError(f"run {run_id} is {run.status}, not FINISHED: it has no trained model")
    if run.kind in NO_MODEL:
        raise MemError(f"run {run_id} is {NO_MODEL[run.kind].format(run_id=run_id)}")
    cfg = read_config(run_id)
    features = read_features(run_id)
    with tempfile.TemporaryDirectory() as tmp:
        weights = download_artifact(run_id, WEIGHTS, tmp)
        try:
            with safe_open(str(weights), "pt") as f:
                in_dims = json.loads(f.metadata()["in_dims"])
            state = load_file(str(weights))
        except (SafetensorError, KeyError, ValueError, OSError) as e:
            raise MemError(f"run {run_id}: its {WEIGHTS} cannot be read ({e})") from None
    return TrainedRun(run_id, cfg, features, state, in_dims)


# --------------------------------------------------------------------------- writing
def identity_tags(kind: str, *, task, train: str, test: str, pair: str, cfg: RunConfig, selection: str,
                  keys: dict[str, dict]) -> dict[str, Any]:
    """What every run says it is: kind, task and pair, the model (config, encoders, aggregators, head), how it
    selected, the commit, and the digest of each feature key it read."""
    streams = cfg.model.streams
    return {Tag.KIND: kind, Tag.TASK: task, Tag.TRAIN: train, Tag.TEST: test, Tag.PAIR: pair, Tag.CONFIG: cfg.name,
            Tag.ENCODER: "+".join(s.encoder for s in streams), Tag.AGGREGATOR: "+".join(s.aggregator for s in streams),
            Tag.HEAD: cfg.model.head, Tag.SELECTION: selection, Tag.GIT_COMMIT: git_commit(), **feature_key_tags(keys)}


class RecordWriter:
    """The record of one run being written: an MLflow run (TrackedRun) and what goes in it.

    A run left by an exception ends FAILED (KILLED for Ctrl-C, or the exception's `run_status`); otherwise FINISHED.
    """

    def __init__(self, experiment: str, name: str, tags: dict[str, Any]):
        self.run = TrackedRun(experiment, name, tags)
        self.run_id = self.run.run_id

    def __enter__(self) -> "RecordWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.run.__exit__(exc_type, exc, tb)

    def params(self, params: dict[str, Any]) -> None:
        self.run.log_params(params)

    def metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        self.run.log_metrics(metrics, step=step)

    def tags(self, tags: dict[str, Any]) -> None:
        self.run.set_tags(tags)

    def write_config(self, cfg: RunConfig) -> None:
        self.run.log_text(to_yaml(cfg), CONFIG)

    def write_features(self, features: FeatureRecord) -> None:
        self.run.log_text(features.to_json(), FEATURES)

    def write_selection_ids(self, ids: Iterable[str]) -> None:
        self.run.log_text("\n".join(ids) + "\n", SELECTION_IDS)

    def write_predictions(self, which: str, ids: Iterable[str], pred, truth=None, targets: tuple[str, ...] = ()) -> None:
        """The predictions of DEV, TEST, OOF or REPORT_DEV as a CSV, six decimals: video_id, [ground_truth,] prediction.
        Several targets (`pred`, `truth` (N, K), `targets` their names): the first target's as those columns, each
        other's after them as [ground_truth_<name>,] prediction_<name> (a one-target reader sees the first's)."""
        ids = list(ids)
        pred = np.asarray(pred, float).reshape(len(ids), -1)  # (N, K)
        truth = None if truth is None else np.asarray(truth, float).reshape(len(ids), -1)
        columns = [(f"_{t}" if k else "", k) for k, t in enumerate((targets or ("",))[:pred.shape[1]])]
        header, cells = ["video_id"], []  # cells: per column, (N,) values
        for suffix, k in columns:
            if truth is not None:
                header.append(f"ground_truth{suffix}")
                cells.append(truth[:, k])
            header.append(f"{PREDICTION}{suffix}")
            cells.append(pred[:, k])
        rows = ([v, *(f"{c[i]:.6f}" for c in cells)] for i, v in enumerate(ids))
        self.run.log_csv(header, rows, _PREDICTION_FILE[which])

    def write_weights(self, state: dict, cfg: RunConfig, in_dims: list[int]) -> None:
        """The model's weights (tensors on the CPU), with its config and each stream's feature width as metadata."""
        metadata = {"config": json.dumps(to_dict(cfg)), "in_dims": json.dumps(in_dims)}
        self.run.log_state_dict(state, WEIGHTS, metadata=metadata)

    def write_fold_predictions(self, fold: FoldPredictions) -> None:
        self.run.log_text(json.dumps({"oof": fold.oof, "dev": fold.dev, "test": fold.test}), FOLD_PREDICTIONS)

    def write_folds(self, folds: list[dict]) -> None:
        self.run.log_text(json.dumps(folds, indent=1), FOLDS)

    def write_ensemble(self, body: dict) -> None:
        self.run.log_text(json.dumps(body, indent=1), ENSEMBLE)

    def write_figures(self, paths: Iterable[Path]) -> None:
        """Figures made by the caller (experiments/report.py), under figures/."""
        for path in paths:
            self.run.log_file(path, FIGURES)

    def stopped(self, reason: str) -> None:
        """A sweep trial stopped early by its scheduler, and why."""
        self.run.set_tags({Tag.STOPPED_EARLY: "true", Tag.END_REASON: reason})


def stopped_early(run: RunRecord) -> bool:
    return run.tags.get(Tag.STOPPED_EARLY) == "true"


def end_killed(run: RunRecord, reason: str) -> None:
    """Mark a run left RUNNING by a worker that exited KILLED, saying why unless a reason is recorded already."""
    c = client()
    if Tag.END_REASON not in run.tags:
        c.set_tag(run.run_id, Tag.END_REASON, reason)
    c.set_terminated(run.run_id, "KILLED")


def adopt(run_id: str, parent_id: str) -> None:
    """Nest run `run_id` under `parent_id`, unless it belongs to a live or finished parent of its own (a concurrent
    cross-validation's: that parent lists it too)."""
    old = read_record(run_id).parent
    if old and old != parent_id and read_record(old).status in ("RUNNING", "FINISHED"):
        return
    client().set_tag(run_id, Tag.PARENT, parent_id)
