"""The VLM regressor: LoRA adapters on the tiny demo Qwen2.5-VL and a head, trained on the one training loop before the
qwen2.5-vl-demo-lora stream extracts; it learns, resumes exactly after a SIGKILL, stores only adapters and head, and
`mem predict` scores new videos with it."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
import textwrap
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from mediaeval_mem.config import load_config
from mediaeval_mem.core.errors import ConfigError, WeightsError
from mediaeval_mem.datasets import open_dataset
from mediaeval_mem.experiments.runner import holdout_ids

# a short recipe for the tiny model: rank 4, 8 frames, decoding in the training process
TINY = ["lora.rank=4", "lora.alpha=8", "lora.lr=2.0e-3", "lora.frames=8", "lora.workers=0", "lora.batch_size=4",
        "train.holdout_fraction=0.2"]  # a selection split of more than one video (a Spearman needs two)
STREAM = ["model.streams.0.encoder=qwen2.5-vl-demo-lora", "model.streams.0.aggregator=none",
          "model.streams.0.sampling=uniform:8", "model.head=linear"]


@pytest.fixture(scope="module")
def lora_root(tmp_path_factory) -> Path:
    """Demo Memento10k clips at 0.4 of `mem demo-data`'s size (48 train, 16 dev, 16 test videos): enough videos for a
    dev Spearman to tell two models apart."""
    from mediaeval_mem.datasets.synthetic import DEMO_SPECS, generate_dataset

    root = tmp_path_factory.mktemp("lora-demo")
    generate_dataset(root, DEMO_SPECS["memento10k"], seed=0, noise=0.03, scale=0.4)
    return root


def _split(root: Path, cfg):
    index = open_dataset("memento10k", root)
    held = holdout_ids(index, cfg.train.holdout_fraction, cfg.train.seed)
    items = index.split("train")
    return index, [i for i in items if i.video_id not in held], [i for i in items if i.video_id in held]


def _tensors(folder: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return {**{f"adapter/{k}": v for k, v in load_file(str(folder / "adapter_model.safetensors")).items()},
            **{f"head/{k}": v for k, v in load_file(str(folder / "head.safetensors")).items()}}


RESUMED = textwrap.dedent("""
    import os, signal, sys
    import torch
    from mediaeval_mem.config import load_config
    from mediaeval_mem.datasets import open_dataset
    from mediaeval_mem.experiments.runner import holdout_ids
    from mediaeval_mem.training.vlm_lora import train_vlm_lora

    root, overrides = sys.argv[1], sys.argv[2:]
    cfg = load_config(None, overrides)
    index = open_dataset("memento10k", root)
    held = holdout_ids(index, cfg.train.holdout_fraction, cfg.train.seed)
    items = index.split("train")

    def echo(line):
        print(line, flush=True)
        if " epoch 1 " in line:  # the loop saved epoch 1's checkpoint before it reports the epoch
            os.kill(os.getpid(), signal.SIGKILL)

    train_vlm_lora(index, [i for i in items if i.video_id not in held], [i for i in items if i.video_id in held],
                   "qwen2.5-vl-demo-lora", cfg, torch.device("cpu"), echo)
""")


def test_a_training_killed_after_its_first_epoch_resumes_to_the_same_adapters(demo_root, runs_dir, tmp_path, monkeypatch):
    """A real interruption: a process training the adapters is SIGKILLed after epoch 1's checkpoint; the same call
    resumes after it and ends with exactly the adapters, head and history of an uninterrupted training."""
    from mediaeval_mem.training.vlm_lora import train_vlm_lora

    overrides = [*STREAM, *TINY, "lora.epochs=2", "lora.patience=2"]
    cfg = load_config(None, overrides)
    index, fit, select = _split(demo_root, cfg)
    killed = subprocess.run([sys.executable, "-c", RESUMED, str(demo_root), *overrides], capture_output=True,
                            text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert killed.returncode == -9, killed.stderr[-2000:]
    folder = next(p for p in (runs_dir / "finetune" / "vlm-lora" / "memento10k").iterdir() if p.is_dir())
    assert (folder / "last.safetensors").is_file() and not (folder / "done.json").exists()

    said = []
    resumed = train_vlm_lora(index, fit, select, "qwen2.5-vl-demo-lora", cfg, torch.device("cpu"), said.append)
    assert said[0] == f"LoRA training qwen2.5-vl-demo-lora: resuming from {folder / 'last.safetensors'}"
    assert [line.split()[4] for line in said[1:]] == ["2"]  # only the epoch after the checkpoint ran
    assert not (folder / "last.safetensors").exists()  # dropped once done

    monkeypatch.setenv("MEM_RUNS_DIR", str(tmp_path / "uninterrupted"))
    whole = train_vlm_lora(index, fit, select, "qwen2.5-vl-demo-lora", cfg, torch.device("cpu"), lambda *a: None)
    a, b = _tensors(resumed.folder), _tensors(whole.folder)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    drop = ("seconds", "train_seconds", "data_seconds")
    assert [{k: v for k, v in h.items() if k not in drop} for h in resumed.history] == \
           [{k: v for k, v in h.items() if k not in drop} for h in whole.history]
    assert whole.history[-1]["train_loss"] < whole.history[0]["train_loss"]  # it learns (the training loss falls)

    # found done: nothing trains again
    monkeypatch.setenv("MEM_RUNS_DIR", str(runs_dir))
    again = train_vlm_lora(index, fit, select, "qwen2.5-vl-demo-lora", cfg, torch.device("cpu"), said.append)
    assert again.cached and again.folder == resumed.folder


def test_a_lora_run_beats_the_frozen_embedding_stores_only_adapters_and_predicts(lora_root, runs_dir, tmp_path, capsys):
    """On the demo data: a run over qwen2.5-vl-demo-lora (adapters trained first, then the run's linear head on the
    adapted VLM's pooled state) against a run over the frozen qwen2.5-vl-demo embedding with the same head; the run
    records the LoRA folder and its size, the folder holds only adapters, head and lora.json; `mem predict` scores
    new videos with the run."""
    from mediaeval_mem.cli import main
    from mediaeval_mem.experiments.runner import run_experiment
    from mediaeval_mem.tracking.record import read_record

    train = ["train.epochs=20", "train.batch_size=16", "train.lr=2.0e-3", "train.patience=6", "train.holdout_fraction=0.2"]
    quiet = dict(progress=False, echo=lambda *a: None)
    lora = run_experiment(1, "memento10k", "memento10k", load_config(None, [*STREAM, *TINY, *train, "lora.epochs=6"]),
                          lora_root, **quiet)
    frozen_cfg = load_config(None, [*STREAM, *train, "model.streams.0.encoder=qwen2.5-vl-demo"])
    frozen = run_experiment(1, "memento10k", "memento10k", frozen_cfg, lora_root, **quiet)
    print(f"dev SROCC: LoRA {lora.metrics['srocc']:.3f}, frozen {frozen.metrics['srocc']:.3f}")
    assert lora.metrics["srocc"] > frozen.metrics["srocc"]

    tags = read_record(lora.run_id).tags
    folder = Path(tags["lora_adapters"])
    files = sorted(p.name for p in folder.iterdir())
    assert files == ["adapter_config.json", "adapter_model.safetensors", "head.safetensors", "lora.json"]
    assert int(tags["lora_size_bytes"]) == sum(p.stat().st_size for p in folder.iterdir()) < 200_000
    base = sum(p.stat().st_size for p in (runs_dir / "models" / "qwen2.5-vl-demo").glob("*.safetensors"))
    assert (folder / "adapter_model.safetensors").stat().st_size < base / 10  # adapters, not the base weights

    videos = tmp_path / "new"
    videos.mkdir()
    for src in sorted((lora_root / "memento10k" / "test_set" / "Videos").glob("*.mp4"))[:2]:
        (videos / src.name).write_bytes(src.read_bytes())
    (videos / "broken.mp4").write_bytes(b"not a video" * 50)
    out = tmp_path / "scores.csv"
    assert main(["predict", lora.run_id, str(videos), "--out", str(out), "--quiet"]) == 1  # the broken one failed
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 2 and all(0 <= float(r["score"]) <= 1 and r["run_id"] == lora.run_id for r in rows)
    assert "broken" in capsys.readouterr().err


def test_the_lora_section_is_config_data_that_sweeps_and_cv_can_vary(tmp_path):
    """rank and alpha are fields a sweep varies; the section is left out of run keys at its defaults; bad values are
    one line each."""
    from mediaeval_mem.core.schema import key_dict
    from mediaeval_mem.experiments.grid import apply_profile, load_profile
    from mediaeval_mem.experiments.sweep import load_search

    assert "lora" not in key_dict(load_config("configs/demo.yaml"))
    assert key_dict(load_config(None, ["lora.rank=8"]))["lora"]["rank"] == 8
    search = tmp_path / "lora.yaml"
    search.write_text("config: configs/vlm-lora.yaml\ntrain: memento10k\ntest: memento10k\ntrials: 2\n"
                      "space:\n  lora.rank: {choice: [4, 8, 16]}\n  lora.alpha: {choice: [8, 32]}\n")
    assert set(load_search(search).space) == {"lora.rank", "lora.alpha"}
    for bad, said in [("lora.rank=0", "rank must be >= 1"), ("lora.pooling=max", "pooling must be one of answer, mean"),
                      ("lora.quantize=int8", "quantize must be one of auto, nf4, none"),
                      ("lora.head=ridge", "fitted in closed form")]:
        with pytest.raises(ConfigError, match=said):
            load_config(None, [bad])

    # the demo profile: the tiny VLM and its short LoRA recipe for the LoRA config, nothing changed for the others
    profile = load_profile("configs/profiles/demo.yaml", "data/demo")
    profiled = apply_profile(load_config("configs/vlm-lora.yaml"), profile)
    assert profiled.model.streams[0].encoder == "qwen2.5-vl-demo-lora" and profiled.lora.rank == 4
    assert profiled.model.streams[0].sampling == f"uniform:{profiled.lora.frames}"
    assert "lora" not in key_dict(apply_profile(load_config("configs/demo.yaml"), profile))


def test_what_a_user_can_get_wrong_is_one_line(demo_root, runs_dir, tmp_path):
    from mediaeval_mem.encoders import encoder_recipe
    from mediaeval_mem.training.vlm_lora import base_precision, lora_key, train_vlm_lora

    with pytest.raises(WeightsError, match="needs the LoRA adapters it is trained with"):
        encoder_recipe("qwen2.5-vl-demo-lora")
    with pytest.raises(WeightsError, match="not found"):
        encoder_recipe("qwen2.5-vl-demo-lora", str(tmp_path / "nowhere"))
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "adapter_config.json").write_text("{}")
    with pytest.raises(WeightsError, match="lacks adapter_model.safetensors, head.safetensors, lora.json"):
        encoder_recipe("qwen2.5-vl-demo-lora", str(tmp_path / "half"))
    cfg = load_config(None, [*STREAM, "lora.weights=" + str(tmp_path / "no-base")])
    with pytest.raises(WeightsError, match=r"the base VLM: .*no-base not found\. Give its weights as `lora.weights: DIR`"):
        train_vlm_lora(*_split(demo_root, cfg), "qwen2.5-vl-demo-lora", cfg, torch.device("cpu"), print)
    with pytest.raises(WeightsError, match="4-bit base weights need CUDA"):
        base_precision("nf4", torch.device("cpu"), "fp32", False, print)
    assert base_precision("auto", torch.device("cpu"), "bf16", False, print) == "bf16"

    # adapters trained over one architecture are refused by another's name
    cfg = load_config(None, [*STREAM, *TINY, "lora.epochs=1"])
    index, fit, select = _split(demo_root, cfg)
    done = train_vlm_lora(index, fit[:4], select, "qwen2.5-vl-demo-lora", cfg, torch.device("cpu"), lambda *a: None)
    with pytest.raises(WeightsError, match="trained over qwen2.5-vl-demo, not qwen2.5-vl-3b"):
        encoder_recipe("qwen2.5-vl-3b-lora", str(done.folder))
    recipe = encoder_recipe("qwen2.5-vl-demo-lora", str(done.folder))
    assert recipe.identity()["preprocess"]["pooling"] == "answer" and "+lora:" in recipe.weights_id
    # the extractor is the base with the trained adapters merged in: its pooled state is not the base's
    from mediaeval_mem.encoders.vlm import EMBED_PROMPT, vlm_source
    from mediaeval_mem.features.pixels import pixels_for

    pixels = pixels_for("qwen2.5-vl-demo-lora", fit[0].path, "uniform:8", weights=str(done.folder))
    with torch.inference_mode():
        adapted = recipe.load()(pixels)  # (1, 64)
        base = vlm_source("qwen2.5-vl-demo").load()  # the base the adapters were trained over, without them
        frozen = base.pool(base.hidden(base.inputs(pixels, EMBED_PROMPT)), "answer")
        from peft import PeftModel  # the adapters as they were trained: beside the weights, not merged

        from mediaeval_mem.encoders.vlm_lora import quiet_peft

        with quiet_peft():
            unmerged = PeftModel.from_pretrained(vlm_source("qwen2.5-vl-demo").load().model, str(done.folder))
        trained = unmerged.get_base_model().model(**base.inputs(pixels, EMBED_PROMPT)).last_hidden_state
    assert adapted.shape == (1, 64) and torch.isfinite(adapted).all() and not torch.allclose(adapted, frozen)
    assert torch.allclose(adapted, base.pool(trained, "answer"), atol=1e-5)  # merging changes nothing

    # what fixes the adapters: not how many processes decode, but the rank
    key = lambda c: lora_key(index, fit, select, "qwen2.5-vl-demo", "base", c)  # noqa: E731
    assert key(replace(cfg, lora=replace(cfg.lora, workers=3))) == key(cfg)
    assert key(replace(cfg, lora=replace(cfg.lora, rank=8))) != key(cfg)
