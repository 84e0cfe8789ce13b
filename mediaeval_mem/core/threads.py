"""How many threads a stage computes with: from the cores this process may use and the work it runs.

Measured on this project's 2-core machine (bench/concurrent_runs.py, bench/README.md): torch's defaults, one
OpenMP thread per core that spins while it waits, let concurrent processes steal each other's cores: three
Bi-GRU trainings beside a demo took 27-34 s a step instead of about 0.5 s. Two settings fix it:

- OpenMP waits passively (OMP_WAIT_POLICY=PASSIVE): a thread with nothing to do sleeps instead of spinning.
  It is read once, when the OpenMP runtime loads (with torch), so entry points set it before importing torch
  (`passive_waiting`); a value the user set wins.
- Each stage takes the threads its work can use (`threads_for`): training the harness's small temporal
  models is latency-bound (a GRU step is hundreds of tiny matrix products: one thread ran the demo's
  training 2.4x faster than two on a loaded machine, with the same metrics), so it takes one; encoding
  frames and fine-tuning a video network are large batched products that take every core this process
  may use. `--threads N` / MEM_THREADS=N sets every stage's count.

The cores a process may use: its CPU affinity, a cgroup CPU quota (containers), and OMP_NUM_THREADS where
set (Ray sets it to a task's CPUs), whichever is smallest.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
from pathlib import Path

from mediaeval_mem.core.errors import ConfigError

ENV = "MEM_THREADS"
LARGE_MODEL_PARAMS = 5_000_000  # parameters (in the forward) from which training is compute-bound (the fine-tuned I3D: 12M)


def usable_cores() -> int:
    """The cores this process may compute on: affinity, cgroup quota and OMP_NUM_THREADS, the smallest."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        cores = os.cpu_count() or 1
    quota = _cgroup_quota()
    if quota is not None:
        cores = min(cores, quota)
    omp = os.environ.get("OMP_NUM_THREADS", "").split(",")[0].strip()
    if omp.isdigit() and int(omp) > 0:
        cores = min(cores, int(omp))
    return max(1, cores)


def _cgroup_quota() -> int | None:
    """A cgroup v2 (cpu.max) or v1 (cfs quota/period) CPU limit, rounded up to whole cores; None: no limit."""
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota == "max":
            return None
        return max(1, math.ceil(int(quota) / int(period)))
    except (OSError, ValueError):
        pass
    try:
        quota = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us").read_text())
        period = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us").read_text())
        return None if quota <= 0 else max(1, math.ceil(quota / period))
    except (OSError, ValueError):
        return None


def requested() -> int | None:
    """The count set by --threads / MEM_THREADS, or None. A bad value is one line."""
    value = os.environ.get(ENV, "").strip()
    if not value:
        return None
    if not value.isdigit() or int(value) < 1:
        raise ConfigError(f"{ENV}={value!r}: give a whole number of threads >= 1 (or unset it)")
    return int(value)


@contextlib.contextmanager
def threads_requested(n: int | None):
    """`--threads N` for the duration of a command: MEM_THREADS=N, which every stage reads and Ray workers
    inherit; the previous value is restored after (tests call `mem`'s main in one process)."""
    if n is None:
        yield
        return
    old = os.environ.get(ENV)
    os.environ[ENV] = str(n)
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(ENV, None)
        else:
            os.environ[ENV] = old


def threads_for(work: str) -> int:
    """Threads for a stage: 'train' (small models: latency-bound, one), 'encode' (every usable core)."""
    if work not in ("train", "encode"):
        raise ValueError(f"unknown work {work!r}")
    n = requested()
    if n is not None:
        return n
    return 1 if work == "train" else usable_cores()


def training_work(model) -> str:
    """'encode' for a model large enough to be compute-bound (a video network fine-tuned, a VLM with LoRA adapters:
    its frozen weights compute too), else 'train'."""
    return "encode" if sum(p.numel() for p in model.parameters()) >= LARGE_MODEL_PARAMS else "train"


def set_threads(n: int) -> int:
    """Set torch's intra-op threads (and numpy's BLAS, for the scikit-learn baselines) to `n`; returns the old count."""
    import torch

    old = torch.get_num_threads()
    if n != old:
        torch.set_num_threads(n)
    _blas_limit(n)
    return old


def _blas_limit(n: int) -> None:
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # scikit-learn brings it; without it numpy keeps its own count
        return
    threadpool_limits(limits=n, user_api="blas")


def with_threads(work):
    """Decorator: run the function with `threads_for(work)` threads, restoring the count after.
    `work` is a name, or a function of the call's arguments that returns one (see `training_work`)."""
    def wrap(fn):
        @functools.wraps(fn)
        def call(*args, **kwargs):
            name = work(*args, **kwargs) if callable(work) else work
            old = set_threads(threads_for(name))
            try:
                return fn(*args, **kwargs)
            finally:
                set_threads(old)
        return call
    return wrap


def passive_waiting() -> None:
    """Entry points, before torch loads: OpenMP threads sleep while they wait (unless the user chose a policy).
    Child processes (decoding workers, `mem` runs a test starts, Ray workers) inherit it."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def describe() -> dict[str, str]:
    """What a run records: the thread counts its stages use, and the OpenMP wait policy."""
    return {"threads_train": str(threads_for("train")), "threads_encode": str(threads_for("encode")),
            "threads_usable_cores": str(usable_cores()), "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "ACTIVE (default)")}
