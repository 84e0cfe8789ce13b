"""The challenge's subtasks as data: which splits train, select, are evaluated and are predicted.

Subtask 1: train and predict on Memento10k. Subtask 2 (generalisation): train on one of Memento10k /
VideoMem, predict the other. "Task 0" is no subtask: a same-dataset reference (the paper's Figure 2
shows VideoMem -> VideoMem too), and any pair involving a declared dataset (datasets/declared.py); its
runs cannot be packaged for submission. The task follows from the pair (`infer_task`). The evaluated
split is the test dataset's dev split (its test scores are hidden); the predicted split is its test
split, which is what a submission holds.
"""

from __future__ import annotations

from dataclasses import dataclass

from mediaeval_mem.core.errors import MemError

ALLOWED = {
    0: (("memento10k", "memento10k"), ("videomem", "videomem")),  # same-dataset reference (Figure 2), not a subtask
    1: (("memento10k", "memento10k"),),
    2: (("memento10k", "videomem"), ("videomem", "memento10k")),
}
NAMES = {"memento10k": "Memento10k", "videomem": "VideoMem"}


@dataclass(frozen=True)
class TaskPlan:
    task: int
    train_dataset: str
    test_dataset: str
    train_splits: tuple[str, ...]  # of train_dataset
    select: str  # "holdout" (a slice of the training rows) or "dev" (the evaluated split: the paper's protocol)
    evaluate: tuple[str, str]  # (dataset, split) that is reported
    predict: tuple[str, str]  # (dataset, split) written for submission

    @property
    def experiment_name(self) -> str:
        """One MLflow experiment per task and dataset pair, named for people."""
        kind = f"Task {self.task}" if self.task else "Reference"
        train, test = (NAMES.get(n, n) for n in (self.train_dataset, self.test_dataset))
        return f"{kind}: train {train}, test {test}"

    @property
    def pair(self) -> str:
        return f"{self.train_dataset}->{self.test_dataset}"

    def needed_splits(self) -> dict[str, tuple[str, ...]]:
        """dataset -> the splits a run reads, in the order train, dev, test (a run that trains on no split, `mem eval`,
        reads no split of its training dataset)."""
        needed = {self.train_dataset: set(self.train_splits)}
        needed.setdefault(self.test_dataset, set()).update({self.evaluate[1], self.predict[1]})
        return {name: tuple(s for s in ("train", "dev", "test") if s in splits) for name, splits in needed.items() if splits}


def infer_task(train: str, test: str) -> int:
    """The task a pair belongs to: 1 for Memento10k -> Memento10k, 2 across the two challenge datasets,
    0 (the reference, no subtask) for VideoMem -> VideoMem and any pair involving a declared dataset."""
    return next((task for task in (1, 2) if (train, test) in ALLOWED[task]), 0)


def plan_task(task: int | None, train: str, test: str, select_on: str = "holdout") -> TaskPlan:
    """The splits of (task, train dataset, test dataset); task None: the pair's own (`infer_task`).
    Refuses a task that the pair contradicts."""
    if task is None:
        task = infer_task(train, test)
    if task not in ALLOWED:
        raise MemError(f"unknown task {task}: the challenge has subtasks 1 and 2 (3 used EEG and is out of scope); "
                       f"0 is the same-dataset reference")
    declared = train not in NAMES or test not in NAMES  # not a challenge dataset: one the user declared
    if (task != 0 and declared) or (not declared and (train, test) not in ALLOWED[task]):
        allowed = "; ".join(f"--train {a} --test {b}" for a, b in ALLOWED[task])
        allowed += "; any pair with a declared dataset" if task == 0 else ""
        raise MemError(f"task {task} does not allow training on {train} and testing on {test}; allowed: {allowed}"
                       + ("; a pair with a declared dataset is task 0 (leave --task out)" if declared else ""))
    return TaskPlan(task, train, test, ("train",), select_on, (test, "dev"), (test, "test"))
