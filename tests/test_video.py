"""Decoding through both backends, the fallback, sampling, and clear errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mediaeval_mem.datasets.synthetic import render_clip, write_video
from mediaeval_mem.core.errors import DecodeError, MemError
from mediaeval_mem.video import Sampling, decode, probe


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """The same 30 frames as H.264 MP4, VP9 WebM and AV1 MKV (AV1: decord cannot open it)."""
    folder = tmp_path_factory.mktemp("clips")
    frames = render_clip(np.random.default_rng(0), 0.7, 0.5, 0.3, 30)  # (30, 72, 128, 3)
    paths = {}
    for name, codec, opts in (
        ("h264.mp4", "libx264", {"crf": "18"}),
        ("vp9.webm", "libvpx-vp9", {"deadline": "realtime", "cpu-used": "8", "crf": "20", "b": "0"}),
        ("av1.mkv", "libsvtav1", {"preset": "12", "crf": "20"}),
    ):
        write_video(folder / name, frames, codec, opts)
        paths[name] = folder / name
    return frames, paths


@pytest.mark.parametrize("name", ["h264.mp4", "vp9.webm"])
@pytest.mark.parametrize("backend", ["decord", "pyav"])
def test_backends_decode_the_frames(clips, name, backend):
    frames, paths = clips
    out = decode(paths[name], "all", backend=backend)
    assert out.dtype == torch.uint8 and tuple(out.shape) == frames.shape
    # Lossy codecs: close to the source on average, not equal.
    assert np.abs(out.numpy().astype(float) - frames).mean() < 6


def test_backends_agree_with_each_other_when_resizing(clips):
    _, paths = clips
    a = decode(paths["h264.mp4"], "uniform:5", short_side=36, backend="decord")
    b = decode(paths["h264.mp4"], "uniform:5", short_side=36, backend="pyav")
    assert a.shape == b.shape == (5, 36, 64, 3)
    assert (a.float() - b.float()).abs().mean() < 6


def test_auto_falls_back_to_pyav_for_av1(clips):
    frames, paths = clips
    with pytest.raises(DecodeError, match="decord"):
        decode(paths["av1.mkv"], backend="decord")
    out = decode(paths["av1.mkv"], "all")
    assert tuple(out.shape) == frames.shape
    assert np.abs(out.numpy().astype(float) - frames).mean() < 6


def test_probe_reads_the_header(clips):
    assert probe(clips[1]["vp9.webm"]) == (72, 128)


def test_broken_and_missing_files_name_the_file(tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00not a video" * 100)
    with pytest.raises(DecodeError, match="bad.mp4: cannot decode .*decord: .*pyav: "):
        decode(bad)
    with pytest.raises(DecodeError, match="gone.mp4: video file not found"):
        decode(tmp_path / "gone.mp4")


@pytest.mark.parametrize(
    "text,n,expected",
    [
        ("all", 5, [0, 1, 2, 3, 4]),
        ("uniform:4", 8, [1, 3, 5, 7]),  # centre of each of 4 segments
        ("uniform:3", 90, [15, 45, 75]),
        ("uniform:10", 4, [0, 1, 2, 3]),  # shorter than N: every frame
        ("UNIFORM:2", 2, [0, 1]),
        ("segments:4", 8, list(range(8))),  # extraction keeps every frame; batches pick (tests/test_segments.py)
    ],
)
def test_sampling(text, n, expected):
    assert Sampling.parse(text).indices(n).tolist() == expected


@pytest.mark.parametrize("text", ["some", "uniform:0", "uniform:x", "uniform", "segments:0", "segments", "all:4"])
def test_bad_sampling_is_refused(text):
    with pytest.raises(MemError, match="use 'all', 'uniform:N' or 'segments:N' with N >= 1"):
        Sampling.parse(text)
