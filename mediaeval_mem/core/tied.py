"""A server that lives exactly as long as the `mem` process that started it (`mem ui`).

`mem ui` runs the MLflow server through a small guard process (`python -m mediaeval_mem.core.tied CMD...`):

    mem ui ── guard (own process group; sent SIGTERM by the kernel when `mem ui` dies, even by SIGKILL)
                └── mlflow ui ── uvicorn ── workers   (the same process group)

`mem ui` stopping by SIGTERM or Ctrl-C stops the guard's group; `mem ui` killed outright makes the kernel
signal the guard (PR_SET_PDEATHSIG), which stops its group. The guard is a child subreaper, so a server
process whose parent exits first is still its to wait for; whatever outlives SIGTERM by a few seconds is
killed. Without this, uvicorn outlived `mem ui`, reparented to init, and kept serving the port.
"""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import sys
import time

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
GRACE_S = 5.0  # how long the server's processes get to exit on SIGTERM before SIGKILL


def port_taken(host: str, port: int) -> bool:
    """Whether something already listens on (or holds) host:port: binding it fails."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a closed server's TIME_WAIT is no owner
        try:
            s.bind((host, port))
        except OSError:
            return True
    return False


def _prctl(option: int, value: int) -> bool:
    """prctl(2) on Linux; False elsewhere or where it fails."""
    try:
        return ctypes.CDLL(None, use_errno=True).prctl(option, value, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def run_tied(cmd: list[str], env: dict[str, str] | None = None) -> int:
    """Run `cmd` (with `env` added to this process's environment) under a guard whose process group dies with
    this process; returns the command's exit status.

    An interrupt (Ctrl-C, or SIGTERM where the entry point turns it into one) stops the group and propagates.
    """
    parent = os.getpid()

    def tie() -> None:  # in the guard, between fork and exec
        _prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:  # this process died before the tie was made
            os._exit(1)

    guard = subprocess.Popen([sys.executable, "-m", "mediaeval_mem.core.tied", *cmd], start_new_session=True,
                             preexec_fn=tie, env={**os.environ, **(env or {})})
    try:
        return guard.wait()
    finally:
        _stop_group(guard)


def _stop_group(guard: subprocess.Popen) -> None:
    """SIGTERM to the guard's group (the guard passes it on and waits), SIGKILL to what is left after the grace."""
    if guard.poll() is None:
        _killpg(guard.pid, signal.SIGTERM)
        try:
            guard.wait(GRACE_S * 2)
        except subprocess.TimeoutExpired:
            pass
    _killpg(guard.pid, signal.SIGKILL)  # the group outlives its leader: anything still in it
    guard.wait()


def _killpg(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


class _Stop(Exception):
    pass


def guard(cmd: list[str]) -> int:
    """The guard's body: run `cmd` in this process group; on SIGTERM, SIGINT or SIGHUP stop the whole group."""
    def stop(signum, frame):
        raise _Stop

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, stop)
    _prctl(PR_SET_CHILD_SUBREAPER, 1)  # orphaned grandchildren (uvicorn's) become ours to reap
    code = 1
    try:
        code = subprocess.call(cmd)
    except _Stop:
        pass
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)
        _killpg(0, signal.SIGTERM)
        if not _reap_all(time.monotonic() + GRACE_S):
            _killpg(0, signal.SIGKILL)  # this process too: nothing of the group may keep the port
    return code


def _reap_all(deadline: float) -> bool:
    """Wait for every child and adopted orphan until `deadline`; True when none is left."""
    while time.monotonic() < deadline:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return True
        if pid == 0:
            time.sleep(0.05)
    return False


if __name__ == "__main__":
    raise SystemExit(guard(sys.argv[1:]))
