"""One way to run the runs of `mem grid` and the folds of `mem cv`: a list of tasks, in this process or as Ray tasks.

    tasks = [Task("[1/4] demo task 1 memento10k->memento10k seed 0", partial(run_experiment, ...), key=0), ...]
    outcomes = execute(tasks, options, done=lambda t: ..., echo=print)   # in task order: Earlier, a result, or Failed
    raise_failures(outcomes, "fold run")                                   # one error, where some failed

`execute` skips a task the caller's `done(task)` finds finished before (grid: a finished run with the same grid
key; cv: the fold's finished run), says so in one line, and runs the others:
  - here (no options): one after another in this process, each with the console and its progress bars; a task
    that `claims` (cv's folds, under their file locks, shared with a concurrent `mem cv` of the same key) is first
    tried without waiting and, where another process holds it, tried again, waiting, after the others;
  - on Ray (RayOptions): one Ray task each with the options' CPUs and GPUs (core/cluster.py `run_tasks`), its
    lines prefixed with its label. The caller's `prepare(task)` runs on the driver first (grid: the features
    extracted into the shared cache once, so that tasks only read it); a task works where the driver works, with
    its plugins and the driver's environment (core/cluster.py `worker_env`).
A task that fails (its MemError, or on Ray any error, a killed worker, a lost node) is reported in one line
(`failed_line`: "LABEL: failed: WHY") and the others go on. The same tasks give the same runs, tags and results
either way. Where some failed, `mem cv` stops with one error (`raise_failures`); `mem grid` prints its table first
(the failed runs counted in it), then the same advice: run the same command again to finish them.

`mem sweep` shares the Ray session (core/cluster.py `ray_session`), `check_cluster`, the workers' environment and
`failed_line`, not `execute`: Ray Tune schedules the trials (which runs when, ASHA stopping them at its rungs,
their results), so a sweep hands its trials to Tune, not to this loop.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial

from mediaeval_mem.core.cluster import Failed, Prefixed, RayOptions, import_ray, run_tasks
from mediaeval_mem.core.errors import MemError
from mediaeval_mem.plugins import load_plugins
from mediaeval_mem.tracking.store import sqlite_path, tracking_uri

Echo = Callable[[str], None]


@dataclass(frozen=True)
class Task:
    """One run: `call(echo=..., progress=...)` returns its result; a MemError is its failure. On Ray `call` is
    pickled (a functools.partial of a module-level function)."""

    label: str  # what every line about it starts with
    call: Callable[..., object]
    key: object = None  # what the caller knows it by (its `done` lookup, its outcomes)
    plugins: tuple[str, ...] = ()  # plugins its config names, loaded by its Ray worker
    claims: bool = False  # `call` takes `wait` too: with wait=False it returns None while another process holds the task


@dataclass(frozen=True)
class Earlier:
    """A task finished before (found by the caller's `done`): what that run left and its id."""

    result: object
    run_id: str


def failed_line(label: str, why: str) -> str:
    """The one line that reports a failed run, trial or fold."""
    return f"{label}: failed: {why}"


def check_cluster(options: RayOptions) -> None:
    """Before anything runs: Ray is installed, and a cluster's runs have a store that several machines can write."""

    import_ray()
    if not options.local and sqlite_path(tracking_uri()) is not None:
        raise MemError(f"--ray {options.address}: the MLflow store {tracking_uri()} is a SQLite file, no store for runs "
                       f"written from several machines; start a tracking server (mlflow server --backend-store-uri "
                       f"sqlite:///PATH/mlflow.db --artifacts-destination SHARED/mlartifacts --host 0.0.0.0 --port 5000) "
                       f"and set MLFLOW_TRACKING_URI=http://HOST:5000 for every node")


def execute(tasks: Sequence[Task], options: RayOptions | None = None, *, done: Callable[[Task], Earlier | None] | None = None,
            echo: Echo = print, progress: bool = True, prepare: Callable[[Task], str | None] | None = None,
            started: Callable[[Task], None] | None = None,
            finished: Callable[[Task, object], None] | None = None) -> list[object]:
    """Every task of `tasks` not done before, here or (with `options`) on Ray; the outcomes in task order: an Earlier
    (done before), the call's result, or a Failed.

    `done(task)`: its Earlier, or None to run it. `prepare(task)`: on Ray only, on the driver before it is submitted:
    None, or why it cannot run (its Failed). `started(task)`: here, as it starts; `finished(task, result)`: as it
    finishes (both on the driver, e.g. a line of its metrics).
    """
    outcomes: list[object] = [None] * len(tasks)
    if options is None:
        _here(tasks, outcomes, done, echo, progress, started, finished)
    else:
        _on_ray(tasks, outcomes, options, done, echo, prepare, finished)
    return outcomes


def raise_failures(outcomes: Sequence[object], what: str = "run") -> None:
    """One error where some of `outcomes` are Failed (each was reported as it failed)."""
    failed = [o.why for o in outcomes if isinstance(o, Failed)]
    if failed:
        raise MemError(f"{len(failed)} {what}(s) failed (e.g. {failed[0]}); the others are saved: run the same "
                       f"command again to finish them")


def _earlier(task: Task, done, echo: Echo) -> Earlier | None:
    found = None if done is None else done(task)
    if found is not None:
        echo(f"{task.label}: done before (run {found.run_id})")
    return found


def _here(tasks, outcomes, done, echo, progress, started, finished) -> None:
    """In this process, in order; a task held by another process is tried again, waiting, after the others."""
    held = []
    for i, task in enumerate(tasks):
        outcomes[i] = _earlier(task, done, echo)
        if outcomes[i] is not None:
            continue
        if started is not None:
            started(task)
        outcomes[i] = _attempt(task, echo, progress, finished, **({"wait": False} if task.claims else {}))
        if task.claims and outcomes[i] is None:
            held.append(i)
    for i in held:
        outcomes[i] = _attempt(tasks[i], echo, progress, finished, wait=True)


def _attempt(task: Task, echo: Echo, progress: bool, finished, **wait) -> object:
    try:
        result = task.call(echo=echo, progress=progress, **wait)
    except MemError as e:  # one run's missing weights should not stop the others
        echo(failed_line(task.label, str(e)))
        return Failed(str(e))
    if result is not None and finished is not None:
        finished(task, result)
    return result


def _on_ray(tasks, outcomes, options: RayOptions, done, echo, prepare, finished) -> None:
    """Every task not done before (all looked up first) as a Ray task, after the driver's `prepare`."""
    for i, task in enumerate(tasks):
        outcomes[i] = _earlier(task, done, echo)
    todo = [i for i in range(len(tasks)) if outcomes[i] is None]
    if prepare is not None:
        for i in todo:
            if (why := prepare(tasks[i])) is not None:
                outcomes[i] = Failed(why)
                echo(failed_line(tasks[i].label, why))
        todo = [i for i in todo if outcomes[i] is None]
    for i in todo:
        echo(f"{tasks[i].label}: submitted to Ray")
    calls = [partial(tasks[i].call, echo=Prefixed(tasks[i].label), progress=False) for i in todo]
    plugins = tuple(dict.fromkeys(p for i in todo for p in tasks[i].plugins))
    for n, result in run_tasks(options, calls, partial(load_plugins, tuple(plugins))):
        task, outcomes[todo[n]] = tasks[todo[n]], result
        if isinstance(result, Failed):
            echo(failed_line(task.label, result.why))
        elif finished is not None:
            finished(task, result)
