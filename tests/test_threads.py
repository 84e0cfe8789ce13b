"""Threads per stage (core/threads.py): small models train on one thread, encoders take the usable cores,
--threads / MEM_THREADS override, OpenMP waits passively in every `mem` process, and runs record the choice."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys

import pytest
import torch
from torch import nn

from conftest import REPO
from mediaeval_mem.config import TrainCfg
from mediaeval_mem.core import threads
from mediaeval_mem.core.errors import ConfigError
from mediaeval_mem.training.loop import train_model
from test_training import _toy_split, model_of


@pytest.fixture
def clean_env(monkeypatch):
    for k in ("MEM_THREADS", "OMP_NUM_THREADS"):
        monkeypatch.delenv(k, raising=False)
    return monkeypatch


def test_each_work_takes_its_threads(clean_env):
    cores = len(os.sched_getaffinity(0))
    assert threads.threads_for("train") == 1
    assert threads.threads_for("encode") == min(cores, threads.usable_cores()) >= 1
    clean_env.setenv("OMP_NUM_THREADS", "1")  # a Ray task with one CPU: one core to use
    assert threads.usable_cores() == 1 and threads.threads_for("encode") == 1
    clean_env.setenv("MEM_THREADS", "3")
    assert threads.threads_for("train") == threads.threads_for("encode") == 3


@pytest.mark.parametrize("value", ["0", "two", "-1"])
def test_a_bad_thread_count_is_one_line(clean_env, value):
    clean_env.setenv("MEM_THREADS", value)
    with pytest.raises(ConfigError, match="MEM_THREADS"):
        threads.threads_for("train")


def _threads_seen_while_training(model) -> tuple[list[int], int]:
    seen = []
    before = torch.get_num_threads()
    train_model(model, _toy_split(16), _toy_split(8, seed=1), TrainCfg(epochs=2, batch_size=8),
                on_epoch=lambda log: seen.append(torch.get_num_threads()))
    return seen, before


def test_training_a_small_model_uses_one_thread_and_restores_the_count(clean_env):
    torch.set_num_threads(2)
    try:
        seen, before = _threads_seen_while_training(model_of("model.streams.0.aggregator_args={hidden: 8, layers: 1}"))
        assert seen == [1, 1] and torch.get_num_threads() == before == 2
        clean_env.setenv("MEM_THREADS", "2")
        seen, _ = _threads_seen_while_training(model_of("model.streams.0.aggregator_args={hidden: 8, layers: 1}"))
        assert seen == [2, 2]
    finally:
        torch.set_num_threads(len(os.sched_getaffinity(0)))


def test_a_large_model_trains_on_every_usable_core(clean_env):
    model = model_of("model.streams.0.aggregator_args={hidden: 8, layers: 1}")
    model.extra = nn.Linear(2300, 2300)  # 5.3M trainable parameters: a compute-bound training, like the fine-tuned I3D
    assert threads.training_work(model) == "encode"
    seen, _ = _threads_seen_while_training(model)
    assert seen == [threads.usable_cores()] * 2


def test_a_mem_process_waits_passively_and_its_run_records_the_threads(demo_root, tmp_path, clean_env):
    """A real `mem run` with nothing set: OpenMP's policy is PASSIVE (set before torch loads) and the run's tags say
    which thread counts its stages used; --threads 2 is recorded as such."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OMP_") and k != "MEM_THREADS"}
    env["MEM_RUNS_DIR"] = str(tmp_path / "runs")
    env.pop("MLFLOW_TRACKING_URI", None)
    cmd = [sys.executable, "-m", "mediaeval_mem", "run", "--train", "memento10k", "--test", "memento10k",
           "--config", str(REPO / "configs" / "demo.yaml"), "--data-root", str(demo_root), "--quiet",
           "--set", "train.epochs=1"]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)  # what a user gets: nothing set
    assert out.returncode == 0, out.stderr[-2000:]
    from mediaeval_mem.cli import main

    clean_env.setenv("MEM_RUNS_DIR", env["MEM_RUNS_DIR"])
    assert main(cmd[3:] + ["--threads", "2"]) == 0  # in this process: the policy is conftest's, the count the flag's
    con = sqlite3.connect(tmp_path / "runs" / "mlflow.db")
    try:
        rows = con.execute("select run_uuid, key, value from tags where key like 'threads_%' or key = 'omp_wait_policy'").fetchall()
    finally:
        con.close()
    by_run: dict[str, dict] = {}
    for run, key, value in rows:
        by_run.setdefault(run, {})[key] = value
    tags = list(by_run.values())
    assert len(tags) == 2 and all(t["omp_wait_policy"] == "PASSIVE" for t in tags)
    assert "MEM_THREADS" not in os.environ  # --threads lasted as long as its command
    by_request = sorted((t["threads_train"], t["threads_encode"]) for t in tags)
    assert by_request == sorted([("1", str(threads.usable_cores())), ("2", "2")])


def test_threads_flag_is_refused_below_one(capsys):
    from mediaeval_mem.cli import main

    assert main(["describe", "--threads", "0"]) == 2
    assert "--threads must be >= 1" in capsys.readouterr().err
