"""Runs whose process died: told apart from live ones, and marked so that none stays RUNNING.

Every run records the process that writes it (tags mem_host, mem_pid, mem_pid_start, mem_boot_id,
mem_pid_ns). When a process opens the store, each RUNNING run recorded on this host and pid
namespace whose process is gone (no such pid, a pid reused by another process, or the machine
rebooted since) is marked KILLED, with a tag mem_end_reason saying so. Runs from other hosts or
other containers' pid namespaces are left alone: from here nobody can tell.
"""

from __future__ import annotations

import os
import socket
import time
from datetime import datetime, timezone
from pathlib import Path

END_REASON = "mem_end_reason"  # the tag saying why a run ended KILLED (record.Tag.END_REASON)

# run id -> status, for runs of this process whose final status could not be written (a full disk)
unterminated: dict[str, str] = {}


def terminate_pending(client) -> None:
    """Write the final status of this process's runs that could not be marked when they ended."""
    for run_id, status in list(unterminated.items()):
        try:
            client.set_terminated(run_id, status)
        except Exception:
            continue
        del unterminated[run_id]


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def _start_ticks(pid: int) -> str | None:
    """When process `pid` started (clock ticks since boot, from /proc); None if there is no such process.

    Off Linux, only whether the pid exists: '' if it does.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat[stat.rindex(")") + 2 :].split()[19]  # field 22, counted after the command name
    except FileNotFoundError:
        return None
    except (OSError, ValueError, IndexError):
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass
    return ""


def _pid_namespace() -> str:
    """This process's pid namespace (containers sharing a hostname may not share their pids)."""
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return ""


def process_tags() -> dict[str, str]:
    """What identifies this process, to be recorded on each run it starts."""
    return {"mem_host": socket.gethostname(), "mem_pid": str(os.getpid()),
            "mem_pid_start": _start_ticks(os.getpid()) or "", "mem_boot_id": _boot_id(),
            "mem_pid_ns": _pid_namespace()}


def is_dead(tags: dict[str, str]) -> bool:
    """True when the run's process is certainly gone; False when alive or when this host cannot tell."""
    if tags.get("mem_host") != socket.gethostname() or not tags.get("mem_pid", "").isdigit():
        return False
    if tags.get("mem_pid_ns") and _pid_namespace() and tags["mem_pid_ns"] != _pid_namespace():
        return False  # another container on this host: its pids are not ours to look up
    if tags.get("mem_boot_id") and _boot_id() and tags["mem_boot_id"] != _boot_id():
        return True  # the machine has rebooted since
    start = _start_ticks(int(tags["mem_pid"]))
    if start is None:
        return True
    return bool(start and tags.get("mem_pid_start") and start != tags["mem_pid_start"])  # pid reused


def reap_dead_runs(client) -> list[str]:
    """Mark KILLED every RUNNING run of this host whose process died; returns their ids."""
    host = socket.gethostname().replace("'", "")
    ids = [e.experiment_id for e in client.search_experiments()]
    if not ids:
        return []
    reaped = []
    for run in client.search_runs(ids, f"attributes.status = 'RUNNING' and tags.mem_host = '{host}'", max_results=5000):
        tags = run.data.tags
        if not is_dead(tags):
            continue
        when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
        client.set_tag(run.info.run_id, END_REASON,
                       f"process {tags['mem_pid']} on {tags['mem_host']} ended without finishing this run "
                       f"(killed, crashed or power lost); marked KILLED at {when} by mem (pid {os.getpid()})")
        client.set_terminated(run.info.run_id, "KILLED", end_time=int(time.time() * 1000))
        reaped.append(run.info.run_id)
    return reaped
