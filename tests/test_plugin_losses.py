"""Losses are plugin parts: a plugin file registers a loss, a config names it in train.loss and a run trains
on it; a plugin's loss named like a built-in one is refused in one line."""

from __future__ import annotations

import textwrap

from conftest import REPO

from mediaeval_mem import plugins
from mediaeval_mem.cli import main
from mediaeval_mem.config import load_config
from mediaeval_mem.training.losses import LOSSES

LAB_LOSS = '''
import torch

from mediaeval_mem.training.losses import LOSSES


@LOSSES.register("lab-huber")
def lab_huber():
    """The Huber loss, quadratic within 0.05 of the target."""
    return torch.nn.HuberLoss(delta=0.05)
'''


def test_a_plugins_loss_trains_a_run(tmp_path, demo_root, runs_dir, monkeypatch):
    from mediaeval_mem.experiments.runner import run_experiment
    from mediaeval_mem.tracking import client

    (tmp_path / "lab_loss.py").write_text(LAB_LOSS)
    monkeypatch.setattr(plugins, "_loaded", {"entry-points"})
    try:
        cfg = load_config(REPO / "configs" / "demo.yaml", [f"plugins=[{tmp_path / 'lab_loss.py'}]", "train.epochs=2",
                                                            "model.streams.0.sampling=uniform:4",
                                                            "train.loss={l1: 1, lab-huber: 0.5}"])
        lines = []
        result = run_experiment(1, "memento10k", "memento10k", cfg, demo_root, echo=lines.append)
        assert client().get_run(result.run_id).data.params["train.loss.lab-huber"] == "0.5"
        assert any("train l1 + 0.5*lab-huber" in line for line in lines)
    finally:
        LOSSES.pop("lab-huber", None)


def test_a_plugins_loss_named_like_a_built_in_one_is_refused(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(plugins, "_loaded", {"entry-points"})
    (tmp_path / "clash.py").write_text(textwrap.dedent('''
        from mediaeval_mem.training.losses import LOSSES, l1

        LOSSES.register("l1")(l1)
    '''))
    (tmp_path / "c.yaml").write_text("plugins: [clash.py]\nmodel: {streams: [{encoder: clip-demo}]}\n")
    assert main(["describe", str(tmp_path / "c.yaml")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "clash.py: loss 'l1' is registered twice (first by mediaeval_mem.training.losses)" in err
