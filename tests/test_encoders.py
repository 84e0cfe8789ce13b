"""CLIP encoders: preprocessing parity with CLIPImageProcessor, widths, weights loading and errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mediaeval_mem.encoders import build_encoder
from mediaeval_mem.encoders.preprocess import ImageTransform
from mediaeval_mem.core.errors import WeightsError


def _natural_like(h: int, w: int, seed: int) -> np.ndarray:
    """Smooth gradients, a few edges and sensor noise: what video frames look like to a resizer."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    img = np.stack([np.sin(6 * xx + c) * 80 + 120 + 60 * yy for c in range(3)], -1)
    img[h // 3 : h // 2, w // 4 : w // 2] = rng.uniform(0, 255, 3)
    return np.clip(img + rng.normal(0, 8, img.shape), 0, 255).astype(np.uint8)


def _hf_processor(size: int):
    import transformers

    cls = getattr(transformers, "CLIPImageProcessorPil", None) or transformers.CLIPImageProcessor
    return cls(size={"shortest_edge": size}, crop_size={"height": size, "width": size})


@pytest.mark.parametrize("h,w,size", [(360, 640, 224), (720, 1280, 336), (480, 360, 224), (100, 150, 224), (224, 224, 224)])
def test_tensor_preprocessing_matches_clip_image_processor(h, w, size):
    img = _natural_like(h, w, seed=h + w)
    theirs = _hf_processor(size)(images=[img], return_tensors="pt")["pixel_values"]  # (1, 3, S, S)
    ours = ImageTransform(size, size)(torch.from_numpy(img)[None])
    assert ours.shape == theirs.shape == (1, 3, size, size)
    assert (ours - theirs).abs().mean() < 0.01


def test_processor_config_forms():
    new = ImageTransform.from_processor_config({"size": {"shortest_edge": 336}, "crop_size": {"height": 336, "width": 336}})
    old = ImageTransform.from_processor_config({"size": 224, "crop_size": 224, "image_mean": [0.5] * 3, "image_std": [0.5] * 3})
    assert (new.short_side, new.crop) == (336, 336)
    assert (old.short_side, old.crop, old.mean) == (224, 224, (0.5, 0.5, 0.5))


@pytest.mark.slow
@pytest.mark.parametrize("name,width,size", [("clip-vit-b32", 768, 224), ("clip-vit-l14-336", 1024, 336)])
def test_full_size_architectures_give_paper_widths(name, width, size):
    enc = build_encoder(name, weights="random")
    assert enc.out_dim == width and enc.transform.short_side == size
    frames = torch.from_numpy(_natural_like(360, 640, 0))[None].repeat(2, 1, 1, 1)
    out = enc.encode_frames(frames)
    assert out.shape == (2, width)
    assert torch.allclose(out.norm(dim=-1), torch.ones(2), atol=1e-5)


def test_demo_clip_round_trips_through_from_pretrained(runs_dir):
    loaded = build_encoder("clip-demo")  # saved with save_pretrained under runs/, loaded with from_pretrained
    assert (runs_dir / "models" / "clip-demo" / "model.safetensors").is_file()
    assert (runs_dir / "models" / "clip-demo" / "preprocessor_config.json").is_file()
    fresh = build_encoder("clip-demo", weights="random")  # the same seed, never saved
    frames = torch.from_numpy(_natural_like(72, 128, 1))[None]
    assert torch.allclose(loaded.encode_frames(frames), fresh.encode_frames(frames), atol=1e-5)
    assert loaded.out_dim == 64 and loaded.weights_id == build_encoder("clip-demo").weights_id


def test_local_weights_directory_and_identity(runs_dir, tmp_path):
    src = build_encoder("clip-demo").weights_id
    import shutil

    shutil.copytree(runs_dir / "models" / "clip-demo", tmp_path / "w")
    enc = build_encoder("clip-vit-b32", weights=str(tmp_path / "w"))  # any CLIP folder loads under any CLIP name
    assert enc.out_dim == 64 and enc.weights_id == src
    import json

    cfg = json.loads((tmp_path / "w" / "config.json").read_text())
    cfg["layer_norm_eps"] = 1e-6
    (tmp_path / "w" / "config.json").write_text(json.dumps(cfg))
    assert build_encoder("clip-vit-b32", weights=str(tmp_path / "w")).weights_id != src


def test_missing_weights_say_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(WeightsError, match="hf download openai/clip-vit-large-patch14-336.*--weights DIR"):
        build_encoder("clip-vit-l14-336")
    with pytest.raises(WeightsError, match="weights directory .*nope not found"):
        build_encoder("clip-vit-b32", weights=str(tmp_path / "nope"))
