"""Audio parity on a real recording: what our decoding path feeds CLAP and AST equals what their Hugging Face
feature extractors make of the same recording read and resampled independently.

The recording: house_lo.wav from pygame's examples (a test dependency: `pip install -e .[test]`), 7.1 s of
music recorded at 11,025 Hz, 8-bit mono. It is muxed losslessly (pcm_u8 in MKV) into a video, read back
by video/audio.py and the `audio` kind, and compared with scipy.io.wavfile's reading resampled by
scipy.signal.resample_poly (a polyphase Kaiser filter; ours is FFmpeg's swresample).

What differs is the resampler, and only near and above the recording's own Nyquist frequency
(5,512 Hz), where the two filters' transition bands and stopbands differ: the recording has nothing
there but each resampler's leakage (CLAP's top 19 mel bins: up to 61 dB apart, measured, between two
near-silent floors; AST's top 23: up to 0.9 normalised units). Those bins are not compared. Below 90%
of the recording's Nyquist (CLAP: 45 of 64 mel bins; AST: 105 of 128), measured on this machine:

    samples (48 kHz and 16 kHz)      same length, no lag; difference RMS 0.0042 of the signal's (-47 dB)
    CLAP log-mel (dB)                median 0.003, 99th percentile 0.018, max 3.7 (in a quiet frame)
    AST normalised fbank             median 0.00007, 99th percentile 0.0009, max 0.015
    demo embeddings via the kind     cosine to the reference's: CLAP 0.99964, AST 0.99992 (float16 storage included)

Tolerances (about 3x the measurements): RMS ratio 0.01; CLAP median 0.01 dB, 99th percentile 0.05 dB,
max 5 dB; AST median 0.001, 99th percentile 0.003, max 0.05; cosine 0.999. At the recording's own rate
no resampling happens and the samples are bit-identical.
"""

from __future__ import annotations

import importlib.util
from math import gcd
from pathlib import Path

import numpy as np
import pytest
import scipy.io.wavfile
import scipy.signal
import torch

from mediaeval_mem.datasets import DatasetIndex, VideoItem
from mediaeval_mem.encoders import encoder_recipe
from mediaeval_mem.encoders.audio import CLAP_EXTRACTOR, _ast_extractor
from mediaeval_mem.features.extract import extract_features
from mediaeval_mem.features.store import FeatureStore
from mediaeval_mem.video.audio import iter_windows, read_audio, write_sound_video


def _recording() -> Path:
    spec = importlib.util.find_spec("pygame")  # found, not imported: pygame greets on import
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("the parity recording ships with pygame: pip install -e .[test]")
    return Path(spec.submodule_search_locations[0]) / "examples" / "data" / "house_lo.wav"


@pytest.fixture(scope="module")
def recording(tmp_path_factory):
    """(the video holding the recording, its rate, its samples as float32 read by scipy)."""
    rate, raw = scipy.io.wavfile.read(_recording())
    assert raw.dtype == np.uint8 and raw.ndim == 1 and rate == 11_025 and len(raw) > 7 * rate
    video = write_sound_video(tmp_path_factory.mktemp("parity") / "house.mkv", raw, rate, "pcm_u8")
    return video, rate, (raw.astype(np.float32) - 128) / 128  # unsigned 8-bit as FFmpeg reads it


def _reference(samples: np.ndarray, source: int, target: int) -> np.ndarray:
    g = gcd(source, target)
    return scipy.signal.resample_poly(samples.astype(np.float64), target // g, source // g).astype(np.float32)


def _in_band(extractor, source_rate: int) -> np.ndarray:
    """(n_mels,) bool: mel filters that end below 90% of the recording's Nyquist frequency."""
    filters = getattr(extractor, "mel_filters_slaney", None)
    filters = extractor.mel_filters if filters is None else filters  # (n_freqs, n_mels)
    freqs = np.linspace(0, extractor.sampling_rate / 2, filters.shape[0])
    # an empty filter (AST's lowest: 128 bins over a 400-point FFT) reads 0 Hz: the same floor on both sides
    top = np.array([freqs[np.nonzero(filters[:, m])[0].max(initial=0)] for m in range(filters.shape[1])])
    return top < 0.9 * source_rate / 2


def test_at_the_recordings_own_rate_the_samples_are_bit_identical(recording):
    video, rate, samples = recording
    assert np.array_equal(read_audio(video, rate), samples)


@pytest.mark.parametrize("target", [48_000, 16_000])
def test_resampled_samples_match_a_reference_resampler(recording, target):
    video, rate, samples = recording
    (ours,) = list(iter_windows(video, target, 10.0))  # 7.1 s: one (shorter) window
    ref = _reference(samples, rate, target)
    assert len(ours) == len(ref)
    lag = np.argmax(np.correlate(ours[4000:8000], ref[4000:8000], "full")) - 3999
    assert lag == 0
    ratio = np.sqrt(np.mean((ours - ref) ** 2)) / np.sqrt(np.mean(ref ** 2))
    assert ratio < 0.01


def test_clap_log_mel_matches_the_extractor_on_the_reference(recording):
    from transformers import ClapFeatureExtractor

    video, rate, samples = recording
    extractor = ClapFeatureExtractor(**CLAP_EXTRACTOR)  # laion/clap-htsat-unfused's preprocessor_config.json
    ours = extractor(list(iter_windows(video, 48_000, 10.0)), sampling_rate=48_000, return_tensors="np")
    ref = extractor([_reference(samples, rate, 48_000)], sampling_rate=48_000, return_tensors="np")
    a, b = ours["input_features"][0, 0], ref["input_features"][0, 0]  # (1001, 64) dB, repeat-padded to 10 s
    band = _in_band(extractor, rate)
    assert band.sum() == 45
    d = np.abs(a - b)[:, band]
    assert np.median(d) < 0.01 and np.percentile(d, 99) < 0.05 and d.max() < 5.0


def test_ast_fbank_matches_the_extractor_on_the_reference(recording):
    video, rate, samples = recording
    extractor = _ast_extractor()  # MIT/ast-finetuned-audioset-10-10-0.4593's settings
    ours = extractor(list(iter_windows(video, 16_000, 10.0)), sampling_rate=16_000, return_tensors="np")
    ref = extractor([_reference(samples, rate, 16_000)], sampling_rate=16_000, return_tensors="np")
    a, b = ours["input_values"][0], ref["input_values"][0]  # (1024, 128), zero-padded to 10.24 s
    band = _in_band(extractor, rate)
    assert band.sum() == 105, band.sum()
    d = np.abs(a - b)[:, band]
    assert np.median(d) < 0.001 and np.percentile(d, 99) < 0.003 and d.max() < 0.05


@pytest.mark.parametrize("encoder", ["clap-audio-demo", "ast-demo"])
def test_the_kind_stores_what_the_encoder_makes_of_the_reference(recording, encoder, runs_dir):
    """Through extraction (the saved stand-in, its saved extractor, the store's float16): the row is the
    encoder's vector for the independently read recording."""
    video, rate, samples = recording
    index = DatasetIndex("parity", video.parent, "files", "none", {"train": [VideoItem("house", video)]})
    report = extract_features(index, encoder, ("train",), progress=False)
    row = torch.from_numpy(np.asarray(FeatureStore(report.cache_dir / "train").load().get("house"), np.float32))
    enc = encoder_recipe(encoder).load()
    with torch.inference_mode():
        ref = enc.encode([_reference(samples, rate, enc.transform.rate)])
    assert row.shape == ref.shape == (1, enc.out_dim)
    cos = float(torch.nn.functional.cosine_similarity(row, ref))
    assert cos > 0.999
