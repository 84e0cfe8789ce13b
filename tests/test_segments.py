"""segments:N (TSN's sampling): every frame cached (as `all`, one cache entry), N frames per video picked as
batches are cut: a random one per segment in training, the centre one (uniform:N's) otherwise."""

from __future__ import annotations

import csv
import io
import shutil

import numpy as np
import pytest
import torch

from mediaeval_mem.config import StreamCfg, TrainCfg, load_config
from mediaeval_mem.core.errors import ConfigError
from mediaeval_mem.features.store import SplitFeatures
from mediaeval_mem.models import build_model
from mediaeval_mem.training.batches import LabelledSplit, collate, predict, training_batches
from mediaeval_mem.training.loop import train_model
from mediaeval_mem.video import Sampling

QUIET = {"progress": False, "echo": lambda *a: None}


def test_segments_round_trips_and_extracts_every_frame():
    s = Sampling.parse(" Segments:4 ")
    assert s == Sampling("segments", 4) and str(s) == "segments:4" and Sampling.parse(str(s)) == s
    assert s.extracted == Sampling("all") and Sampling("uniform", 4).extracted == Sampling("uniform", 4)
    assert s.indices(10).tolist() == list(range(10))  # what extraction keeps: every frame


@pytest.mark.parametrize("n", [1, 3, 4, 8, 16])
def test_evaluation_rows_are_uniform_frames(n):
    segments, uniform = Sampling("segments", n), Sampling("uniform", n)
    for frames in range(1, 200):
        assert segments.rows(frames).tolist() == uniform.indices(frames).tolist()


@pytest.mark.parametrize("n", [1, 3, 4, 7, 8])
def test_training_draws_fall_inside_their_segments(n):
    """Segment k spans the times [k T/N, (k+1) T/N); frame i shows [i, i+1): every draw overlaps its segment,
    and over many draws every frame of a segment comes up."""
    rng, s = np.random.default_rng(0), Sampling("segments", n)
    for frames in range(1, 40):
        draws = np.array([s.rows(frames, rng) for _ in range(1000)])  # (1000, N), or (1000, T) for a short video
        if frames <= n:
            assert (draws == np.arange(frames)).all()  # a short video keeps every frame, in order
            continue
        k = np.arange(n)
        assert ((draws * n < (k + 1) * frames) & ((draws + 1) * n > k * frames)).all()
        assert (np.diff(draws, axis=1) >= 0).all()  # temporal order
        first = k * frames // n  # the first frame of each segment ...
        last = -(-(k + 1) * frames // n) - 1  # ... and the last
        assert all(set(draws[:, j]) == set(range(first[j], last[j] + 1)) for j in k)


def _starts(lengths: np.ndarray) -> np.ndarray:
    return np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)


def _numbered_split(n=12, sampling="segments:3", seed=0) -> LabelledSplit:
    """Videos of 2..10 frames of 2 features: the frame's number within its video, the video's number."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(2, 11, n)
    frames = np.concatenate([np.stack([np.arange(t), np.full(t, i)], 1) for i, t in enumerate(lengths)])
    features = SplitFeatures([str(i) for i in range(n)], frames.astype(np.float16), _starts(lengths), lengths)
    return LabelledSplit([features], rng.random(n).astype(np.float32), (sampling,))


def _picked(batches) -> dict[str, list[int]]:
    """video id -> the frame numbers its training batch held, in batch order."""
    out = {}
    for [(x, mask)], _ in batches:
        for xi, mi in zip(x, mask):
            out[str(int(xi[0, 1]))] = xi[mi][:, 0].int().tolist()
    return out


def test_training_batches_draw_afresh_each_epoch_and_repeat_with_the_seed():
    split, cpu = _numbered_split(), torch.device("cpu")
    rng = np.random.default_rng(0)
    epoch1, epoch2 = (_picked(training_batches(split, 4, rng, False, cpu)) for _ in range(2))
    again = _picked(training_batches(split, 4, np.random.default_rng(0), False, cpu))
    assert epoch1 == again and epoch1 != epoch2
    for vid, t in zip(split.ids, split.streams[0].lengths):
        expected = min(t, 3)
        assert len(epoch1[vid]) == expected and epoch1[vid] == sorted(epoch1[vid])  # in order: no shuffle asked
        if t <= 3:
            assert epoch1[vid] == list(range(t))


def test_evaluation_batches_take_the_centre_frames():
    split = _numbered_split()
    [(x, mask)], _ = collate(split, np.arange(len(split)))
    for xi, mi, t in zip(x, mask, split.streams[0].lengths):
        assert xi[mi][:, 0].int().tolist() == Sampling("uniform", 3).indices(int(t)).tolist()
    assert len(split.subset(np.array([0, 2])).sampling) == 1 and split.subset(np.array([1])).sampling[0].n == 3


def test_other_samplings_cut_batches_as_before():
    """all / uniform:N: every cached row, each video's order one rng.permutation (the draws runs made before)."""
    split = _numbered_split(sampling="uniform:3")
    idx = np.array([3, 0, 5])
    [(x, mask)], _ = collate(split, idx, np.random.default_rng(7))
    rng = np.random.default_rng(7)
    for xi, mi, t in zip(x, mask, split.streams[0].lengths[idx]):
        assert xi[mi][:, 0].int().tolist() == rng.permutation(t).tolist()


def test_a_segments_training_resumes_exactly(tmp_path):
    train, select = _numbered_split(24, seed=3), _numbered_split(8, seed=4)
    cfg = TrainCfg(epochs=4, lr=1e-3, batch_size=8, patience=10)

    def fresh():
        torch.manual_seed(0)
        cfg = load_config(None, ["model.streams.0.encoder=clip-demo", "model.streams.0.aggregator_args={hidden: 8}"])
        return build_model(cfg.model, [2])

    def stop_after_two(log):
        if log.epoch == 2:
            raise KeyboardInterrupt

    straight = train_model(fresh(), train, select, cfg)
    with pytest.raises(KeyboardInterrupt):
        train_model(fresh(), train, select, cfg, on_epoch=stop_after_two, checkpoint=tmp_path / "last.safetensors")
    resumed = train_model(fresh(), train, select, cfg, checkpoint=tmp_path / "last.safetensors")
    losses = lambda r: [(h.train_loss, h.select_loss) for h in r.history]  # noqa: E731
    assert resumed.resumed_after == 2 and losses(resumed) == losses(straight)


@pytest.mark.parametrize("encoder,message", [
    ("i3d-kinetics", ("sampling 'segments:4' draws frames from every frame's vector as batches are cut; "
                      "i3d-kinetics gives one vector per video: use all or uniform:N")),
    ("clip-demo-text", "sampling 'segments:4' picks video frames; clip-demo-text reads captions: leave sampling at"),
])
def test_clip_level_and_caption_streams_refuse_segments(encoder, message):
    with pytest.raises(ConfigError, match=message):
        StreamCfg(encoder=encoder, sampling="segments:4", aggregator="avg")


def test_segments_shares_the_cache_entry_of_all(demo_root, runs_dir, capsys):
    from mediaeval_mem.cli import main
    from mediaeval_mem.features.extract import extract_features

    assert main(["extract", "--dataset", "memento10k", "--encoder", "clip-demo", "--splits", "dev",
                 "--sampling", "segments:8", "--data-root", str(demo_root), "--quiet"]) == 0
    capsys.readouterr()
    every = extract_features("memento10k", "clip-demo", ("dev",), data_root=demo_root, sampling="all", progress=False)
    assert every.key["sampling"] == "all" and every.splits[0].cached == every.splits[0].total > 0  # made by segments:8
    segments = extract_features("memento10k", "clip-demo", ("dev",), data_root=demo_root, sampling="segments:8",
                                progress=False)
    assert segments.key == every.key and segments.cache_dir == every.cache_dir


def test_a_segments_run_trains_and_predicts_with_the_centre_frames(demo_root, runs_dir):
    """The run's stages on the tiny data: the loss falls over 3 epochs; dev predictions are those of the
    centre frames, cut by hand from the cached frames."""
    from mediaeval_mem.experiments import runner

    sets = ["train.epochs=3", "train.patience=10", "model.streams.0.sampling=segments:4"]
    cfg = load_config("configs/demo.yaml", sets)
    plan = runner.plan_task(1, "memento10k", "memento10k", cfg.train.select_on)
    indexes = runner.open_datasets(plan, cfg, demo_root, QUIET["echo"])
    selection = runner.select_videos(plan, indexes, cfg)
    cpu = torch.device("cpu")
    features = runner.prepare_features(plan, cfg, indexes, selection, cpu, **QUIET)
    assert features[0].keys["memento10k"]["sampling"] == "all"
    splits = runner.load_splits(plan, indexes, features, selection, QUIET["echo"])
    assert splits.fit.sampling == splits.dev.sampling == (Sampling("segments", 4),)
    model, result = runner.fit(cfg, splits, cpu)
    losses = [h.train_loss for h in result.history]
    assert len(losses) == 3 and losses[-1] < losses[0]
    outputs = runner.evaluate_and_predict(model, splits, cpu)

    f = splits.dev.streams[0]
    rows = [s + Sampling("uniform", 4).indices(int(t)) for s, t in zip(f.starts, f.lengths)]
    lengths = np.array([len(r) for r in rows])
    centres = SplitFeatures(f.ids, f.frames[np.concatenate(rows)], _starts(lengths), lengths)
    assert (f.lengths > 4).any()  # some videos are longer than 4 frames: the choice matters
    np.testing.assert_array_equal(outputs.dev_pred, predict(model, LabelledSplit([centres], splits.dev.scores)))


def test_mem_predict_scores_a_segments_run_with_its_centre_frames(demo_root, runs_dir, tmp_path):
    from mediaeval_mem.experiments.predict import predict_videos
    from mediaeval_mem.experiments.runner import run_experiment
    from mediaeval_mem.tracking import read_artifact_text

    cfg = load_config("configs/demo.yaml", ["train.epochs=1", "model.streams.0.sampling=segments:4"])
    run_id = run_experiment(1, "memento10k", "memento10k", cfg, demo_root, **QUIET).run_id
    folder = tmp_path / "videos"
    shutil.copytree(demo_root / "memento10k" / "test_set" / "Videos", folder)
    ours = {int(vid): score for vid, _, score in predict_videos(run_id, [folder], **QUIET).scores}
    theirs = {int(r["video_id"]): float(r["prediction"])
              for r in csv.DictReader(io.StringIO(read_artifact_text(run_id, "test_predictions.csv")))}
    assert len(ours) >= 2 and set(ours) == set(theirs)
    assert all(ours[vid] == pytest.approx(theirs[vid], abs=2e-6) for vid in ours)  # the CSV holds 6 decimals
