"""The generated commercials (datasets/synthetic_commercials.py): deterministic, readable by name, real sound whose
loudness and jingle carry the scores, silent videos without a track, uneven channels, the other demo data untouched."""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path

import av
import numpy as np
import pytest
from scipy.stats import spearmanr

from mediaeval_mem.cli import main
from mediaeval_mem.datasets import open_dataset
from mediaeval_mem.datasets.synthetic import generate_demo_data
from mediaeval_mem.datasets.synthetic_commercials import (
    AUDIO_BLOCK, BRANDS, CHANNEL_SIZES, FPS, NAME, SAMPLE_RATE, declare, design_ads, generate_commercials,
)
from mediaeval_mem.experiments.demo import make_demo_data


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _rows(root: Path) -> list[dict[str, str]]:
    with open(root / NAME / "videos.csv", newline="") as f:
        return list(csv.DictReader(f))


def _sound(path: Path) -> np.ndarray | None:
    """The mono mean of a video's decoded audio track (N,), or None without one."""
    with av.open(str(path)) as c:
        if not c.streams.audio:
            return None
        return np.concatenate([frame.to_ndarray().mean(axis=0) for frame in c.decode(audio=0)])


@pytest.fixture(scope="module")
def half(tmp_path_factory) -> Path:
    """Half the commercials (60 scored, 20 test), seed 0."""
    root = tmp_path_factory.mktemp("commercials")
    assert generate_commercials(root, seed=0, scale=0.5) == {"train+dev": 60, "test": 20}
    return root


def test_same_seed_same_bytes_and_a_rerun_changes_nothing(tmp_path):
    generate_commercials(tmp_path / "a", seed=5, scale=0.05)
    generate_commercials(tmp_path / "b", seed=5, scale=0.05)
    a = _files(tmp_path / "a")
    assert len([f for f in a if f.endswith(".mp4")]) == 8 and a == _files(tmp_path / "b")
    generate_commercials(tmp_path / "a", seed=5, scale=0.05)  # skips the videos, rewrites the CSV identically
    assert _files(tmp_path / "a") == a
    generate_commercials(tmp_path / "c", seed=6, scale=0.05)
    assert _files(tmp_path / "c")["commercials/videos.csv"] != a["commercials/videos.csv"]


def test_the_other_demo_datasets_are_the_same_files(tmp_path):
    """The commercials come after the other two, from their own draws: those are what they were without them
    (their CSVs and H.264 videos byte for byte; VP9's realtime encoder is not byte-stable from run to run)."""
    make_demo_data(tmp_path / "with", seed=2, scale=0.05)
    generate_demo_data(tmp_path / "without", seed=2, scale=0.05)
    with_, without = _files(tmp_path / "with"), _files(tmp_path / "without")
    stable = [f for f in without if not f.endswith(".webm")]
    assert len(stable) > 20 and all(with_[f] == without[f] for f in stable)
    assert {f for f in with_ if f.endswith(".webm")} == {f for f in without if f.endswith(".webm")}
    added = {f for f in set(with_) - set(without) if not f.startswith("i3d/")}  # make_demo_data's I3D stand-ins too
    assert added == {"datasets.yaml", "commercials/videos.csv"} | {f"commercials/videos/ad-{i:04d}.mp4" for i in (
        0, 1, 2, 3, 4, 5, 120, 121)}


def test_the_demo_root_opens_commercials_by_name(demo_root, capsys):
    assert main(["data", "check", "commercials", "--data-root", str(demo_root)]) == 0
    assert "generic layout" in capsys.readouterr().out
    index = open_dataset("commercials", demo_root)
    assert not index.problems and len(index.split("train")) + len(index.split("dev")) == 12
    assert len(index.split("test")) == 4 and all(it.score is None for it in index.split("test"))
    assert all(len(it.captions) == 3 for s in ("train", "dev", "test") for it in index.split(s))


def test_sound_and_pictures_have_the_lengths_written_and_silent_ads_no_track(half):
    ads = {ad.video_id: ad for ad in design_ads(0, 0.5)}
    rows = _rows(half)
    assert [r["video_id"] for r in rows] == list(ads)
    silent = 0
    for r in rows:
        ad, path = ads[r["video_id"]], half / NAME / r["path"]
        with av.open(str(path)) as c:
            assert c.streams.video[0].frames == round(ad.seconds * FPS)
            if ad.silent:
                assert not c.streams.audio
                silent += 1
                continue
            track = c.streams.audio[0]
            assert track.codec_context.name == "aac" and track.codec_context.sample_rate == SAMPLE_RATE
            assert track.codec_context.channels == 2
            assert float(track.duration * track.time_base) == ad.seconds  # the container's length: exact
        n = len(_sound(path))  # decoded: the encoder's last frame is whole, so up to one frame more
        assert ad.seconds * SAMPLE_RATE <= n < ad.seconds * SAMPLE_RATE + AUDIO_BLOCK
    assert silent == 4  # ad-0007, ad-0032 and ad-0057 (scored), ad-0132 (test)


def test_channels_are_uneven_and_the_test_split_has_no_scores(half):
    full = Counter(ad.channel.brand for ad in design_ads(0))
    assert sorted(full.values(), reverse=True) == list(CHANNEL_SIZES) and set(full) == set(BRANDS)
    assert max(full.values()) >= 5 * min(full.values())
    rows = _rows(half)
    seen = Counter(r["channel"] for r in rows)
    assert len(seen) >= 10 and max(seen.values()) >= 3 * min(seen.values())
    test = [r for r in rows if not r["score"]]
    assert len(test) == 20 and not any(r["brand_score"] or r["weight"] for r in test)
    assert all(3 <= int(r["weight"]) <= 20 for r in rows if r["score"])


def test_the_sound_carries_the_scores(half):
    """What the docstring promises, measured on the decoded audio: louder ads score higher, and ads with the
    jingle (tonal energy between 250 Hz and 2 kHz) have higher brand scores. Random sound would fail both."""
    loud, tonal, score, brand = [], [], [], []
    for r in _rows(half):
        if not r["score"]:
            continue
        x = _sound(half / NAME / r["path"])
        if x is None:
            x = np.zeros(SAMPLE_RATE, np.float32)
        loud.append(20 * np.log10(np.sqrt(np.mean(x**2)) + 1e-5))  # dB
        windows = x[: len(x) // 4410 * 4410].reshape(-1, 4410)  # (W, 4410): 0.1 s windows
        power = np.abs(np.fft.rfft(windows, axis=1)) ** 2
        hz = np.fft.rfftfreq(4410, 1 / SAMPLE_RATE)
        tonal.append(float((power[:, (hz > 250) & (hz < 2000)].sum(1) / (power.sum(1) + 1e-12)).max()))
        score.append(float(r["score"]))
        brand.append(float(r["brand_score"]))
    assert len(score) == 60
    assert spearmanr(loud, score)[0] > 0.25  # measured 0.40
    assert spearmanr(tonal, brand)[0] > 0.5  # measured 0.74


def test_declaring_keeps_what_the_file_declares(tmp_path):
    (tmp_path / "datasets.yaml").write_text("mine: {folder: elsewhere}")
    declare(tmp_path)
    declare(tmp_path)  # once only
    text = (tmp_path / "datasets.yaml").read_text()
    assert text.startswith("mine: {folder: elsewhere}\ncommercials: {folder: commercials}") and text.count("commercials:") == 1
