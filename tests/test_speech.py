"""Speech as text: the tiny seeded Whisper through from_pretrained, transcripts cached once (a second call loads
no model), the empty transcript for silence and for no audio track, bad audio (a truncated file, a codec FFmpeg
lacks) one line per video with the others going on, and the `speech` text source feeding a caption encoder
through extraction, a short `mem run` and `mem predict`. The videos are real files written by PyAV."""

from __future__ import annotations

import csv
import io
import json
import shutil

import numpy as np
import pytest
import torch

from mediaeval_mem.cli import main
from mediaeval_mem.config import StreamCfg
from mediaeval_mem.core.errors import ConfigError, MemError
from mediaeval_mem.datasets import VideoItem, open_dataset
from mediaeval_mem.encoders import encoder_recipe, whisper
from mediaeval_mem.encoders.whisper import TRANSCRIBERS, transcriber_recipe
from mediaeval_mem.features.captions import caption_rows, text_source
from mediaeval_mem.features.extract import extract_features
from mediaeval_mem.features.store import FeatureStore
from mediaeval_mem.features.transcripts import NO_AUDIO, NO_SPEECH, SpeechOptions, transcribe_videos

from speech_media import write_ads, write_unknown_codec, write_video

DEMO = SpeechOptions(transcriber="whisper-demo")
SPEECH = {"transcriber": "whisper-demo"}


@pytest.fixture
def count_loads(monkeypatch):
    """How many times a Whisper model is loaded (the transcribe path's one costly step)."""
    loads = []
    real = whisper._load

    def counting(*a, **kw):
        loads.append(a[0])
        return real(*a, **kw)

    monkeypatch.setattr(whisper, "_load", counting)
    return loads


def test_the_registry_names_the_real_checkpoints_and_refuses_unknown_ones(runs_dir):
    assert TRANSCRIBERS.info("whisper-large-v3-turbo").hub_id == "openai/whisper-large-v3-turbo"
    assert TRANSCRIBERS.info("whisper-small").hub_id == "openai/whisper-small"
    assert SpeechOptions().transcriber == "whisper-large-v3-turbo"
    with pytest.raises(MemError, match="unknown transcriber 'whisper-huge'; valid names: whisper-demo, "
                                       "whisper-large-v3-turbo, whisper-small"):
        SpeechOptions(transcriber="whisper-huge")
    with pytest.raises(MemError, match="hf download openai/whisper-small"):  # no weights here, no network
        transcriber_recipe("whisper-small")


def test_the_demo_whisper_round_trips_through_from_pretrained(runs_dir):
    """Saved once under runs/models/whisper-demo/ and loaded by the same code as a downloaded checkpoint: the
    folder given as weights gives the same identity and the same words; different sounds, different words."""
    recipe = transcriber_recipe("whisper-demo")
    folder = runs_dir / "models" / "whisper-demo"
    assert (folder / "config.json").is_file() and (folder / "tokenizer.json").is_file()
    again = transcriber_recipe("whisper-demo", str(folder))
    assert again.identity() == recipe.identity()
    t = np.arange(16_000 * 3) / 16_000
    low, high = [(0.3 * np.sin(2 * np.pi * f * t)).astype(np.float32) for f in (220, 3000)]
    a, b = recipe.load(), again.load()
    ta, tb = a.transcribe(iter([low]), "en"), b.transcribe(iter([low]), "en")
    assert ta.text == tb.text and ta.text and ta.language == "en" and ta.speech_windows == 1
    assert a.transcribe(iter([high]), "en").text != ta.text
    # a detected language is one of the model's; a silent window is not transcribed at all
    assert a.transcribe(iter([low])).language in whisper.DEMO_LANGUAGES
    quiet = a.transcribe(iter([np.zeros(16_000, np.float32), low * 1e-4]))
    assert quiet.text == "" and quiet.windows == 2 and quiet.speech_windows == 0


def test_transcripts_are_made_once(tmp_path, runs_dir, count_loads):
    """A second call on the same videos loads no model and gives the same texts; a replaced file is transcribed
    again, and so is every video for another language setting."""
    items = [VideoItem(f"v{i}", write_video(tmp_path / f"v{i}.mp4", freq=300.0 + 400 * i)) for i in range(3)]
    first = transcribe_videos(items, DEMO)
    assert first.transcribed == 3 and set(first.texts) == {"v0", "v1", "v2"} and all(first.texts.values())
    assert count_loads == ["whisper-demo"]
    second = transcribe_videos(items, DEMO)
    assert second.transcribed == 0 and second.texts == first.texts and count_loads == ["whisper-demo"]
    folder = next((runs_dir / "transcripts" / "whisper-demo").iterdir())
    assert len(list(folder.glob("*.json"))) == 3 + 1  # one per video, and key.json
    assert json.loads((folder / "key.json").read_text())["language"] is None

    write_video(items[1].path, seconds=2.0, freq=2500.0)  # replaced: another file
    third = transcribe_videos(items, DEMO)
    assert third.transcribed == 1 and len(count_loads) == 2
    english = transcribe_videos(items, SpeechOptions(transcriber="whisper-demo", language="en"))
    assert english.transcribed == 3 and len(count_loads) == 3


def test_no_audio_track_and_silence_give_the_empty_transcript(tmp_path, runs_dir):
    items = [VideoItem("mute", write_video(tmp_path / "mute.mp4", audio=None)),
             VideoItem("silent", write_video(tmp_path / "silent.mp4", audio="silence")),
             VideoItem("tone", write_video(tmp_path / "tone.mp4"))]
    t = transcribe_videos(items, DEMO)
    assert t.texts["mute"] == "" and t.texts["silent"] == "" and t.texts["tone"]
    assert t.no_speech == {"mute": NO_AUDIO, "silent": NO_SPEECH} and not t.failed
    # cached as such: the second call says the same without a model
    assert transcribe_videos(items, DEMO).no_speech == t.no_speech


def test_bad_audio_is_one_line_per_video_and_the_others_go_on(tmp_path, runs_dir):
    """A truncated mp4 and a Matroska file whose audio codec FFmpeg does not know: each fails alone, in one line
    naming its file; they are not cached (a repaired file is tried again)."""
    cut = write_video(tmp_path / "cut.mp4")
    cut.write_bytes(cut.read_bytes()[: cut.stat().st_size // 2])
    items = [VideoItem("cut", cut), VideoItem("alien", write_unknown_codec(tmp_path / "alien.mkv")),
             VideoItem("good", write_video(tmp_path / "good.mp4")), VideoItem("gone", tmp_path / "gone.mp4")]
    t = transcribe_videos(items, DEMO)
    assert set(t.texts) == {"good"} and set(t.failed) == {"cut", "alien", "gone"}
    assert all("\n" not in why for why in t.failed.values())
    assert str(cut) in t.failed["cut"] and "cannot open" in t.failed["cut"]
    assert "alien.mkv: audio track cannot be decoded" in t.failed["alien"] and "Decoder not found" in t.failed["alien"]
    assert "gone.mp4: video file not found" in t.failed["gone"]
    write_video(cut)  # repaired
    assert set(transcribe_videos(items, DEMO).texts) == {"good", "cut"}


def test_an_unknown_language_is_refused_in_one_line(tmp_path, runs_dir):
    items = [VideoItem("v", write_video(tmp_path / "v.mp4"))]
    with pytest.raises(MemError, match="whisper-demo knows no language 'xx': give one of de, en, es, fr, it, nl"):
        transcribe_videos(items, SpeechOptions(transcriber="whisper-demo", language="xx"))
    assert transcribe_videos(items, SpeechOptions(transcriber="whisper-demo", language="english")).texts["v"]


def test_a_stream_names_its_source_and_a_bad_one_is_refused():
    s = StreamCfg(encoder="sentence-demo", aggregator="avg", source="speech", source_args=SPEECH)
    assert text_source(s.source, s.source_args).transcriber == "whisper-demo"
    with pytest.raises(ConfigError, match="unknown text source 'subtitles'; valid names: captions, generated, speech"):
        StreamCfg(encoder="sentence-demo", aggregator="avg", source="subtitles")
    with pytest.raises(ConfigError, match="source_args: unknown key 'model'"):
        StreamCfg(encoder="sentence-demo", aggregator="avg", source="speech", source_args={"model": "x"})
    with pytest.raises(ConfigError, match="source 'speech' gives texts to caption encoders; clip-demo reads"):
        StreamCfg(encoder="clip-demo", source="speech")


def test_the_speech_source_feeds_a_caption_encoder(tmp_path, runs_dir, count_loads):
    """Extraction with `source: speech`: each video's row is the caption encoder's vector of its transcript (the
    empty transcript for the silent and the mute video, listed under no_speech), cached under its own key; a
    second extraction does nothing; the captions source keeps the key it always had."""
    root = write_ads(tmp_path / "data")
    index = open_dataset("ads", root)
    source = text_source("speech", SPEECH)
    report = extract_features(index, "sentence-demo", ("train",), source=source, progress=False)
    split = report.splits[0]
    assert split.extracted == 6 and not split.failed and set(split.no_speech) == {"ad-01", "ad-02"}
    assert report.key["source"]["transcriber"] == "whisper-demo" and report.key["sampling"].startswith("speech:")
    store = FeatureStore(report.cache_dir / "train")
    assert set(store.manifest()["no_speech"]) == {"ad-01", "ad-02"} and "uncaptioned" not in store.manifest()

    texts = transcribe_videos(index.split("train"), DEMO).texts  # cached: what the rows were made from
    encoder = encoder_recipe("sentence-demo").load()
    for it in index.split("train"):
        with torch.inference_mode():
            expected = encoder.encode([texts[it.video_id]]).to(torch.float16).numpy()  # (1, D)
        assert np.allclose(store.load([it.video_id])[0], expected, atol=2e-3)
    assert texts["ad-01"] == texts["ad-02"] == ""

    loads = len(count_loads)
    again = extract_features(index, "sentence-demo", ("train",), source=source, progress=False)
    assert again.cache_dir == report.cache_dir and again.splits[0].cached == 6 and len(count_loads) == loads
    captions = extract_features(index, "sentence-demo", ("train",), progress=False)
    assert captions.cache_dir != report.cache_dir and "source" not in captions.key
    assert captions.key["sampling"].startswith("captions:")
    english = extract_features(index, "sentence-demo", ("train",), source=text_source("speech", {**SPEECH, "language": "en"}),
                               progress=False)
    assert english.cache_dir != report.cache_dir


def test_bad_audio_in_extraction_fails_its_video_alone(tmp_path, runs_dir, capsys):
    root = write_ads(tmp_path / "data", {"ad-04": "truncated", "ad-07": "unknown-codec"})
    code = main(["extract", "--dataset", "ads", "--encoder", "sentence-demo", "--source", "speech", "--transcriber",
                 "whisper-demo", "--data-root", str(root), "--quiet"])
    out = capsys.readouterr().out
    assert code == 1  # some videos failed
    failed = [line for line in out.splitlines() if "failed" in line and "/ad-" in line]
    assert len(failed) == 2 and "ad-04.mp4: cannot open" in out and "ad-07.mkv: audio track cannot be decoded" in out
    assert "2 video(s) without speech" in out
    index = open_dataset("ads", root)
    stores = {s: FeatureStore(next((runs_dir / "features" / "ads" / "sentence-demo").iterdir()) / s)
              for s in ("train", "dev", "test")}
    assert len(stores["train"].done_ids()) == 5 and len(stores["dev"].done_ids()) == 2
    assert len(stores["test"].done_ids()) == len(index.split("test"))


def test_caption_rows_keep_the_captions_behaviour(runs_dir):
    """Without a source, the rows are the captions' as before: the empty caption noted under `uncaptioned`."""
    enc = encoder_recipe("sentence-demo").load()
    items = [VideoItem("a", None, captions=("a bright disc", "a dull ball")), VideoItem("b", None)]
    rows = caption_rows(enc, items, torch.device("cpu"), "fp32", 4)
    assert [len(r) for _, r in rows.videos] == [2, 1] and rows.notes == {"uncaptioned": {"b": "no caption: the empty "
                                                                                          "caption was encoded"}}


def test_a_run_and_predict_read_speech(tmp_path, runs_dir, capsys):
    """A short `mem run` with a speech stream trains, records its no-speech videos, and `mem predict` on copies of
    its test videos (no dataset, no captions) transcribes them with the run's transcriber: the run's own scores."""
    from mediaeval_mem.tracking import get_run, read_artifact_text

    root = write_ads(tmp_path / "data")
    cfg = tmp_path / "speech.yaml"
    cfg.write_text("model: {streams: [{encoder: sentence-demo, source: speech, source_args: {transcriber: whisper-demo}, "
                   "aggregator: avg}]}\ntrain: {epochs: 2, batch_size: 4, holdout_fraction: 0.34}\n")
    assert main(["run", "--train", "ads", "--test", "ads", "--config", str(cfg), "--data-root", str(root), "--quiet"]) == 0
    out = capsys.readouterr().out
    run_id = next(r for r in out.split() if len(r) == 32 and all(c in "0123456789abcdef" for c in r))
    assert get_run(run_id).data.tags["no_speech_videos"] == "2"
    key = json.loads(read_artifact_text(run_id, "features.json"))
    assert "whisper-demo" in json.dumps(key)

    folder = tmp_path / "new"
    folder.mkdir()
    for it in open_dataset("ads", root).split("test"):
        shutil.copy(it.path, folder / it.path.name)
    assert main(["predict", run_id, str(folder), "--quiet"]) == 0
    ours = {r["video_id"]: float(r["score"]) for r in csv.DictReader(io.StringIO(capsys.readouterr().out))}
    theirs = {r["video_id"]: float(r["prediction"])
              for r in csv.DictReader(io.StringIO(read_artifact_text(run_id, "test_predictions.csv")))}
    assert set(ours) == set(theirs) and len(ours) == 3
    for vid in ours:
        assert ours[vid] == pytest.approx(theirs[vid], abs=2e-6)


def test_a_source_for_an_encoder_without_texts_is_refused(tmp_path, runs_dir, capsys):
    root = write_ads(tmp_path / "data")
    assert main(["extract", "--dataset", "ads", "--encoder", "clip-demo", "--source", "speech", "--data-root",
                 str(root), "--quiet"]) == 2
    assert "clip-demo reads no texts" in capsys.readouterr().err
    assert main(["extract", "--dataset", "ads", "--encoder", "sentence-demo", "--language", "en", "--data-root",
                 str(root), "--quiet"]) == 2
    assert "--language is for --source speech" in capsys.readouterr().err


def test_the_windowed_path_decodes_as_whisper_does_on_its_own(runs_dir):
    """The transcriber computes the encoder once for the no-speech check and the decoding: the words are those of
    transformers' own `generate` on the processor's features of the same window."""
    t = np.arange(16_000 * 12) / 16_000
    audio = (0.2 * np.sin(2 * np.pi * 330 * t) * (1 + np.sin(2 * np.pi * 3 * t))).astype(np.float32)
    model = transcriber_recipe("whisper-demo").load()
    ours = model.transcribe(iter([audio]), "en").text
    feats = model.processor(audio, sampling_rate=16_000, return_tensors="pt").input_features  # (1, 80, 3000)
    with torch.inference_mode():
        tokens = model.model.generate(feats, language="en", task="transcribe", num_beams=1, do_sample=False)
    assert ours and ours == model.processor.batch_decode(tokens, skip_special_tokens=True)[0].strip()


def test_an_unreadable_transcript_is_made_again_alone(tmp_path, runs_dir, count_loads):
    """A transcript file that does not parse (a disk that lost its end) is not read as a transcript: the next call
    transcribes that video again, and only it."""
    items = [VideoItem(f"v{i}", write_video(tmp_path / f"v{i}.mp4", freq=500.0 + 300 * i)) for i in range(2)]
    first = transcribe_videos(items, DEMO)
    folder = next((runs_dir / "transcripts" / "whisper-demo").iterdir())
    damaged = next(p for p in folder.glob("*.json") if p.name != "key.json")
    damaged.write_text(damaged.read_text()[:10])
    again = transcribe_videos(items, DEMO)
    assert again.transcribed == 1 and again.texts == first.texts and len(count_loads) == 2


def test_the_repair_command_of_a_speech_cache_names_its_source(tmp_path, runs_dir):
    from mediaeval_mem.features.key import repair_command

    root = write_ads(tmp_path / "data")
    source = text_source("speech", {**SPEECH, "language": "en"})
    report = extract_features(open_dataset("ads", root), "sentence-demo", ("dev",), source=source, progress=False)
    cmd = repair_command(report.cache_dir / "dev")
    assert "--source speech --transcriber whisper-demo --language en" in cmd and "--sampling" not in cmd
