"""MLflow runs: writing one (TrackedRun), finding them, reading their artifacts; the mechanics under record.py,
which alone knows what a run's artifacts and tags are named."""

from __future__ import annotations

import errno
import io
import subprocess
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterable

from mediaeval_mem.core.errors import DiskFullError, MemError
from mediaeval_mem.core.io import os_error_chain, write_error
from mediaeval_mem.core.paths import runs_dir
from mediaeval_mem.tracking.liveness import process_tags, unterminated
from mediaeval_mem.tracking.store import artifact_root, client, embedded, tracking_uri

PARAM_MAX = 6000  # MLflow's limit on a param value's length


def ensure_experiment(name: str) -> str:
    """The id of experiment `name`, created with its artifacts under runs/ when the store is embedded."""
    c = client()
    exp = c.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    try:
        return c.create_experiment(name, artifact_location=artifact_root())
    except Exception:  # another process created it a moment ago
        exp = c.get_experiment_by_name(name)
        if exp is None:
            raise
        return exp.experiment_id


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
        run.log_params({...}); run.log_metrics({...}, step=3); run.log_text("...", "notes.txt")
    A run left by an exception is marked FAILED (KILLED for Ctrl-C or SIGTERM, or the exception's own
    `run_status`); otherwise FINISHED.
    A run whose process dies outright is marked KILLED by the next process that opens the store
    (see liveness.py), from the process tags recorded here.
    """

    def __init__(self, experiment: str, run_name: str, tags: dict[str, str]):
        self.client = client()
        self.experiment_id = ensure_experiment(experiment)
        tags = {**{k: str(v) for k, v in tags.items()}, **process_tags()}
        self.run = self.client.create_run(self.experiment_id, run_name=run_name, tags=tags)
        self.run_id = self.run.info.run_id

    def __enter__(self) -> "TrackedRun":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        status = "FINISHED" if exc_type is None else "KILLED" if issubclass(exc_type, KeyboardInterrupt) else "FAILED"
        status = getattr(exc, "run_status", status)  # an exception may say how its run ends (a stopped sweep trial)
        try:
            self.client.set_terminated(self.run_id, status)
        except Exception:
            # The store cannot be written (a full disk?). This process retries the next time it opens
            # the store; if it exits first, the next process that opens it marks the run KILLED.
            unterminated[self.run_id] = status
            if exc_type is None:
                raise  # else the original error is the one to report

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
        with self._artifact_space(len(text.encode())):
            self.client.log_text(self.run_id, text, artifact_file)

    def log_file(self, path: Path, artifact_path: str | None = None) -> None:
        with self._artifact_space(Path(path).stat().st_size):
            self.client.log_artifact(self.run_id, str(path), artifact_path)

    @contextmanager
    def _artifact_space(self, needed: int):
        """A full disk while logging an artifact: one line naming the run's artifact folder and the size."""
        try:
            yield
        except DiskFullError:
            where = self.run.info.artifact_uri
            where = Path(where[len("file://"):]) if where.startswith("file://") else Path(where)
            raise write_error(OSError(errno.ENOSPC, "No space left on device"), where, needed) from None

    def log_csv(self, header: list[str], rows: Iterable[Iterable[Any]], artifact_file: str) -> None:
        import csv

        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)
        self.log_text(buf.getvalue(), artifact_file)

    def log_state_dict(self, state: dict, artifact_file: str, metadata: dict | None = None) -> None:
        from safetensors.torch import save_file


        tensors = {k: v.contiguous() for k, v in state.items()}
        needed = sum(t.numel() * t.element_size() for t in tensors.values())
        scratch = runs_dir() / "tmp"  # on the runs disk: a full disk is found (and reported) where it matters
        scratch.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=scratch) as tmp:
            path = Path(tmp) / artifact_file
            try:
                save_file(tensors, str(path), metadata=metadata)
            except Exception as e:  # safetensors reports a failed write as its own error, not an OSError
                if isinstance(e, MemError):
                    raise
                raise write_error(os_error_chain(e) or OSError(errno.ENOSPC, str(e)), path, needed) from None
            self.log_file(path)


def get_run(run_id: str):
    """The MLflow run `run_id` (tags, params, metrics); raises MemError naming it if unknown."""
    c = client()  # a store that cannot be opened says so itself
    try:
        return c.get_run(run_id)
    except Exception:
        raise MemError(f"no MLflow run {run_id!r} in {tracking_uri()}: list runs with `mem ui`") from None


ID_LEAST = 8  # the fewest characters of a run id that tables print


def all_run_ids() -> list[str]:
    """The id of every run in the store (every experiment, deleted runs left out)."""
    return [r.info.run_id for r in search_runs()]


def resolve_run_id(text: str, known: list[str] | None = None) -> str:
    """The full id of the one run whose id starts with `text` (any unique prefix, or the whole id); raises a
    MemError naming the candidates when several match, or saying where to find ids when none does."""
    text = text.strip().lower()
    if len(text) == 32 and known is None:  # a whole id: one lookup, not a listing of the store
        return get_run(text).info.run_id
    matches = [r for r in (all_run_ids() if known is None else known) if text and r.startswith(text)]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise MemError(f"no MLflow run {text!r} in {tracking_uri()}: give a run id or a unique prefix of one, as "
                       f"`mem results` prints them")
    shown = ", ".join(matches[:6]) + (f" and {len(matches) - 6} more" if len(matches) > 6 else "")
    raise MemError(f"run id prefix {text!r} matches {len(matches)} runs ({shown}): give more of the id")


def resolve_run_ids(texts: list[str]) -> list[str]:
    """`resolve_run_id` of each, listing the store once."""
    known = None if all(len(t.strip()) == 32 for t in texts) else all_run_ids()
    return [resolve_run_id(t, known) for t in texts]


def id_prefixes(ids: list[str], among: list[str], least: int = ID_LEAST) -> dict[str, str]:
    """id -> its shortest prefix (at least `least` characters) that no other id of `among` starts with."""
    ordered = sorted(set(among) | set(ids))
    at = {r: i for i, r in enumerate(ordered)}

    def shared(a: str, b: str) -> int:
        return next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))

    out = {}
    for r in ids:
        i = at[r]
        neighbours = [ordered[j] for j in (i - 1, i + 1) if 0 <= j < len(ordered)]  # sorted: the longest shares are here
        out[r] = r[: max([least] + [shared(r, n) + 1 for n in neighbours])]
    return out


def download_artifact(run_id: str, artifact_file: str, folder: str | Path) -> Path:
    """One artifact of a run, copied into `folder`; raises MemError naming run and file if it is absent."""
    c = client()
    try:
        return Path(c.download_artifacts(run_id, artifact_file, str(folder)))
    except Exception:
        raise MemError(f"run {run_id} has no artifact {artifact_file!r}: was it made by `mem run`?") from None


def read_artifact_text(run_id: str, artifact_file: str) -> str:
    """The text of one artifact of a run; raises MemError naming run and file if it is absent."""
    with tempfile.TemporaryDirectory() as tmp:
        return download_artifact(run_id, artifact_file, tmp).read_text()


def search_runs(experiment_names: list[str] | None = None, filter_string: str = ""):
    """Runs of the given experiments (default: all), newest first."""
    c = client()
    exps = c.search_experiments()
    ids = [e.experiment_id for e in exps if experiment_names is None or e.name in experiment_names]
    if not ids:
        return []
    return c.search_runs(ids, filter_string=filter_string, order_by=["attributes.start_time DESC"], max_results=10000)


# The UI's environment: no job runners (MLflow's GenAI jobs; seven huey processes here), which a browser of
# these runs never uses and which slowed the server's start on two cores.
UI_ENV = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}


def ui_command(port: int = 5000) -> list[str]:
    """The `mlflow ui` command line for the same store, bound to 127.0.0.1, one worker (one user browsing)."""
    import sys

    cmd = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", tracking_uri(), "--host", "127.0.0.1",
           "--port", str(port), "--workers", "1"]
    if embedded():
        cmd += ["--default-artifact-root", artifact_root()]
    return cmd
