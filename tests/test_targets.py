"""Several targets (data.targets): a generic dataset's score columns read by name, one model with one output per
target, each target's metrics and prediction columns, `mem predict` and the packager writing one column each."""

from __future__ import annotations

import pytest

from mediaeval_mem.config import load_config
from mediaeval_mem.core.errors import ConfigError, DataError
from mediaeval_mem.datasets import open_dataset


def _write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def _two_scores(folder, rows="a,a.mp4,0.5,0.1\nb,b.mp4,0.6,0.2\nc,c.mp4,0.7,0.3\nd,d.mp4,,\n",
                header="video_id,path,score,brand_score"):
    _write(folder / "videos.csv", f"{header}\n{rows}")
    for line in rows.splitlines():
        (folder / line.split(",")[1]).touch()
    _write(folder.parent / "datasets.yaml", f"ads: {{folder: {folder.name}, dev_fraction: 0.34}}\n")
    return folder.parent


def test_a_score_column_is_a_target_by_name_and_several_are_read_at_once(tmp_path):
    root = _two_scores(tmp_path / "ads")
    one = open_dataset("ads", root, target="brand_score")
    scored = {it.video_id: it.score for s in ("train", "dev") for it in one.split(s)}
    assert scored == {"a": 0.1, "b": 0.2, "c": 0.3} and one.targets == ("brand_score",)
    assert all(it.targets == {} for s in one.splits.values() for it in s)
    both = open_dataset("ads", root, target="score", more_targets=("brand_score",))
    items = {it.video_id: it for s in ("train", "dev") for it in both.split(s)}
    assert {v: it.scores(both.targets) for v, it in items.items()} == {"a": [0.5, 0.1], "b": [0.6, 0.2], "c": [0.7, 0.3]}
    assert both.targets == ("score", "brand_score") and [it.video_id for it in both.split("test")] == ["d"]
    assert not both.problems
    # one-target reads are as before: the same splits, the same scores
    plain = open_dataset("ads", root)
    assert {s: [(it.video_id, it.score) for it in v] for s, v in plain.splits.items()} == \
           {s: [(it.video_id, it.score) for it in v] for s, v in both.splits.items()}


def test_a_missing_target_column_is_refused_in_one_line(tmp_path):
    root = _two_scores(tmp_path / "ads")
    with pytest.raises(DataError) as e:
        open_dataset("ads", root, target="score", more_targets=("recall_score",))
    msg = str(e.value)
    assert msg.startswith("ads (generic layout at") and "\n" not in msg
    assert "videos.csv has no 'recall_score' column (it has video_id, path, score, brand_score)" in msg
    with pytest.raises(DataError, match=r"memento10k \(memento-json layout .*\) has no brand_score scores"):
        from conftest import DATA
        open_dataset("memento10k", DATA / "layouts" / "memento-json", target="brand_score")


def test_an_empty_or_bad_cell_of_another_target_is_a_problem_naming_the_row(tmp_path):
    root = _two_scores(tmp_path / "ads", rows="a,a.mp4,0.5,0.1\nb,b.mp4,0.6,\nc,c.mp4,0.7,x\nd,d.mp4,,\n")
    index = open_dataset("ads", root, target="score", more_targets=("brand_score",))
    lines = sorted(str(p).split("/")[-1] for p in index.problems)
    assert len(lines) == 2 and lines[0].startswith("videos.csv:3: column 'brand_score' is empty")
    assert lines[1] == "videos.csv:4: column 'brand_score': 'x' is not a number"


@pytest.mark.parametrize("overrides, message", [
    (["data.target=short term"], "data: target must be one of short-term, short-term-raw, long-term, or the name"),
    (["data.targets=[score, score]"], "data: targets: a target is named twice"),
    (["data.target=long-term", "data.targets=[score, brand_score]"], "data: give target (long-term) or targets"),
    (["data.targets=[score, brand_score]", "model.head=ridge", "model.streams.0.aggregator=avg"],
     "model.head 'ridge' fits one target; data.targets (score, brand_score) needs a trained head"),
])
def test_bad_target_settings_fail_naming_the_key(overrides, message):
    with pytest.raises(ConfigError) as e:
        load_config(None, overrides)
    assert str(e.value).startswith(f"--set: {message}") and "\n" not in str(e.value)
