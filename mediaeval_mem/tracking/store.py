"""Opening the MLflow store, safely for any number of processes at once.

Embedded default: a SQLite store at runs/mlflow.db with artifacts under runs/mlartifacts/;
MLFLOW_TRACKING_URI, when set, wins (e.g. a team server).

MLflow creates (and migrates) a SQLite store's schema from whichever process opens it first, with no
lock: several processes that open a new store together race on the migration and can leave it
unusable. So before MLflow sees a SQLite store, `prepare_sqlite_store` brings its schema to this
MLflow's head under a file lock beside it (mlflow.db.lock), once, and switches it to WAL journaling,
which lets readers and one writer work at the same time. Every client call then waits out a busy
database (bounded retries where MLflow gives up), and a full disk becomes one line.
"""

from __future__ import annotations

import errno
import functools
import logging
import os
import random
import sqlite3
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from mediaeval_mem.core.errors import DamagedError, MemError, TrackingError
from mediaeval_mem.core.io import NO_SPACE, file_lock, os_error_chain, write_error
from mediaeval_mem.core.paths import runs_dir
from mediaeval_mem.tracking.liveness import reap_dead_runs, terminate_pending, unterminated

BUSY_RETRIES = 8  # on top of SQLite's own 20 s busy timeout per statement (set by MLflow)


def tracking_uri() -> str:
    """MLFLOW_TRACKING_URI if set, else the embedded SQLite store runs/mlflow.db (absolute)."""
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if env:
        return env
    return f"sqlite:///{runs_dir().resolve() / 'mlflow.db'}"


def embedded() -> bool:
    """True when the store is the harness's own (artifacts then go under runs/mlartifacts)."""
    return not os.environ.get("MLFLOW_TRACKING_URI")


def sqlite_path(uri: str) -> Path | None:
    """The database file of a sqlite:/// URI (None for other stores and in-memory SQLite)."""
    if not uri.startswith("sqlite:///"):
        return None
    path = uri[len("sqlite:///"):].split("?")[0]
    return Path(path) if path and path != ":memory:" else None


# --------------------------------------------------------------------------- schema
def _head_revision() -> str:
    from mlflow.store.db.utils import _get_latest_schema_revision

    return _get_latest_schema_revision()


def _known_revision(rev: str) -> bool:
    from alembic.script import ScriptDirectory
    from mlflow.store.db.utils import _get_alembic_config

    try:
        return ScriptDirectory.from_config(_get_alembic_config("")).get_revision(rev) is not None
    except Exception:
        return False


def _inspect(path: Path) -> tuple[str, str | None, int | None, str | None]:
    """(state, revision, runs, journal mode) of a SQLite file without changing it.

    state: 'absent' (no file or no tables), 'versioned' (alembic_version holds a revision), 'partial'
    (tables without a revision: an interrupted creation). Raises DamagedError for a file that is not
    a database, MemError for one that cannot be read now (busy past the timeout, unreadable).
    The connection is read-write so that SQLite can roll back what a killed writer left in a hot
    journal (reading alone changes nothing else).
    """
    if not path.is_file() or path.stat().st_size == 0:
        return "absent", None, None, None
    try:
        con = sqlite3.connect(str(path), timeout=30)
        try:
            tables = {r[0] for r in con.execute("select name from sqlite_master where type = 'table'")}
            mode = con.execute("pragma journal_mode").fetchone()[0]
            runs = con.execute("select count(*) from runs").fetchone()[0] if "runs" in tables else 0
            if not tables:
                return "absent", None, 0, mode
            row = con.execute("select version_num from alembic_version").fetchone() if "alembic_version" in tables else None
        finally:
            con.close()
    except sqlite3.DatabaseError as e:
        if "not a database" in str(e) or "malformed" in str(e):
            raise DamagedError(
                f"{path} is not a usable MLflow store ({e}): it is left as it is; move it aside "
                f"(mv {path} {path}.damaged) and run again to start a new store, or restore it from a backup"
            ) from None
        raise MemError(f"cannot read the MLflow store {path} ({e}): is another process holding it, or the disk failing? "
                       f"run the command again") from None
    if row is None or any(t.startswith("_alembic_tmp_") for t in tables):
        return "partial", None, runs, mode
    return "versioned", row[0], runs, mode


def _set_wal(path: Path) -> None:
    """WAL journaling (persistent in the file): readers never block the writer, nor it them."""
    con = sqlite3.connect(str(path), timeout=30)
    try:
        con.execute("pragma journal_mode = wal")
    except sqlite3.OperationalError:
        pass  # another process has it open right now: the next opener tries again
    finally:
        con.close()


def _aside(path: Path, suffix: str) -> Path:
    """Move a store (and its WAL files) to `<name>.<suffix>-<UTC time>`; nothing is deleted."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    target = path.with_name(f"{path.name}.{suffix}-{stamp}")
    for ext in ("", "-wal", "-shm", "-journal"):
        if Path(f"{path}{ext}").exists():
            os.replace(f"{path}{ext}", f"{target}{ext}")
    return target


def _backup(path: Path, rev: str) -> Path:
    """A consistent copy of the store (SQLite's backup API) before a migration changes it."""
    target = path.with_name(f"{path.name}.backup-{rev}")
    src, dst = sqlite3.connect(str(path), timeout=30), sqlite3.connect(str(target))
    try:
        src.backup(dst)
    finally:
        src.close()
        dst.close()
    return target


def _note(line: str) -> None:
    print(f"note: {line}", file=sys.stderr, flush=True)


def prepare_sqlite_store(path: Path) -> None:
    """Bring the SQLite store at `path` to this MLflow's schema, once, whatever number of processes call this.

    Fast when the store is ready (a read-only look, no lock). Otherwise, under `path`.lock:
    a missing store is created; an older schema is backed up (`mlflow.db.backup-<revision>`) and
    migrated; a store left half-created by an interrupted creation is moved aside if it holds no run.
    A newer schema, a damaged file, or a half-migrated store that holds runs raise a MemError saying
    what to do; the file is never deleted.
    """
    path = Path(path)
    head = _head_revision()
    try:
        state, rev, _, mode = _inspect(path)
        if state == "versioned" and rev == head and mode == "wal":
            return
    except DamagedError:
        raise
    except MemError:
        pass  # busy or unreadable right now: look again under the lock
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise write_error(e, path) from None
    with file_lock(path.with_name(path.name + ".lock"),
                   on_wait=lambda: _note(f"waiting for another process to set up the MLflow store {path}")):
        state, rev, runs, mode = _inspect(path)  # again: another process may have done it meanwhile
        if state == "partial":
            if runs:
                raise DamagedError(
                    f"{path} was left half-migrated by an interrupted MLflow schema change and holds {runs} run(s): "
                    f"it is left as it is; restore it from a backup (mlflow.db.backup-* beside it), or move it aside "
                    f"(mv {path} {path}.damaged) to start a new store"
                )
            _note(f"{path} was left half-created by an interrupted first run and holds no run: moved to {_aside(path, 'broken')}")
            state = "absent"
        if state == "versioned" and rev != head and not _known_revision(rev):
            raise DamagedError(
                f"{path} was written by a newer MLflow (schema {rev}; this one knows up to {head}): "
                f"upgrade mlflow in this environment (pip install -U mlflow), or set MLFLOW_TRACKING_URI to another store"
            )
        if state in ("absent", "versioned") and rev != head:
            _migrate(path, rev)
        if mode != "wal" or state != "versioned":
            _set_wal(path)


def _migrate(path: Path, rev: str | None) -> None:
    """Create the schema (rev None) or upgrade it from `rev`, with a backup first; under the store's lock."""
    from mlflow.store.db.utils import _initialize_tables, _upgrade_db, create_sqlalchemy_engine

    backup = _backup(path, rev) if rev is not None else None
    if backup is not None:
        _note(f"migrating the MLflow store {path} to this MLflow's schema; a copy from before is at {backup}")
    engine = create_sqlalchemy_engine(f"sqlite:///{path}")
    try:
        if rev is None:
            _initialize_tables(engine)
        else:
            _upgrade_db(engine)
    except Exception as e:
        if _is_full(e):
            raise write_error(_no_space(e), path) from None
        where = f"the copy from before is at {backup}" if backup else "it holds no run yet"
        raise DamagedError(f"could not set up the MLflow store {path} ({type(e).__name__}: {e}); {where}; "
                           f"move {path} aside and run again to start a new store") from None
    finally:
        engine.dispose()


# --------------------------------------------------------------------------- client
def _is_busy(e: BaseException) -> bool:
    text = str(e).lower()
    return "database is locked" in text or "database table is locked" in text or "database is busy" in text


def _is_full(e: BaseException) -> bool:
    err = os_error_chain(e)
    return (err is not None and err.errno in NO_SPACE) or "database or disk is full" in str(e).lower()


def _no_space(e: BaseException) -> OSError:
    """The OSError behind a full-disk failure (SQLite reports one without an errno)."""
    err = os_error_chain(e)
    return err if err is not None and err.errno in NO_SPACE else OSError(errno.ENOSPC, "No space left on device")


class PatientClient:
    """An MlflowClient whose calls wait out a busy database (bounded) and report a full disk in one line.

    A failed SQLite write is rolled back whole, so retrying a call never logs anything twice.
    """

    def __init__(self, client, store: str):
        self._client, self._store = client, store

    def __getattr__(self, name):
        attr = getattr(self._client, name)
        if not callable(attr):
            return attr

        @functools.wraps(attr)
        def call(*args, **kwargs):
            for attempt in range(BUSY_RETRIES + 1):
                try:
                    return attr(*args, **kwargs)
                except Exception as e:
                    if _is_full(e):
                        err = _no_space(e)
                        raise write_error(err, Path(err.filename or self._store)) from None
                    if not _is_busy(e) or attempt == BUSY_RETRIES:
                        if type(e).__module__.startswith(("mlflow", "sqlalchemy")):  # the store's say: one line
                            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
                            raise TrackingError(f"MLflow store {self._store}: {name} failed: {first}") from e
                        raise
                    time.sleep(min(0.25 * 2**attempt, 8.0) * random.uniform(0.5, 1.5))

        return call


@functools.cache
def _opened(uri: str) -> PatientClient:
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    from mlflow.tracking import MlflowClient

    for name in ("alembic", "mlflow"):  # after the import: mlflow sets its own levels then
        logging.getLogger(name).setLevel(logging.WARNING)
    # it logs a traceback for every failed statement; PatientClient retries or reports those in one line
    logging.getLogger("mlflow.store.db.utils").setLevel(logging.CRITICAL)
    path = sqlite_path(uri)
    if path is not None:
        prepare_sqlite_store(path)
    client = PatientClient(MlflowClient(tracking_uri=uri), str(path or uri))
    reap_dead_runs(client)
    return client


def client() -> PatientClient:
    """The MLflow client of the store in use: prepared once per process, dead runs marked on opening."""
    try:
        opened = _opened(tracking_uri())
        if unterminated:
            terminate_pending(opened)
        return opened
    except MemError:
        raise
    except Exception as e:
        if _is_full(e):
            raise write_error(_no_space(e), sqlite_path(tracking_uri()) or runs_dir()) from None
        raise MemError(f"cannot open the MLflow store {tracking_uri()} ({type(e).__name__}: {e}); "
                       f"check MLFLOW_TRACKING_URI, or that the server is running") from None


def artifact_root() -> str | None:
    """Where new experiments of the embedded store keep their artifacts (None: the server decides)."""
    return (runs_dir().resolve() / "mlartifacts").as_uri() if embedded() else None
