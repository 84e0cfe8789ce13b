"""Faithful on real footage: the pixels extraction feeds each encoder are its own preprocessing's.

Footage is made offline from real photographs (scikit-image's), with camera motion and grain, at the
sizes users have, H.264 (MP4) and VP9 (WebM), some with audio. The reference is computed without the
harness: each backend's own full-size frames through CLIPImageProcessor (PIL), or through the I3D's
stated transform (224 short side, centre crop, [-1, 1]) done with PIL.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mediaeval_mem.features import pixels_for  # the public name; loads features/pixels.py
from mediaeval_mem.video.footage import FootageSpec

from footage_media import raw_frames, write_all

SPECS = {
    "1920x1080-h264-audio": FootageSpec("coffee", 1920, 1080, "h264", frames=6, audio=True),
    "1280x720-vp9-audio": FootageSpec("astronaut", 1280, 720, "vp9", frames=6, audio=True),
    "640x360-h264": FootageSpec("rocket", 640, 360, "h264", frames=8),
    "640x360-vp9": FootageSpec("chelsea", 640, 360, "vp9", frames=8),
    "200x112-vp9": FootageSpec("immunohistochemistry", 200, 112, "vp9", frames=8),  # below 224 px: upscaled
    "360x640-h264-portrait": FootageSpec("hubble_deep_field", 360, 640, "h264", frames=8),
}
CLIPS = {"clip-vit-b32": 224, "clip-vit-l14-336": 336}


@pytest.fixture(scope="module")
def footage(tmp_path_factory):
    root = tmp_path_factory.mktemp("footage")
    return write_all(root, SPECS)


def _decodes(path, backend: str) -> bool:
    try:
        raw_frames(path, backend)
        return True
    except Exception:
        return False


@pytest.mark.parametrize("backend", ["decord", "pyav"])
@pytest.mark.parametrize("encoder", sorted(CLIPS))
@pytest.mark.parametrize("video", sorted(SPECS))
def test_clip_pixels_match_clip_image_processor(footage, video, encoder, backend):
    import transformers

    path = footage[video]
    if not _decodes(path, backend):
        pytest.skip(f"{backend} cannot read {path.suffix} as encoded here (extraction falls back to PyAV)")
    size = CLIPS[encoder]
    processor = getattr(transformers, "CLIPImageProcessorPil", None) or transformers.CLIPImageProcessor
    ref = processor(size={"shortest_edge": size}, crop_size={"height": size, "width": size})(
        images=list(raw_frames(path, backend)), return_tensors="np")["pixel_values"]
    ours = pixels_for(encoder, path, backend=backend).numpy()
    assert ours.shape == ref.shape == (SPECS[video].frames, 3, size, size)
    diff = np.abs(ours - ref)
    assert diff.mean() < 0.005, f"mean |diff| {diff.mean():.4f}"


@pytest.mark.parametrize("backend", ["decord", "pyav"])
@pytest.mark.parametrize("video", sorted(SPECS))
def test_i3d_pixels_match_its_stated_transform(footage, video, backend):
    from PIL import Image

    path = footage[video]
    if not _decodes(path, backend):
        pytest.skip(f"{backend} cannot read {path.suffix} as encoded here")
    ref = []
    for frame in raw_frames(path, backend):
        img = Image.fromarray(frame)
        w, h = img.size
        tw, th = (int(224 * w / h), 224) if h <= w else (224, int(224 * h / w))
        img = np.asarray(img.resize((tw, th), Image.BICUBIC), np.float32)
        top, left = (th - 224) // 2, (tw - 224) // 2
        ref.append(img[top : top + 224, left : left + 224].transpose(2, 0, 1) / 127.5 - 1.0)
    ours = pixels_for("i3d-kinetics", path, backend=backend).numpy()
    assert ours.shape == (len(ref), 3, 224, 224)
    assert np.abs(ours - np.stack(ref)).mean() < 0.005


def test_the_decoders_own_scalers_were_not_faithful(footage):
    """Why extraction resizes itself: the decoder-side resize is measurably off on the same footage."""
    import transformers

    from mediaeval_mem.encoders.preprocess import ImageTransform

    path = footage["1280x720-vp9-audio"]
    processor = getattr(transformers, "CLIPImageProcessorPil", None) or transformers.CLIPImageProcessor
    ref = processor(size={"shortest_edge": 224}, crop_size={"height": 224, "width": 224})(
        images=list(raw_frames(path, "pyav")), return_tensors="np")["pixel_values"]
    import av

    t = ImageTransform(224, 224)
    with av.open(str(path)) as c:  # PyAV's scaler resizing while decoding, as the harness did before
        small = np.stack([f.to_ndarray(format="rgb24", height=224, width=398, interpolation="BICUBIC") for f in c.decode(video=0)])
    scaler = t.normalize(t.resize_crop(torch.from_numpy(small))).numpy()
    assert np.abs(scaler - ref).mean() > 3 * np.abs(pixels_for("clip-vit-b32", path).numpy() - ref).mean()


def test_extraction_feeds_the_model_exactly_these_pixels(demo_root, runs_dir):
    """The cached features are the encoder applied to pixels_for's pixels (same code path)."""
    from mediaeval_mem.datasets import open_dataset
    from mediaeval_mem.encoders import build_encoder
    from mediaeval_mem.features.extract import extract_features
    from mediaeval_mem.features.options import ExtractOptions
    from mediaeval_mem.features.store import FeatureStore

    report = extract_features("videomem", "clip-demo", ("dev",), data_root=demo_root, sampling="uniform:5",
                              opts=ExtractOptions(dtype="fp32"), progress=False)
    stored = FeatureStore(report.cache_dir / "dev").load()
    encoder = build_encoder("clip-demo").eval()
    for item in open_dataset("videomem", demo_root).split("dev")[:3]:
        with torch.inference_mode():
            direct = encoder(pixels_for("clip-demo", item.path, "uniform:5", weights=None)).numpy()
        cached = stored.get(item.video_id).astype(np.float32)
        cos = (direct * cached).sum(1) / np.linalg.norm(direct, axis=1) / np.linalg.norm(cached, axis=1)
        assert cos.min() > 0.9999  # float16 storage is the only difference
