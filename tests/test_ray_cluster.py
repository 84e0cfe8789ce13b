"""The README's 'On a Ray cluster' recipe on one machine: Ray's own two nodes (`ray start --head`, `ray start --address`)
with token authentication, as Ray >= 2.59 asks, an `mlflow server`, and `mem grid` / `mem cv --ray 127.0.0.1:P`
against them. A driver without the token, or with a wrong one, is refused in one line, as is an address where no Ray
runs; everything started here is stopped and checked gone.
About 2-3 minutes on 2 busy cores (two Ray nodes, a tracking server and five `mem` processes)."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from conftest import REPO

pytest.importorskip("ray")
psutil = pytest.importorskip("psutil")  # installed with Ray

MARK = "MEM_TEST_CLUSTER"  # in the environment of every process started here, so of all their children too
FAST = ("--set", "train.epochs=2", "--set", "model.streams.*.sampling=uniform:4")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Started:
    """Processes started here, each in a session (process group) of its own, and everything they start."""

    def __init__(self, root: Path):
        self.root, self.mark, self.procs, self.groups = root, uuid.uuid4().hex, [], set()

    def env(self, **extra) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH")}  # only the tokens given here
        return {**env, MARK: self.mark, "RAY_USAGE_STATS_ENABLED": "0", **extra}

    def start(self, name: str, args: list[str], env: dict[str, str], ready: str | None = None,
              group: bool = False) -> subprocess.Popen:
        """Start `args` (its output in ROOT/NAME.log); with `ready`, wait until the log says it (at most 3 minutes);
        `group`: stopped by signalling its whole process group, not only itself."""
        log = self.root / f"{name}.log"
        proc = subprocess.Popen(args, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True)
        self.procs.append(proc)
        if group:
            self.groups.add(proc.pid)
        deadline = time.monotonic() + 180
        while ready and ready not in log.read_text():
            assert proc.poll() is None and time.monotonic() < deadline, f"{name} did not start:\n{log.read_text()[-3000:]}"
            time.sleep(0.5)
        return proc

    def left(self) -> list:
        """Live processes carrying this module's mark (a Ray worker reparented to init still has it)."""
        found = []
        for p in psutil.process_iter():
            try:
                if p.environ().get(MARK) == self.mark and p.status() != psutil.STATUS_ZOMBIE:
                    found.append(p)
            except psutil.Error:
                pass
        return found

    def stop(self) -> None:
        """`ray start --block` stops its node on SIGTERM (raylet, workers, GCS: Ray's own shutdown, for this node only);
        the mlflow server's whole group gets it. Last started first; what is left after 60 s is killed."""
        for proc in reversed(self.procs):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM) if proc.pid in self.groups else proc.terminate()
        deadline = time.monotonic() + 60
        for proc in reversed(self.procs):
            try:
                proc.wait(max(1.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
        _, alive = psutil.wait_procs(self.left(), timeout=max(1.0, deadline - time.monotonic()))
        for p in alive:
            p.kill()
        psutil.wait_procs(alive, timeout=10)


@pytest.fixture(scope="module")
def cluster():
    """A token, a head and a worker node on this machine (their own temp dirs and ports, 1 CPU each), and an MLflow
    tracking server on 127.0.0.1 over SQLite; all stopped at the end, even after a failure."""
    ray_cli = Path(sys.executable).parent / "ray"
    root = Path(tempfile.mkdtemp(prefix="memray-"))  # short: Ray's socket paths under it must stay < 108 bytes
    started = Started(root)
    try:
        token = root / "auth_token"  # the head's ~/.ray/auth_token (`ray get-auth-token --generate`): not this machine's
        token.write_text(secrets.token_hex(32))
        node_env = started.env(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=str(token))
        mlflow_port, port = free_port(), free_port()
        started.start("mlflow", [sys.executable, "-m", "mlflow", "server", "--backend-store-uri",
                                 f"sqlite:///{root}/mlflow.db", "--artifacts-destination", str(root / "mlartifacts"),
                                 "--host", "127.0.0.1", "--port", str(mlflow_port), "--workers", "1"],
                      started.env(MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false"), group=True)  # no job runner: 7 fewer processes
        started.start("head", [str(ray_cli), "start", "--block", "--head", "--port", str(port), "--num-cpus", "1",
                               "--temp-dir", str(root / "head"), "--include-dashboard", "false",
                               "--dashboard-port", str(free_port()), "--dashboard-agent-listen-port", str(free_port())],
                      node_env, ready="Ray runtime started")
        started.start("worker", [str(ray_cli), "start", "--block", "--address", f"127.0.0.1:{port}", "--num-cpus", "1",
                                 "--temp-dir", str(root / "worker"), "--dashboard-agent-listen-port", str(free_port())],
                      node_env, ready="Ray runtime started")
        _wait_for_mlflow(mlflow_port)
        yield started, f"127.0.0.1:{port}", f"http://127.0.0.1:{mlflow_port}", token.read_text()
    finally:
        started.stop()
        shutil.rmtree(root, ignore_errors=True)


def _wait_for_mlflow(port: int) -> None:
    for _ in range(240):
        try:
            _rest(f"http://127.0.0.1:{port}", "experiments/search", {"max_results": 10})
            return
        except OSError:
            time.sleep(0.5)
    raise AssertionError("the mlflow server did not answer in 2 minutes")


def _rest(uri: str, path: str, body: dict) -> dict:
    req = urllib.request.Request(f"{uri}/api/2.0/mlflow/{path}", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    return json.loads(urllib.request.urlopen(req, timeout=10).read())


def _runs(uri: str) -> list[dict]:
    """Every run the tracking server holds: {'run_id': ..., 'status': ..., 'tags': {key: value}}."""
    ids = [e["experiment_id"] for e in _rest(uri, "experiments/search", {"max_results": 1000})["experiments"]]
    runs = _rest(uri, "runs/search", {"experiment_ids": ids, "max_results": 1000}).get("runs", [])
    return [{"run_id": r["info"]["run_id"], "status": r["info"]["status"],
             "tags": {t["key"]: t["value"] for t in r["data"].get("tags", [])}} for r in runs]


def _mem(started: Started, args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mediaeval_mem", *args], env=started.env(**env), cwd=REPO,
                          capture_output=True, text=True, timeout=600, start_new_session=True)


def test_grid_and_cv_on_a_two_node_cluster_with_token_authentication(cluster, demo_root, tmp_path):
    started, address, mlflow_uri, token = cluster
    (tmp_path / "grid.yaml").write_text(f"title: cluster\nseeds: [0, 1]\nconfigs: [{REPO}/configs/demo.yaml]\n"
                                        "pairs: [{task: 1, train: memento10k, test: memento10k}]\n")
    driver = {"MLFLOW_TRACKING_URI": mlflow_uri, "MEM_RUNS_DIR": str(tmp_path / "runs")}
    auth = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token}  # the README's driver: the head's token in RAY_AUTH_TOKEN
    data = ("--data-root", str(demo_root), "--quiet")

    grid = _mem(started, ["grid", str(tmp_path / "grid.yaml"), *data, *FAST, "--ray", address], {**driver, **auth})
    assert grid.returncode == 0, grid.stdout[-2000:] + grid.stderr[-3000:]
    cv = _mem(started, ["cv", "configs/demo.yaml", "--train", "memento10k", "--folds", "2", *data, *FAST,
                        "--ray", address], {**driver, **auth})
    assert cv.returncode == 0, cv.stdout[-2000:] + cv.stderr[-3000:]
    runs = _runs(mlflow_uri)
    assert sorted(r["status"] for r in runs if "grid_key" in r["tags"]) == ["FINISHED"] * 2
    assert sorted(r["tags"]["cv_fold"] for r in runs if r["status"] == "FINISHED" and "cv_fold" in r["tags"]) == ["0:0", "0:1"]
    # the runs went to both nodes (1 CPU each): each node's Ray worker logs name runs of ours (MLflow prints their URL)
    finished = [r["run_id"] for r in runs if r["status"] == "FINISHED"]
    for node in ("head", "worker"):
        logs = "".join(f.read_text(errors="replace") for f in (started.root / node).glob("session_*/logs/worker-*.out"))
        assert any(run_id in logs for run_id in finished), f"no run on the {node} node"

    # the driver: the cluster wants a token and it sends none (`mem extract --ray`); one with a wrong token
    # (`mem grid --ray`); and an address where no Ray runs (about 40 s of Ray's waiting: side by side with the others).
    # Ray retries once or twice here, not 20 times.
    fast = {**driver, "RAY_NUM_REDIS_GET_RETRIES": "2"}
    extract = ["extract", "--dataset", "memento10k", "--encoder", "clip-demo", "--splits", "dev", *data, "--ray"]
    grid_again = ["grid", str(tmp_path / "grid.yaml"), *data, *FAST, "--rerun", "--ray", address]
    nowhere = f"127.0.0.1:{free_port()}"
    with ThreadPoolExecutor(3) as pool:
        none, wrong, absent = pool.map(lambda a: _mem(started, *a), [
            ([*extract, address], fast), (grid_again, {**fast, **auth, "RAY_AUTH_TOKEN": "0" * 64}),
            ([*extract, nowhere], {**fast, "RAY_NUM_REDIS_GET_RETRIES": "1"})])
    assert absent.returncode == 2 and "Traceback" not in absent.stderr, absent.stderr[-3000:]
    assert absent.stderr.strip().splitlines()[-1].startswith(f"error: cannot connect to the Ray cluster at {nowhere} (")
    for refused in (none, wrong):
        assert refused.returncode == 2 and "Traceback" not in refused.stderr, refused.stderr[-3000:]
        last = refused.stderr.strip().splitlines()[-1]
        assert last.startswith(f"error: Ray token authentication: the Ray cluster at {address} ")
        assert "RAY_AUTH_TOKEN=<what `ray get-auth-token` prints on the head>" in last and "~/.ray/auth_token" in last
    assert "asks for a token and this process sent none" in none.stderr and "set RAY_AUTH_MODE=token" in none.stderr
    assert "refused this process's token (from RAY_AUTH_TOKEN)" in wrong.stderr

    started.stop()
    assert started.left() == []
