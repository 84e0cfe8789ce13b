"""`mem season PLAN`: a season's stages run in order and recorded; a second call runs nothing new; a changed field
reruns its stage and what takes its run; a season killed in its cross-validation resumes with the folds it
finished; a bad plan is one line."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from conftest import REPO, fresh_runs

from mediaeval_mem.core.errors import ConfigError

# the demo's models at the tests' size: 2 folds, 1 seed, 1 epoch, 4 frames a video
PLAN = f"""
name: tiny-season
train: memento10k
team: tinyteam
folds: 2
seeds: [0]
set: [train.epochs=2, train.holdout_fraction=0.5]  # a holdout of 3 videos: a Spearman to select on
models:
  video: {{config: {REPO / 'configs' / 'demo.yaml'}, set: [model.streams.0.sampling=uniform:4]}}
  fused: {{config: {REPO / 'configs' / 'demo-fused.yaml'}, set: [model.streams.0.sampling=uniform:4]}}
baselines:
  ridge: {{config: {REPO / 'configs' / 'demo.yaml'}, set: [model.head=ridge, model.streams.0.aggregator=avg,
                                                          model.streams.0.sampling=uniform:4]}}
ensemble: {{of: [video, fused], method: weighted}}
refit: fused
package: [ensemble, refit, fused, video, ridge]
"""
ORDER = ["video", "fused", "ridge", "ensemble", "refit", "package"]


def _pack(team, subtask, run_ids, data_root):
    from mediaeval_mem.submission import package_submission

    return package_submission(team, subtask, run_ids, data_root).written


def _all_runs() -> set[str]:
    from mediaeval_mem.tracking import search_runs

    return {r.info.run_id for r in search_runs()}


@pytest.fixture(scope="module")
def season_done(demo_root, empty_store, tmp_path_factory):
    """The tiny season run once in runs/ and submissions/ folders of its own; the tests below read it (the last
    one that changes the plan is last in this file)."""
    from mediaeval_mem.experiments.season import load_plan, run_season

    base = tmp_path_factory.mktemp("season")
    runs = fresh_runs(base / "runs", empty_store)
    plan = base / "plan.yaml"
    plan.write_text(PLAN)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MEM_RUNS_DIR", str(runs))
        mp.setenv("MEM_SUBMISSIONS_DIR", str(base / "submissions"))
        result = run_season(load_plan(plan), demo_root, _pack, progress=False)
    return base, plan, result


@pytest.fixture
def season(season_done, monkeypatch):
    base, plan, result = season_done
    monkeypatch.setenv("MEM_RUNS_DIR", str(base / "runs"))
    monkeypatch.setenv("MEM_SUBMISSIONS_DIR", str(base / "submissions"))
    return base, plan, result


def test_a_season_runs_every_stage_and_its_run_files_validate(season, demo_root):
    from mediaeval_mem.datasets import open_dataset
    from mediaeval_mem.submission import read_predictions, validate_predictions
    from mediaeval_mem.tracking import get_run

    base, plan, result = season
    assert [s.name for s in result.stages] == ORDER and all(s.ran for s in result.stages)
    ids = {s.name: s.run_id for s in result.stages if s.run_id}
    kinds = {n: get_run(i).data.tags["kind"] for n, i in ids.items()}
    assert kinds == {"video": "cv", "fused": "cv", "ridge": "run", "ensemble": "ensemble", "refit": "refit"}
    assert get_run(ids["ensemble"]).data.tags["members"] == f"{ids['video']},{ids['fused']}"
    assert get_run(ids["refit"]).data.tags["refit_of"] == ids["fused"]
    state = json.loads((base / "runs" / "seasons" / "tiny-season.json").read_text())
    assert list(state["stages"]) == ORDER
    assert {n: e["run_id"] for n, e in state["stages"].items() if n != "package"} == ids
    assert {s.name: s.dev_srocc is not None for s in result.stages if s.run_id} == {
        "video": True, "fused": True, "ridge": True, "ensemble": True, "refit": False}  # the refit trained on dev

    manifest = json.loads((base / "submissions" / "tinyteam-subtask1-manifest.json").read_text())
    assert [r["run_id"] for r in manifest["runs"]] == [ids[n] for n in ("ensemble", "refit", "fused", "video", "ridge")]
    assert sorted(state["stages"]["package"]["files"]) == sorted(result.files) and len(result.files) == 6
    test_ids = [it.video_id for it in open_dataset("memento10k", demo_root).split("test")]
    for r in manifest["runs"]:
        text = (base / "submissions" / r["file"]).read_text()
        assert validate_predictions(read_predictions(text, r["file"], tuple(manifest["columns"][1:])), test_ids) == []


def test_a_second_call_runs_nothing_new(season, demo_root, capsys):
    from mediaeval_mem.cli import main

    base, plan, result = season
    state = (base / "runs" / "seasons" / "tiny-season.json").read_text()
    before = _all_runs()
    assert main(["season", str(plan), "--data-root", str(demo_root)]) == 0
    out = capsys.readouterr().out
    assert _all_runs() == before  # no MLflow run started
    assert (base / "runs" / "seasons" / "tiny-season.json").read_text() == state
    assert out.count("skipped") == len(ORDER) and "running" not in out
    for s in result.stages:
        assert (s.run_id or "") in out  # the table names every stage's run
    for p in result.files:
        assert p in out


@pytest.mark.parametrize("plan, says", [
    (None, "season plan {path} not found"),
    ("name: x\ntrain: memento10k\nmodels: {a: {config: configs/demo.yaml}}\nfoo: 1\n", "unknown key 'foo'"),
    ("train: memento10k\nmodels: {a: {config: configs/demo.yaml}}\nensemble: {of: [a, b]}\n",
     "ensemble.of: 'b' is not a stage of this plan (valid: a)"),
    ("train: memento10k\nmodels: {a: {config: configs/demo.yaml}}\nrefit: b\n", "refit: 'b' is not a model"),
    ("train: memento10k\nteam: t\nmodels: {a: {config: configs/demo.yaml}}\npackage: [a, ensemble]\n",
     "package: 'ensemble' is not a stage of this plan (valid: a)"),
    ("train: memento10k\nteam: t\nmodels: {a: {config: configs/demo.yaml}, b: {config: configs/demo.yaml}, "
     "c: {config: configs/demo.yaml}}\nbaselines: {d: {config: configs/demo.yaml}, e: {config: configs/demo.yaml}, "
     "f: {config: configs/demo.yaml}}\npackage: [a, b, c, d, e, f]\n", "at most 5 run files"),
    ("train: memento10k\nmodels: {a: {config: configs/nope.yaml}}\n", "config configs/nope.yaml not found"),
    ("train: videomem\nteam: t\nmodels: {a: {config: configs/demo.yaml}}\npackage: [a]\n", "no subtask"),
    # the paper's Bi-GRU arguments left beside a time average: refused before any stage runs, not after the cvs
    ("train: memento10k\nbaselines: {r: {config: configs/paper-best.yaml, set: [model.head=ridge, "
     "model.streams.0.aggregator=avg]}}\n", "r: model.streams[0].aggregator_args: bad arguments"),
])
def test_a_bad_plan_is_one_line_and_exit_2(plan, says, tmp_path, capsys):
    from mediaeval_mem.cli import main

    path = tmp_path / "configs" / "seasons" / "bad.yaml"  # configs/demo.yaml found from the working directory
    if plan is not None:
        path.parent.mkdir(parents=True)
        path.write_text(plan)
    assert main(["season", str(path), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and says.format(path=path) in err, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_the_shipped_plans_load(tmp_path):
    from mediaeval_mem.experiments.season import load_plan

    for name, models in (("demo", ["video", "fused"]), ("paper", ["paper", "fused"])):
        plan = load_plan(REPO / "configs" / "seasons" / f"{name}.yaml")
        assert list(plan.file.models) == models and plan.file.folds == 5 and plan.file.seeds == (0, 1, 2)
        assert plan.task == 1 and len(plan.file.package) == 5 and plan.file.ensemble.method == "weighted"
    assert load_plan(REPO / "configs" / "seasons" / "paper.yaml").configs["fused"].model.streams[1].encoder == \
        "clip-vit-l14-336-text"
    short = tmp_path / "short.yaml"  # a model given by its config's path alone
    short.write_text(f"train: memento10k\nmodels: {{video: {REPO / 'configs' / 'demo.yaml'}}}\n")
    plan = load_plan(short)
    assert plan.file.name == "short" and plan.test == "memento10k" and plan.configs["video"].name == "demo"
    with pytest.raises(ConfigError, match="at least two different"):
        from mediaeval_mem.experiments.season import EnsembleEntry

        EnsembleEntry(("a", "a"))


def test_a_season_killed_in_its_cross_validation_resumes_with_the_folds_it_finished(season, demo_root, tmp_path):
    """A real `mem season` in a child process is SIGKILLed while its cross-validation waits for a fold (whose lock
    this test holds, so the kill lands after the other fold finished); the same season again finishes, reusing
    them and training only the fold that never ran."""
    from mediaeval_mem.core.io import file_lock
    from mediaeval_mem.experiments.cv import fold_lock, open_cv
    from mediaeval_mem.experiments.season import load_plan, run_season
    from mediaeval_mem.tracking import search_runs

    base, _, _ = season
    plan = tmp_path / "plan.yaml"
    plan.write_text(f"name: killed\ntrain: memento10k\nfolds: 2\nseeds: [0]\nset: [train.epochs=2]\nmodels:\n"
                    f"  video: {{config: {REPO / 'configs' / 'demo.yaml'}, set: [model.streams.0.sampling=uniform:4]}}\n")
    cfg = load_plan(plan).configs["video"]
    key = open_cv(cfg, "memento10k", folds=2, data_root=demo_root, progress=False, echo=lambda *a: None).key
    folds = lambda: search_runs(filter_string=f"tags.cv_key = '{key}' and tags.kind = 'cv-fold'")  # noqa: E731

    env = {**os.environ, "COLUMNS": "200", "PYTHONUNBUFFERED": "1"}
    env.pop("MLFLOW_TRACKING_URI", None)
    cmd = [sys.executable, "-m", "mediaeval_mem", "season", str(plan), "--data-root", str(demo_root)]
    with file_lock(fold_lock(key, 0, 1)):  # fold 2 of 2: the child trains fold 1, then waits for it
        child = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=tmp_path)
        seen = []
        for line in child.stdout:
            seen.append(line)
            if "waiting for another process" in line:
                break
        child.kill()
        child.wait()
    assert child.returncode == -9, "".join(seen)[-2000:]
    done = [r for r in folds() if r.info.status == "FINISHED"]
    assert [r.data.tags["cv_fold"] for r in done] == ["0:0"]
    state = base / "runs" / "seasons" / "killed.json"
    assert not state.exists()  # the cross-validation never finished: no stage recorded

    result = run_season(load_plan(plan), demo_root, progress=False)
    parent = result.stages[0].run_id
    runs = folds()
    assert sorted(r.data.tags["cv_fold"] for r in runs if r.info.status == "FINISHED") == ["0:0", "0:1"]
    assert len(runs) == 2  # only the missing fold was trained
    children = set(search_runs(filter_string=f"attributes.run_id = '{parent}'")[0].data.tags["children"].split(","))
    assert {r.info.run_id for r in done} < children and len(children) == 2
    assert json.loads(state.read_text())["stages"]["video"]["run_id"] == parent


def test_a_changed_method_reruns_the_ensemble_and_the_package_not_the_cross_validations(season, demo_root):
    from mediaeval_mem.experiments.season import dry_run, load_plan, run_season

    base, plan, first = season
    ids = {s.name: s.run_id for s in first.stages}
    plan.write_text(PLAN.replace("method: weighted", "method: mean"))
    lines = dry_run(load_plan(plan), demo_root)
    assert {x.name: x.action for x in lines} == {"video": "skip", "fused": "skip", "ridge": "skip", "ensemble": "run",
                                                 "refit": "skip", "package": "run"}
    assert next(x.why for x in lines if x.name == "package") == "after ensemble"
    before = _all_runs()
    again = run_season(load_plan(plan), demo_root, _pack, progress=False)
    ran = {s.name for s in again.stages if s.ran}
    assert ran == {"ensemble", "package"}
    new = _all_runs() - before
    assert new == {again.stages[3].run_id} and again.stages[3].run_id != ids["ensemble"]  # one new run: the ensemble
    assert [s.run_id for s in again.stages if s.name not in ran] == [ids[n] for n in ("video", "fused", "ridge", "refit")]
    manifest = json.loads((base / "submissions" / "tinyteam-subtask1-manifest.json").read_text())
    assert manifest["runs"][0]["run_id"] == again.stages[3].run_id
