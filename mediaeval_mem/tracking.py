"""MLflow, the system of record. The only module that imports mlflow.

Embedded default: a SQLite store at runs/mlflow.db with artifacts under runs/mlartifacts/;
MLFLOW_TRACKING_URI, when set, wins (e.g. a team server).
"""

from __future__ import annotations

import io
import logging
import os
import subprocess
import tempfile
from pathlib import Path
from typing import Any, Iterable

from mediaeval_mem.errors import MemError
from mediaeval_mem.paths import runs_dir

PARAM_MAX = 6000  # MLflow's limit on a param value's length


def tracking_uri() -> str:
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if env:
        return env
    runs = runs_dir().resolve()
    runs.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{runs / 'mlflow.db'}"


def _client():
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    from mlflow.tracking import MlflowClient

    for name in ("alembic", "mlflow"):  # after the import: mlflow sets its own levels then
        logging.getLogger(name).setLevel(logging.WARNING)
    return MlflowClient(tracking_uri=tracking_uri())


def ensure_experiment(name: str) -> str:
    """The id of experiment `name`, created with its artifacts under runs/ when the store is embedded."""
    client = _client()
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    location = None
    if not os.environ.get("MLFLOW_TRACKING_URI"):
        location = (runs_dir().resolve() / "mlartifacts").as_uri()
    return client.create_experiment(name, artifact_location=location)


def git_commit() -> str:
    """The checkout's commit, with '+dirty' when it has uncommitted changes; 'unknown' outside git."""
    root = Path(__file__).resolve().parent.parent
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root, capture_output=True, text=True).stdout.strip()
        return sha + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


class TrackedRun:
    """One MLflow run, written through the client API (no global active-run state).

    with TrackedRun("Task 1: ...", "paper-best", tags) as run:
        run.log_params({...}); run.log_metrics({...}, step=3); run.log_text("...", "config.yaml")
    A run left by an exception is marked FAILED; otherwise FINISHED.
    """

    def __init__(self, experiment: str, run_name: str, tags: dict[str, str]):
        self.client = _client()
        self.experiment_id = ensure_experiment(experiment)
        self.run = self.client.create_run(self.experiment_id, run_name=run_name, tags={k: str(v) for k, v in tags.items()})
        self.run_id = self.run.info.run_id

    def __enter__(self) -> "TrackedRun":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.client.set_terminated(self.run_id, "FAILED" if exc_type else "FINISHED")

    def log_params(self, params: dict[str, Any]) -> None:
        from mlflow.entities import Param

        items = [Param(k, str(v)[:PARAM_MAX]) for k, v in params.items()]
        for i in range(0, len(items), 100):  # MLflow takes at most 100 params per batch
            self.client.log_batch(self.run_id, params=items[i : i + 100])

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        import time

        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[Metric(k, float(v), now, step or 0) for k, v in metrics.items()])

    def set_tags(self, tags: dict[str, Any]) -> None:
        from mlflow.entities import RunTag

        self.client.log_batch(self.run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])

    def log_text(self, text: str, artifact_file: str) -> None:
        self.client.log_text(self.run_id, text, artifact_file)

    def log_file(self, path: Path, artifact_path: str | None = None) -> None:
        self.client.log_artifact(self.run_id, str(path), artifact_path)

    def log_csv(self, header: list[str], rows: Iterable[Iterable[Any]], artifact_file: str) -> None:
        import csv

        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)
        self.log_text(buf.getvalue(), artifact_file)

    def log_state_dict(self, state: dict, artifact_file: str = "model.safetensors", metadata: dict | None = None) -> None:
        from safetensors.torch import save_file

        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / artifact_file
            save_file({k: v.contiguous() for k, v in state.items()}, str(path), metadata=metadata)
            self.log_file(path)


def get_run(run_id: str):
    """The MLflow run `run_id` (tags, params, metrics); raises MemError naming it if unknown."""
    client = _client()
    try:
        return client.get_run(run_id)
    except Exception:
        raise MemError(f"no MLflow run {run_id!r} in {tracking_uri()}: list runs with `mem ui`") from None


def read_artifact_text(run_id: str, artifact_file: str) -> str:
    """The text of one artifact of a run; raises MemError naming run and file if it is absent."""
    client = _client()
    with tempfile.TemporaryDirectory() as tmp:
        try:
            path = client.download_artifacts(run_id, artifact_file, tmp)
        except Exception:
            raise MemError(f"run {run_id} has no artifact {artifact_file!r}: was it made by `mem run`?") from None
        return Path(path).read_text()


def search_runs(experiment_names: list[str] | None = None, filter_string: str = ""):
    """Runs of the given experiments (default: all), newest first."""
    client = _client()
    exps = client.search_experiments()
    ids = [e.experiment_id for e in exps if experiment_names is None or e.name in experiment_names]
    if not ids:
        return []
    return client.search_runs(ids, filter_string=filter_string, order_by=["attributes.start_time DESC"], max_results=10000)


def ui_command(port: int = 5000) -> list[str]:
    """The `mlflow ui` command line for the same store, bound to 127.0.0.1."""
    import sys

    cmd = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", tracking_uri(), "--host", "127.0.0.1", "--port", str(port)]
    if not os.environ.get("MLFLOW_TRACKING_URI"):
        cmd += ["--default-artifact-root", (runs_dir().resolve() / "mlartifacts").as_uri()]
    return cmd
