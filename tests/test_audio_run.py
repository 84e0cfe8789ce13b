"""A run with an audio stream: it trains on the sound, tags its silent videos, and `mem predict` hears a new
video's sound the same way."""

from __future__ import annotations

import csv
import io
import shutil

import numpy as np
import pytest

from mediaeval_mem.video.audio import write_sound_video

SILENT = ("ad03", "ad12")  # one scored, one in the test split


@pytest.fixture
def ads(tmp_path):
    """A generic-layout dataset of 14 short videos whose score follows the pitch of their tone (AAC, 48 kHz);
    two have no audio track."""
    root = tmp_path / "data"
    rows = ["video_id,path,score,split"]
    for i in range(14):
        vid = f"ad{i:02d}"
        freq = 200 + 120 * i
        t = np.arange(48_000 * 3) / 48_000
        sound = None if vid in SILENT else (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)
        write_sound_video(root / "ads" / f"{vid}.mp4", sound, 48_000, seconds=3)
        split = "test" if i >= 10 else "dev" if i % 4 == 1 else "train"
        rows.append(f"{vid},{vid}.mp4,{'' if split == 'test' else round(0.3 + 0.04 * i, 3)},{split}")
    (root / "ads" / "videos.csv").write_text("\n".join(rows) + "\n")
    (root / "datasets.yaml").write_text("ads: {folder: ads}\n")
    return root


def test_a_run_on_sound_tags_its_silent_videos_and_predict_reads_new_videos_alike(ads, runs_dir, tmp_path):
    from mediaeval_mem.config import load_config
    from mediaeval_mem.experiments.predict import predict_videos
    from mediaeval_mem.experiments.runner import run_experiment
    from mediaeval_mem.tracking import get_run, read_artifact_text

    cfg = load_config(None, ["model.streams.0.encoder=clap-audio-demo", "model.streams.0.aggregator=avg",
                             "train.epochs=2", "train.batch_size=4"])
    r = run_experiment(None, "ads", "ads", cfg, ads, progress=False, echo=lambda *a: None)
    assert get_run(r.run_id).data.tags["silent_videos"] == str(len(SILENT))
    theirs = {row["video_id"]: float(row["prediction"])
              for row in csv.DictReader(io.StringIO(read_artifact_text(r.run_id, "test_predictions.csv")))}
    assert set(theirs) == {"ad10", "ad11", "ad12", "ad13"}

    new = tmp_path / "new"
    new.mkdir()
    for vid in theirs:
        shutil.copy(ads / "ads" / f"{vid}.mp4", new / f"{vid}.mp4")
    result = predict_videos(r.run_id, [new], progress=False, echo=lambda *a: None)
    ours = {vid: score for vid, _, score in result.scores}
    assert set(ours) == set(theirs) and not result.failed
    for vid, score in ours.items():
        assert score == pytest.approx(theirs[vid], abs=2e-6)  # the silent ad12 too: silence, as in training
