"""One owner of the run record: no module but tracking/record.py names a run's artifacts or reads and writes its
tags by name; what record.py writes, it reads back equal."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "mediaeval_mem"
OWNER = "tracking/record.py"

# A run's artifact files, and the ways a module reads or writes a tag by its name.
ARTIFACTS = re.compile(r"\w+_predictions\.csv|features\.json|fold_predictions\.json|folds\.json|\bmodel\.safetensors")
# (\b: a LoRA folder's adapter_model.safetensors, peft's file name, is not a run's artifact)
TAG_ACCESS = re.compile(r"\.data\.tags|\bset_tags?\(|\btags\.\w+\s*(=|!=|LIKE)")

# What may touch tags outside record.py, and why:
ALLOWED = {
    # The store's own liveness mechanics: the process tags TrackedRun stamps on every run (mem_host, mem_pid, ...) and
    # the KILLED mark of a dead process's run. They say which process writes a run, not what the run is, and are
    # read before any record exists (when the store is opened); the end-reason tag's name is defined there, and
    # record.Tag.END_REASON is that constant.
    "tracking/liveness.py": TAG_ACCESS,
}


def _lines(path: Path):
    for n, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.lstrip().startswith("def "):  # a method's own definition (TrackedRun.set_tags), not a use
            yield n, line


def test_only_the_record_names_artifacts_and_tags():
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).as_posix()
        if rel == OWNER:
            continue
        for n, line in _lines(path):
            for pattern in (ARTIFACTS, TAG_ACCESS):
                if pattern.search(line) and ALLOWED.get(rel) is not pattern:
                    found.append(f"{rel}:{n}: {line.strip()}")
    assert not found, "outside tracking/record.py:\n" + "\n".join(found)


def test_the_grep_sees_what_it_forbids():
    """The patterns catch what they are meant to (a test of the test)."""
    for line in ('read_artifact_text(r, "dev_predictions.csv")', "x = run.data.tags['kind']", "run.set_tags({})",
                 "c.set_tag(i, 'a', 'b')", "filter_string=\"tags.grid_key = 'k'\"", 'name = "model.safetensors"'):
        assert ARTIFACTS.search(line) or TAG_ACCESS.search(line), line


def test_a_runs_record_reads_back_equal(tmp_path):
    """Write every part of a run's record, read each back: the same values."""
    import torch

    from mediaeval_mem.config import load_config
    from mediaeval_mem.tracking import record
    from mediaeval_mem.tracking.record import Kind, Tag

    cfg = load_config(Path(__file__).resolve().parent.parent / "configs" / "demo.yaml")
    keys = {"memento10k.clip-demo": {"dataset": "memento10k", "encoder": "clip-demo", "sampling": "uniform:4"}}
    features = record.FeatureRecord(keys, [{"label": "clip-demo", "encoder": "clip-demo", "weights": None}],
                                    {"memento10k": {"split_info": "official", "layout": "mediaeval"}})
    tags = {**record.identity_tags(Kind.REFIT, task=1, train="memento10k", test="memento10k",
                                   pair="memento10k->memento10k", cfg=cfg, selection="all of it", keys=keys),
            Tag.REFIT_OF: "f" * 32}
    ids, truth, pred = ["a", "b", "c"], np.array([0.5, 0.75, 0.25]), np.array([0.125, 0.5, 0.875])
    state = {"head.weight": torch.arange(6, dtype=torch.float32).reshape(2, 3)}
    fold = record.FoldPredictions({"a": 0.1}, {"b": 0.2}, {"c": 0.3})
    with record.RecordWriter("record round trip", "a refit", tags) as w:
        w.params({"train.seed": 3})
        w.metrics({"dev_srocc": 0.5, "dev_plcc": 0.25})
        w.tags({Tag.BEST_EPOCH: 4, Tag.EPOCHS_RUN: 4})
        w.write_config(cfg)
        w.write_features(features)
        w.write_predictions(record.DEV, ids, pred, truth)
        w.write_predictions(record.TEST, ids, pred)
        w.write_weights(state, cfg, [64])
        w.write_fold_predictions(fold)

    run = record.read_record(w.run_id)
    assert (run.run_id, run.name, run.status, run.kind) == (w.run_id, "a refit", "FINISHED", Kind.REFIT)
    assert (run.task, run.pair, run.train_dataset, run.test_dataset) == ("1", "memento10k->memento10k", "memento10k",
                                                                         "memento10k")
    assert (run.config_name, run.head, run.best_epoch, run.tag(Tag.REFIT_OF)) == (cfg.name, cfg.model.head, 4, "f" * 32)
    assert run.feature_key_tags == record.feature_key_tags(keys) != {}
    assert run.dev_metrics == {"srocc": 0.5, "plcc": 0.25} and run.params["train.seed"] == "3"
    assert record.read_config(w.run_id) == cfg
    assert record.read_features(w.run_id) == features
    assert record.read_features(w.run_id).key_of("clip-demo") == keys["memento10k.clip-demo"]
    dev = record.read_predictions(w.run_id, record.DEV)
    assert dev.truth_and_prediction() == dict(zip(ids, zip(truth.tolist(), pred.tolist())))
    assert record.read_predictions(w.run_id, record.TEST).by_id() == dict(zip(ids, pred.tolist()))
    assert record.read_fold_predictions(w.run_id) == fold
    trained = record.read_trained(w.run_id)
    assert (trained.config, trained.features, trained.in_dims) == (cfg, features, [64])
    assert trained.state.keys() == state.keys() and torch.equal(trained.state["head.weight"], state["head.weight"])
    assert record.find_finished({Tag.REFIT_OF: "f" * 32}).run_id == w.run_id
    assert record.find_finished({Tag.REFIT_OF: "e" * 32}) is None


def test_a_cv_parent_has_no_single_model():
    from mediaeval_mem.core.errors import MemError
    from mediaeval_mem.tracking import record
    from mediaeval_mem.tracking.record import Kind, Tag

    with record.RecordWriter("record round trip", "a cv parent", {Tag.KIND: Kind.CV}) as w:
        pass
    with pytest.raises(MemError, match="cross-validation parent"):
        record.read_trained(w.run_id)
