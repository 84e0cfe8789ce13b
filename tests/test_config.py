"""Config files: plain YAML to frozen dataclasses, loud errors, overrides, describe."""

from __future__ import annotations

import dataclasses

import pytest

from mediaeval_mem.cli import main
from mediaeval_mem.config import RunConfig, flatten, load_config, to_yaml
from mediaeval_mem.errors import ConfigError

from conftest import REPO


@pytest.mark.parametrize("path", sorted((REPO / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_configs_load(path):
    cfg = load_config(path)
    assert cfg.name == path.stem
    assert load_config(path) == cfg  # frozen, comparable


def test_defaults_are_the_papers_recipe():
    t = RunConfig().train
    assert (t.lr, t.lr_decay, t.lr_step_epochs, t.loss, t.batch_size, t.epochs, t.patience, t.shuffle_frames) == (
        1e-4, 0.95, 5, "l1", 8, 100, 5, True)
    assert RunConfig().features.encoder == "clip-vit-l14-336"


def test_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        RunConfig().train.lr = 1.0


def test_overrides_and_yaml_round_trip(tmp_path):
    cfg = load_config(REPO / "configs" / "demo.yaml", ["train.epochs=3", "model.aggregator_args.hidden=8", "train.lr=1e-2"])
    assert cfg.train.epochs == 3 and cfg.model.aggregator_args == {"hidden": 8} and cfg.train.lr == 0.01
    (tmp_path / "again.yaml").write_text(to_yaml(cfg))
    again = load_config(tmp_path / "again.yaml")
    assert flatten(again) == flatten(cfg) | {"name": cfg.name}


@pytest.mark.parametrize(
    "text,message",
    [
        ("train: {epochz: 3}", "bad.yaml: train: unknown key 'epochz' (valid: batch_size,"),
        ("trian: {epochs: 3}", "bad.yaml: top level: unknown key 'trian'"),
        ("train: {lr: fast}", "bad.yaml: train.lr: expected float, got 'fast'"),
        ("train: {epochs: 2.5}", "bad.yaml: train.epochs: expected int, got 2.5"),
        ("train: {select_on: test}", "bad.yaml: train.select_on must be holdout or dev"),
        ("model: [1, 2]", "bad.yaml: model: expected a mapping"),
        ("train: {epochs: [", "bad.yaml: not valid YAML"),
    ],
)
def test_bad_configs_name_file_and_key(tmp_path, text, message):
    (tmp_path / "bad.yaml").write_text(text)
    with pytest.raises(ConfigError) as e:
        load_config(tmp_path / "bad.yaml")
    assert message in str(e.value)


def test_describe_prints_the_papers_count(capsys):
    assert main(["describe", str(REPO / "configs" / "paper-best.yaml")]) == 0
    out = capsys.readouterr().out
    assert "trainable parameters: 1381762\n" in out and "(B, T, 1024) -> (B, 1024)" in out
    assert main(["describe", str(REPO / "configs" / "demo.yaml")]) == 0
    assert "clip-demo: one 64-d vector per frame" in capsys.readouterr().out
