"""Runs told apart: `mem results` shows kind, name, head and encoder, `mem run --name` names a run, and every
command that takes a run id takes the id prefix the tables print (one resolver: ambiguous or unknown, one line)."""

from __future__ import annotations

import json
import os

import pytest

from mediaeval_mem.cli import main
from conftest import REPO

RUN = ["run", "--train", "memento10k", "--test", "memento10k", "--config", str(REPO / "configs" / "demo.yaml"), "--quiet",
       "--set", "train.epochs=2", "--set", "model.streams.0.sampling=uniform:4"]


def _logged_id(out: str) -> str:
    return out.split("logged as run ")[1].split(";")[0] if "logged as run " in out else out.split(", run ")[1].split(";")[0]


@pytest.fixture(scope="module")
def store(demo_root, tmp_path_factory):
    """A named Bi-GRU run, a ridge run named by default, and their ensemble made from id prefixes: their ids."""
    import contextlib
    import io

    old = os.environ["MEM_RUNS_DIR"]
    os.environ["MEM_RUNS_DIR"] = str(tmp_path_factory.mktemp("ids") / "runs")
    ids = {}
    try:
        for key, extra in (("named", ["--name", "my bigru"]),
                           ("ridge", ["--set", "model.streams.0.aggregator=avg", "--set", "model.head=ridge"])):
            out = io.StringIO()
            with contextlib.redirect_stdout(out):
                assert main([*RUN, "--data-root", str(demo_root), *extra]) == 0
            ids[key] = _logged_id(out.getvalue())
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            assert main(["ensemble", ids["named"][:8], ids["ridge"][:10].upper()]) == 0
        ids["ensemble"] = _logged_id(out.getvalue())
        yield ids
    finally:
        os.environ["MEM_RUNS_DIR"] = old


def _markdown(capsys) -> list[dict]:
    assert main(["results", "--no-ci", "--format", "markdown"]) == 0
    lines = capsys.readouterr().out.splitlines()
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    return [dict(zip(header, (c.strip() for c in line.strip("|").split("|")))) for line in lines[2:]]


def test_results_tell_runs_apart_and_print_ids_the_commands_take(store, capsys):
    from mediaeval_mem.tracking import get_run

    rows = {r["name"]: r for r in _markdown(capsys)}
    named = rows["my bigru"]
    assert (named["kind"], named["config"], named["head"], named["encoder"], named["seed"]) == (
        "run", "demo", "mlp", "clip-demo", "0")
    ridge = rows["demo memento10k->memento10k seed0 train.epochs=2 model.streams.0.sampling=uniform:4 "
                 "model.streams.0.aggregator=avg model.head=ridge"]  # the default name: config, pair, seed, overrides
    assert (ridge["kind"], ridge["head"]) == ("run", "ridge")
    ens = rows["ensemble mean of 2"]
    assert ens["kind"] == "ensemble" and ens["seed"] == "-" and ens["head"] == "mean"
    assert get_run(store["ensemble"]).data.tags["members"] == f"{store['named']},{store['ridge']}"  # whole ids
    for key, row in (("named", named), ("ridge", ridge), ("ensemble", ens)):
        assert 8 <= len(row["run id"]) < 32 and store[key].startswith(row["run id"])
    assert get_run(store["named"]).info.run_name == "my bigru"


def test_every_command_takes_a_unique_prefix(store, demo_root, tmp_path, monkeypatch, capsys):
    from mediaeval_mem.tracking import get_run

    short = {k: v[:9] for k, v in store.items()}
    monkeypatch.setenv("MEM_SUBMISSIONS_DIR", str(tmp_path / "subs"))
    assert main(["package-submission", "--team", "t", "--subtask", "1", short["ensemble"], "--data-root", str(demo_root)]) == 0
    assert json.loads((tmp_path / "subs" / "t-subtask1-manifest.json").read_text())["runs"][0]["run_id"] == store["ensemble"]
    assert main(["report", short["named"], short["ensemble"], "--out", str(tmp_path / "rep"), "--worst", "2"]) == 0
    assert (tmp_path / "rep" / f"worst-{store['named'][:8]}.png").is_file()
    video = next((demo_root / "memento10k" / "test_set" / "Videos").glob("*.mp4"))
    capsys.readouterr()
    assert main(["predict", short["named"], str(video), "--quiet"]) == 0
    assert capsys.readouterr().out.splitlines()[1].endswith(store["named"])  # each row names the whole id
    assert main([*RUN, "--data-root", str(demo_root), "--refit", short["named"]]) == 0
    refit = get_run(_logged_id(capsys.readouterr().out))
    assert refit.data.tags["kind"] == "refit" and refit.data.tags["refit_of"] == store["named"]
    assert refit.info.run_name == f"demo memento10k->memento10k refit of {store['named'][:8]}"


def test_an_ambiguous_or_unknown_prefix_is_one_line(store, demo_root, tmp_path, capsys):
    from mediaeval_mem.tracking import TrackedRun, search_runs

    for _ in range(17):  # seventeen ids in sixteen hex digits: two share their first character
        with TrackedRun("scratch", "bare", {}):
            pass
    firsts = [r.info.run_id[0] for r in search_runs()]
    shared = next(c for c in firsts if firsts.count(c) > 1)
    commands = [["predict", shared, str(tmp_path)], ["report", shared], ["ensemble", shared, store["named"]],
                ["package-submission", "--team", "t", "--subtask", "1", shared],
                [*RUN, "--data-root", str(demo_root), "--refit", shared]]
    for argv in commands:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and f"run id prefix '{shared}' matches {firsts.count(shared)} runs" in err, err
        assert "give more of the id" in err
    assert main(["report", "0123abcz"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no MLflow run '0123abcz'" in err and "`mem results`" in err
