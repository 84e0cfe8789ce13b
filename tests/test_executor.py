"""experiments/executor.py: tasks run here or on a local Ray give the same outcomes; a failed task is reported in one
line while the others finish; tasks done before are skipped; a task another process holds is tried again, waiting."""

from __future__ import annotations

import sys
from functools import partial

import pytest

from mediaeval_mem.core.cluster import Failed, RayOptions
from mediaeval_mem.core.errors import MemError
from mediaeval_mem.experiments.executor import Earlier, Task, execute, raise_failures


# no `echo=print` defaults: these functions are pickled by value, and a Ray started earlier in this process (another
# test module's) leaves a `print` that does not pickle
def square(x: int, echo=None, progress: bool = False) -> int:
    echo(f"squaring {x}")
    if x < 0:
        raise MemError(f"{x} is negative")
    return x * x


def never(echo=None, progress: bool = False):
    raise AssertionError("a task done before is not run again")


def tasks() -> list[Task]:
    return [Task("[1/3] two", partial(square, 2), "a"), Task("[2/3] minus one", partial(square, -1), "b"),
            Task("[3/3] done", never, "c")]


def done(task: Task) -> Earlier | None:
    return Earlier("before", "r1") if task.key == "c" else None


def test_a_failed_task_is_one_line_the_others_finish_and_done_tasks_are_skipped():
    said, ended = [], []
    outcomes = execute(tasks(), done=done, echo=said.append, started=lambda t: said.append(f"{t.label}: running"),
                       finished=lambda t, r: ended.append((t.key, r)))
    assert outcomes == [4, Failed("-1 is negative"), Earlier("before", "r1")]
    assert said == ["[1/3] two: running", "squaring 2", "[2/3] minus one: running", "squaring -1",
                    "[2/3] minus one: failed: -1 is negative", "[3/3] done: done before (run r1)"]
    assert ended == [("a", 4)]
    with pytest.raises(MemError, match=r"^1 run\(s\) failed \(e\.g\. -1 is negative\); the others are saved: run the "
                                       r"same command again to finish them$"):
        raise_failures(outcomes)
    raise_failures([4, Earlier(1, "r")])  # none failed: nothing raised


def test_a_task_held_elsewhere_is_tried_again_waiting_after_the_others():
    calls = []

    def claim(name, held, echo=print, progress=False, wait=True):
        calls.append((name, wait))
        return None if held and not wait else name

    ts = [Task("x", partial(claim, "x", True), claims=True), Task("y", partial(claim, "y", False), claims=True)]
    assert execute(ts, echo=lambda line: None) == ["x", "y"]
    assert calls == [("x", False), ("y", False), ("x", True)]


def test_the_same_outcomes_on_a_local_ray():
    ray = pytest.importorskip("ray")
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the workers need not import this test module
    here = execute(tasks(), done=done, echo=lambda line: None)
    said = []
    ray.init(address="local", num_cpus=2, include_dashboard=False)
    try:
        on_ray = execute(tasks(), RayOptions(), done=done, echo=said.append)
        assert ray.is_initialized()  # this process's own Ray is left running
    finally:
        ray.shutdown()
    assert on_ray == here == [4, Failed("-1 is negative"), Earlier("before", "r1")]
    assert said[0] == "[3/3] done: done before (run r1)" and said[1:3] == ["[1/3] two: submitted to Ray",
                                                                          "[2/3] minus one: submitted to Ray"]
    assert "[2/3] minus one: failed: -1 is negative" in said
