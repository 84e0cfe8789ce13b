"""Caption streams: the text encoders (full-size CLIP text towers with random weights, the tiny seeded
ones through from_pretrained), caption features in the cache (every caption a row, the empty caption
recorded, resumable, keyed on the captions), and a caption stream in a run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from mediaeval_mem.core.errors import ConfigError, WeightsError
from mediaeval_mem.datasets import open_dataset
from mediaeval_mem.encoders import ENCODERS, encoder_recipe
from mediaeval_mem.features.extract import extract_features

CAPTIONS = ["a bright disc over a dark background", "", "an unforgettable scene", "a striking blob gliding slowly"]


@pytest.mark.slow
@pytest.mark.parametrize("name,width", [("clip-vit-b32-text", 512), ("clip-vit-l14-336-text", 768),
                                        ("sentence-minilm", 384)])
def test_full_size_text_towers_give_their_widths(name, width, runs_dir):
    """The architectures of the real checkpoints, random weights: the widths the registry promises."""
    enc = encoder_recipe(name, "random").load()
    with torch.inference_mode():
        out = enc.encode(CAPTIONS)
    assert ENCODERS.info(name).width == width == enc.out_dim
    assert out.shape == (4, width) and torch.allclose(out.norm(dim=-1), torch.ones(4), atol=1e-4)
    assert not torch.allclose(out[0], out[1])


@pytest.mark.parametrize("name", ["clip-demo-text", "sentence-demo"])
def test_tiny_text_models_round_trip_through_from_pretrained(name, runs_dir):
    """The demo models are saved once (save_pretrained / SentenceTransformer.save) and loaded back by the
    same loader as a downloaded checkpoint: same folder digest, same outputs in a second process-like load."""
    recipe = encoder_recipe(name)
    folder = runs_dir / "models" / name
    assert (folder / "config.json").is_file()
    again = encoder_recipe(name, str(folder))  # the folder given as weights, as a user would
    assert again.weights_id == recipe.weights_id and recipe.identity() == again.identity()
    with torch.inference_mode():
        a, b = recipe.load().encode(CAPTIONS), again.load().encode(CAPTIONS)
    assert torch.equal(a, b) and a.shape == (4, ENCODERS.info(name).width)
    # different words, different vectors: what the demo's caption stream learns from
    assert float(a[0] @ a[2]) < 0.999


def test_missing_text_weights_fail_in_one_line_naming_the_download(runs_dir, tmp_path):
    with pytest.raises(WeightsError, match=r"hf download openai/clip-vit-base-patch32"):
        encoder_recipe("clip-vit-b32-text")
    with pytest.raises(WeightsError, match=r"hf download sentence-transformers/all-MiniLM-L6-v2"):
        encoder_recipe("sentence-minilm")
    (tmp_path / "empty").mkdir()
    with pytest.raises(WeightsError, match=r"cannot load a CLIP text tower and its tokenizer from .*empty"):
        encoder_recipe("clip-vit-b32-text", str(tmp_path / "empty")).load()


def test_a_caption_stream_takes_no_frame_sampling():
    from mediaeval_mem.config import StreamCfg

    with pytest.raises(ConfigError, match="sampling 'uniform:8' picks video frames; clip-demo-text reads captions"):
        StreamCfg(encoder="clip-demo-text", sampling="uniform:8", aggregator="avg")
    with pytest.raises(ConfigError, match="one vector per caption: use avg"):
        StreamCfg(encoder="clip-demo-text", aggregator="none")


def test_every_caption_is_a_row_and_a_video_without_one_is_recorded(demo_copy, runs_dir):
    """Five captions give five rows, each the encoder's vector for that caption; a video whose captions
    were removed gets one row, the empty caption's, and is listed in the manifest and the report."""
    desc = demo_copy / "memento10k" / "dev_set" / "dev_text_descriptions.csv"
    header, *rows = desc.read_text().splitlines()
    bare = rows[0].split(",")[0]
    desc.write_text("\n".join([header] + [r for r in rows if r.split(",")[0] != bare]) + "\n")
    index = open_dataset("memento10k", demo_copy)
    report = extract_features(index, "clip-demo-text", ("dev",), progress=False)
    split = report.splits[0]
    assert split.extracted == len(index.split("dev")) and list(split.uncaptioned) == [str(int(bare))]
    from mediaeval_mem.features.store import FeatureStore

    store = FeatureStore(report.cache_dir / "dev")
    feats = store.load()
    assert store.manifest()["uncaptioned"] == {str(int(bare)): "no caption: the empty caption was encoded"}
    enc = encoder_recipe("clip-demo-text").load()
    with torch.inference_mode():
        for item in index.split("dev")[:3]:
            rows_ = feats.get(item.video_id).astype(np.float32)
            expected = enc.encode(list(item.captions) or [""]).numpy()
            assert rows_.shape == (max(1, len(item.captions)), 64)
            cosine = (rows_ * expected).sum(1) / np.linalg.norm(rows_, axis=1)
            assert cosine.min() > 0.999  # computed under the extraction's autocast, stored as float16
    assert report.key["sampling"].startswith("captions:") and "empty caption" in report.key["decode"]


def test_caption_features_resume_and_follow_the_captions(demo_copy, runs_dir, tmp_path, monkeypatch):
    """Interrupted after its first stored chunk (Ctrl-C inside the encoder), the next call encodes only the
    rest, and the split then holds exactly what one uninterrupted go gives. Editing a caption makes a
    new cache entry, never a stale hit."""
    from mediaeval_mem.encoders.text import ClipTextEncoder
    from mediaeval_mem.features.options import ExtractOptions
    from mediaeval_mem.features.store import FeatureStore

    index = open_dataset("memento10k", demo_copy)
    ids = [it.video_id for it in index.split("train")]
    opts = ExtractOptions(flush_every=4)  # 4 videos x 5 captions: one forward pass per stored chunk
    real, calls = ClipTextEncoder.encode, []

    def interrupted(self, texts):
        calls.append(len(texts))
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(self, texts)

    monkeypatch.setattr(ClipTextEncoder, "encode", interrupted)
    with pytest.raises(KeyboardInterrupt):
        extract_features(index, "clip-demo-text", ("train",), opts=opts, progress=False)
    monkeypatch.setattr(ClipTextEncoder, "encode", real)
    again = extract_features(index, "clip-demo-text", ("train",), opts=opts, progress=False)
    assert (again.splits[0].cached, again.splits[0].extracted) == (4, len(ids) - 4)
    resumed = FeatureStore(again.cache_dir / "train").load(ids)

    monkeypatch.setenv("MEM_RUNS_DIR", str(tmp_path / "fresh-runs"))
    once = extract_features(index, "clip-demo-text", ("train",), opts=opts, progress=False)
    whole = FeatureStore(once.cache_dir / "train").load(ids)
    np.testing.assert_array_equal(resumed.lengths, whole.lengths)
    np.testing.assert_array_equal(np.asarray(resumed.frames), np.asarray(whole.frames))

    edited = demo_copy / "memento10k" / "train_set" / "train_text_descriptions.csv"
    edited.write_text(edited.read_text().replace("over a", "across a", 1))
    moved = extract_features(open_dataset("memento10k", demo_copy), "clip-demo-text", ("train",), progress=False)
    assert moved.cache_dir != once.cache_dir and moved.splits[0].cached == 0


def test_a_run_with_a_caption_stream_records_its_uncaptioned_videos(demo_root, runs_dir):
    """VideoMem's demo has videos without captions: a run on its captions trains, and says how many."""
    from mediaeval_mem.config import load_config
    from mediaeval_mem.experiments.runner import run_experiment
    from mediaeval_mem.tracking import get_run, read_artifact_text

    cfg = load_config(Path(__file__).resolve().parent.parent / "configs" / "demo-fused.yaml",
                      ["train.epochs=2", "model.streams.0.sampling=uniform:4"])
    r = run_experiment(0, "videomem", "videomem", cfg, demo_root, progress=False, echo=lambda *a: None)
    index = open_dataset("videomem", demo_root)
    bare = sum(not it.captions for s in ("train", "dev", "test") for it in index.split(s))
    assert bare > 0 and get_run(r.run_id).data.tags["uncaptioned_videos"] == str(bare)
    streams = json.loads(read_artifact_text(r.run_id, "features.json"))["streams"]
    assert [s["encoder"] for s in streams] == ["clip-demo", "clip-demo-text"]


def test_mem_extract_refuses_a_frame_sampling_for_captions(demo_root, runs_dir, capsys):
    from mediaeval_mem.cli import main

    assert main(["extract", "--dataset", "memento10k", "--encoder", "clip-demo-text", "--sampling", "uniform:4",
                 "--data-root", str(demo_root), "--quiet"]) == 2
    assert "sampling uniform:4 picks video frames; clip-demo-text reads captions" in capsys.readouterr().err
