"""Input kinds (features/inputs/): what an encoder reads is a registered kind that extraction, config
validation and `mem predict` ask. A plugin adds its own kind (the first frame's colour histogram) with an
encoder that reads it, and it runs end to end: extract, a cache hit, `mem run` with metrics."""

from __future__ import annotations

import re

import numpy as np
import pytest

from mediaeval_mem.cli import main
from mediaeval_mem.core.errors import ConfigError, UnknownNameError
from mediaeval_mem.encoders import ENCODERS, EncoderInfo
from mediaeval_mem.features.inputs import INPUT_KINDS, input_kind
from conftest import REPO

PLUGIN = '''
"""A lab's own input kind: a video's first frame, and an encoder that reads it (8-bin colour histograms)."""
from contextlib import closing

import numpy as np
import torch
from torch import nn

from mediaeval_mem.core.errors import DecodeError
from mediaeval_mem.encoders import ENCODERS, EncoderInfo, EncoderRecipe
from mediaeval_mem.features.inputs import InputKind, register_kind
from mediaeval_mem.features.key import feature_key
from mediaeval_mem.features.rows import Rows, fill_store
from mediaeval_mem.video.decode import iter_chunks

BINS = 8


@register_kind("lab-first-frame")
class FirstFrame(InputKind):
    """A video's first decoded frame at full size, uint8 (H, W, 3): one row per video."""

    unit, reads, per_video = "video", "its first frame", True

    def key(self, index, recipe, sampling, dtype):
        return feature_key(index.name, index.root, recipe.identity(), "first frame", "none", "the first frame, full size")

    def fill(self, job, items, store, report):
        def rows_for(encoder, part):
            videos, failed = [], {}
            for it in part:
                try:
                    with closing(iter_chunks(it.path, "all", chunk=1)) as chunks:
                        first = next(chunks)[0]  # uint8 (H, W, 3)
                except (DecodeError, StopIteration, TypeError) as e:
                    failed[it.video_id] = str(e) or f"{it.path}: no frames"
                    continue
                videos.append((it.video_id, encoder(first)[None].numpy().astype(np.float16)))  # (1, 3 * BINS)
            return Rows(videos, failed, inputs=len(videos))

        fill_store(job.load_encoder, items, store, rows_for, job.opts.flush_every, report, job.progress, "videos")


class Histogram(nn.Module):
    def forward(self, frame):  # uint8 (H, W, 3) -> (3 * BINS,): each channel's histogram, summing to 1
        counts = [torch.histc(frame[..., c].float(), BINS, 0, 256) for c in range(3)]
        return torch.cat(counts) / frame[..., 0].numel()


class FirstFrameOnly:
    def describe(self):
        return f"first frame, full size, {BINS} bins per channel"


@ENCODERS.register("lab-histogram", info=EncoderInfo(3 * BINS, input="lab-first-frame"))
def lab_histogram(weights=None):
    return EncoderRecipe("lab-histogram", "none", FirstFrameOnly(), Histogram)
'''


@pytest.fixture
def lab(tmp_path, monkeypatch):
    """The plugin file and a run config naming it; its kind and encoder are unregistered afterwards."""
    from mediaeval_mem import plugins

    (tmp_path / "lab_kind.py").write_text(PLUGIN)
    cfg = tmp_path / "lab.yaml"
    cfg.write_text("plugins: [lab_kind.py]\n"
                   "model: {streams: [{encoder: lab-histogram, aggregator: avg}], head: mlp}\n"
                   "train: {epochs: 2, patience: 2}\n")
    monkeypatch.setattr(plugins, "_loaded", set(plugins._loaded))
    try:
        yield cfg
    finally:
        for registry, name in ((ENCODERS, "lab-histogram"), (INPUT_KINDS, "lab-first-frame")):
            registry.pop(name, None)
            registry.infos.pop(name, None)


def test_a_plugins_input_kind_runs_end_to_end(lab, demo_root, runs_dir, capsys):
    from mediaeval_mem.config import load_config
    from mediaeval_mem.datasets import open_dataset
    from mediaeval_mem.features.extract import extract_features
    from mediaeval_mem.features.store import FeatureStore
    from mediaeval_mem.tracking import search_runs

    cfg = load_config(str(lab))  # loads the plugin: its kind and its encoder are registered
    assert input_kind(cfg.model.streams[0].encoder) is INPUT_KINDS["lab-first-frame"]
    index = open_dataset("memento10k", demo_root)
    report = extract_features(index, "lab-histogram", ("train", "dev"), progress=False)
    assert report.unit == "video" and report.key["sampling"] == "first frame"
    for split in report.splits:
        assert split.extracted == split.total > 0 and split.cached == 0 and not split.failed
    feats = FeatureStore(report.cache_dir / "train").load()
    assert feats.dim == 24 and set(feats.lengths) == {1}
    sums = np.asarray(feats[0], np.float32).reshape(3, 8).sum(1)  # each channel's histogram sums to 1
    assert np.allclose(sums, 1, atol=1e-2)

    again = extract_features(index, "lab-histogram", ("train", "dev"), progress=False)
    assert again.cache_dir == report.cache_dir
    assert [(s.extracted, s.cached) for s in again.splits] == [(0, s.total) for s in report.splits]

    with pytest.raises(ConfigError, match="sampling uniform:4 picks video frames; lab-histogram reads its first frame"):
        extract_features(index, "lab-histogram", ("train",), sampling="uniform:4", progress=False)

    assert main(["describe", str(lab)]) == 0
    assert "lab-histogram: one 24-d vector per video, frozen" in capsys.readouterr().out
    assert main(["run", "--train", "memento10k", "--test", "memento10k", "--config", str(lab),
                 "--data-root", str(demo_root), "--quiet"]) == 0
    [run] = search_runs()
    assert run.info.status == "FINISHED" and run.data.tags["encoder"] == "lab-histogram" and run.data.metrics


def test_a_kinds_refusals_are_one_line(lab, capsys):
    from mediaeval_mem.config import StreamCfg, load_config

    load_config(str(lab))
    with pytest.raises(ConfigError, match="sampling 'uniform:4' picks video frames; lab-histogram reads its first "
                                          "frame: leave sampling at all"):
        StreamCfg("lab-histogram", sampling="uniform:4", aggregator="avg")
    with pytest.raises(ConfigError, match="gives one vector per video: use none, avg or linear-avg"):
        StreamCfg("lab-histogram")  # bigru-attention models frame order
    assert "a kind that does not exist" not in INPUT_KINDS
    ENCODERS.register("lab-nowhere", info=EncoderInfo(4, input="a kind that does not exist"))(lambda weights=None: None)
    try:
        with pytest.raises(UnknownNameError) as e:
            input_kind("lab-nowhere")
        assert str(e.value).startswith("unknown input kind 'a kind that does not exist'; valid names: audio, captions, clip, ")
        with pytest.raises(ConfigError, match="unknown input kind"):
            StreamCfg("lab-nowhere", aggregator="avg")
    finally:
        ENCODERS.pop("lab-nowhere")
        ENCODERS.infos.pop("lab-nowhere")


def test_a_kind_name_is_registered_once(tmp_path, capsys):
    (tmp_path / "clash.py").write_text("from mediaeval_mem.features.inputs import InputKind, register_kind\n\n"
                                       "register_kind('frames')(type('Frames', (InputKind,), {}))\n")
    (tmp_path / "c.yaml").write_text("plugins: [clash.py]\nmodel: {streams: [{encoder: clip-demo}]}\n")
    assert main(["describe", str(tmp_path / "c.yaml")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "input kind 'frames' is registered twice" in err


def test_only_the_kinds_compare_what_an_encoder_reads():
    """extract, config validation, predict, describe and grid ask the kind; only features/inputs/ names kinds."""
    pattern = re.compile(r"\.input\s*(==|!=|in\b|not in\b)|input\s*==\s*[\"']")
    package = REPO / "mediaeval_mem"
    found = [f"{p.relative_to(REPO)}:{i}: {line.strip()}"
             for p in sorted(package.rglob("*.py")) if "inputs" not in p.relative_to(package).parts[:2]
             for i, line in enumerate(p.read_text().splitlines(), 1) if pattern.search(line)]
    assert found == []


@pytest.mark.parametrize("name,unit,reads_video,per_video", [
    ("frames", "frame", True, False), ("clip", "video", True, True),
    ("captions", "caption", False, False), ("features", "row", False, False),
])
def test_the_built_in_kinds(name, unit, reads_video, per_video):
    kind = INPUT_KINDS[name]
    assert (kind.unit, kind.reads_video, kind.per_video) == (unit, reads_video, per_video)
    assert kind.sampling_refusal("enc", "all") is None
    assert (kind.sampling_refusal("enc", "uniform:4") is None) == reads_video
    assert kind.report_unit == {"clip": "frame"}.get(name, unit)  # a clip encoder's extraction counts frames
