"""`mem ui`: the MLflow server dies with the `mem ui` process, however that is stopped; a taken port is refused."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def marked(mark: str) -> list[int]:
    """Live processes whose environment carries `mark` (`mem ui` and everything it started inherit it)."""
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and mark.encode() in (proc / "environ").read_bytes():
                state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
                if state != "Z":  # a zombie holds nothing: it only waits for its parent to read its status
                    pids.append(int(proc.name))
        except OSError:  # gone meanwhile, or not ours to read
            pass
    return pids


def answers(port: int) -> bool:
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2).read()
        return True
    except OSError:
        return False


def wait_for(predicate, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return predicate()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGKILL], ids=["SIGTERM", "SIGINT", "SIGKILL"])
def test_the_server_dies_with_mem_ui(runs_dir, sig):
    """A real `mem ui` serving HTTP, stopped by its PID (`kill`, `kill -INT` as Ctrl-C, `kill -9`): no process of it
    stays, the port is free."""
    port, mark = free_port(), f"MEM_UI_TEST_{uuid.uuid4().hex}"
    env = {**os.environ, "MEM_RUNS_DIR": str(runs_dir), mark: "1"}
    # SIGINT's default in the child, whatever this process inherited (a background job starts with it ignored)
    proc = subprocess.Popen([sys.executable, "-m", "mediaeval_mem", "ui", "--port", str(port)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        assert wait_for(lambda: answers(port) or proc.poll() is not None, 120) and proc.poll() is None, "mem ui did not serve"
        assert len(marked(mark)) >= 3  # mem ui, the guard, the server (and its workers)
        proc.send_signal(sig)
        proc.wait(timeout=30)
        assert wait_for(lambda: not marked(mark), 20), f"left running: {marked(mark)}"
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as a server binds: our closed requests' TIME_WAIT is no owner
            s.bind(("127.0.0.1", port))  # the port is free again
            s.listen()
    finally:
        for pid in marked(mark):  # only if the test failed: what this test started
            os.kill(pid, signal.SIGKILL)


def test_a_taken_port_is_refused_in_one_line(runs_dir, capsys):
    from mediaeval_mem.cli import main

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        assert main(["ui", "--port", str(port)]) == 2
    out = capsys.readouterr()
    assert out.out == "" and out.err.count("\n") == 1
    assert f"port {port}" in out.err and "--port" in out.err
