"""Video foundation encoders (V-JEPA 2, VideoMAE, X-CLIP's video tower): their pixels against their own Hugging
Face processors on realistic footage, the clip resampling, the tiny stand-ins through the production path
(extract, cache, train), long videos in windows, the full-size architectures, and missing weights."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from mediaeval_mem.core.errors import WeightsError
from mediaeval_mem.encoders import ENCODERS, build_encoder, encoder_recipe
from mediaeval_mem.encoders.video_models import IMAGENET_MEAN, IMAGENET_STD, clip_frames
from mediaeval_mem.features import pixels_for
from mediaeval_mem.video.footage import FootageSpec

from footage_media import raw_frames, write_all

STAND_INS = {"vjepa2-demo": "vjepa2-vitl-256", "videomae-demo": "videomae-base", "xclip-demo": "xclip-base-p32"}

# ---------------------------------------------------------------- parity with each checkpoint's own processor
# Full-size frames decoded by PyAV outside the harness, through the Hugging Face processor with the checkpoint's
# settings, against what extraction feeds the encoder (pixels_for: the same decode, resize, crop, normalisation).
# Measured mean |diff| in normalised units, per video 1280x720 / 640x360 / 360x640 (4 frames each):
#   videomae-base, xclip-base-p32 (VideoMAEImageProcessorPil, short side 224, crop 224, bilinear):
#                                 0.0000184 / 0.0000197 / 0.0000189
#   vjepa2-vitl-256 (VJEPA2VideoProcessor's settings, short side 292, crop 256, bilinear, via VideoMAEImageProcessorPil):
#                                 0.0000173 / 0.0000039 / 0.0000027
# About 0.1% of values differ, each by one 8-bit level (at most 1/255/0.224 = 0.0175), where PIL and torch round apart.
# Resizing with bicubic instead (CLIP's filter) gives 0.008-0.017 on the same videos: the bound tells them apart.
FOOTAGE = {
    "1280x720-vp9": FootageSpec("astronaut", 1280, 720, "vp9", frames=4),  # 292 short side: an odd crop offset
    "640x360-h264": FootageSpec("rocket", 640, 360, "h264", frames=4),
    "360x640-h264-portrait": FootageSpec("hubble_deep_field", 360, 640, "h264", frames=4),
}


@pytest.fixture(scope="module")
def footage(tmp_path_factory):
    root = tmp_path_factory.mktemp("footage")
    return write_all(root, FOOTAGE)


def _processor(encoder: str):
    """The checkpoint's own preprocessing as a transformers processor that runs here (PIL)."""
    from transformers import VideoMAEImageProcessorPil
    from transformers.image_utils import PILImageResampling

    if encoder == "vjepa2-vitl-256":  # VJEPA2VideoProcessor's class attributes (it needs torchvision to run itself)
        from transformers.models.vjepa2.video_processing_vjepa2 import VJEPA2VideoProcessor as V

        crop = V.crop_size
        return VideoMAEImageProcessorPil(size={"shortest_edge": int(crop * 256 / 224)}, crop_size={"height": crop, "width": crop},
                                         resample=V.resample, image_mean=V.image_mean, image_std=V.image_std)
    # videomae-base's and xclip-base-patch32's preprocessor_config.json: short side 224, crop 224, bilinear, ImageNet
    return VideoMAEImageProcessorPil(size={"shortest_edge": 224}, crop_size={"height": 224, "width": 224},
                                     resample=PILImageResampling.BILINEAR, image_mean=IMAGENET_MEAN, image_std=IMAGENET_STD)


@pytest.mark.parametrize("encoder", ["vjepa2-vitl-256", "videomae-base", "xclip-base-p32"])
@pytest.mark.parametrize("video", sorted(FOOTAGE))
def test_pixels_match_the_checkpoints_own_processor(footage, video, encoder):
    path = footage[video]
    ref = np.asarray(_processor(encoder)(list(raw_frames(path)), return_tensors="np")["pixel_values"])[0]  # (T, 3, S, S)
    ours = pixels_for(encoder, path, backend="pyav").numpy()
    size = 256 if encoder.startswith("vjepa2") else 224
    assert ours.shape == ref.shape == (FOOTAGE[video].frames, 3, size, size)
    diff = np.abs(ours - ref)
    assert diff.mean() < 0.005, f"mean |diff| {diff.mean():.5f}"


def test_vjepa2_pixels_match_vjepa2_video_processor_itself(footage):
    pytest.importorskip("torchvision", reason="VJEPA2VideoProcessor runs on torchvision, which is not installed here; "
                        "test_pixels_match_the_checkpoints_own_processor checks its settings through the PIL processor")
    from transformers import VJEPA2VideoProcessor

    path = footage["1280x720-vp9"]
    ref = VJEPA2VideoProcessor()(videos=[raw_frames(path)], return_tensors="np")["pixel_values_videos"][0]
    ours = pixels_for("vjepa2-vitl-256", path, backend="pyav").numpy()
    assert ours.shape == ref.shape and np.abs(ours - ref).mean() < 0.005


# ---------------------------------------------------------------- the clip a window becomes
@pytest.mark.parametrize("n,frames,expected", [
    (8, 8, list(range(8))),  # a window of exactly the clip length: as it is
    (16, 4, [2, 6, 10, 14]),  # the centre frame of each of 4 segments of 4
    (3, 4, [0, 1, 1, 2]),  # shorter than the clip: frames repeat, in order
    (1, 8, [0] * 8),
    (90, 16, [2, 8, 14, 19, 25, 30, 36, 42, 47, 53, 59, 64, 70, 75, 81, 87]),  # a 3 s Memento10k clip to VideoMAE's 16
])
def test_a_window_becomes_the_checkpoints_clip_length(n, frames, expected):
    assert clip_frames(torch.arange(n), frames).tolist() == expected


# ---------------------------------------------------------------- the stand-ins
@pytest.mark.parametrize("name", sorted(STAND_INS))
def test_stand_ins_round_trip_through_save_pretrained(name, runs_dir):
    import transformers

    loaded = build_encoder(name)  # saved with save_pretrained under runs/, loaded with from_pretrained
    folder = runs_dir / "models" / name
    assert (folder / "model.safetensors").is_file() and (folder / "config.json").is_file()
    if name == "vjepa2-demo":  # the video processor's file; its class needs torchvision, so read it as data
        assert json.loads((folder / "video_preprocessor_config.json").read_text())["crop_size"]["height"] == 32
    else:  # transformers' own processor class reads what was saved
        proc = transformers.VideoMAEImageProcessorPil.from_pretrained(folder)
        assert proc.crop_size["height"] == loaded.transform.crop and list(proc.image_mean) == list(loaded.transform.mean)
    fresh = build_encoder(name, weights="random")  # the same seed, never saved
    frames = torch.randint(0, 256, (6, 48, 64, 3), dtype=torch.uint8)
    a, b = loaded.encode_frames(frames), fresh.encode_frames(frames)
    assert a.shape == (1, 32) and torch.allclose(a, b, atol=1e-5) and torch.allclose(a.norm(), torch.tensor(1.0))
    assert loaded.frames == loaded.min_frames == 4 and loaded.out_dim == ENCODERS.info(name).width
    assert loaded.transform.resample == "bilinear" and loaded.weights_id == build_encoder(name).weights_id
    other = build_encoder(name, weights=str(folder))  # a local folder given by path: the same identity
    assert other.weights_id == loaded.weights_id


def test_the_demo_profile_maps_the_real_names_to_the_stand_ins():
    from conftest import REPO
    import yaml

    profile = yaml.safe_load((REPO / "configs" / "profiles" / "demo.yaml").read_text())
    assert {v: k for k, v in profile["encoders"].items() if v in STAND_INS} == STAND_INS


def test_stand_ins_extract_cache_and_train(demo_root, runs_dir, tmp_path):
    import csv
    import io

    from mediaeval_mem.config import apply_overrides, load_config
    from mediaeval_mem.experiments.runner import run_experiment
    from mediaeval_mem.features.extract import extract_features
    from mediaeval_mem.features.store import FeatureStore
    from mediaeval_mem.tracking import client, read_artifact_text

    for name in STAND_INS:
        first = extract_features("memento10k", name, ("dev",), data_root=demo_root, sampling="uniform:6", progress=False)
        again = extract_features("memento10k", name, ("dev",), data_root=demo_root, sampling="uniform:6", progress=False)
        dev = first.splits[0]
        assert dev.extracted > 0 and not dev.failed and again.splits[0].extracted == 0 and again.splits[0].cached == dev.extracted
        rows = FeatureStore(first.cache_dir / "dev").load()
        assert all(rows[i].shape == (1, 32) for i in range(len(rows.ids)))  # one vector per video
        assert len({rows[i].tobytes() for i in range(len(rows.ids))}) == len(rows.ids)  # videos told apart

    streams = ", ".join(f"{{encoder: {n}, aggregator: linear-avg, sampling: 'uniform:6'}}" for n in STAND_INS)
    (tmp_path / "vfm.yaml").write_text(f"model: {{streams: [{streams}], head: mlp}}\n")
    cfg = apply_overrides(load_config(tmp_path / "vfm.yaml"), ["train.epochs=4", "train.patience=4", "train.lr=1e-3"])
    result = run_experiment(1, "memento10k", "memento10k", cfg, demo_root, progress=False, echo=lambda *a, **k: None)
    loss = [m.value for m in sorted(client().get_metric_history(result.run_id, "train_loss"), key=lambda m: m.step)]
    assert len(loss) == 4 and min(loss[1:]) < loss[0]  # it trained, from the cache the extraction above left
    preds = list(csv.DictReader(io.StringIO(read_artifact_text(result.run_id, "dev_predictions.csv"))))
    assert len({r["prediction"] for r in preds}) > len(preds) // 2


def test_a_long_video_runs_in_windows_each_resampled_to_the_clip(demo_root, runs_dir, monkeypatch):
    """20 frames with a window of 8 and a clip of 4: windows of 8, 8 and 4 frames, each made a 4-frame clip
    (every second frame of a full window), averaged by frame count; a 3-frame video repeats a frame and is noted."""
    from mediaeval_mem.datasets import DatasetIndex, open_dataset
    from mediaeval_mem.features import engine
    from mediaeval_mem.features.extract import extract_features
    from mediaeval_mem.features.options import ExtractOptions
    from mediaeval_mem.features.pixels import frames_for
    from mediaeval_mem.features.store import FeatureStore

    monkeypatch.setattr(engine, "CLIP_WINDOW", 8)
    recipe = encoder_recipe("videomae-demo")
    items = open_dataset("memento10k", demo_root).split("dev")[:2]
    opts = ExtractOptions(dtype="fp32")
    encoder = recipe.load()

    def direct(frames):  # uint8 (n, 3, S, S) -> (1, 32), the model on exactly these clip frames
        with torch.inference_mode():
            video = recipe.transform.normalize(frames)[None]
            return torch.nn.functional.normalize(encoder.family.embed(encoder.model, video), dim=-1)

    long = DatasetIndex("long", demo_root, "files", "none", {"dev": [items[0]]})
    report = extract_features(long, recipe, ("dev",), sampling="uniform:20", opts=opts, device="cpu", progress=False)
    x = frames_for(items[0].path, recipe.transform, "uniform:20")  # (20, 3, 32, 32)
    assert len(x) == 20
    expected = (8 * direct(x[0:8][1::2]) + 8 * direct(x[8:16][1::2]) + 4 * direct(x[16:20])) / 20
    got = torch.from_numpy(np.asarray(FeatureStore(report.cache_dir / "dev").load()[0], np.float32))
    assert torch.allclose(got, expected, atol=2e-3) and not report.splits[0].padded

    short = DatasetIndex("short", demo_root, "files", "none", {"dev": [items[1]]})
    report = extract_features(short, recipe, ("dev",), sampling="uniform:3", opts=opts, device="cpu", progress=False)
    y = frames_for(items[1].path, recipe.transform, "uniform:3")
    got = torch.from_numpy(np.asarray(FeatureStore(report.cache_dir / "dev").load()[0], np.float32))
    assert torch.allclose(got, direct(y[[0, 1, 1, 2]]), atol=2e-3)
    assert report.splits[0].padded == {items[1].video_id: 3}


def test_a_video_the_model_cannot_read_is_one_line_and_the_others_go_on(demo_copy, runs_dir):
    from mediaeval_mem.datasets import open_dataset
    from mediaeval_mem.features.extract import extract_features

    items = open_dataset("memento10k", demo_copy).split("dev")
    victim = items[0]
    data = victim.path.read_bytes()
    victim.path.write_bytes(data[: len(data) // 2])  # an mp4 cut in half: no index, FFmpeg cannot open it
    report = extract_features("memento10k", "xclip-demo", ("dev",), data_root=demo_copy, sampling="uniform:6",
                              progress=False)
    dev = report.splits[0]
    assert list(dev.failed) == [victim.video_id] and dev.extracted == len(items) - 1
    reason = dev.failed[victim.video_id]
    assert victim.path.name in reason and "\n" not in reason and "Traceback" not in reason


# ---------------------------------------------------------------- the full-size architectures
@pytest.mark.slow
@pytest.mark.parametrize("name,width,frames,short_side,crop", [
    ("vjepa2-vitl-256", 1024, 64, 292, 256), ("videomae-base", 768, 16, 224, 224), ("xclip-base-p32", 512, 8, 224, 224)])
def test_full_size_architectures_have_the_checkpoints_shapes(name, width, frames, short_side, crop):
    enc = build_encoder(name, weights="random")
    assert enc.out_dim == width == ENCODERS.info(name).width and enc.frames == frames
    assert (enc.transform.short_side, enc.transform.crop, enc.transform.resample) == (short_side, crop, "bilinear")
    n_params = sum(p.numel() for p in enc.model.parameters())
    # V-JEPA 2 ViT-L encoder ~303M + predictor ~22M; VideoMAE-B ~86M; X-CLIP B/32 (both towers) ~197M
    assert {"vjepa2-vitl-256": 3.2e8, "videomae-base": 8.6e7, "xclip-base-p32": 2.0e8}[name] * 0.9 < n_params
    if name == "vjepa2-vitl-256":  # its full 64-frame clip is minutes on a CPU: 2 frames (1 tubelet), RoPE positions
        with torch.inference_mode():
            out = enc.family.embed(enc.model, torch.randn(1, 2, 3, crop, crop))
    else:
        out = enc(torch.randn(frames, 3, crop, crop))
    assert out.shape == (1, width) and torch.isfinite(out).all()


# ---------------------------------------------------------------- missing or wrong weights
def test_missing_weights_are_one_line(demo_root, tmp_path, capsys):
    from mediaeval_mem.cli import main

    with pytest.raises(WeightsError, match="hf download facebook/vjepa2-vitl-fpc64-256.*--weights DIR"):
        build_encoder("vjepa2-vitl-256")  # not in the (empty) Hugging Face cache, and the hub is offline
    code = main(["extract", "--dataset", "memento10k", "--encoder", "videomae-base", "--weights", str(tmp_path / "nope"),
                 "--splits", "dev", "--data-root", str(demo_root), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1 and f"weights directory {tmp_path / 'nope'} not found" in err


def test_a_folder_of_another_family_is_refused_by_name(runs_dir):
    build_encoder("videomae-demo")
    with pytest.raises(WeightsError, match="vjepa2-vitl-256: .*videomae-demo holds a 'videomae' model, not a 'vjepa2' one"):
        build_encoder("vjepa2-vitl-256", weights=str(runs_dir / "models" / "videomae-demo"))
