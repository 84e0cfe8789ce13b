"""Runs of a grid or a cross-validation as Ray tasks: `mem grid --ray [ADDRESS]`, `mem cv --ray [ADDRESS]`.

The driver (the `mem` process) decides what to run exactly as without Ray (the same grid keys and cv
tags, so a run finished either way is never run again), extracts the features the runs read into the
shared cache, then submits one Ray task per run with the CPUs and GPUs it declares. A task calls the same
stage functions as the sequential path (`run_experiment`, cv's `fold_task`) and logs its own MLflow run;
the driver gathers what the tasks return. A task that fails (an error of the run, a killed worker, a lost
node) is reported in one line and the others go on.

Features are extracted once, on the driver, before fanning out, so tasks only read the cache: N runs of
one grid row need the same feature set, and with the store's file locks alone N-1 tasks would sit
holding their CPUs or GPU share while one extracts (and a lock over network storage is only as good as
its lock daemon). A stream whose encoder trains itself first (`i3d-finetune` without weights) depends on
the run's seed and is made by the run, as without Ray.

Every node must see the same paths: the data root, runs/ (the feature cache) and, with a config's
relative paths, the driver's working directory (a task works there where it exists). The driver's
MEM_RUNS_DIR, MLFLOW_TRACKING_URI, HF_HOME, ... are passed to every task (made absolute).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from mediaeval_mem.core.errors import ConfigError, MemError

PATH_ENV = ("MEM_RUNS_DIR", "MEM_SUBMISSIONS_DIR", "MEM_DATA_ROOT", "MEM_I3D_DIR", "HF_HOME")  # made absolute
PASSED_ENV = (*PATH_ENV, "MLFLOW_TRACKING_URI", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "MEM_THREADS", "OMP_WAIT_POLICY")
GPUS_WHERE_PRESENT = 0.25  # --ray-gpus left out on a cluster with GPUs: four runs share a card


@dataclass(frozen=True)
class RayCluster:
    """Where the runs go and what each takes: `--ray [ADDRESS] --ray-cpus N --ray-gpus F`."""

    address: str = "local"  # "local": ray.init() on this machine; else ray.init(address=...), e.g. "auto", "head:6379"
    cpus: float = 1  # per run
    gpus: float | None = None  # per run, a fraction shares a card; None: GPUS_WHERE_PRESENT if the cluster has GPUs, else 0

    def __post_init__(self):
        if self.cpus <= 0 or (self.gpus is not None and self.gpus < 0):
            raise ConfigError("--ray-cpus must be > 0 and --ray-gpus >= 0")

    @property
    def local(self) -> bool:
        return self.address == "local"


def import_ray():
    try:
        import ray
    except ImportError:
        raise MemError("--ray needs Ray, an optional extra: pip install -e '.[ray]'") from None
    return ray


def connect(ray, address: str, **init) -> None:
    """ray.init: a Ray of this process's own for address 'local' (never one that another process runs here), else the
    cluster at `address`. A cluster that cannot be reached, or that refuses this process's token, says so in one line.

    Ray >= 2.59 starts a local Ray with token authentication (making ~/.ray/auth_token), and `ray start --head` too
    where that file exists; a process given an explicit address sends its token only with RAY_AUTH_MODE=token (Ray's
    choice, kept here: a token meant for one cluster never goes to another unasked).
    """
    try:
        ray.init(address=address, **init)
    except (ConnectionError, _authentication_error()) as e:
        if _refused_token(e):
            raise MemError(_token_help(address, e)) from None
        raise MemError(f"cannot connect to the Ray cluster at {address} ({e}): is it running (`ray status`)?") from None


def _authentication_error() -> type[BaseException] | tuple:
    """Ray's AuthenticationError; () on a Ray from before token authentication (2.59), which has none to raise."""
    import ray.exceptions

    return getattr(ray.exceptions, "AuthenticationError", ())


def _refused_token(e: BaseException | None) -> bool:
    """Whether `e` or what caused it is Ray's token authentication refusing this process (or finding no token)."""
    AuthenticationError = _authentication_error()  # noqa: N806
    while e is not None:  # ray.init raises ConnectionError from the GCS client's error, whose text names the refusal
        if isinstance(e, AuthenticationError) or "InvalidAuthToken" in str(e) or "AuthenticationError" in str(e):
            return True
        e = e.__cause__ or e.__context__
    return False


def _token_source() -> str | None:
    """Where Ray takes this process's token from, in its own order (RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH, the
    default file); None where there is none."""
    if os.environ.get("RAY_AUTH_TOKEN"):
        return "RAY_AUTH_TOKEN"
    if os.environ.get("RAY_AUTH_TOKEN_PATH"):
        return f"RAY_AUTH_TOKEN_PATH={os.environ['RAY_AUTH_TOKEN_PATH']}"
    default = Path.home() / ".ray" / "auth_token"
    return str(default) if default.is_file() else None


def _token_help(address: str, e: BaseException) -> str:
    """One line: how Ray's token authentication stopped this process from joining `address`, and what to do."""
    where = "here" if address == "local" else f"at {address}"
    give = ("give this machine the head's token: RAY_AUTH_TOKEN=<what `ray get-auth-token` prints on the head>, "
            "or the head's ~/.ray/auth_token copied to this machine's")
    if os.environ.get("RAY_AUTH_MODE", "").lower() != "token":
        return (f"Ray token authentication: the Ray cluster {where} asks for a token and this process sent none "
                f"(RAY_AUTH_MODE is not 'token'): set RAY_AUTH_MODE=token and {give}")
    if isinstance(e, _authentication_error()):  # raised before connecting: no token, or RAY_AUTH_TOKEN_PATH unreadable
        return f"Ray token authentication: RAY_AUTH_MODE=token and no usable token here ({e.message}): {give}"
    return f"Ray token authentication: the Ray cluster {where} refused this process's token (from {_token_source()}): {give}"


def check_cluster(cluster: RayCluster) -> None:
    """Before anything runs: Ray is installed, and a cluster's runs have a store that several machines can write."""
    from mediaeval_mem.tracking.store import sqlite_path, tracking_uri

    import_ray()
    if not cluster.local and sqlite_path(tracking_uri()) is not None:
        raise MemError(f"--ray {cluster.address}: the MLflow store {tracking_uri()} is a SQLite file, no store for runs "
                       f"written from several machines; start a tracking server (mlflow server --backend-store-uri "
                       f"sqlite:///PATH/mlflow.db --artifacts-destination SHARED/mlartifacts --host 0.0.0.0 --port 5000) "
                       f"and set MLFLOW_TRACKING_URI=http://HOST:5000 for every node")


def worker_env() -> dict[str, str]:
    """The driver's settings that decide where a run reads and writes, for every task."""
    from mediaeval_mem.core.paths import runs_dir

    env = {k: os.environ[k] for k in PASSED_ENV if os.environ.get(k)}
    env["MEM_RUNS_DIR"] = str(runs_dir())
    # OpenMP threads sleep while they wait (core/threads.py): Ray runs several workers per node, each with
    # OMP_NUM_THREADS set to its CPUs, and spinning workers would steal each other's cores
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    return {k: str(Path(v).resolve()) if k in PATH_ENV else v for k, v in env.items()}


@dataclass(frozen=True)
class Failed:
    """What a task that did not finish returns in place of its result."""

    why: str


class Prefixed:
    """A task's echo: its lines, prefixed with its run's label, on the worker's stdout (Ray shows it on the driver)."""

    def __init__(self, label: str):
        self.label = label

    def __call__(self, line: str) -> None:
        print(f"{self.label}: {line}", flush=True)


def _in_worker(cwd: str, plugins: tuple[str, ...], call: Callable):
    """(A Ray task) `call()` where the driver works, with its plugins; a MemError is the run's failure, in one line."""
    from mediaeval_mem.plugins import load_plugins

    if Path(cwd).is_dir():
        os.chdir(cwd)
    try:
        load_plugins(plugins)
        return call()
    except MemError as e:
        return Failed(str(e))


def _why(e: BaseException) -> str:
    cause = getattr(e, "cause", None)  # RayTaskError: the task's own exception
    if cause is not None:
        return f"{type(cause).__name__}: {cause}"
    return next((line.strip() for line in str(e).splitlines() if line.strip()), type(e).__name__)


def run_tasks(cluster: RayCluster, calls: list[Callable], plugins: tuple[str, ...] = ()) -> Iterator[tuple[int, object]]:
    """Each of `calls` (picklable callables, e.g. functools.partial of a module-level function) as a Ray task with
    the cluster's CPUs and GPUs; yields (index in `calls`, result or Failed) as they finish.

    Connects first (`connect`: a Ray of its own for a local cluster, else the cluster at its address) unless Ray is already
    initialised in this process (a test, a notebook: left running); a Ray started here is shut down at the end.
    """
    if not calls:
        return
    ray = import_ray()
    ours = not ray.is_initialized()
    if ours:
        connect(ray, cluster.address, **({"include_dashboard": False} if cluster.local else {}))
    pending = []
    try:
        have = ray.cluster_resources()
        gpus = cluster.gpus if cluster.gpus is not None else (GPUS_WHERE_PRESENT if have.get("GPU") else 0)
        for name, need in (("CPU", cluster.cpus), ("GPU", gpus)):
            if need > have.get(name, 0):
                raise MemError(f"each run asks for {need:g} {name}(s) (--ray-{name.lower()}s) and the Ray cluster has "
                               f"{have.get(name, 0):g}: ask for less")
        task = ray.remote(_in_worker).options(num_cpus=cluster.cpus, num_gpus=gpus, max_retries=0,
                                              runtime_env={"env_vars": worker_env()})
        cwd = os.getcwd()
        index = {task.remote(cwd, tuple(plugins), call): i for i, call in enumerate(calls)}
        pending = list(index)
        while pending:
            [ref], pending = ray.wait(pending, num_returns=1)
            try:
                yield index[ref], ray.get(ref)
            except ray.exceptions.RayError as e:  # the task's own error, or its worker or node died
                yield index[ref], Failed(_why(e))
    finally:
        for ref in pending:  # stopped early (Ctrl-C): a cluster's tasks would go on; interrupted, their runs end KILLED
            ray.cancel(ref)
        if ours:
            ray.shutdown()

