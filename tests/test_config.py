"""Config files: plain YAML to frozen dataclasses, loud errors, overrides, describe."""

from __future__ import annotations

import dataclasses

import pytest

from mediaeval_mem.cli import main
from mediaeval_mem.config import RunConfig, flatten, load_config, to_yaml
from mediaeval_mem.core.errors import ConfigError

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
    assert RunConfig().model.streams[0].encoder == "clip-vit-l14-336"


def test_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        RunConfig().train.lr = 1.0


def test_overrides_and_yaml_round_trip(tmp_path):
    cfg = load_config(REPO / "configs" / "demo.yaml", ["train.epochs=3", "model.streams.0.aggregator_args.hidden=8", "train.lr=1e-2"])
    assert cfg.train.epochs == 3 and cfg.model.streams[0].aggregator_args == {"hidden": 8} and cfg.train.lr == 0.01
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
        ("train: {select_on: test}", "bad.yaml: train: select_on must be holdout or dev"),
        ("model: [1, 2]", "bad.yaml: model: expected a mapping"),
        ("model: {streams: [{encoder: clip-vit-h14}]}", "bad.yaml: model.streams[0]: unknown encoder 'clip-vit-h14'; valid names:"),
        ("model: {streams: [{encoder: i3d-kinetics}]}", "bad.yaml: model.streams[0]: aggregator 'bigru-attention' models frame order"),
        ("model: {streams: [{aggregator: none}]}", "bad.yaml: model.streams[0]: aggregator 'none' is for clip-level encoders"),
        ("model: {streams: [{sampling: every}]}", "bad.yaml: model.streams[0]: bad sampling 'every'"),
        ("model: {streams: []}", "bad.yaml: model: streams: needs at least one stream"),
        ("extract: {dtype: fp8}", "bad.yaml: extract: dtype must be auto, bf16 or fp32"),
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


def test_describe_a_three_stream_config(tmp_path, capsys):
    (tmp_path / "three.yaml").write_text(
        "model:\n  streams:\n    - {encoder: clip-vit-b32, aggregator: linear-avg}\n"
        "    - {encoder: i3d-kinetics, aggregator: none}\n    - {encoder: clip-demo, aggregator: bigru}\n  head: mlp\n")
    assert main(["describe", str(tmp_path / "three.yaml")]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    streams = [line for line in lines if line.startswith("stream ")]
    assert streams == ["stream 0    clip-vit-b32: one 768-d vector per frame (sampling all), frozen",
                       "stream 1    i3d-kinetics: one 1024-d vector per video (sampling all), frozen",
                       "stream 2    clip-demo: one 64-d vector per frame (sampling all), frozen"]
    assert "(B, T, 768) -> (B, 256)" in out and "(B, 1, 1024) -> (B, 1024)" in out and "(B, T, 64) -> (B, 128)" in out
    assert "head        mlp  (B, 256 + 1024 + 128) -> (B,)" in out
    from mediaeval_mem.models import build_model, count_trainable

    cfg = load_config(tmp_path / "three.yaml")
    assert f"trainable parameters: {count_trainable(build_model(cfg.model, [768, 1024, 64]))}\n" in out


@pytest.mark.parametrize("old", [
    "features: {encoder: clip-vit-b32}\nmodel: {aggregator: linear-avg, head: linear}\n",
    "features: {encoder: clip-vit-b32, batch_size: 32}\nmodel:\n  aggregator: linear-avg\n  fuse: [{encoder: i3d-kinetics, aggregator: linear-avg}]\n",
])
def test_a_config_in_the_old_shape_says_how_to_write_it_now(tmp_path, old):
    (tmp_path / "old.yaml").write_text(old)
    with pytest.raises(ConfigError) as e:
        load_config(tmp_path / "old.yaml")
    message = str(e.value)
    assert message.startswith(f"{tmp_path / 'old.yaml'}: this config has the shape from before streams") and "\n" not in message
    suggestion = message.split("the whole file in the new shape: ", 1)[1]
    import yaml

    (tmp_path / "new.yaml").write_text(suggestion)
    new = load_config(tmp_path / "new.yaml")  # the suggestion is a config that loads
    assert new.model.streams[0].encoder == "clip-vit-b32" and new.model.streams[0].aggregator == "linear-avg"
    assert len(new.model.streams) == 1 + ("fuse" in old) and yaml.safe_load(suggestion)
    with pytest.raises(ConfigError, match="shape from before streams"):
        load_config(None, ["features.encoder=clip-demo"])


def test_overrides_reach_every_stream():
    cfg = load_config(REPO / "configs" / "table1" / "10_fusion_clip-b32_i3d-kinetics_mlp.yaml",
                      ["model.streams.*.sampling=uniform:16", "model.streams.1.weights=random"])
    assert [s.sampling for s in cfg.model.streams] == ["uniform:16", "uniform:16"]
    assert [s.weights for s in cfg.model.streams] == [None, "random"]
    with pytest.raises(ConfigError, match=r"--set model.streams.2.encoder: '2' is not an item of a list of 1 \(use 0..0 or \*\)"):
        load_config(REPO / "configs" / "demo.yaml", ["model.streams.2.encoder=clip-demo"])


def test_every_yaml_file_goes_through_the_one_schema_engine(tmp_path):
    """Grid and profile files fail like run configs: naming the file and the key."""
    from mediaeval_mem.experiments.grid import load_grid, load_profile
    from mediaeval_mem.submission import load_submission_config

    (tmp_path / "g.yaml").write_text("pairs: [{task: 1, train: memento10k, test: memento10k}]\nconfigs: [configs/demo.yaml]\nseedz: [1]\n")
    with pytest.raises(ConfigError, match=r"g.yaml: top level: unknown key 'seedz' \(valid: configs, cv, layout, pairs, seeds, set, title\)"):
        load_grid(tmp_path / "g.yaml")
    (tmp_path / "p.yaml").write_text("encoders: {clip-vit-b32: clip-demo}\nweight: {}\n")
    with pytest.raises(ConfigError, match=r"p.yaml: top level: unknown key 'weight' \(valid: encoders, sampling, set, weights\)"):
        load_profile(tmp_path / "p.yaml", None)
    (tmp_path / "s.yaml").write_text("filename: run.csv\n")
    with pytest.raises(ConfigError, match=r"s.yaml: filename must contain \{run\}"):
        load_submission_config(tmp_path / "s.yaml")
    (tmp_path / "s.yaml").write_text("columns: [video, score, confidence]\n")
    # three columns need two targets: the id's column and one per target
    with pytest.raises(ConfigError, match=r"s.yaml: columns \[.*\]: give the id's column and one per target"):
        load_submission_config(tmp_path / "s.yaml")


@pytest.mark.parametrize("override,message", [
    ("model.streams.0.aggregator_args=[1, 2]", "model.streams[0].aggregator_args: expected a mapping"),
    ("train.epochs=[", "the value is not valid YAML"),
    ("model.head=bogus", "model: head: unknown head 'bogus'; valid names: linear, mlp"),
    ("finetune.frames=0", "finetune: frames must be >= 1"),
    ("finetune.head=bogus", "finetune: head: unknown head 'bogus'"),
    ("data.target=long term", "data: target must be one of short-term, short-term-raw, long-term, or the name"),
])
def test_bad_values_fail_when_the_config_is_read(override, message):
    """Before any extraction or training: the engine checks types, the sections check values and names."""
    with pytest.raises(ConfigError) as e:
        load_config(REPO / "configs" / "demo.yaml", [override])
    assert message in str(e.value) and "\n" not in str(e.value)


def test_submission_filename_with_unknown_fields_is_refused(tmp_path):
    from mediaeval_mem.submission import load_submission_config

    (tmp_path / "s.yaml").write_text("filename: 'me22mem-{team}-{year}-run{run}.csv'\n")
    with pytest.raises(ConfigError, match=r"only \{team\}, \{subtask\} and \{run\} can be filled in"):
        load_submission_config(tmp_path / "s.yaml")
