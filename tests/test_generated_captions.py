"""Captions written by a VLM: the tiny seeded Qwen2.5-VL (qwen2.5-vl-demo, saved and loaded through from_pretrained)
captions each video once (a second call loads no model), `mem captions generate` fills the cache a `source: generated`
caption stream reads, a run trains on them and `mem predict` captions new videos the same way; a video the VLM cannot
read fails alone in one line; an unknown model is one line. The videos are real files written by PyAV."""

from __future__ import annotations

import csv
import io
import json
import shutil

import numpy as np
import pytest
import torch

from mediaeval_mem.cli import main
from mediaeval_mem.config import StreamCfg, load_config
from mediaeval_mem.core.errors import ConfigError, MemError
from mediaeval_mem.datasets import VideoItem, open_dataset
from mediaeval_mem.encoders import encoder_recipe, vlm
from mediaeval_mem.features.captions import text_source
from mediaeval_mem.features.extract import extract_features
from mediaeval_mem.features.generated import CAPTION_PROMPT, CaptionOptions, generate_captions
from mediaeval_mem.features.store import FeatureStore

from conftest import REPO
from speech_media import truncate, write_ads, write_video

SHORT = 8  # max_new_tokens: the demo VLM writes one demo word per token
DEMO = CaptionOptions(model="qwen2.5-vl-demo", sampling="uniform:4", max_new_tokens=SHORT)
ARGS = {"model": "qwen2.5-vl-demo", "sampling": "uniform:4", "max_new_tokens": SHORT}


@pytest.fixture(scope="module")
def demo_vlm_folder(tmp_path_factory):
    """The demo VLM's save_pretrained folder, made once for this module (its seeded build is the slow part)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MEM_RUNS_DIR", str(tmp_path_factory.mktemp("vlm")))
        return vlm.demo_vlm_dir()


@pytest.fixture
def runs_dir(runs_dir, demo_vlm_folder):
    """A fresh runs/ folder holding the demo VLM where it is saved (runs/models/), as after a first use."""
    shutil.copytree(demo_vlm_folder, runs_dir / "models" / demo_vlm_folder.name)
    return runs_dir


@pytest.fixture
def count_loads(monkeypatch):
    """How many times a VLM is loaded (the captioning path's one costly step)."""
    loads = []
    real = vlm.VlmSource.load

    def counting(self):
        loads.append(self.name)
        return real(self)

    monkeypatch.setattr(vlm.VlmSource, "load", counting)
    return loads


def test_captions_are_made_once(tmp_path, runs_dir, count_loads):
    """One text per video, which depends on the video; a second call loads no model and gives the same texts; a
    replaced file is captioned again, and every video for another prompt."""
    items = [VideoItem(f"v{i}", write_video(tmp_path / f"v{i}.mp4", freq=40.0 + 90 * i, audio=None)) for i in range(3)]
    first = generate_captions(items, DEMO)
    assert first.generated == 3 and set(first.texts) == {"v0", "v1", "v2"} and not first.failed
    assert all(len(t.split()) == SHORT for t in first.texts.values()) and len(set(first.texts.values())) > 1
    assert count_loads == ["qwen2.5-vl-demo"]
    second = generate_captions(items, DEMO)
    assert second.generated == 0 and second.texts == first.texts and count_loads == ["qwen2.5-vl-demo"]
    folder = next((runs_dir / "captions" / "qwen2.5-vl-demo").iterdir())
    assert second.folder == folder and len(list(folder.glob("*.json"))) == 3 + 1  # one per video, and key.json
    key = json.loads((folder / "key.json").read_text())
    assert key["prompt"] == CAPTION_PROMPT and key["sampling"] == "uniform:4" and key["max_new_tokens"] == SHORT
    assert key["weights"] == vlm.vlm_source("qwen2.5-vl-demo").weights_id

    write_video(items[1].path, seconds=2.0, freq=200.0, audio=None)  # replaced: another file
    third = generate_captions(items, DEMO)
    assert third.generated == 1 and len(count_loads) == 2
    asked = generate_captions(items, CaptionOptions(**{**ARGS, "prompt": "What moves in this video?"}))
    assert asked.generated == 3 and len(count_loads) == 3 and asked.folder != folder


def test_greedy_captions_are_the_models_own_generate(tmp_path, runs_dir):
    """The cached text is QwenVL.caption's greedy decoding of the source's frames: no sampling, the same each time."""
    from mediaeval_mem.features.pixels import frames_for

    path = write_video(tmp_path / "v.mp4", freq=120.0, audio=None)
    text = generate_captions([VideoItem("v", path)], DEMO).texts["v"]
    src = vlm.vlm_source("qwen2.5-vl-demo")
    pixels = src.transform.normalize(frames_for(path, src.transform, "uniform:4"))
    assert src.load().caption(pixels, CAPTION_PROMPT, SHORT) == text


def _thin_video(path, width: int = 600, height: int = 2):
    """A video whose frames are 300 times wider than high: decodable, but Qwen's resize refuses the aspect ratio."""
    import av

    c = av.open(str(path), "w")
    v = c.add_stream("mpeg4", rate=8)
    v.width, v.height, v.pix_fmt = width, height, "yuv420p"
    for i in range(8):
        for p in v.encode(av.VideoFrame.from_ndarray(np.full((height, width, 3), i * 20, np.uint8), format="rgb24")):
            c.mux(p)
    for p in v.encode(None):
        c.mux(p)
    c.close()
    return path


def test_a_video_the_vlm_cannot_read_fails_alone(tmp_path, runs_dir):
    """A truncated mp4, an empty file, a missing one and frames of an aspect ratio Qwen refuses: each fails in one
    line naming its file, the others get captions; failures are not cached (a repaired file is captioned next time)."""
    cut = truncate(write_video(tmp_path / "cut.mp4", audio=None))
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    items = [VideoItem("cut", cut), VideoItem("empty", empty), VideoItem("gone", tmp_path / "gone.mp4"),
             VideoItem("thin", _thin_video(tmp_path / "thin.mp4")),
             VideoItem("good", write_video(tmp_path / "good.mp4", audio=None))]
    c = generate_captions(items, DEMO)
    assert set(c.texts) == {"good"} and set(c.failed) == {"cut", "empty", "gone", "thin"} and c.generated == 1
    assert all("\n" not in why for why in c.failed.values())
    assert str(cut) in c.failed["cut"] and "cannot decode" in c.failed["cut"]
    assert str(empty) in c.failed["empty"] and "gone.mp4: video file not found" in c.failed["gone"]
    assert f"{tmp_path / 'thin.mp4'}: qwen2.5-vl-demo cannot read its frames: 600x2 frames: absolute aspect ratio" in c.failed["thin"]
    write_video(cut, audio=None)  # repaired
    again = generate_captions(items, DEMO)
    assert set(again.texts) == {"good", "cut"} and again.generated == 1


def test_mem_captions_generate_reports_and_caches(tmp_path, runs_dir, capsys):
    """The command captions every video of a dataset: how many now, cached and failed (one line per failure); the
    second call captions nothing."""
    root = write_ads(tmp_path / "data", {"ad-04": "truncated"})
    cmd = ["captions", "generate", "--dataset", "ads", "--model", "qwen2.5-vl-demo", "--sampling", "uniform:4",
           "--max-new-tokens", str(SHORT), "--data-root", str(root), "--quiet"]
    assert main(cmd) == 1  # one video failed
    out = capsys.readouterr().out
    assert "ads: 12 video(s): 11 captioned now, 0 cached, 1 failed (qwen2.5-vl-demo" in out
    failed = [line for line in out.splitlines() if "failed train/" in line]
    assert len(failed) == 1 and "train/ad-04" in failed[0] and "ad-04.mp4: cannot decode" in failed[0]
    assert "source: generated, source_args: {model: qwen2.5-vl-demo, sampling: uniform:4, max_new_tokens: 8}" in out
    assert main(cmd) == 1
    assert "ads: 12 video(s): 0 captioned now, 11 cached, 1 failed" in capsys.readouterr().out
    assert main([*cmd[:-1], "--splits", "dev,test", "--quiet"]) == 0
    assert "ads: 6 video(s): 0 captioned now, 6 cached, 0 failed" in capsys.readouterr().out
    assert main([*cmd[:-1], "--splits", "val", "--quiet"]) == 2
    assert capsys.readouterr().err.strip() == "error: ads has no split 'val': use train, dev, test"


def test_an_unknown_model_or_setting_is_one_line(tmp_path, runs_dir, capsys):
    valid = "use one of qwen2.5-vl-3b, qwen2.5-vl-7b, qwen2.5-vl-demo"
    with pytest.raises(ConfigError, match=f"unknown VLM 'qwen9' for generated captions: {valid}"):
        CaptionOptions(model="qwen9")
    with pytest.raises(ConfigError, match="source_args: unknown VLM 'llava'"):
        StreamCfg(encoder="sentence-demo", aggregator="avg", source="generated", source_args={"model": "llava"})
    with pytest.raises(ConfigError, match="source_args: unknown key 'transcriber'"):
        StreamCfg(encoder="sentence-demo", aggregator="avg", source="generated", source_args={"transcriber": "x"})
    with pytest.raises(ConfigError, match="a caption reads its frames once; use uniform:N or all"):
        CaptionOptions(sampling="segments:4")
    with pytest.raises(MemError, match="bad sampling 'uniform:0'"):
        CaptionOptions(sampling="uniform:0")
    with pytest.raises(ConfigError, match="max_new_tokens must be an integer >= 1"):
        CaptionOptions(max_new_tokens=0)
    with pytest.raises(MemError, match="weights directory .*nowhere not found"):
        CaptionOptions(model="qwen2.5-vl-demo", weights=str(tmp_path / "nowhere")).vlm()

    root = write_ads(tmp_path / "data")
    assert main(["captions", "generate", "--dataset", "ads", "--model", "qwen9", "--data-root", str(root)]) == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines() == [f"error: unknown VLM 'qwen9' for generated captions: {valid}"]
    assert main(["captions", "generate", "--dataset", "nope", "--model", "qwen2.5-vl-demo", "--data-root", str(root)]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_the_generated_source_feeds_a_caption_encoder(tmp_path, runs_dir, count_loads):
    """Extraction with `source: generated`: each video's row is the caption encoder's vector of its caption, under a
    key naming the VLM and prompt; a second extraction does nothing, another prompt is another entry."""
    root = write_ads(tmp_path / "data")
    index = open_dataset("ads", root)
    report = extract_features(index, "sentence-demo", ("train",), source=text_source("generated", ARGS), progress=False)
    split = report.splits[0]
    assert split.extracted == 6 and not split.failed
    assert report.key["source"]["model"] == "qwen2.5-vl-demo" and report.key["source"]["prompt"] == CAPTION_PROMPT
    assert report.key["sampling"].startswith("generated:")
    store = FeatureStore(report.cache_dir / "train")
    texts = generate_captions(index.split("train"), DEMO).texts  # cached: what the rows were made from
    encoder = encoder_recipe("sentence-demo").load()
    for it in index.split("train"):
        with torch.inference_mode():
            expected = encoder.encode([texts[it.video_id]]).to(torch.float16).numpy()  # (1, D)
        assert texts[it.video_id] and np.allclose(store.load([it.video_id])[0], expected, atol=2e-3)

    loads = len(count_loads)
    again = extract_features(index, "sentence-demo", ("train",), source=text_source("generated", ARGS), progress=False)
    assert again.cache_dir == report.cache_dir and again.splits[0].cached == 6 and len(count_loads) == loads
    other = text_source("generated", {**ARGS, "prompt": "Name the colour."})
    assert extract_features(index, "sentence-demo", ("dev",), source=other, progress=False).cache_dir != report.cache_dir


def test_a_run_and_predict_read_generated_captions(tmp_path, runs_dir, capsys, count_loads):
    """Captions made ahead by `mem captions generate` are what a `mem run` reads (it loads no VLM); `mem predict` on
    copies of the test videos (no dataset, no captions) captions them with the run's VLM: their rows are their
    generated captions, not the empty caption, and the scores are the run's own."""
    from mediaeval_mem.tracking import read_artifact_text

    root = write_ads(tmp_path / "data")
    assert main(["captions", "generate", "--dataset", "ads", "--model", "qwen2.5-vl-demo", "--sampling", "uniform:4",
                 "--max-new-tokens", str(SHORT), "--data-root", str(root), "--quiet"]) == 0
    assert count_loads == ["qwen2.5-vl-demo"]
    cfg = tmp_path / "generated.yaml"
    cfg.write_text("model: {streams: [{encoder: sentence-demo, source: generated, source_args: "
                   f"{json.dumps(ARGS)}, aggregator: avg}}]}}\ntrain: {{epochs: 2, batch_size: 4, holdout_fraction: 0.34}}\n")
    assert main(["run", "--train", "ads", "--test", "ads", "--config", str(cfg), "--data-root", str(root), "--quiet"]) == 0
    assert count_loads == ["qwen2.5-vl-demo"]  # every caption was there
    out = capsys.readouterr().out
    run_id = next(r for r in out.split() if len(r) == 32 and all(c in "0123456789abcdef" for c in r))
    key = json.loads(read_artifact_text(run_id, "features.json"))
    assert "qwen2.5-vl-demo" in json.dumps(key)

    folder = tmp_path / "new"
    folder.mkdir()
    tests = open_dataset("ads", root).split("test")
    for it in tests:
        shutil.copy(it.path, folder / it.path.name)
    assert main(["predict", run_id, str(folder), "--quiet"]) == 0
    captured = capsys.readouterr()
    assert "reads captions that qwen2.5-vl-demo writes: each new video is captioned now" in captured.err
    assert "empty caption" not in captured.err and len(count_loads) == 2  # new files: captioned anew
    ours = {r["video_id"]: float(r["score"]) for r in csv.DictReader(io.StringIO(captured.out))}
    theirs = {r["video_id"]: float(r["prediction"])
              for r in csv.DictReader(io.StringIO(read_artifact_text(run_id, "test_predictions.csv")))}
    assert set(ours) == set(theirs) and len(ours) == 3
    for vid in ours:
        assert ours[vid] == pytest.approx(theirs[vid], abs=2e-6)

    store = FeatureStore(next((runs_dir / "features").glob("predict-*/sentence-demo/*/predict")))
    texts = generate_captions([VideoItem(it.video_id, folder / it.path.name) for it in tests], DEMO).texts
    encoder = encoder_recipe("sentence-demo").load()
    with torch.inference_mode():
        empty = encoder.encode([""]).to(torch.float16).numpy()
    for it in tests:
        row = store.load([it.video_id])[0]  # (1, D)
        with torch.inference_mode():
            expected = encoder.encode([texts[it.video_id]]).to(torch.float16).numpy()
        assert texts[it.video_id] and np.allclose(row, expected, atol=2e-3) and not np.allclose(row, empty, atol=1e-2)


def test_the_demo_profile_swaps_the_captioning_vlm():
    """configs/text/generated.yaml names qwen2.5-vl-3b; the demo profile writes its captions with the tiny VLM, given
    or by default, and leaves other sources alone."""
    from mediaeval_mem.config import apply_overrides
    from mediaeval_mem.experiments.grid import apply_profile, load_profile

    profile = load_profile(REPO / "configs" / "profiles" / "demo.yaml", "data/demo")
    cfg = apply_profile(load_config(REPO / "configs" / "text" / "generated.yaml"), profile)
    s = cfg.model.streams[0]
    assert s.encoder == "clip-demo-text" and s.source == "generated" and s.source_args == {"model": "qwen2.5-vl-demo"}
    bare = apply_overrides(cfg, ["model.streams.0.source_args={}"])
    assert apply_profile(bare, profile).model.streams[0].source_args == {"model": "qwen2.5-vl-demo"}
    speech = apply_overrides(cfg, ["model.streams.0.source=speech", "model.streams.0.source_args={transcriber: whisper-demo}"])
    assert apply_profile(speech, profile).model.streams[0].source_args == {"transcriber": "whisper-demo"}


def test_mem_extract_reads_generated_captions_and_names_them_for_a_repair(tmp_path, runs_dir, capsys):
    """`mem extract --source generated --source-arg ...` fills the entry a stream with those source_args reads; the
    repair command of that entry gives the same flags back."""
    import shlex

    from mediaeval_mem.features.key import repair_command

    root = write_ads(tmp_path / "data")
    prompt = "What is it: a disc?"  # YAML would read it as a mapping: written back quoted
    given = {"model": "qwen2.5-vl-demo", "prompt": json.dumps(prompt), "sampling": "uniform:4", "max_new_tokens": SHORT}
    flags = ["--source", "generated", *(x for k, v in given.items() for x in ("--source-arg", f"{k}={v}"))]
    assert main(["extract", "--dataset", "ads", "--encoder", "sentence-demo", "--splits", "dev", *flags,
                 "--data-root", str(root), "--quiet"]) == 0
    source = text_source("generated", {**ARGS, "prompt": prompt})
    report = extract_features(open_dataset("ads", root), "sentence-demo", ("dev",), source=source, progress=False)
    assert report.splits[0].cached == 3
    cmd = shlex.split(repair_command(report.cache_dir / "dev"))
    got = cmd[cmd.index("--source") : cmd.index("--data-root")]  # the same flags, in the key's order
    assert got[:2] == flags[:2] and sorted(zip(got[2::2], got[3::2])) == sorted(zip(flags[2::2], flags[3::2]))
    assert main(["extract", "--dataset", "ads", "--encoder", "sentence-demo", "--source-arg", "model=x",
                 "--data-root", str(root), "--quiet"]) == 2
    assert "--source-arg is for --source speech or generated" in capsys.readouterr().err
