"""Audio: decoding a video's sound (video/audio.py), the `audio` input kind, and the audio encoders' stand-ins.

Parity with the Hugging Face feature extractors on a real recording: test_audio_parity.py; memory of a
10-minute video: test_audio_memory.py."""

from __future__ import annotations

import json
import os
import struct

import numpy as np
import pytest
import torch

from mediaeval_mem.core.errors import ConfigError, DecodeError, WeightsError
from mediaeval_mem.datasets import DatasetIndex, VideoItem
from mediaeval_mem.encoders import ENCODERS, encoder_recipe
from mediaeval_mem.features.extract import extract_features
from mediaeval_mem.features.inputs import input_kind
from mediaeval_mem.features.store import FeatureStore
from mediaeval_mem.video.audio import has_audio, iter_windows, read_audio, write_sound_video

AUDIO_DEMOS = ["clap-audio-demo", "ast-demo"]


def _tone(freq: float, seconds: float, rate: int = 44_100, level: float = 0.4) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return (level * np.sin(2 * np.pi * freq * t)).astype(np.float32)


# --------------------------------------------------------------------------- decoding
def test_windows_are_mono_at_the_asked_rate_and_the_last_one_is_shorter(tmp_path):
    x = _tone(440, 3.5)
    mono = write_sound_video(tmp_path / "mono.mkv", x, 44_100, "pcm_s16le")
    sizes = [len(w) for w in iter_windows(mono, 16_000, 1.0)]
    assert sizes == [16_000, 16_000, 16_000, 8_000]  # 3.5 s: three full windows, the rest not padded
    assert all(w.dtype == np.float32 and w.ndim == 1 for w in iter_windows(mono, 16_000, 1.0))
    # a short tail after full windows may be dropped (encoder padding); a track shorter than a window never is
    assert [len(w) for w in iter_windows(mono, 16_000, 1.0, min_tail_s=0.6)] == [16_000] * 3
    assert [len(w) for w in iter_windows(mono, 16_000, 1.0, min_tail_s=0.4)] == sizes
    assert [len(w) for w in iter_windows(mono, 16_000, 10.0, min_tail_s=5.0)] == [56_000]
    # stereo is the mean of the channels: opposite channels cancel, equal ones give the mono track
    assert np.abs(read_audio(write_sound_video(tmp_path / "anti.mkv", np.stack([x, -x]), 44_100, "pcm_s16le"),
                             16_000)).max() < 1e-4
    same = read_audio(write_sound_video(tmp_path / "same.mkv", np.stack([x, x]), 44_100, "pcm_s16le"), 16_000)
    assert np.abs(same - read_audio(mono, 16_000)).max() < 1e-6
    # the 440 Hz tone is still a 440 Hz tone at the new rate (amplitude 0.4, 16-bit quantised)
    spectrum = np.abs(np.fft.rfft(same[:16_000]))
    assert np.argmax(spectrum) == 440 and abs(np.abs(same).max() - 0.4) < 0.01


def test_a_video_without_sound_is_told_apart_not_failed(tmp_path):
    silent = write_sound_video(tmp_path / "silent.mp4", None, seconds=2)
    assert not has_audio(silent) and read_audio(silent, 16_000) is None and list(iter_windows(silent, 16_000, 1)) == []
    assert has_audio(write_sound_video(tmp_path / "ad.mp4", _tone(300, 1, 48_000), 48_000))


def _unknown_codec_wav(path):
    """A WAV file whose format tag (0x5A5A) no decoder knows: an audio stream FFmpeg cannot decode."""
    data = bytes(8000)
    fmt = struct.pack("<HHIIHH", 0x5A5A, 1, 8000, 8000, 1, 8)
    path.write_bytes(b"RIFF" + struct.pack("<I", 4 + 8 + len(fmt) + 8 + len(data)) + b"WAVE"
                     + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(data)) + data)
    return path


def _corrupted_track(tmp_path):
    """An AAC track in MKV (header first, so it opens) whose later packets are overwritten with noise."""
    clip = write_sound_video(tmp_path / "ok.mkv", np.random.default_rng(0).normal(0, 0.2, 48_000 * 5).astype(np.float32),
                             48_000, "aac")
    data = bytearray(clip.read_bytes())
    rng = np.random.default_rng(1)
    for i in range(len(data) // 3, len(data) - 200, 50):
        data[i:i + 20] = rng.integers(0, 256, 20, dtype=np.uint8).tobytes()
    (tmp_path / "corrupt.mkv").write_bytes(bytes(data))
    return tmp_path / "corrupt.mkv"


def _truncated(tmp_path):
    """An MP4 cut in half: its index (moov, written last) is gone."""
    clip = write_sound_video(tmp_path / "whole.mp4", _tone(500, 4, 48_000), 48_000)
    data = clip.read_bytes()
    (tmp_path / "truncated.mp4").write_bytes(data[: len(data) // 2])
    return tmp_path / "truncated.mp4"


@pytest.mark.parametrize("make,says", [
    (_truncated, "cannot open"),
    (_corrupted_track, "audio track cannot be decoded"),
    (lambda tmp: _unknown_codec_wav(tmp / "odd.wav"), "audio track cannot be decoded"),
    (lambda tmp: tmp / "missing.mp4", "video file not found"),
])
def test_a_broken_track_is_one_line_naming_the_file(make, says, tmp_path):
    path = make(tmp_path)
    with pytest.raises(DecodeError) as e:
        read_audio(path, 16_000)
    message = str(e.value)
    assert message.startswith(f"{path}: {says}") and "\n" not in message


# --------------------------------------------------------------------------- the input kind
@pytest.fixture
def sounds(tmp_path):
    """Five videos: a 12 s tone (AAC, two windows), 3 s of noise (Opus in WebM), a video without sound, a
    truncated one and a louder copy of the tone."""
    rng = np.random.default_rng(0)
    folder = tmp_path / "ads"
    clips = {
        "tone": write_sound_video(folder / "tone.mp4", _tone(440, 12, 48_000), 48_000),
        "noise": write_sound_video(folder / "noise.webm", rng.normal(0, 0.1, 48_000 * 3).astype(np.float32), 48_000,
                                   "libopus"),
        "quiet": write_sound_video(folder / "quiet.mp4", None, seconds=2),
        "broken": _truncated(folder),
        "loud": write_sound_video(folder / "loud.mp4", _tone(440, 12, 48_000, level=0.9), 48_000),
    }
    items = [VideoItem(vid, path) for vid, path in clips.items()]
    return DatasetIndex("ads", folder, "files", "none", {"train": items})


@pytest.mark.parametrize("encoder", AUDIO_DEMOS)
def test_extraction_gives_a_row_per_window_silence_for_no_sound_and_fails_only_the_broken_video(encoder, sounds,
                                                                                                 runs_dir):
    report = extract_features(sounds, encoder, ("train",), progress=False)
    split = report.splits[0]
    assert list(split.failed) == ["broken"] and "truncated.mp4: cannot open" in split.failed["broken"]
    assert list(split.silent) == ["quiet"] and split.extracted == 4 and report.unit == "window"
    assert split.frames == 2 + 1 + 1 + 2  # windows encoded: the silent video's one window of zeros included
    store = FeatureStore(report.cache_dir / "train")
    manifest = store.manifest()
    assert manifest["silent"] == {"quiet": "no audio track: one window of silence was encoded"}
    loaded = store.load()
    rows = {vid: loaded.get(vid) for vid in ("tone", "noise", "quiet", "loud")}
    assert [len(r) for r in rows.values()] == [2, 1, 1, 2]
    width = ENCODERS.info(encoder).width
    assert all(r.shape[1] == width and np.isfinite(r).all() for r in rows.values())
    # the model hears the difference: noise is not the tone, the same tone louder is nearer to it than noise
    t, n, q, loud = (np.asarray(rows[v][0], np.float32) for v in ("tone", "noise", "quiet", "loud"))
    assert not np.allclose(t, n) and not np.allclose(t, q)
    assert float(t @ loud) > float(t @ n)
    again = extract_features(sounds, encoder, ("train",), progress=False)
    assert again.splits[0].cached == 4 and again.splits[0].extracted == 0


def test_a_missing_file_or_a_track_too_short_to_featurise_fails_that_video_alone(sounds, runs_dir):
    """A video the dataset lists whose file is gone, and a track of a few samples (AST's extractor refuses it):
    each one line, the others extracted."""
    items = sounds.split("train")
    blip = write_sound_video(sounds.root / "blip.mkv", _tone(440, 0.002, 16_000), 16_000, "pcm_s16le")  # 32 samples
    more = [VideoItem("gone", None), VideoItem("blip", blip)]
    index = DatasetIndex("ads2", sounds.root, "files", "none", {"train": [items[0], *more]})
    split = extract_features(index, "ast-demo", ("train",), progress=False).splits[0]
    assert split.failed["gone"] == "gone: video file not found" and split.extracted == 1
    assert "sound too short to featurise" in split.failed["blip"]
    assert "tone" not in split.failed and all("\n" not in why for why in split.failed.values())


def test_the_key_holds_the_rate_the_window_and_the_extractor(sounds, runs_dir):
    clap = extract_features(sounds, "clap-audio-demo", ("train",), progress=False).key
    ast = extract_features(sounds, "ast-demo", ("train",), progress=False).key
    assert clap["preprocess"]["rate"] == 48_000 and ast["preprocess"]["rate"] == 16_000
    assert clap["preprocess"]["window_s"] == ast["preprocess"]["window_s"] == 10.0
    assert clap["preprocess"]["extractor"]["feature_extractor_type"] == "ClapFeatureExtractor"
    assert clap["preprocess"]["extractor"]["truncation"] == "rand_trunc"  # never fires: a window is its whole input
    assert ast["preprocess"]["extractor"]["num_mel_bins"] == 128 and "audio track" in clap["decode"]
    json.dumps(clap)  # a key is plain data


def test_frame_sampling_is_refused_in_one_line(sounds, runs_dir):
    with pytest.raises(ConfigError) as e:
        extract_features(sounds, "clap-audio-demo", ("train",), sampling="uniform:4", progress=False)
    assert str(e.value) == ("sampling uniform:4 picks video frames; clap-audio-demo reads a video's sound in windows "
                            "of its own: leave --sampling at all")
    assert input_kind("ast-audioset").unit == "window" and not input_kind("clap-audio").reads_video


def test_the_extract_report_counts_the_silent_videos(sounds, runs_dir):
    import io

    from rich.console import Console

    from mediaeval_mem.cli import _render_extract

    out = io.StringIO()
    _render_extract(extract_features(sounds, "ast-demo", ("train",), progress=False), Console(file=out, width=200))
    text = out.getvalue()
    assert "train: 1 video(s) without an audio track were encoded as silence (listed in the manifest under 'silent')" in text
    assert "windows/s" in text and "failed train/broken" in text


# --------------------------------------------------------------------------- the encoders
@pytest.mark.parametrize("name,folder", [("clap-audio-demo", "clap-demo"), ("ast-demo", "ast-demo")])
def test_audio_stand_ins_round_trip_through_from_pretrained(name, folder, runs_dir):
    """Saved once (seeded) under runs/models/ and loaded by the same code as a downloaded checkpoint."""
    recipe = encoder_recipe(name)
    saved = runs_dir / "models" / folder
    assert (saved / "config.json").is_file() and (saved / "preprocessor_config.json").is_file()
    again = encoder_recipe(name, str(saved))
    assert again.identity() == recipe.identity()
    rate = recipe.transform.rate
    windows = [_tone(440, 10, rate), _tone(2000, 4, rate)]
    with torch.inference_mode():
        a, b = recipe.load().encode(windows), again.load().encode(windows)
    assert torch.equal(a, b) and a.shape == (2, ENCODERS.info(name).width)
    assert torch.allclose(a.norm(dim=-1), torch.ones(2), atol=1e-4) and float(a[0] @ a[1]) < 0.9999


def test_clap_text_tower_shares_the_demo_folder_and_tells_captions_apart(runs_dir):
    recipe = encoder_recipe("clap-demo-text")
    assert recipe.weights_id == encoder_recipe("clap-audio-demo").weights_id  # one CLAP, two towers
    enc = recipe.load()
    with torch.inference_mode():
        out = enc.encode(["a bright disc", "", "an unforgettable scene"])
    assert out.shape == (3, ENCODERS.info("clap-demo-text").width) and input_kind("clap-text").unit == "caption"
    assert torch.allclose(out.norm(dim=-1), torch.ones(3), atol=1e-4) and float(out[0] @ out[2]) < 0.9999
    assert enc.tokenizer.tokenize("a bright disc") == ["Ġa", "Ġbright", "Ġdisc"]


@pytest.mark.parametrize("name", ["clap-audio", "ast-audioset", "clap-text"])
def test_missing_weights_are_one_line_saying_what_to_fetch(name, tmp_path):
    with pytest.raises(WeightsError) as e:
        encoder_recipe(name)  # the hub is offline in tests and the cache empty
    message = str(e.value)
    assert "\n" not in message and "hf download" in message and ("laion/clap-htsat-unfused" in message
                                                                 or "MIT/ast-finetuned-audioset" in message)
    (tmp_path / "empty").mkdir()
    with pytest.raises(WeightsError, match=rf"^{name}: cannot load .* from {tmp_path / 'empty'}: "):
        encoder_recipe(name, str(tmp_path / "empty")).load()


@pytest.mark.slow
@pytest.mark.parametrize("name", ["clap-audio", "ast-audioset", "clap-text"])
def test_full_size_architectures_give_the_widths_the_registry_promises(name, runs_dir):
    """The real checkpoints' architectures (transformers' defaults are theirs) with seeded random weights."""
    enc = encoder_recipe(name, "random").load()
    with torch.inference_mode():
        out = enc.encode(["a jingle", "a voice says the brand"]) if name == "clap-text" else \
            enc.encode([_tone(440, 10, enc.transform.rate), _tone(880, 3, enc.transform.rate)])
    assert ENCODERS.info(name).width == enc.out_dim == out.shape[1] and out.shape[0] == 2
    assert torch.isfinite(out).all()


def test_bench_audio_reports_its_keys(tmp_path):
    """bench/audio.py runs at toy size and reports every figure it promises (no timing is asserted)."""
    import subprocess
    import sys

    from conftest import REPO

    out = subprocess.run([sys.executable, str(REPO / "bench" / "audio.py"), "--encoders", "ast-demo", "--videos", "1",
                          "--seconds", "3", "--model-seconds", "0.2", "--workdir", str(tmp_path / "w")],
                         capture_output=True, text=True, cwd=tmp_path, timeout=600,
                         env={**os.environ, "MEM_RUNS_DIR": str(tmp_path / "runs")})
    assert out.returncode == 0, out.stderr[-2000:]
    figures = json.loads(out.stdout.strip().splitlines()[-1])
    (r,) = figures["encoders"]
    keys = {"e2e_wps", "model_wps", "extractor_wps", "decode_wps", "e2e_over_model", "e2e_realtime"}
    assert keys <= set(r) and all(r[k] > 0 for k in keys) and r["windows"] == 1 and r["rate"] == 16_000
    # the ratio of the unrounded rates, rounded: within what rounding both rates to 0.01 and it to 0.001 allows
    ratio = r["e2e_wps"] / r["model_wps"]
    assert abs(r["e2e_over_model"] - ratio) <= 0.0005 + ratio * (0.005 / r["e2e_wps"] + 0.005 / r["model_wps"])
