"""The MLflow store under concurrency and damage: real processes, real files, real signals."""

from __future__ import annotations

import csv
import io
import os
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from mediaeval_mem.cli import main

REPO = Path(__file__).resolve().parent.parent


def _env(runs: Path) -> dict:
    env = {**os.environ, "MEM_RUNS_DIR": str(runs)}
    env.pop("MLFLOW_TRACKING_URI", None)
    return env


def _statuses(db: Path) -> list[tuple[str, str]]:
    """(run id, status) of every run, read with sqlite3 itself (not through the harness)."""
    con = sqlite3.connect(db, timeout=30)
    try:
        return con.execute("select run_uuid, status from runs").fetchall()
    finally:
        con.close()


def test_many_processes_open_a_fresh_store_at_once(tmp_path):
    """Eight processes released together onto a store that does not exist yet: every one logs its run.

    (Without the lock, MLflow's schema migration races and all but one fail; the store stays broken.)"""
    runs, go = tmp_path / "runs", tmp_path / "go"
    script = textwrap.dedent(f"""
        import sys, time
        from pathlib import Path
        import mlflow  # the slow import first, so that all eight reach the store together
        from mediaeval_mem.tracking import TrackedRun
        Path({str(tmp_path)!r}, "ready-" + sys.argv[1]).touch()  # at the barrier
        while not Path({str(go)!r}).exists():
            time.sleep(0.005)
        with TrackedRun("concurrency", f"writer {{sys.argv[1]}}", {{"writer": sys.argv[1]}}) as run:
            for step in range(5):
                run.log_metrics({{"x": float(step)}}, step=step)
        print("ok")
    """)
    procs = [subprocess.Popen([sys.executable, "-c", script, str(i)], env=_env(runs), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for i in range(8)]
    deadline = time.monotonic() + 240  # every process has imported mlflow and waits at the barrier
    while len(list(tmp_path.glob("ready-*"))) < 8 and time.monotonic() < deadline and all(p.poll() is None for p in procs):
        time.sleep(0.05)
    go.touch()
    outs = [p.communicate(timeout=240) for p in procs]
    assert [p.returncode for p in procs] == [0] * 8, [err[-2000:] for _, err in outs]
    assert all("Traceback" not in err for _, err in outs)
    statuses = _statuses(runs / "mlflow.db")
    assert len(statuses) == 8 and {s for _, s in statuses} == {"FINISHED"}
    from mediaeval_mem.tracking import search_runs

    os.environ["MEM_RUNS_DIR"], old = str(runs), os.environ["MEM_RUNS_DIR"]
    try:
        runs_found = search_runs(["concurrency"])
        assert sorted(r.data.tags["writer"] for r in runs_found) == [str(i) for i in range(8)]
        assert all(len(r.data.metrics) == 1 and r.data.metrics["x"] == 4.0 for r in runs_found)
    finally:
        os.environ["MEM_RUNS_DIR"] = old


def _store_at(tmp_path, monkeypatch) -> Path:
    runs = tmp_path / "runs"
    monkeypatch.setenv("MEM_RUNS_DIR", str(runs))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    runs.mkdir()
    return runs / "mlflow.db"


def test_damaged_store_is_one_line_and_left_alone(tmp_path, monkeypatch, capsys):
    db = _store_at(tmp_path, monkeypatch)
    junk = b"this was an MLflow store until a disk error" * 100
    db.write_bytes(junk)
    assert main(["results", "--no-ci"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and str(db) in err and "move it aside" in err
    assert db.read_bytes() == junk  # nothing deleted, nothing rewritten


def test_store_of_a_newer_mlflow_is_refused_and_left_alone(tmp_path, monkeypatch, capsys):
    from mediaeval_mem.tracking.store import prepare_sqlite_store

    db = _store_at(tmp_path, monkeypatch)
    prepare_sqlite_store(db)
    con = sqlite3.connect(db)
    con.execute("update alembic_version set version_num = 'ffffffffffff'")
    con.commit()
    con.close()
    before = db.read_bytes()
    assert main(["results", "--no-ci"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "newer MLflow" in err and "ffffffffffff" in err and str(db) in err
    assert db.read_bytes() == before


def test_older_schema_is_backed_up_then_migrated(tmp_path, monkeypatch):
    """A store of an older MLflow (three schema versions back) is copied aside, then upgraded in place."""
    from alembic import command
    from alembic.script import ScriptDirectory
    from mlflow.store.tracking.dbmodels.initial_models import Base as InitialBase
    from mlflow.store.db.utils import _get_alembic_config, _get_latest_schema_revision, create_sqlalchemy_engine

    from mediaeval_mem.tracking import TrackedRun, search_runs

    db = _store_at(tmp_path, monkeypatch)
    script = ScriptDirectory.from_config(_get_alembic_config(""))
    old = script.get_revision(script.get_revision(script.get_revision(_get_latest_schema_revision()).down_revision).down_revision).down_revision
    engine = create_sqlalchemy_engine(f"sqlite:///{db}")
    InitialBase.metadata.create_all(engine)
    config = _get_alembic_config(str(engine.url))
    with engine.begin() as con:
        config.attributes["connection"] = con
        command.upgrade(config, old)
    engine.dispose()
    with TrackedRun("after upgrade", "r", {}) as run:
        run.log_metrics({"dev_srocc": 0.5})
    assert (db.parent / f"mlflow.db.backup-{old}").is_file()
    assert sqlite3.connect(db).execute("select version_num from alembic_version").fetchone()[0] == _get_latest_schema_revision()
    assert [r.data.metrics["dev_srocc"] for r in search_runs(["after upgrade"])] == [0.5]


def test_half_created_store_without_runs_is_moved_aside(tmp_path, monkeypatch, capsys):
    """What the old race left behind (tables, no schema version, no run) no longer blocks every command."""
    from mlflow.store.tracking.dbmodels.initial_models import Base as InitialBase
    from mlflow.store.db.utils import create_sqlalchemy_engine

    db = _store_at(tmp_path, monkeypatch)
    engine = create_sqlalchemy_engine(f"sqlite:///{db}")
    InitialBase.metadata.create_all(engine)
    engine.dispose()
    assert main(["results", "--no-ci"]) == 0
    assert "half-created" in capsys.readouterr().err
    assert len(list(db.parent.glob("mlflow.db.broken-*"))) == 1 and db.is_file()


def test_liveness_of_real_processes(tmp_path):
    from mediaeval_mem.tracking.liveness import is_dead, process_tags

    me = process_tags()
    assert not is_dead(me)  # this very process
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        tags = {**me, "mem_pid": str(child.pid), "mem_pid_start": ""}
        from mediaeval_mem.tracking.liveness import _start_ticks

        tags["mem_pid_start"] = _start_ticks(child.pid)
        assert not is_dead(tags)
        assert is_dead({**tags, "mem_pid_start": str(int(tags["mem_pid_start"]) + 1)})  # the pid, reused by another
        assert not is_dead({**tags, "mem_host": "another-machine"})  # cannot tell from here: left alone
        assert not is_dead({**tags, "mem_pid_ns": "pid:[1]", "mem_pid_start": "1"})  # another container's pids
    finally:
        child.kill()
        child.wait()
    assert is_dead(tags)  # gone
    assert is_dead({**me, "mem_boot_id": "0" * 36})  # recorded before a reboot


def test_killed_grid_leaves_no_run_running(demo_root, tmp_path, monkeypatch, capsys):
    """kill -9 of a real `mem grid` in the middle of a run; the next command marks that run KILLED and the
    grid, run again, completes with every run FINISHED."""
    runs = tmp_path / "runs"
    grid = tmp_path / "grid.yaml"
    grid.write_text(textwrap.dedent(f"""
        title: killed grid
        configs: [{REPO / 'configs' / 'demo.yaml'}]
        pairs: [{{task: 1, train: memento10k, test: memento10k}}]
        seeds: [0, 1]
        set: [train.epochs=25, train.patience=25]
    """))
    proc = subprocess.Popen([sys.executable, "-m", "mediaeval_mem", "grid", str(grid), "--data-root", str(demo_root),
                             "--quiet"], env=_env(runs), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    db, deadline, running = runs / "mlflow.db", time.time() + 180, []
    while time.time() < deadline and proc.poll() is None and not running:
        time.sleep(0.2)
        if db.is_file():
            try:
                running = [r for r, s in _statuses(db) if s == "RUNNING"]
            except sqlite3.OperationalError:
                pass  # the schema is being created right now
    time.sleep(1.0)  # a few epochs into the run
    assert proc.poll() is None and running, "the grid ended before it could be killed"
    proc.kill()
    proc.wait()
    running = [r for r, s in _statuses(db) if s == "RUNNING"]  # what kill -9 leaves: the run in flight
    assert len(running) == 1

    monkeypatch.setenv("MEM_RUNS_DIR", str(runs))
    assert main(["grid", str(grid), "--data-root", str(demo_root), "--quiet"]) == 0
    statuses = dict(_statuses(db))
    assert statuses[running[0]] == "KILLED" and "RUNNING" not in statuses.values()
    assert sum(s == "FINISHED" for s in statuses.values()) == 2
    from mediaeval_mem.tracking import get_run

    assert "ended without finishing" in get_run(running[0]).data.tags["mem_end_reason"]


@pytest.mark.parametrize("n", [8])  # (3 as well took 21 s of the suite and proved nothing 8 does not)
def test_many_mem_runs_at_once_on_a_fresh_runs_folder(demo_root, tmp_path, n):
    """N real `mem run` started together on an empty runs/: they share one extraction and one store."""
    runs = tmp_path / "runs"
    cmd = [sys.executable, "-m", "mediaeval_mem", "run", "--task", "1", "--train", "memento10k", "--test", "memento10k",
           "--config", str(REPO / "configs" / "demo.yaml"), "--data-root", str(demo_root), "--quiet",
           "--set", "train.epochs=2"]
    procs = [subprocess.Popen(cmd + ["--set", f"train.seed={i}"], env=_env(runs), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for i in range(n)]
    outs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0] * n, [err[-2000:] for _, err in outs]
    assert all("Traceback" not in err for _, err in outs)
    out = subprocess.run([sys.executable, "-m", "mediaeval_mem", "results", "--format", "csv", "--no-ci"],
                         env=_env(runs), capture_output=True, text=True, check=True).stdout
    rows = list(csv.DictReader(io.StringIO(out)))
    assert sorted(int(r["seed"]) for r in rows) == list(range(n))
