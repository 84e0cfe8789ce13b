"""Ray for every command that fans out (`mem extract|grid|cv|sweep --ray [ADDRESS]`): the options, the session,
the environment of the workers, and a list of calls run as Ray tasks.

    RayOptions      where (`address`) and with what (`cpus`, `gpus` per task or actor, `workers` actors for extract)
    ray_session     Ray for the block: joined where this process already has one (a test, a notebook: left running),
                    else started or connected here (`connect`) and shut down at the end
    gpus_each       the one GPU default, where `--ray-gpus` is left out
    run_tasks       picklable calls as Ray tasks, each result (or Failed) as it comes

Every node must see the same paths: the data root, runs/ (the feature cache) and, with a config's relative
paths, the driver's working directory (a task works there where it exists). The driver's MEM_RUNS_DIR,
MLFLOW_TRACKING_URI, HF_HOME, ... are passed to every task and actor (`worker_env`, made absolute).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from mediaeval_mem.core.errors import ConfigError, MemError
from mediaeval_mem.core.paths import runs_dir

PATH_ENV = ("MEM_RUNS_DIR", "MEM_SUBMISSIONS_DIR", "MEM_DATA_ROOT", "MEM_I3D_DIR", "HF_HOME")  # made absolute
PASSED_ENV = (*PATH_ENV, "MLFLOW_TRACKING_URI", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "MEM_THREADS", "OMP_WAIT_POLICY")
GPUS_PER_RUN = 0.25  # a grid or cv run, a sweep trial (small models) on a cluster with GPUs: four share a card


@dataclass(frozen=True)
class RayOptions:
    """Where the work goes and what each piece takes: `--ray [ADDRESS] --ray-cpus N --ray-gpus F [--ray-workers W]`."""

    address: str = "local"  # "local": a Ray of this process's own on this machine; else ray.init(address=...): "auto", "head:6379"
    # the rest by keyword only: extract's old options class ordered them (address, workers, gpus, cpus)
    cpus: float = field(default=1, kw_only=True)  # per task (a run, a trial) or per encoder actor (on a CPU, the model's threads)
    gpus: float | None = field(default=None, kw_only=True)  # per task or actor, a fraction shares a card; None: `gpus_each` decides
    workers: int = field(default=2, kw_only=True)  # `mem extract`'s encoder actors, each holding the model once (grid, cv and sweep: one task a run)

    def __post_init__(self):
        if self.workers < 1:
            raise ConfigError("--ray-workers must be >= 1")
        if self.cpus <= 0 or (self.gpus is not None and self.gpus < 0):
            raise ConfigError("--ray-cpus must be > 0 and --ray-gpus >= 0")

    @property
    def local(self) -> bool:
        return self.address == "local"


def gpus_each(options: RayOptions, have: Mapping[str, float], use: str) -> float:
    """GPUs for each task or actor of `use` on a cluster with resources `have` (ray.cluster_resources()):
    `options.gpus` where given, else 0 without GPUs, and where there are some
      "run"      a grid or cv run, a sweep trial: GPUS_PER_RUN (four to a card);
      "encoder"  an extract actor holding an encoder: a card each where the cluster has one per actor, an even
                 share where fewer (every actor computes on CUDA).
    """
    if options.gpus is not None:
        return options.gpus
    if use == "run":
        return GPUS_PER_RUN if have.get("GPU") else 0
    if use == "encoder":
        return min(1.0, have.get("GPU", 0) / options.workers)
    raise ValueError(f"gpus_each: use is 'run' or 'encoder', got {use!r}")


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
    AuthenticationError = _authentication_error()
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


@contextmanager
def ray_session(options: RayOptions, **init) -> Iterator:
    """The `ray` module, connected for the block: Ray as this process already has it (a test, a notebook: left
    running), else `connect`ed here (`init`: more of ray.init's arguments; a local Ray starts without its dashboard)
    and shut down at the end."""
    ray = import_ray()
    ours = not ray.is_initialized()
    if ours:
        connect(ray, options.address, **{**({"include_dashboard": False} if options.local else {}), **init})
    try:
        yield ray
    finally:
        if ours:
            ray.shutdown()


def worker_env() -> dict[str, str]:
    """The driver's settings that decide where a run reads and writes, for every task and actor."""
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


def _in_worker(cwd: str, setup: Callable[[], None] | None, call: Callable):
    """(A Ray task) `call()` where the driver works, after `setup()` (the caller's: loading its plugins, which live
    above this layer); a MemError is the run's failure, in one line."""
    if Path(cwd).is_dir():
        os.chdir(cwd)
    try:
        if setup is not None:
            setup()
        return call()
    except MemError as e:
        return Failed(str(e))


def _why(e: BaseException) -> str:
    cause = getattr(e, "cause", None)  # RayTaskError: the task's own exception
    if cause is not None:
        return f"{type(cause).__name__}: {cause}"
    return next((line.strip() for line in str(e).splitlines() if line.strip()), type(e).__name__)


def run_tasks(options: RayOptions, calls: list[Callable], setup: Callable[[], None] | None = None
              ) -> Iterator[tuple[int, object]]:
    """Each of `calls` (picklable callables, e.g. functools.partial of a module-level function) as a Ray task with
    `options`' CPUs and GPUs (`gpus_each`, "run"), each after the picklable `setup()`; yields (index in `calls`, result or Failed) as they finish.
    A failure of a call (a MemError: its message; another error: its type and message) or of its worker or node is
    its Failed, and the others go on. In a `ray_session`: a Ray started here is shut down at the end.
    """
    if not calls:
        return
    with ray_session(options) as ray:
        pending = []
        try:
            have = ray.cluster_resources()
            gpus = gpus_each(options, have, "run")
            for name, need in (("CPU", options.cpus), ("GPU", gpus)):
                if need > have.get(name, 0):
                    raise MemError(f"each run asks for {need:g} {name}(s) (--ray-{name.lower()}s) and the Ray cluster has "
                                   f"{have.get(name, 0):g}: ask for less")
            task = ray.remote(_in_worker).options(num_cpus=options.cpus, num_gpus=gpus, max_retries=0,
                                                  runtime_env={"env_vars": worker_env()})
            cwd = os.getcwd()
            index = {task.remote(cwd, setup, call): i for i, call in enumerate(calls)}
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
