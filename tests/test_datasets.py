"""Each adapter on each layout against golden files, then table-driven broken inputs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from mediaeval_mem.datasets import open_dataset
from mediaeval_mem.core.errors import DataError

from conftest import DATA

LAYOUT_CASES = [  # (fixture folder = data root, dataset, expected layout)
    ("mediaeval", "memento10k", "mediaeval"),
    ("mediaeval", "videomem", "mediaeval"),
    ("memento-json", "memento10k", "memento-json"),
    ("videomem-csv", "videomem", "videomem-csv"),
    # generic: datasets declared in generic/datasets.yaml, and memento10k in the generic layout
    ("generic", "captioned", "generic"),  # a split column; three caption columns, kept in order, empty cells skipped
    ("generic", "seeded", "generic"),  # no split column: train/dev drawn with the declared seed, unscored rows are test
    ("generic", "per-split", "generic"),  # train.csv, dev.csv, test.csv (without score columns)
    ("generic", "memento10k", "generic"),
]


def as_golden(index) -> dict:
    """A dataset index as plain data, paths relative to the dataset folder."""
    return {
        "layout": index.layout,
        "split_info": index.split_info,
        "problems": [str(p) for p in index.problems],
        "splits": {
            split: [
                [it.video_id, str(it.path.relative_to(index.root)) if it.path else None, it.score, list(it.captions)]
                for it in items
            ]
            for split, items in index.splits.items()
        },
    }


@pytest.mark.parametrize("folder,dataset,layout", LAYOUT_CASES)
def test_layout_matches_golden(folder, dataset, layout):
    index = open_dataset(dataset, DATA / "layouts" / folder)
    assert index.layout == layout
    golden = json.loads((DATA / "golden" / f"{folder}-{dataset}.json").read_text())
    assert as_golden(index) == golden


def test_videomem_split_is_seeded_and_disjoint():
    root = DATA / "layouts" / "videomem-csv"
    a = open_dataset("videomem", root, dev_fraction=0.3, split_seed=1)
    b = open_dataset("videomem", root, dev_fraction=0.3, split_seed=1)
    c = open_dataset("videomem", root, dev_fraction=0.3, split_seed=2)
    ids = lambda ix, s: [it.video_id for it in ix.split(s)]
    assert ids(a, "dev") == ids(b, "dev") and len(ids(a, "dev")) == 3
    assert ids(a, "dev") != ids(c, "dev")
    assert not set(ids(a, "dev")) & set(ids(a, "train"))
    assert sorted(ids(a, "dev") + ids(a, "train")) == sorted(f"video{i}" for i in range(1, 11))
    assert ids(a, "test") == ["video11", "video12"]  # on disk, not in the ground truth
    assert a.split_info == {"source": "seeded split of ground-truth_dev-set.csv", "dev_fraction": 0.3, "split_seed": 1}


def test_target_column_is_configurable():
    root = DATA / "layouts" / "mediaeval"
    raw = open_dataset("memento10k", root, target="short-term-raw")
    assert [it.score for it in raw.split("train")] == [0.8, 0.5]
    vm = open_dataset("videomem", DATA / "layouts" / "videomem-csv", target="long-term")
    assert all(0.6 < it.score < 0.71 for it in vm.split("train"))
    with pytest.raises(DataError, match="available: short-term"):
        open_dataset("memento10k", DATA / "layouts" / "memento-json", target="long-term")
    generic = open_dataset("memento10k", DATA / "layouts" / "generic", target="long-term")
    assert [it.score for it in generic.split("train") + generic.split("dev")] == [0.8, 0.3]


def _copy(tmp_path, folder):
    shutil.copytree(DATA / "layouts" / folder, tmp_path / folder)
    return tmp_path / folder


def _replace(path: Path, old: str, new: str):
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))


BROKEN = [  # (layout folder, dataset, how to break it, expected fragment of one problem)
    ("mediaeval", "memento10k", lambda r: _replace(r / "memento10k/training_set/train_scores.csv", "0.601", "abc"),
     "training_set/train_scores.csv:3: column 'scores_normalized_short_term': 'abc' is not a number"),
    ("mediaeval", "memento10k", lambda r: _replace(r / "memento10k/training_set/train_scores.csv", "0.912", "1.5"),
     "train_scores.csv:2: column 'scores_normalized_short_term': '1.5' is outside [0, 1]"),
    ("mediaeval", "memento10k", lambda r: _replace(r / "memento10k/training_set/train_scores.csv", "0.912", "nan"),
     "train_scores.csv:2: column 'scores_normalized_short_term': 'nan' is not a finite number"),
    ("mediaeval", "memento10k", lambda r: (r / "memento10k/training_set/Videos/00042.mp4").unlink(),
     "training_set/Videos/00042.mp4: video file not found (listed in train_scores.csv:3)"),
    ("mediaeval", "memento10k", lambda r: _replace(r / "memento10k/training_set/train_scores.csv", "\n42,", "\n7,"),
     "train_scores.csv:3: duplicate video id '7' (first seen at train_scores.csv:2)"),
    ("mediaeval", "memento10k", lambda r: _replace(r / "memento10k/dev_set/dev_scores.csv", "scores_normalized_short_term", "score"),
     "dev_scores.csv:1: missing column(s) scores_normalized_short_term"),
    ("mediaeval", "memento10k", lambda r: (r / "memento10k/dev_set/dev_scores.csv").unlink(),
     "dev_set: no *_scores.csv: the dev split needs its scores"),
    ("memento-json", "memento10k", lambda r: _replace(r / "memento10k/memento_val_data.json", "0.8", '"high"'),
     "memento_val_data.json: column 'record 1 mem_score': 'high' is not a number"),
    ("memento-json", "memento10k", lambda r: _replace(r / "memento10k/memento_val_data.json", "[", "{"),
     "memento_val_data.json: not valid JSON"),
    ("memento-json", "memento10k", lambda r: (r / "memento10k/memento_test_data.json").unlink(),
     "memento_test_data.json: file not found: the test split needs it"),
    ("videomem-csv", "videomem", lambda r: _replace(r / "videomem/ground-truth_dev-set.csv", "0.83", "-0.2"),
     "ground-truth_dev-set.csv:4: column 'short-term_memorability': '-0.2' is outside [0, 1]"),
    ("videomem-csv", "videomem", lambda r: (r / "videomem/videos/video4.webm").unlink(),
     "videos/video4.webm: video file not found (listed in ground-truth_dev-set.csv:5)"),
    ("generic", "captioned", lambda r: _replace(r / "split-column/videos.csv", "0.5", "abc"),
     "split-column/videos.csv:2: column 'score': 'abc' is not a number"),
    ("generic", "captioned", lambda r: _replace(r / "split-column/videos.csv", "0.75", "7.5"),
     "videos.csv:3: column 'score': '7.5' is outside [0, 1]"),
    ("generic", "captioned", lambda r: _replace(r / "split-column/videos.csv", "0.5,", ","),
     "videos.csv:2: column 'score' is empty: train rows need a score"),
    ("generic", "captioned", lambda r: _replace(r / "split-column/videos.csv", "DEV", "valid"),
     "videos.csv:4: split 'valid' is not one of train, dev, test"),
    ("generic", "captioned", lambda r: _replace(r / "split-column/videos.csv", "a3,clips/a3.mp4", "a3,"),
     "videos.csv:4: empty path"),
    ("generic", "captioned", lambda r: (r / "split-column/clips/a3.mp4").unlink(),
     "split-column/clips/a3.mp4: video file not found (listed in videos.csv:4)"),
    ("generic", "seeded", lambda r: _replace(r / "seeded/videos.csv", "s6,", "s5,"),
     "seeded/videos.csv:7: duplicate video id 's5' (first seen at videos.csv:6)"),
    ("generic", "per-split", lambda r: _replace(r / "per-split/dev.csv", "p3,", "p1,"),
     "per-split/dev.csv:2: duplicate video id 'p1' (first seen at train.csv:2)"),
    ("generic", "per-split", lambda r: _replace(r / "per-split/train.csv", "path,", "file,"),
     "per-split/train.csv:1: missing column(s) path; columns are: video_id, file, score, caption"),
    ("generic", "per-split", lambda r: (r / "per-split/dev.csv").unlink(),
     "per-split/dev.csv: file not found: the dev split needs it"),
    ("generic", "per-split", lambda r: (r / "per-split/videos.csv").write_text("video_id,path,score\n"),
     "per-split: both videos.csv and train.csv, dev.csv, test.csv: keep one (videos.csv was read)"),
    ("generic", "per-split", lambda r: _replace(r / "per-split/test.csv", "path", "path,split"),
     "per-split/test.csv:1: a split column in test.csv: the file names the split; drop the column"),
]


@pytest.mark.parametrize("folder,dataset,breaker,expected", BROKEN, ids=[e for *_, e in BROKEN])
def test_broken_inputs_are_located(tmp_path, folder, dataset, breaker, expected):
    root = _copy(tmp_path, folder)
    breaker(root)
    problems = [str(p) for p in open_dataset(dataset, root).problems]
    assert any(expected in p for p in problems), problems


def test_missing_dataset_folder_says_what_to_do(tmp_path):
    with pytest.raises(DataError, match="does not exist: pass --data-root"):
        open_dataset("memento10k", tmp_path / "nowhere")
    (tmp_path / "other").mkdir()
    with pytest.raises(DataError, match="no memento10k folder under .*found: other"):
        open_dataset("memento10k", tmp_path)
    (tmp_path / "Memento10k").mkdir()
    with pytest.raises(DataError, match="matches no known memento10k layout"):
        open_dataset("memento10k", tmp_path)


def test_demo_data_reads_as_mediaeval_release(demo_root):
    for name, first in (("memento10k", "0"), ("videomem", "7000")):
        index = open_dataset(name, demo_root)
        assert index.layout == "mediaeval" and not index.problems
        assert index.split("train")[0].video_id == first
        assert all(it.score is None for it in index.split("test"))
        assert all(0 <= it.score <= 1 for it in index.split("train") + index.split("dev"))
        assert index.split("test")[0].captions[0].startswith("a ")


def test_every_caption_is_kept_and_counted(demo_copy, capsys):
    """All five captions of a Memento10k record; every description row of a MediaEval video, in file order;
    `mem data check` shows how many videos have captions and how many do not."""
    from mediaeval_mem.cli import main

    memento = open_dataset("memento10k", DATA / "layouts" / "memento-json")
    assert len(memento.split("train")[0].captions) == 5
    desc = demo_copy / "memento10k" / "dev_set" / "dev_text_descriptions.csv"
    header, *rows = desc.read_text().splitlines()
    ids = list(dict.fromkeys(r.split(",")[0] for r in rows))
    first = [r.split(",", 1)[1] for r in rows if r.split(",")[0] == ids[0]]
    kept = [r for r in rows if r.split(",")[0] != ids[1]]  # the second video loses its rows; the first gains one
    desc.write_text("\n".join([header, *kept, f"{ids[0]},a sixth caption for it"]) + "\n")
    dev = open_dataset("memento10k", demo_copy).split("dev")
    assert len(first) == 5 and dev[0].captions == (*first, "a sixth caption for it")
    assert dev[1].captions == ()
    assert main(["data", "check", "memento10k", "--data-root", str(demo_copy)]) == 0
    out = capsys.readouterr().out
    line = next(x for x in out.splitlines() if x.strip("│ ").startswith("dev"))
    cells = [c.strip() for c in line.strip("│").split("│")]
    assert cells[-3:] == [str(len(dev) - 1), "1", str(5 * (len(dev) - 1) + 1)]  # with captions, without, in all
