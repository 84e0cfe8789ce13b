"""Qwen2.5-VL as a frozen video embedder (encoders/vlm.py): its pixels are its processor's, and its tiny seeded
stand-in extracts, caches and trains through the production path."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from mediaeval_mem.core.errors import WeightsError
from mediaeval_mem.encoders import ENCODERS, encoder_recipe
from mediaeval_mem.encoders.vlm import QWEN_ARCHS, VideoTransform, chat, vlm_source
from mediaeval_mem.video.footage import FootageSpec

from footage_media import raw_frames, write_all

REPO = Path(__file__).resolve().parent.parent
# Realistic footage (real photographs, camera motion, grain), at sizes that take each of smart_resize's branches:
# shrunk to the pixel budget, a portrait one, one below min_pixels (grown).
SPECS = {
    "1280x720-h264": FootageSpec("astronaut", 1280, 720, "h264", frames=4),
    "360x640-vp9-portrait": FootageSpec("hubble_deep_field", 360, 640, "vp9", frames=4),
    "200x112-h264": FootageSpec("rocket", 200, 112, "h264", frames=4),
}


@pytest.fixture(scope="module")
def footage(tmp_path_factory):
    root = tmp_path_factory.mktemp("footage")
    return write_all(root, SPECS)


@pytest.mark.parametrize("video", sorted(SPECS))
def test_video_pixels_match_qwen_processor(footage, video):
    """The patches extraction feeds the VLM equal the Qwen2-VL processor's on the same full-size frames.

    Qwen2VLVideoProcessor needs torchvision (not installable here), so the reference is the image processor (PIL),
    which resizes, normalises and patchifies each image exactly as the video processor does each frame, with a single
    image's two temporal slots filled by that image: a video of a frame twice must give the same patches. Measured
    (first and last frame): mean |diff| 2.9e-5 to 3.6e-5 (1280x720), 5.7e-6 to 7.0e-6 (360x640 portrait), 2.8e-5 to
    4.0e-5 (200x112, grown), in normalised units: bicubic rounding on uint8, well inside 0.005.
    """
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    from mediaeval_mem.features.pixels import frames_for

    t = VideoTransform(128 * 28 * 28, 360 * 420)
    raw = raw_frames(footage[video])  # (T, H, W, 3) full size
    processor = Qwen2VLImageProcessorPil(min_pixels=t.min_pixels, max_pixels=t.max_pixels)
    ours = t.normalize(frames_for(footage[video], t, "all", backend="pyav"))  # what extraction feeds, (T, 3, h, w)
    for i in (0, len(raw) - 1):
        ref = processor(images=[raw[i]], return_tensors="pt")
        patches, grid = t.patchify(ours[i : i + 1].expand(2, -1, -1, -1))
        assert torch.equal(grid, ref["image_grid_thw"])
        assert (patches - ref["pixel_values"]).abs().mean().item() < 0.005


def test_patches_follow_time_then_merge_windows():
    """Two different frames: the temporal slot is the innermost group of a patch, after the channel (the order the
    vision tower's Conv3d expects), and a frame count that is odd repeats the last frame."""
    t = VideoTransform(56 * 56, 56 * 56)
    pixels = torch.stack([torch.full((3, 56, 56), float(v)) for v in (1, 2, 3)])  # (3, 3, 56, 56), frame i is i+1
    patches, grid = t.patchify(pixels)
    assert grid.tolist() == [[2, 4, 4]] and patches.shape == (32, 3 * 2 * 14 * 14)
    first = patches[0].view(3, 2, 14, 14)
    assert first[:, 0].eq(1).all() and first[:, 1].eq(2).all()
    last = patches[-1].view(3, 2, 14, 14)
    assert last.eq(3).all()  # frame 3 and its repeat
    assert t.tokens(grid) == 8


def test_the_prompt_holds_one_video_token_per_merged_patch():
    text = chat("How memorable is this video?", 8)
    assert text.count("<|video_pad|>") == 8 and text.endswith("<|im_start|>assistant\n")


def test_demo_vlm_extracts_caches_and_trains(demo_root, runs_dir):
    """The tiny VLM from its saved folder: one unit vector per video, cached (the second extraction loads no model),
    and a run over its features trains and is scored."""
    from mediaeval_mem.config import config_from_dict
    from mediaeval_mem.experiments.runner import run_experiment
    from mediaeval_mem.features.extract import extract_features
    from mediaeval_mem.features.store import FeatureStore

    first = extract_features("memento10k", "qwen2.5-vl-demo", ("dev",), data_root=demo_root, sampling="uniform:4",
                             progress=False)
    dev = first.splits[0]
    assert dev.extracted == dev.total > 0 and not dev.failed
    feats = FeatureStore(first.cache_dir / "dev").load()
    assert feats.dim == QWEN_ARCHS["qwen2.5-vl-demo"]["text"]["hidden_size"] and set(feats.lengths.tolist()) == {1}
    norms = np.linalg.norm(np.asarray(feats.frames, np.float32), axis=1)
    assert np.allclose(norms, 1, atol=1e-2)
    again = extract_features("memento10k", "qwen2.5-vl-demo", ("dev",), data_root=demo_root, sampling="uniform:4",
                             progress=False)
    assert again.splits[0].extracted == 0 and again.splits[0].cached == dev.total
    # the pooling is in the key: the -mean variant is another cache entry with other vectors
    mean = extract_features("memento10k", "qwen2.5-vl-demo-mean", ("dev",), data_root=demo_root,
                            sampling="uniform:4", progress=False)
    assert mean.cache_dir != first.cache_dir
    assert not np.allclose(np.asarray(FeatureStore(mean.cache_dir / "dev").load().frames), np.asarray(feats.frames))

    cfg = config_from_dict({"model": {"streams": [{"encoder": "qwen2.5-vl-demo", "sampling": "uniform:4",
                                                   "aggregator": "none"}], "head": "linear"},
                            "train": {"epochs": 3, "batch_size": 16}})
    r = run_experiment(0, "memento10k", "memento10k", cfg, demo_root, progress=False, echo=lambda *a: None)
    assert np.isfinite(r.metrics["srocc"]) and r.epochs == 3


def test_full_size_vlms_are_registered_with_their_widths():
    assert ENCODERS.info("qwen2.5-vl-3b").width == 2048 and ENCODERS.info("qwen2.5-vl-7b-mean").width == 3584
    assert ENCODERS.info("qwen2.5-vl-3b").input == "clip"
    # 'random' needs no download and fixes the architecture's standard preprocessing
    assert encoder_recipe("qwen2.5-vl-3b", "random").transform.describe()["max_pixels"] == 360 * 420


def test_missing_vlm_weights_are_one_line(tmp_path):
    with pytest.raises(WeightsError, match="not in the Hugging Face cache") as e:
        vlm_source("qwen2.5-vl-3b")
    assert "\n" not in str(e.value)
    with pytest.raises(WeightsError, match="weights directory .* not found"):
        encoder_recipe("qwen2.5-vl-3b", str(tmp_path / "nowhere"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(WeightsError, match="no video_preprocessor_config.json"):
        encoder_recipe("qwen2.5-vl-3b", str(tmp_path / "empty"))


def test_demo_folder_round_trips_through_from_pretrained(runs_dir):
    """The saved demo folder is a real save_pretrained Qwen2.5-VL: its config names the demo tokenizer's ids."""
    from mediaeval_mem.encoders.vlm import demo_vlm_dir

    folder = demo_vlm_dir()
    cfg = json.loads((folder / "config.json").read_text())
    assert cfg["model_type"] == "qwen2_5_vl"
    vlm = vlm_source("qwen2.5-vl-demo").load()
    assert vlm.tokenizer.convert_tokens_to_ids("<|video_pad|>") == cfg["video_token_id"]


def test_captioned_vlm_reads_each_videos_caption(demo_copy, runs_dir):
    """The -captioned name puts the video's first caption in the prompt: other vectors than the frames alone, and
    an edited caption is a new cache entry (the captions are in the key)."""
    from mediaeval_mem.datasets import open_dataset
    from mediaeval_mem.features.extract import extract_features
    from mediaeval_mem.features.inputs import input_kind
    from mediaeval_mem.features.store import FeatureStore
    from mediaeval_mem.video import Sampling

    plain = extract_features("memento10k", "qwen2.5-vl-demo", ("dev",), data_root=demo_copy, sampling="uniform:4",
                             progress=False)
    captioned = extract_features("memento10k", "qwen2.5-vl-demo-captioned", ("dev",), data_root=demo_copy,
                                 sampling="uniform:4", progress=False)
    a, b = (np.asarray(FeatureStore(r.cache_dir / "dev").load().frames, np.float32) for r in (plain, captioned))
    assert a.shape == b.shape and not np.allclose(a, b, atol=1e-3)
    # each video's vector is its own caption's: the encoder run here on its frames with its caption, not another's
    from mediaeval_mem.features.pixels import pixels_for

    dev = open_dataset("memento10k", demo_copy).split("dev")
    stored = FeatureStore(captioned.cache_dir / "dev").load()
    encoder = encoder_recipe("qwen2.5-vl-demo-captioned").load()
    first, other = dev[0], next(it for it in dev if it.captions and it.captions[0] != dev[0].captions[0])
    row = np.asarray(stored.frames[stored.starts[stored.ids.index(first.video_id)]], np.float32)
    pixels = pixels_for("qwen2.5-vl-demo-captioned", first.path, "uniform:4", weights=None)
    with torch.inference_mode():
        own, wrong = (encoder(pixels, caption=c)[0].numpy() for c in (first.captions[0], other.captions[0]))
    assert np.abs(row - own).max() < np.abs(row - wrong).max()
    recipe = encoder_recipe("qwen2.5-vl-demo-captioned")
    key = lambda: input_kind("qwen2.5-vl-demo-captioned").key(open_dataset("memento10k", demo_copy), recipe,
                                                              Sampling.parse("uniform:4"), "fp32")
    before = key()
    edited = demo_copy / "memento10k" / "dev_set" / "dev_text_descriptions.csv"
    edited.write_text(edited.read_text().replace("over a", "across a", 1))
    assert key()["captions"] != before["captions"]
    assert "captions" not in input_kind("qwen2.5-vl-demo").key(open_dataset("memento10k", demo_copy),
                                                               encoder_recipe("qwen2.5-vl-demo"),
                                                               Sampling.parse("uniform:4"), "fp32")
