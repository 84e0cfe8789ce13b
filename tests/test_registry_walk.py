"""Walk the registries: every encoder runs on a tiny input; every encoder x aggregator x head that the
config schema allows builds, runs and gives finite outputs of the right width; every shipped config
runs one step on generated data."""

from __future__ import annotations

import itertools

import pytest
import torch

from mediaeval_mem.config import ModelCfg, StreamCfg, apply_overrides, load_config
from mediaeval_mem.core.errors import ConfigError
from mediaeval_mem.core.schema import to_yaml
from mediaeval_mem.encoders import ENCODERS, encoder_recipe
from mediaeval_mem.features.inputs import input_kind
from mediaeval_mem.models import AGGREGATORS, HEADS, build_model

from conftest import REPO, fresh_runs

# built at full size in test_encoders, test_siglip and test_video_models (slow)
FULL_SIZE = {"clip-vit-b32", "clip-vit-l14-336", "siglip2-base-p16-224", "siglip2-so400m-p14-384",
             "vjepa2-vitl-256", "videomae-base", "xclip-base-p32"}
# the full-size VLMs (15 GB in fp32 for the 3B): their architecture is the demo VLM's, which the walk runs
FULL_SIZE |= {n for n in ENCODERS if n.startswith(("qwen2.5-vl-3b", "qwen2.5-vl-7b"))}  # -mean, -captioned, -lora too


def _allowed(encoder: str, aggregator: str, head: str = "mlp") -> bool:
    try:  # the schema checks the pair when a stream is built, and the head's needs when the model is
        ModelCfg(streams=(StreamCfg(encoder=encoder, aggregator=aggregator),), head=head)
        return True
    except ConfigError:
        return False


COMBOS = [c for c in itertools.product(sorted(ENCODERS), sorted(AGGREGATORS), sorted(HEADS)) if _allowed(*c)]


def test_the_schema_allows_what_makes_sense():
    assert not _allowed("i3d-kinetics", "bigru-attention") and not _allowed("clip-vit-b32", "none")
    assert _allowed("i3d-kinetics", "linear-avg") and _allowed("clip-vit-l14-336", "transformer")
    assert not _allowed("clip-demo-text", "none") and _allowed("clip-demo-text", "bigru-attention")
    assert not _allowed("clip-demo", "bigru-attention", "ridge") and _allowed("i3d-kinetics", "none", "svr")
    # 2 trained heads: 6 frame-level (CLIPs, SigLIP 2s, their stand-ins) x 5 aggregators, 21 clip-level (3 I3Ds, 3
    # video transformers and their 3 stand-ins, 3 VLMs x 4 variants: answer, -mean, -captioned, -lora) x 3, 11 caption
    # encoders x 5, precomputed x 5, 4 audio encoders x 5; 2 closed-form heads (ridge, svr) on time-pooled features:
    # avg for all 43 encoders, none for the 21 clip-level
    assert len(COMBOS) == 2 * (6 * 5 + 21 * 3 + 11 * 5 + 1 * 5 + 4 * 5) + 2 * (43 + 21)


@pytest.mark.parametrize("encoder,aggregator,head", COMBOS, ids=["-".join(c) for c in COMBOS])
def test_every_allowed_combination_runs(encoder, aggregator, head):
    info = ENCODERS.info(encoder)
    width = info.width or 16  # precomputed: the width comes from the files
    cfg = load_config(None, [f"model.streams.0.encoder={encoder}", f"model.streams.0.aggregator={aggregator}",
                             f"model.head={head}", "model.streams.0.aggregator_args={}" if aggregator != "bigru-attention"
                             else "model.streams.0.aggregator_args={layers: 2}"])
    model = build_model(cfg.model, [width]).eval()
    t = 1 if input_kind(info).per_video else 7
    x, mask = torch.randn(3, t, width), torch.ones(3, t, dtype=torch.bool)
    mask[0, t // 2 + 1 :] = t == 1  # a shorter video in the batch, for frame-level features
    out = model([(x, mask)])
    assert out.shape == (3,) and torch.isfinite(out).all() and ((out >= 0) & (out <= 1)).all()
    head_in = model.head.layers[0].in_features if hasattr(model.head, "layers") else model.head.mean.shape[0]
    assert sum(a.out_dim for a in model.aggregators) == head_in


VIDEO = sorted(n for n in set(ENCODERS) - FULL_SIZE if input_kind(n).reads_video)  # the others: test_text, test_precomputed


@pytest.mark.parametrize("name", VIDEO)
def test_every_video_encoder_runs_on_a_tiny_input(name, tmp_path, runs_dir):
    from mediaeval_mem.encoders.i3d import write_random_checkpoint

    weights = "random"
    if name == "i3d-finetune":  # made by fine-tuning: any checkpoint in the pytorch-i3d layout
        weights = str(write_random_checkpoint(tmp_path / "best.pt", 400, size=32))
    enc = encoder_recipe(name, weights).load()
    frames = torch.randint(0, 255, (5, 40, 60, 3), dtype=torch.uint8)
    out = enc.encode_frames(frames)
    info = ENCODERS.info(name)
    assert out.shape == ((1, info.width) if input_kind(info).per_video else (5, info.width)) and torch.isfinite(out).all()


SHIPPED = sorted(p for p in (REPO / "configs").rglob("*.yaml") if p.parent.name not in ("grids", "profiles", "seasons", "sweeps"))


@pytest.fixture(scope="module")
def shipped_runs(tmp_path_factory, empty_store):
    """One runs/ folder for the shipped configs: what several of them share (a stand-in's features, a fine-tuned
    I3D) is made by the first that needs it, each in its own run; a config run alone makes its own."""
    return fresh_runs(tmp_path_factory.mktemp("shipped") / "runs", empty_store)


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: str(p.relative_to(REPO / "configs")))
def test_every_shipped_config_runs_one_step(path, demo_root, shipped_runs, monkeypatch):
    """With the demo profile's stand-ins, three epochs on the tiny generated data, end to end: the model
    learns something, tells videos apart, and the run is in MLflow with the config it ran."""
    import csv
    import io

    from mediaeval_mem.experiments.grid import apply_profile, load_profile
    from mediaeval_mem.experiments.runner import run_experiment
    from mediaeval_mem.tracking import client, get_run, read_artifact_text

    from dataclasses import replace

    monkeypatch.setenv("MEM_RUNS_DIR", str(shipped_runs))
    profile = replace(load_profile(REPO / "configs" / "profiles" / "demo.yaml", demo_root), sampling="uniform:9")
    cfg = apply_overrides(apply_profile(load_config(path), profile),
                          ["train.epochs=3", "train.patience=3", "train.lr=1e-4", "finetune.epochs=1", "finetune.size=32",
                           "finetune.frames=9", "lora.frames=9"])
    task, data = (0, "commercials") if path.parent.name == "commercials" else (1, "memento10k")  # sound, channels, two scores
    result = run_experiment(task, data, data, cfg, demo_root, progress=False, echo=lambda *a, **k: None)
    loss = [m.value for m in sorted(client().get_metric_history(result.run_id, "train_loss"), key=lambda m: m.step)]
    if HEADS.info(cfg.model.head) is None:  # a trained head
        assert len(loss) == 3 and min(loss[1:]) < loss[0]  # it trained
    else:
        assert not loss  # fitted in closed form (ridge, svr): no epochs
    dev = list(csv.DictReader(io.StringIO(read_artifact_text(result.run_id, "dev_predictions.csv"))))
    assert len({r["prediction"] for r in dev}) > len(dev) // 2  # not one constant score
    assert get_run(result.run_id).data.tags["config"] == path.stem
    assert read_artifact_text(result.run_id, "config.yaml") == to_yaml(cfg)
