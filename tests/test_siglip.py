"""SigLIP 2: the pixels each size is fed are SiglipImageProcessor's on real footage, the tiny stand-ins
(frames and text) round-trip through from_pretrained, extract, cache and train, the full-size towers
give their widths, and a missing or unreadable weights folder is one clear line."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from mediaeval_mem.core.errors import WeightsError
from mediaeval_mem.encoders import ENCODERS, encoder_recipe
from mediaeval_mem.encoders.preprocess import ImageTransform
from mediaeval_mem.features import pixels_for
from mediaeval_mem.features.extract import extract_features
from mediaeval_mem.video.footage import FootageSpec

from footage_media import raw_frames, write_all

# A subset of tests/test_fidelity.py's footage: the full-HD one, a portrait one, one below both model sizes.
SPECS = {
    "1920x1080-h264-audio": FootageSpec("coffee", 1920, 1080, "h264", frames=4, audio=True),
    "360x640-h264-portrait": FootageSpec("hubble_deep_field", 360, 640, "h264", frames=4),
    "200x112-vp9": FootageSpec("immunohistochemistry", 200, 112, "vp9", frames=4),
}
SIZES = {"siglip2-base-p16-224": 224, "siglip2-so400m-p14-384": 384}
CAPTIONS = ["a bright disc over a dark background", "", "an unforgettable scene", "a striking blob gliding slowly"]


@pytest.fixture(scope="module")
def footage(tmp_path_factory):
    root = tmp_path_factory.mktemp("footage")
    return write_all(root, SPECS)


def _siglip_processor(size: int, resample: int = 2):
    """SiglipImageProcessor as the fixed-resolution SigLIP 2 checkpoints configure it (2: PIL's bilinear)."""
    import transformers

    cls = getattr(transformers, "SiglipImageProcessorPil", None) or transformers.SiglipImageProcessor
    return cls(size={"height": size, "width": size}, resample=resample, image_mean=[0.5] * 3, image_std=[0.5] * 3)


# Measured mean |diff| (normalised units, [-1, 1]) against SiglipImageProcessorPil, decord and PyAV alike;
# the largest difference anywhere is one 8-bit level (0.0078):
#   224 px: 1920x1080 0.00001, 360x640 portrait 0.00143, 200x112 (upscaled) 0.00005
#   384 px: 1920x1080 0.00001, 360x640 portrait 0.00133, 200x112 (upscaled) 0.00000
# The portrait's residue: for some shapes Pillow (13) runs its two separable passes vertical-first, torch always
# horizontal-first, and the uint8 rounding between the passes then differs by one level on some pixels.
@pytest.mark.parametrize("backend", ["decord", "pyav"])
@pytest.mark.parametrize("encoder", sorted(SIZES))
@pytest.mark.parametrize("video", sorted(SPECS))
def test_siglip_pixels_match_siglip_image_processor(footage, video, encoder, backend):
    path = footage[video]
    try:
        raw = raw_frames(path, backend)
    except Exception:
        pytest.skip(f"{backend} cannot read {path.suffix} as encoded here (extraction falls back to PyAV)")
    size = SIZES[encoder]
    ref = _siglip_processor(size)(images=list(raw), return_tensors="np")["pixel_values"]
    ours = pixels_for(encoder, path, backend=backend).numpy()
    assert ours.shape == ref.shape == (SPECS[video].frames, 3, size, size)
    diff = np.abs(ours - ref)
    assert diff.mean() < 0.005, f"mean |diff| {diff.mean():.4f}"
    assert diff.max() <= 2 / 255 + 1e-6  # at most one 8-bit level anywhere


def test_processor_configs_give_their_transforms_and_clip_keys_stay():
    """SiglipImageProcessor's config resizes the whole frame; CLIP's and the I3D's feature keys are as before."""
    siglip = ImageTransform.from_processor_config(
        {"size": {"height": 384, "width": 384}, "resample": 2, "image_mean": [0.5] * 3, "image_std": [0.5] * 3,
         "image_processor_type": "SiglipImageProcessor"})
    assert siglip == ImageTransform.square(384) and not siglip.keep_aspect and siglip.resample == "bilinear"
    assert siglip.describe()["keep_aspect"] is False
    bicubic = ImageTransform.from_processor_config({"size": {"height": 224, "width": 224}, "resample": 3})
    assert bicubic.resample == "bicubic" and bicubic.mean == (0.48145466, 0.4578275, 0.40821073)  # no mean given
    clip = ImageTransform.from_processor_config({"size": {"shortest_edge": 224}, "crop_size": {"height": 224, "width": 224},
                                                 "resample": 3, "do_center_crop": True})
    assert clip == ImageTransform(224, 224)
    assert list(clip.describe()) == ["short_side", "crop", "mean", "std", "resample"]  # in every CLIP/I3D feature key
    with pytest.raises(ValueError, match="not PIL's bilinear"):
        ImageTransform.from_processor_config({"size": {"height": 224, "width": 224}, "resample": 1})
    # aspect not kept: a 16:9 frame fills the square, no crop
    frame = torch.zeros(1, 90, 160, 3, dtype=torch.uint8)
    frame[:, :, :8] = 255  # a bar at the left edge survives (a centre crop would cut it)
    out = ImageTransform.square(32).resize_crop(frame)
    assert out.shape == (1, 3, 32, 32) and out[0, :, :, 0].float().mean() > 200


def test_demo_siglip_round_trips_and_extracts_caches_once(demo_root, runs_dir, monkeypatch):
    """siglip2-demo is a whole SiglipModel folder (both towers, image processor, tokenizer) saved once and
    read back by the loader a downloaded checkpoint goes through; a second extraction loads no model."""
    from mediaeval_mem.encoders import siglip

    recipe = encoder_recipe("siglip2-demo")
    folder = runs_dir / "models" / "siglip2-demo"
    assert {"model.safetensors", "preprocessor_config.json", "tokenizer.json"} <= {p.name for p in folder.iterdir()}
    assert json.loads((folder / "config.json").read_text())["model_type"] == "siglip"
    again = encoder_recipe("siglip2-demo", str(folder))  # the folder given as weights, as a user would
    assert again.identity() == recipe.identity() and recipe.transform == ImageTransform.square(32)
    frames = torch.randint(0, 256, (3, 90, 160, 3), dtype=torch.uint8)
    a, b = recipe.load().encode_frames(frames), again.load().encode_frames(frames)
    assert torch.equal(a, b) and a.shape == (3, 64) and torch.allclose(a.norm(dim=-1), torch.ones(3), atol=1e-5)

    first = extract_features("memento10k", "siglip2-demo", ("dev",), data_root=demo_root, sampling="uniform:4",
                             progress=False)
    n = first.splits[0].extracted
    assert n > 0 and not first.splits[0].failed
    assert "bilinear resize of the whole frame to 32x32" in first.key["decode"]  # CLIP's keys keep PIXEL_PATH

    def no_load(*a, **k):
        raise AssertionError("a cached extraction loaded the model")

    monkeypatch.setattr(siglip, "_load_vision", no_load)
    second = extract_features("memento10k", "siglip2-demo", ("dev",), data_root=demo_root, sampling="uniform:4",
                              progress=False)
    assert (second.splits[0].cached, second.splits[0].extracted) == (n, 0) and second.cache_dir == first.cache_dir


def test_demo_text_tower_lowercases_pads_to_64_and_caches(demo_root, runs_dir, monkeypatch):
    from mediaeval_mem.encoders import siglip

    enc = encoder_recipe("siglip2-demo-text").load()
    with torch.inference_mode():
        out = enc.encode(CAPTIONS)
        shouted = enc.encode([c.upper() for c in CAPTIONS])
    assert out.shape == (4, ENCODERS.info("siglip2-demo-text").width) and torch.equal(out, shouted)
    assert float(out[0] @ out[2]) < 0.999  # different words, different vectors
    ids = enc.tokenizer(["a disc"], padding="max_length", max_length=64)["input_ids"][0]
    assert len(ids) == 64 and ids[-1] == enc.tokenizer.pad_token_id  # padded on the right: the pooled position
    long = " ".join(["memorable"] * 200)  # longer than 64 tokens: truncated, not an error
    assert enc.encode([long]).shape == (1, 64)

    first = extract_features("memento10k", "siglip2-demo-text", ("train",), data_root=demo_root, progress=False)
    assert first.splits[0].extracted > 0 and not first.splits[0].failed
    monkeypatch.setattr(siglip, "_load_text", lambda *a: (_ for _ in ()).throw(AssertionError("loaded")))
    second = extract_features("memento10k", "siglip2-demo-text", ("train",), data_root=demo_root, progress=False)
    assert second.splits[0].extracted == 0 and second.splits[0].cached == first.splits[0].extracted


def test_a_run_trains_on_siglip_frames_and_captions(demo_root, runs_dir, tmp_path):
    """The real names through the demo profile's stand-ins, fused late in one run, as `mem run` does."""
    from mediaeval_mem.config import load_config
    from mediaeval_mem.experiments.runner import run_experiment
    from mediaeval_mem.tracking import read_artifact_text

    cfg_file = tmp_path / "siglip.yaml"
    cfg_file.write_text("model: {streams: [{encoder: siglip2-demo, sampling: 'uniform:4'},"
                        " {encoder: siglip2-demo-text, aggregator: avg}]}\n"
                        "train: {epochs: 2, batch_size: 16, holdout_fraction: 0.2}\n")
    r = run_experiment(1, "memento10k", "memento10k", load_config(cfg_file), demo_root, progress=False,
                       echo=lambda *a: None)
    assert math.isfinite(r.metrics["srocc"]) and r.epochs >= 1
    streams = json.loads(read_artifact_text(r.run_id, "features.json"))["streams"]
    assert [s["encoder"] for s in streams] == ["siglip2-demo", "siglip2-demo-text"]


def test_the_demo_profile_maps_the_real_names_to_the_stand_ins():
    import yaml

    from mediaeval_mem.experiments.profiles import DEMO_PROFILE

    encoders = yaml.safe_load(DEMO_PROFILE.read_text())["encoders"]
    for real, stand_in in [("siglip2-base-p16-224", "siglip2-demo"), ("siglip2-so400m-p14-384", "siglip2-demo"),
                           ("siglip2-base-p16-224-text", "siglip2-demo-text"),
                           ("siglip2-so400m-p14-384-text", "siglip2-demo-text")]:
        assert encoders[real] == stand_in and ENCODERS.info(real).input == ENCODERS.info(stand_in).input


def test_missing_or_foreign_weights_are_one_clear_line(tmp_path, runs_dir):
    with pytest.raises(WeightsError, match=r"hf download google/siglip2-base-patch16-224"):
        encoder_recipe("siglip2-base-p16-224")
    with pytest.raises(WeightsError, match=r"hf download google/siglip2-so400m-patch14-384"):
        encoder_recipe("siglip2-so400m-p14-384-text")
    with pytest.raises(WeightsError, match=r"weights directory .*nowhere not found"):
        encoder_recipe("siglip2-so400m-p14-384", str(tmp_path / "nowhere"))
    naflex = tmp_path / "naflex"
    naflex.mkdir()
    (naflex / "config.json").write_text(json.dumps({"model_type": "siglip2"}))
    with pytest.raises(WeightsError, match=r"NaFlex .*give a fixed-resolution one") as e:
        encoder_recipe("siglip2-base-p16-224", str(naflex))
    assert "\n" not in str(e.value)
    clip = tmp_path / "clip"
    clip.mkdir()
    (clip / "config.json").write_text(json.dumps({"model_type": "clip"}))
    with pytest.raises(WeightsError, match=r"holds a clip, not a SigLIP checkpoint with a text tower"):
        encoder_recipe("siglip2-base-p16-224-text", str(clip))
    (clip / "config.json").write_text(json.dumps({"model_type": "siglip_text_model"}))  # a text tower saved alone
    with pytest.raises(WeightsError, match=r"holds a siglip_text_model, not a SigLIP checkpoint with a vision tower"):
        encoder_recipe("siglip2-base-p16-224", str(clip))
    (tmp_path / "empty").mkdir()
    with pytest.raises(WeightsError, match=r"no readable config.json"):
        encoder_recipe("siglip2-base-p16-224", str(tmp_path / "empty"))


@pytest.mark.slow
@pytest.mark.parametrize("name,width,size", [("siglip2-base-p16-224", 768, 224), ("siglip2-so400m-p14-384", 1152, 384)])
def test_full_size_vision_towers_give_their_widths(name, width, size):
    if name == "siglip2-so400m-p14-384":  # 400M parameters: built on the meta device (shapes, no memory, no forward)
        with torch.device("meta"):
            enc = encoder_recipe(name, "random").load()
        assert enc.out_dim == width == ENCODERS.info(name).width and enc.transform.short_side == size
        assert 4.0e8 < sum(p.numel() for p in enc.parameters()) < 4.5e8  # So400m's vision tower: ~428M
        return
    enc = encoder_recipe(name, "random").load()
    assert enc.out_dim == width == ENCODERS.info(name).width and enc.transform.short_side == size
    out = enc.encode_frames(torch.randint(0, 256, (2, 90, 160, 3), dtype=torch.uint8))
    assert out.shape == (2, width) and torch.allclose(out.norm(dim=-1), torch.ones(2), atol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("name,width", [("siglip2-base-p16-224-text", 768), ("siglip2-so400m-p14-384-text", 1152)])
def test_full_size_text_towers_give_their_widths(name, width):
    if name == "siglip2-so400m-p14-384-text":  # a 256,000 x 1152 vocabulary alone: built on the meta device
        with torch.device("meta"):
            enc = encoder_recipe(name, "random").load()
        assert enc.out_dim == width == ENCODERS.info(name).width and enc.text.config.vocab_size == 256000
        return
    enc = encoder_recipe(name, "random").load()
    with torch.inference_mode():
        out = enc.encode(CAPTIONS)
    assert enc.out_dim == width == ENCODERS.info(name).width and enc.text.config.vocab_size == 256000
    assert out.shape == (4, width) and torch.allclose(out.norm(dim=-1), torch.ones(4), atol=1e-4)
