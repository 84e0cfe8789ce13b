"""mem sweep: a seeded search on a local Ray with ASHA; each trial an MLflow run; the best config runs with mem run."""

from __future__ import annotations

import re
import shlex

import pytest

pytest.importorskip("ray")

from conftest import REPO

from mediaeval_mem.cli import main
from mediaeval_mem.core.errors import ConfigError
from mediaeval_mem.experiments.sweep import load_search, run_sweep, sample_points, trial_env

SEARCH = f"""\
config: {REPO / "configs/demo.yaml"}
train: memento10k
trials: 4
set: [model.streams.0.sampling=uniform:4, train.epochs=3, train.patience=3, train.holdout_fraction=0.5]
space:
  train.lr: {{loguniform: [1.0e-5, 1.0e-1]}}
  train.batch_size: {{choice: [8, 16, 32]}}
  model.streams.0.aggregator_args.hidden: {{choice: [16, 32]}}
scheduler: {{grace_period: 1, reduction_factor: 2}}
seed: 3
"""


@pytest.fixture
def search_file(tmp_path):
    path = tmp_path / "lr-batch.yaml"
    path.write_text(SEARCH)
    return path


def test_points_follow_the_seed(search_file, tmp_path):
    search = load_search(search_file)
    points = sample_points(search)
    assert points == sample_points(load_search(search_file)) and len(points) == 4
    assert all(1e-5 <= p["train.lr"] <= 1e-1 and p["train.batch_size"] in (8, 16, 32) for p in points)
    other = tmp_path / "other.yaml"
    other.write_text(SEARCH.replace("seed: 3", "seed: 4"))
    assert sample_points(load_search(other)) != points


@pytest.mark.parametrize("dimension, message", [
    ("train.lrr: {choice: [1]}", "space train.lrr = 1 does not fit the config: train: unknown key 'lrr'"),
    ("train.batch_size: {choice: [0, 8]}", "space train.batch_size = 0 does not fit the config: train: batch_size must be >= 1"),
    ("model.streams.0.aggregator_args.hiddn: {choice: [16]}", "bad arguments ['hiddn'] for aggregator 'bigru-attention'"),
    ("train.lr: {loguniform: [0, 1]}", "space.train.lr: loguniform: low must be > 0"),
    ("train.lr: {uniform: [1, 2], choice: [1]}", "give exactly one of"),
])
def test_a_bad_dimension_is_refused_in_one_line(tmp_path, capsys, dimension, message):
    path = tmp_path / "bad.yaml"
    path.write_text(f"config: {REPO / 'configs/demo.yaml'}\ntrain: memento10k\nspace:\n  {dimension}\n")
    with pytest.raises(ConfigError, match=r"^" + str(path).replace(".", r"\.")) as e:
        load_search(path)
    assert message in str(e.value) and "\n" not in str(e.value)
    assert main(["sweep", str(path)]) == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_dev_is_never_watched(search_file):
    with pytest.raises(ConfigError, match="never on the reported dev split"):
        load_search(search_file, ("train.select_on=dev",))
    bad = search_file.with_name("dev.yaml")
    bad.write_text(SEARCH.replace("metric: select_srocc", "").replace("trials: 4", "trials: 4\nmetric: dev_srocc"))
    with pytest.raises(ConfigError, match="never watches the reported dev split"):
        load_search(bad)


def test_sweep_on_local_ray_writes_a_config_that_mem_run_takes(search_file, demo_root, runs_dir, tmp_path, monkeypatch,
                                                               capsys):
    """Through `mem sweep --ray FILE` (--ray before the file: a local Ray, the file the search); the `mem run` it
    prints at the end runs as printed."""
    import ray

    from mediaeval_mem.config import load_config
    from mediaeval_mem.experiments import sweep
    from mediaeval_mem.tracking import get_run

    search = load_search(search_file)
    results = []
    monkeypatch.setattr(sweep, "run_sweep", lambda *a, **k: results.append(run_sweep(*a, **k)) or results[-1])  # a spy
    ray.init(address="local", num_cpus=2, include_dashboard=False, runtime_env={"env_vars": trial_env()})  # what run_sweep passes
    try:
        assert main(["sweep", "--ray", str(search_file), "--data-root", str(demo_root), "--out", str(tmp_path / "best.yaml"),
                     "--quiet"]) == 0
    finally:
        ray.shutdown()
    r, printed = results[0], " ".join(capsys.readouterr().out.split())
    assert [t.point for t in sorted(r.trials, key=lambda t: t.trial_id)] == sample_points(search)
    for t in r.trials:
        run = get_run(t.run_id)
        assert run.info.status in ("FINISHED", "KILLED"), (t, run.data.tags.get("mem_end_reason"))
        assert run.data.tags["kind"] == "sweep-trial" and run.data.tags["sweep"] == "lr-batch"
        if run.info.status == "KILLED":  # stopped by ASHA: said so, never left RUNNING
            assert t.stopped_early and "stopped by ASHA" in run.data.tags["mem_end_reason"]
        else:
            assert t.dev_srocc is not None and 1 <= t.epochs <= 3
    assert r.best.status == "FINISHED" and r.best.select == max(t.select for t in r.trials if t.status == "FINISHED")
    best = load_config(r.best_path)
    assert best.train.lr == pytest.approx(r.best.point["train.lr"]) and best.train.epochs == 3
    assert (runs_dir / "sweeps" / "lr-batch").is_dir()  # Tune's own files under runs/, not the home folder
    monkeypatch.chdir(tmp_path)
    command = re.search(r"mem run --config \S+ --train \S+ --test \S+( --data-root \S+)?", printed).group(0)
    assert command.endswith(f"--data-root {demo_root}")  # the sweep's data, not the default data/
    assert main(shlex.split(command)[1:] + ["--quiet"]) == 0


def test_a_trial_that_asha_stops_ends_its_run_killed_with_the_reason(search_file, demo_root, runs_dir, tmp_path,
                                                                    monkeypatch):
    """Tune stops a function trainable by raising SystemExit from inside tune.report: the trial's run is closed."""
    from types import SimpleNamespace

    from ray import tune

    from mediaeval_mem.experiments import sweep
    from mediaeval_mem.tracking import search_runs

    def report(metrics):
        if metrics["epoch"] == 2:
            raise SystemExit(0)

    monkeypatch.setattr(tune, "report", report)
    monkeypatch.setattr(tune, "get_context", lambda: SimpleNamespace(get_trial_id=lambda: "t0_00001"))
    search = load_search(search_file)
    monkeypatch.chdir(tmp_path)  # a trial works in the driver's folder
    with pytest.raises(SystemExit) as e:  # what Tune expects back
        sweep._trial(sample_points(search)[0], search=search, data_root=str(demo_root), cwd=str(tmp_path),
                     tags={"sweep_id": "s1"})
    assert e.value.code == 0
    (run,) = search_runs(filter_string="tags.sweep_id = 's1'")
    assert run.info.status == "KILLED" and run.data.tags["sweep_trial"] == "t0_00001"
    assert run.data.tags["mem_end_reason"].startswith("stopped by ASHA after epoch 2 (select_srocc ")
    assert run.data.tags["sweep_stopped_early"] == "true" and "dev_srocc" not in run.data.metrics


def test_a_cluster_needs_a_tracking_server(search_file, capsys):
    assert main(["sweep", str(search_file), "--ray", "head:6379"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "start a tracking server" in err and "MLFLOW_TRACKING_URI" in err


def test_the_shipped_search_file_reads():
    search = load_search(REPO / "configs/sweeps/demo.yaml")
    assert search.name == "demo" and search.metric == "select_srocc" and len(sample_points(search)) == 8
