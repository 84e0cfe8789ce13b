"""Any memorability dataset by name: declarations (datasets.yaml, data.datasets), the long-term target,
the task a pair implies, and a declared dataset end to end (`mem data check`, `mem run`, MLflow).
The generic reader's own golden files and broken inputs are in test_datasets.py's tables."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from mediaeval_mem.cli import main
from mediaeval_mem.core.errors import ConfigError, DataError
from mediaeval_mem.datasets import open_dataset
from mediaeval_mem.datasets.declared import DatasetDecl
from mediaeval_mem.experiments.tasks import plan_task

from conftest import DATA, REPO

GENERIC = DATA / "layouts" / "generic"


def _write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def _generic(folder, rows="a,a.mp4,0.5\nb,b.mp4,0.6\nc,c.mp4,\n", header="video_id,path,score"):
    """A small generic-layout folder: videos.csv and empty video files."""
    _write(folder / "videos.csv", f"{header}\n{rows}")
    for line in rows.splitlines():
        (folder / line.split(",")[1]).touch()
    return folder


def test_long_term_is_read_where_present_and_refused_in_one_line_where_absent(tmp_path):
    seeded = open_dataset("seeded", GENERIC, target="long-term")
    assert [(it.video_id, it.score) for it in seeded.split("train")] == [("s2", 0.22), ("s5", 0.25), ("s6", 0.26)]
    with pytest.raises(DataError) as e:
        open_dataset("captioned", GENERIC, target="long-term")
    message = str(e.value)
    assert message.startswith("captioned (generic layout at") and "\n" not in message
    assert "split-column/videos.csv has no 'long_term_score' column" in message and "add one" in message
    # memento10k in the challenge release without long-term columns: one refusal, not a list of 'missing column'
    with pytest.raises(DataError) as e:
        open_dataset("memento10k", DATA / "layouts" / "mediaeval", target="long-term")
    message = str(e.value)
    assert message.startswith("memento10k (mediaeval layout at") and "train_scores.csv has no 'scores_normalized_long_term'" in message
    assert "long-term scores come with the layouts mediaeval (column scores_normalized_long_term), videomem-csv " \
           "(column long-term_memorability), generic (column long_term_score)" in message
    with pytest.raises(DataError, match=r"memento10k \(memento-json layout .*\) has no long-term scores \(available: short-term\); "
                                        r"long-term scores come with"):
        open_dataset("memento10k", DATA / "layouts" / "memento-json", target="long-term")


def test_a_path_may_be_absolute(tmp_path):
    clip = tmp_path / "elsewhere" / "x.mp4"
    clip.parent.mkdir()
    clip.touch()
    _generic(tmp_path / "root" / "mine", rows=f"x,{clip},0.5\ny,y.mp4,0.25\n")
    _write(tmp_path / "root" / "datasets.yaml", "mine: {folder: mine, dev_fraction: 0.5}\n")
    index = open_dataset("mine", tmp_path / "root")
    assert not index.problems
    assert {it.video_id: it.path for it in index.split("train") + index.split("dev")} == {
        "x": clip, "y": tmp_path / "root" / "mine" / "y.mp4"}


def test_declarations_from_the_data_root_and_from_a_config(tmp_path):
    root = tmp_path / "data"
    _generic(root / "ads-2026")
    _generic(tmp_path / "abs", rows="z,z.mp4,0.1\nw,w.mp4,0.2\n")
    _write(root / "datasets.yaml", "ads: {folder: ads-2026}\n")
    assert open_dataset("ads", root).root == root / "ads-2026"
    # a run config's declarations add names, and win for a name in both
    declared = {"ads": DatasetDecl(str(tmp_path / "abs")), "other": DatasetDecl(str(tmp_path / "abs"), split_seed=4)}
    assert open_dataset("ads", root, declared=declared).root == tmp_path / "abs"
    other = open_dataset("other", root, dev_fraction=0.5, declared=declared)
    assert other.split_info == {"source": "seeded split of videos.csv", "dev_fraction": 0.5, "split_seed": 4}
    with pytest.raises(DataError) as e:
        open_dataset("adz", root)
    assert str(e.value) == (f"unknown dataset 'adz'; built-in: memento10k, videomem; declared: ads; declare one in "
                            f"{root / 'datasets.yaml'} (adz: {{folder: FOLDER}}) or under data.datasets in a run config")
    _write(root / "datasets.yaml", "gone: {folder: nowhere}\n")
    with pytest.raises(DataError, match=r"gone: folder .*nowhere not found \(declared with folder 'nowhere'"):
        open_dataset("gone", root)


@pytest.mark.parametrize(
    "text,message",
    [
        ("ads: {folder: a, dev_fractoin: 0.1}", "datasets.yaml: ads: unknown key 'dev_fractoin' (valid: dev_fraction, folder, layout, split_seed)"),
        ("ads: {layout: generic}", "datasets.yaml: ads: missing key 'folder'"),
        ("ads: {folder: a, layout: csv}", "datasets.yaml: ads: layout: unknown layout 'csv'; valid names: generic, mediaeval"),
        ("ads: {folder: a, dev_fraction: 1.5}", "datasets.yaml: ads: dev_fraction must lie in (0, 1)"),
        ("videomem: {folder: a}", "datasets.yaml: datasets.videomem: 'videomem' is a built-in dataset (memento10k, videomem): declare yours under another name"),
        ("Memento10K: {folder: a}", "'Memento10K' is a built-in dataset"),
        ("'my ads': {folder: a}", "datasets.my ads: a dataset name is letters, digits"),
        ("[a, b]", "datasets.yaml: expected a mapping at the top level"),
    ],
)
def test_bad_declarations_name_the_file_and_key(tmp_path, text, message):
    _write(tmp_path / "datasets.yaml", text + "\n")
    with pytest.raises(ConfigError) as e:
        open_dataset("ads", tmp_path)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_config_declarations_go_through_the_schema(tmp_path):
    from mediaeval_mem.config import config_from_dict, load_config, to_dict

    cfg = load_config(REPO / "configs" / "demo.yaml", ["data.datasets.ads={folder: /x, dev_fraction: 0.15}"])
    assert cfg.data.datasets == {"ads": DatasetDecl("/x", "generic", 0.15, None)}
    assert config_from_dict(to_dict(cfg)) == cfg  # what a run records reads back the same
    _write(tmp_path / "c.yaml", "data: {datasets: {videomem: {folder: v}}}\n")
    with pytest.raises(ConfigError, match=r"c.yaml: data: datasets.videomem: 'videomem' is a built-in dataset"):
        load_config(tmp_path / "c.yaml")
    _write(tmp_path / "c.yaml", "data: {datasets: {ads: {folder: v, split: 2}}}\n")
    with pytest.raises(ConfigError, match=r"c.yaml: data.datasets.ads: unknown key 'split'"):
        load_config(tmp_path / "c.yaml")


@pytest.mark.parametrize(
    "task,train,test,expected",
    [
        (None, "memento10k", "memento10k", (1, "Task 1: train Memento10k, test Memento10k")),
        (None, "memento10k", "videomem", (2, "Task 2: train Memento10k, test VideoMem")),
        (None, "videomem", "memento10k", (2, "Task 2: train VideoMem, test Memento10k")),
        (None, "videomem", "videomem", (0, "Reference: train VideoMem, test VideoMem")),
        (None, "ads", "ads", (0, "Reference: train ads, test ads")),
        (None, "ads", "memento10k", (0, "Reference: train ads, test Memento10k")),
        (0, "ads", "ads", (0, "Reference: train ads, test ads")),
        (1, "ads", "ads", "a pair with a declared dataset is task 0 (leave --task out)"),
        (2, "memento10k", "ads", "task 2 does not allow training on memento10k and testing on ads"),
        (0, "memento10k", "videomem", "allowed: --train memento10k --test memento10k; --train videomem --test videomem; any pair"),
    ],
)
def test_task_is_inferred_from_the_pair(task, train, test, expected):
    from mediaeval_mem.core.errors import MemError

    if isinstance(expected, tuple):
        plan = plan_task(task, train, test)
        assert (plan.task, plan.experiment_name) == expected
    else:
        with pytest.raises(MemError, match=expected.replace("(", r"\(").replace(")", r"\)")):
            plan_task(task, train, test)


def test_a_grid_pair_may_leave_the_task_out(tmp_path):
    from mediaeval_mem.experiments.grid import load_grid

    _write(tmp_path / "g.yaml", f"configs: [{REPO}/configs/demo.yaml]\npairs: [{{train: memento10k, test: videomem}}, "
                                "{train: ads, test: ads}, {task: 0, train: videomem, test: videomem}]\n")
    assert load_grid(tmp_path / "g.yaml").pairs == ((2, "memento10k", "videomem"), (0, "ads", "ads"), (0, "videomem", "videomem"))


def test_a_run_without_videos_to_predict_is_refused_before_extracting(tmp_path, runs_dir, capsys):
    _generic(tmp_path / "all-scored", rows="a,a.mp4,0.5\nb,b.mp4,0.6\nc,c.mp4,0.7\n")
    _write(tmp_path / "datasets.yaml", "scored: {folder: all-scored, dev_fraction: 0.34}\n")
    assert main(["run", "--train", "scored", "--test", "scored", "--data-root", str(tmp_path), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: scored (generic layout at") and "has no test videos: the run reads its test split" in err
    assert not (runs_dir / "features").exists()


# --------------------------------------------------------------------------- a declared dataset end to end
N_SCORED, N_TEST = 20, 4


@pytest.fixture(scope="module")
def ads_root(tmp_path_factory):
    """24 tiny clips (64x36, 1 s) in a generic-layout folder declared as `ads`; 4 have no score (the test split)."""
    from mediaeval_mem.datasets.synthetic import FPS, render_clip, write_video

    root = tmp_path_factory.mktemp("declared")
    folder = root / "ads-2026"
    (folder / "clips").mkdir(parents=True)
    rng = np.random.default_rng(0)
    lines = ["video_id,path,score,caption,caption_2"]
    for i in range(N_SCORED + N_TEST):
        brightness, size, hue = rng.uniform(0, 1, 3)
        frames = render_clip(np.random.default_rng(i), brightness, size, hue, FPS, width=64, height=36)
        write_video(folder / "clips" / f"ad{i:02d}.mp4", frames, "libx264", {"preset": "ultrafast"})
        score = f"{0.4 + 0.35 * brightness + 0.2 * size:.4f}" if i < N_SCORED else ""  # what is visible
        lines.append(f"ad{i:02d},clips/ad{i:02d}.mp4,{score},an advert,")
    _write(folder / "videos.csv", "\n".join(lines) + "\n")
    _write(root / "datasets.yaml", "ads: {folder: ads-2026, dev_fraction: 0.25}   # layout generic\n")
    return root


def _flat(text: str) -> str:
    """Printed text with rich's wrapping undone (runs of spaces and newlines as one space)."""
    return " ".join(text.split())


def test_declared_dataset_is_checked_like_a_builtin(ads_root, capsys):
    assert main(["data", "check", "ads", "--data-root", str(ads_root)]) == 0
    out = capsys.readouterr().out
    assert f"ads: generic layout at {ads_root / 'ads-2026'}" in _flat(out)
    assert "seeded split of videos.csv, dev_fraction=0.25, split_seed=0" in _flat(out)
    rows = {cells[0]: cells for cells in ([c.strip() for c in x.strip("│").split("│")] for x in out.splitlines() if "│" in x)}
    assert rows["train"][1:4] == ["15", "0", "15"] and rows["dev"][1:4] == ["5", "0", "5"]  # videos, missing, scored
    assert rows["test"][1:4] == ["4", "0", "0"] and rows["test"][-3:] == ["4", "0", "4"]  # one caption each
    assert "no problems found" in out
    # named nothing: the built-ins found (none here) and every declared dataset
    assert main(["data", "check", "--data-root", str(ads_root)]) == 0
    out = capsys.readouterr().out
    assert "memento10k: no folder under the data root, not checked" in out and "ads: generic layout" in _flat(out)
    (ads_root / "ads-2026" / "clips" / "ad03.mp4").rename(ads_root / "moved.mp4")
    try:
        assert main(["data", "check", "ads", "--data-root", str(ads_root)]) == 1
        assert "clips/ad03.mp4: video file not found (listed in videos.csv:5)" in _flat(capsys.readouterr().out)
    finally:
        (ads_root / "moved.mp4").rename(ads_root / "ads-2026" / "clips" / "ad03.mp4")


def test_declared_names_fail_in_one_line_on_the_command_line(ads_root, tmp_path, capsys):
    assert main(["data", "check", "adz", "--data-root", str(ads_root)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: unknown dataset 'adz'; built-in: memento10k, videomem; declared: ads;") and err.count("\n") == 1
    assert main(["run", "--task", "1", "--train", "adz", "--test", "ads", "--data-root", str(ads_root)]) == 2
    assert capsys.readouterr().err.startswith("error: unknown dataset 'adz'")
    assert main(["run", "--task", "1", "--train", "ads", "--test", "ads", "--data-root", str(ads_root)]) == 2
    assert "a pair with a declared dataset is task 0" in capsys.readouterr().err
    assert main(["extract", "--dataset", "adz", "--encoder", "clip-demo", "--data-root", str(ads_root)]) == 2
    assert capsys.readouterr().err.startswith("error: unknown dataset 'adz'")
    # declared in a run config only: `mem data check --config` knows it
    _write(tmp_path / "c.yaml", f"data: {{datasets: {{mine: {{folder: {ads_root / 'ads-2026'}}}}}}}\n")
    assert main(["data", "check", "mine", "--data-root", str(ads_root), "--config", str(tmp_path / "c.yaml")]) == 0
    assert "mine: generic layout" in _flat(capsys.readouterr().out)


def test_declared_dataset_runs_as_the_reference_task_and_is_tracked(ads_root, runs_dir, capsys):
    from mediaeval_mem.tracking import read_artifact_text, search_runs

    argv = ["run", "--train", "ads", "--test", "ads", "--config", str(REPO / "configs" / "demo.yaml"), "--data-root",
            str(ads_root), "--set", "train.epochs=2", "--set", "model.streams.0.sampling=uniform:4", "--quiet"]
    assert main(argv) == 0
    assert "logged to MLflow experiment 'Reference: train ads, test ads'" in _flat(capsys.readouterr().out)
    (run,) = search_runs(["Reference: train ads, test ads"])
    tags = run.data.tags
    assert run.info.status == "FINISHED" and tags["task"] == "0" and tags["train_dataset"] == tags["test_dataset"] == "ads"
    assert tags["feature_key.ads.clip-demo"] and {"dev_plcc", "dev_srocc", "dev_mse"} <= set(run.data.metrics)
    assert int(run.data.params["derived.n_dev"]) == 5 and int(run.data.params["derived.n_test"]) == N_TEST
    test_ids = [r["video_id"] for r in csv.DictReader(read_artifact_text(run.info.run_id, "test_predictions.csv").splitlines())]
    assert test_ids == [f"ad{i:02d}" for i in range(N_SCORED, N_SCORED + N_TEST)]
    info = json.loads(read_artifact_text(run.info.run_id, "features.json"))["datasets"]["ads"]
    assert info == {"layout": "generic", "split_info": {"source": "seeded split of videos.csv", "dev_fraction": 0.25, "split_seed": 0}}
    # task 0: no subtask, so never packaged
    assert main(["package-submission", "--team", "us", "--subtask", "1", run.info.run_id, "--data-root", str(ads_root)]) == 2
    assert "made for task 0, not subtask 1" in capsys.readouterr().err
