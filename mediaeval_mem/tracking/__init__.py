"""MLflow, the system of record: the only package that imports mlflow (lazily, inside functions).

store.py     opening the store safely (schema set up once under a lock, busy retries, full disk)
liveness.py  runs whose process died are marked KILLED, never left RUNNING
runs.py      writing a run (TrackedRun), finding runs (ids from unique prefixes), reading their artifacts
record.py    the record of a run: every artifact and tag a run leaves, written and read there only
"""

from mediaeval_mem.tracking.runs import (
    UI_ENV,
    TrackedRun,
    download_artifact,
    ensure_experiment,
    get_run,
    git_commit,
    id_prefixes,
    read_artifact_text,
    resolve_run_id,
    resolve_run_ids,
    search_runs,
    ui_command,
)
from mediaeval_mem.tracking.store import client, tracking_uri

__all__ = ["UI_ENV", "TrackedRun", "client", "download_artifact", "ensure_experiment", "get_run", "git_commit", "id_prefixes",
           "read_artifact_text", "resolve_run_id", "resolve_run_ids", "search_runs", "tracking_uri", "ui_command"]
