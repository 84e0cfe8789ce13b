"""Grouped and repeated cross-validation: no group split across folds, folds stratified on the score, distinct
repeats, the refusals; the generic layout's other columns; per-video loss weights; `mem cv --group-by` and a
grid with cv rows end to end on a small generic dataset with a channel column."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch

from mediaeval_mem.cli import main
from mediaeval_mem.core.errors import ConfigError, DataError, MemError
from mediaeval_mem.datasets import open_dataset
from mediaeval_mem.experiments.cv import distinct_foldings, grouped_folds, pool_groups, stratified_folds
from mediaeval_mem.training.losses import WeightedLoss, spearman_loss
from mediaeval_mem.training.weights import column_weights

from conftest import REPO


def _groups(sizes: list[int]) -> np.ndarray:
    return np.array([f"ch{i}" for i, n in enumerate(sizes) for _ in range(n)], dtype=object)


# --------------------------------------------------------------------------- the fold assignment
@pytest.mark.parametrize("sizes", [[1, 2, 3, 5, 8, 13, 21, 4, 6, 9], [28] * 12, [40, 3, 3, 3, 3, 3, 2, 2, 1, 30]])
def test_grouped_folds_never_split_a_group_whatever_the_seed(sizes):
    groups = _groups(sizes)
    scores = np.random.default_rng(len(sizes)).beta(4, 2, size=len(groups))
    for seed in range(6):
        folds = grouped_folds(scores, groups, 5, seed)
        assert set(folds) == set(range(5))  # every video in a fold, no fold empty
        for g in set(groups):
            assert len(set(folds[groups == g])) == 1, f"seed {seed}: group {g} split across folds"
        np.testing.assert_array_equal(folds, grouped_folds(scores, groups, 5, seed))  # seeded


def test_grouped_folds_are_stratified_on_the_score():
    # 40 channels of uneven sizes, each channel's videos spread over the score range: every fold spans it too
    rng = np.random.default_rng(3)
    groups = _groups(list(rng.integers(2, 12, size=40)))
    scores = rng.beta(4, 2, size=len(groups))
    lo, hi = np.quantile(scores, [0.1, 0.9])
    for seed in range(4):
        folds = grouped_folds(scores, groups, 5, seed)
        for k in range(5):
            own = scores[folds == k]
            assert own.min() < lo and own.max() > hi  # each fold reaches both tails
            assert abs(np.median(own) - np.median(scores)) < 0.05
    # channels that each hold one score level: the folds still each get low and high channels
    levels = np.repeat(np.linspace(0.2, 0.9, 20), 5)
    groups = _groups([5] * 20)
    folds = grouped_folds(levels, groups, 4, 0)
    for k in range(4):
        assert levels[folds == k].min() <= 0.45 and levels[folds == k].max() >= 0.65


def test_grouped_folds_refusals():
    scores = np.linspace(0, 1, 12)
    with pytest.raises(MemError) as e:
        grouped_folds(scores, _groups([4, 4, 4]), 5, 0)
    assert str(e.value) == "3 groups (ch0, ch1, ch2) are too few for 5 folds: lower --folds to 3 or less, or group by another column"
    with pytest.raises(ConfigError, match="--folds must be >= 2"):
        grouped_folds(scores, _groups([4, 4, 4]), 1, 0)


def test_repeats_are_distinct_foldings_and_repeat_zero_is_the_seeds_own():
    groups, scores = _groups([3, 5, 2, 7, 4, 6, 3, 5]), np.random.default_rng(0).random(35)
    found = distinct_foldings(lambda s: grouped_folds(scores, groups, 4, s), 7, 5)
    np.testing.assert_array_equal(found[0], grouped_folds(scores, groups, 4, 7))
    parts = {frozenset(frozenset(groups[f == k]) for k in range(4)) for f in found}
    assert len(parts) == 5  # no partition twice, even relabelled
    # plain stratified folds take the same path: repeat 0 is `stratified_folds(scores, k, seed)` as before
    plain = distinct_foldings(lambda s: stratified_folds(scores, 4, s), 2, 3)
    np.testing.assert_array_equal(plain[0], stratified_folds(scores, 4, 2))
    # 3 groups in 2 folds have 3 partitions: a fourth repeat is refused in one line
    with pytest.raises(MemError, match=r"^only 3 distinct folding\(s\) of these videos in 80 draws: lower --repeats to 3$"):
        distinct_foldings(lambda s: grouped_folds(np.arange(9.0), _groups([3, 3, 3]), 2, s), 0, 4)


# --------------------------------------------------------------------------- the generic layout's columns
def _folder(root, header, rows):
    """A generic folder `root` declared under its name in its parent's datasets.yaml (the data root)."""
    root.mkdir(parents=True, exist_ok=True)
    (root.parent / "datasets.yaml").write_text(f"{root.name}: {{folder: {root.name}}}\n")
    (root / "videos.csv").write_text(header + "\n" + "\n".join(rows) + "\n")
    for r in rows:
        (root / r.split(",")[1]).touch()
    return root


def test_generic_layout_keeps_other_columns_and_groups_are_refused_in_one_line(tmp_path):
    root = _folder(tmp_path / "ads", "video_id,path,score,channel,weight,caption,split",
                   ["a,a.mp4,0.5,acme,3,an ad,train", "b,b.mp4,0.6,,1,,train", "c,c.mp4,,acme,,,test"])
    index = open_dataset("ads", root.parent)
    a, b = index.split("train")
    assert a.columns == {"channel": "acme", "weight": "3"} and a.captions == ("an ad",)  # score, split, captions: not kept
    assert b.columns == {"channel": "", "weight": "1"}
    with pytest.raises(ConfigError) as e:
        pool_groups(index.split("train"), ["a", "b"], "brand", "ads")
    assert str(e.value) == "--group-by brand: ads has no 'brand' column (its other columns: channel, weight); add it to the dataset's CSV"
    with pytest.raises(MemError, match=r"^--group-by channel: 1 video\(s\) of ads have no channel \(b\): fill it in"):
        pool_groups(index.split("train"), ["a", "b"], "channel", "ads")
    assert list(pool_groups(index.split("train"), ["a"], "channel", "ads")) == ["acme"]


# --------------------------------------------------------------------------- weights
def test_weights_weigh_the_loss_and_zero_removes_a_video():
    torch.manual_seed(0)
    pred, target = torch.randn(6, requires_grad=True), torch.rand(6)
    for spec in ("l1", "mse", "spearman", {"l1": 1.0, "spearman": 0.5}):
        loss = WeightedLoss(spec)
        ones = loss(pred, target, torch.ones(6))
        assert torch.allclose(ones, loss(pred, target), atol=1e-6)  # equal weights: the plain loss
        w = torch.tensor([1.0, 2.0, 0.0, 1.0, 3.0, 1.0])
        weighted = loss(pred, target, w)
        keep = w > 0
        dup = torch.repeat_interleave(torch.arange(6)[keep], w[keep].long())  # weight 2 = the video twice
        if spec == "l1" or spec == "mse":
            assert torch.allclose(weighted, loss(pred[dup], target[dup]), atol=1e-6)
        (grad,) = torch.autograd.grad(weighted, pred)
        assert grad[2] == 0 and grad[keep].abs().sum() > 0  # the weight-0 video has no say
    # spearman: a weight-0 video is out of the ranking too
    w = torch.tensor([1.0, 1.0, 0.0, 1.0, 1.0, 1.0])
    keep = w > 0
    assert torch.allclose(WeightedLoss("spearman")(pred, target, w), spearman_loss(pred[keep], target[keep]), atol=1e-6)
    assert not torch.allclose(WeightedLoss("spearman")(pred, target, w), spearman_loss(pred, target))
    # one video left, or every target tied: 1 and a zero gradient, as the plain loss (no NaN from the root)
    for w, t in ((torch.tensor([1.0, 0, 0, 0, 0, 0]), target), (torch.ones(6), torch.full((6,), 0.5))):
        p = pred.detach().clone().requires_grad_()
        loss = WeightedLoss({"l1": 1.0, "spearman": 1.0})(p, t, w)
        (grad,) = torch.autograd.grad(loss, p)
        assert torch.isfinite(grad).all() and loss.item() >= 1.0
    # a batch whose every video weighs 0 (a last batch of one such video, say): 1, a zero gradient, no error
    p = pred.detach().clone().requires_grad_()
    loss = WeightedLoss({"l1": 1.0, "spearman": 0.5})(p, target, torch.zeros(6))
    (grad,) = torch.autograd.grad(loss, p)
    assert loss.item() == pytest.approx(0.5) and not grad.any()


def test_weight_column_values_are_checked_in_one_line(tmp_path):
    root = _folder(tmp_path / "w", "video_id,path,score,weight",
                   ["a,a.mp4,0.5,2", "b,b.mp4,0.6,0", "c,c.mp4,0.4,x", "d,d.mp4,0.3,-1"])
    items = [it for s in open_dataset("w", root.parent).splits.values() for it in s]
    np.testing.assert_array_equal(column_weights(items, ["a", "b"], "weight", "w"), [2, 0])
    with pytest.raises(DataError, match=r"^data.weight_column weight: video c of w has weight 'x'; give a number >= 0"):
        column_weights(items, ["a", "c"], "weight", "w")
    with pytest.raises(DataError, match="video d of w has weight '-1'"):
        column_weights(items, ["d"], "weight", "w")
    with pytest.raises(DataError, match="every training video of w has weight 0"):
        column_weights(items, ["b"], "weight", "w")
    with pytest.raises(DataError, match=r"w has no 'annotations' column \(its other columns: weight\)"):
        column_weights(items, ["a"], "annotations", "w")


# --------------------------------------------------------------------------- end to end
CHANNELS = [1, 2, 3, 4, 5, 7, 8]  # 30 training videos in 7 channels of uneven sizes


@pytest.fixture(scope="module")
def channel_root(tmp_path_factory):
    return make_channel_root(tmp_path_factory.mktemp("channels"))


def make_channel_root(root):
    """Tiny clips in a generic folder `ads` under `root`: 30 train (7 channels), 6 dev, 4 test; a weight column."""
    from mediaeval_mem.datasets.synthetic import FPS, render_clip, write_video

    folder = root / "ads"
    (folder / "clips").mkdir(parents=True)
    rng = np.random.default_rng(0)
    channels = [f"ch{c}" for c, n in enumerate(CHANNELS) for _ in range(n)] + ["ch0", "ch3"] * 3 + ["ch9"] * 4
    lines = ["video_id,path,score,channel,weight,split"]
    for i, ch in enumerate(channels):
        brightness, size, hue = rng.uniform(0, 1, 3)
        write_video(folder / "clips" / f"ad{i:02d}.mp4", render_clip(np.random.default_rng(i), brightness, size, hue, FPS,
                                                                     width=64, height=36), "libx264", {"preset": "ultrafast"})
        split = "train" if i < 30 else "dev" if i < 36 else "test"
        score = f"{0.4 + 0.35 * brightness + 0.2 * size:.4f}" if split != "test" else ""
        lines.append(f"ad{i:02d},clips/ad{i:02d}.mp4,{score},{ch},{1 + i % 3},{split}")
    (folder / "videos.csv").write_text("\n".join(lines) + "\n")
    (root / "datasets.yaml").write_text("ads: {folder: ads}\n")
    return root


SETS = ["train.epochs=2", "model.streams.0.sampling=uniform:4"]


def test_grouped_cv_end_to_end_then_a_cv_grid_reuses_its_folds(channel_root, runs_dir, tmp_path, capsys):
    from mediaeval_mem.config import load_config
    from mediaeval_mem.experiments.cv import run_cv
    from mediaeval_mem.experiments.grid import load_grid, run_grid, table_rows
    from mediaeval_mem.experiments.results import collect_results
    from mediaeval_mem.tracking import get_run

    cfg = load_config(REPO / "configs" / "demo.yaml", SETS + ["data.weight_column=weight"])
    result = run_cv(cfg, "ads", folds=3, data_root=channel_root, progress=False, echo=lambda *a: None,
                    group_by="channel", repeats=2)
    channel = {f"ad{i:02d}": f"ch{c}" for i, c in enumerate(c for c, n in enumerate(CHANNELS) for _ in range(n))}
    assert sorted((f.repeat, f.fold) for f in result.folds) == [(r, k) for r in range(2) for k in range(3)]
    for r in range(2):
        own = [set(f.oof) for f in result.folds if f.repeat == r]
        assert set().union(*own) == set(channel) and sum(map(len, own)) == 30  # each video out-of-fold once
        for fold_ids in own:  # no channel on both sides of a fold
            assert not {channel[v] for v in fold_ids} & {channel[v] for v in set(channel) - fold_ids}
    partitions = {frozenset(frozenset(f.oof) for f in result.folds if f.repeat == r) for r in range(2)}
    assert len(partitions) == 2  # the two repeats fold differently
    s = result.summary
    assert s["oof_srocc_repeats_mean"] == pytest.approx(np.mean([s["oof_srocc_r0"], s["oof_srocc_r1"]]))
    assert s["oof_srocc_repeats_sd"] == pytest.approx(np.std([s["oof_srocc_r0"], s["oof_srocc_r1"]], ddof=1))
    parent = get_run(result.parent_id).data
    assert parent.params["cv.group_by"] == "channel" and parent.params["cv.repeats"] == "2"
    assert get_run(result.folds[-1].run_id).data.tags["cv_fold"].endswith(":1")  # repeat 1's tag
    (listed,) = [r for r in collect_results(ci=False) if r.run_id == result.parent_id]  # `mem results`
    assert listed.kind == "cv" and listed.cells()[1] == (
        f"cv (by channel, OOF SROCC {s['oof_srocc_repeats_mean']:.4f} ± {s['oof_srocc_repeats_sd']:.4f} over 2 repeats)")

    # the command line: the repeats' row; a missing column and too few groups refused in one line
    argv = ["cv", str(REPO / "configs" / "demo.yaml"), "--train", "ads", "--folds", "3", "--data-root", str(channel_root),
            "--quiet", *(a for x in SETS + ["data.weight_column=weight"] for a in ("--set", x))]
    assert main([*argv, "--group-by", "channel", "--repeats", "2"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "3-fold cross-validation, grouped by channel on ads" in out and "seed 0 repeat 1 fold 3/3: done before" in out
    assert f"{s['oof_srocc_repeats_mean']:.4f} ± {s['oof_srocc_repeats_sd']:.4f}" in out
    assert main([*argv, "--group-by", "brand"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --group-by brand: ads has no 'brand' column") and err.count("\n") == 1
    assert main([*argv, "--folds", "8", "--group-by", "channel"]) == 2
    err = capsys.readouterr().err
    assert "7 groups (ch0, ch1, ch2, ch3, ch4, ...) are too few for 8 folds" in err and err.count("\n") == 1

    # a grid with cv rows: the same cross-validation (same key), every fold reused; the table shows the cv figures
    grid = tmp_path / "g.yaml"
    grid.write_text(f"title: commercials\ncv: {{folds: 3, group_by: channel, repeats: 2}}\n"
                    f"pairs: [{{train: ads, test: ads}}]\nconfigs: [{REPO / 'configs' / 'demo.yaml'}]\n"
                    f"set: [{', '.join(SETS + ['data.weight_column=weight'])}]\n")
    assert main(["grid", str(grid), "--data-root", str(channel_root), "--quiet"]) == 0
    assert "[1/1] demo ads->ads cv3 by channel x2: cross-validating" in capsys.readouterr().out
    said = []
    loaded = load_grid(grid)
    rows = run_grid(loaded, channel_root, progress=False, echo=said.append)
    assert sum("done before" in line for line in said) == 6 and not any("trained by" in line for line in said)
    header, cells = table_rows(loaded, rows)
    assert header == ["encoder", "temporal aggregator", "predictor", "OOF SROCC [95% CI] (3-fold by channel)", "OOF PLCC",
                      "OOF MSE", "fold SROCC mean ± sd", "OOF SROCC over 2 repeats", "parent run"]
    (row,) = cells
    assert row[3] == f"{s['oof_srocc']:.4f} [{s['oof_srocc_ci_low']:.4f}, {s['oof_srocc_ci_high']:.4f}]"
    assert row[7] == f"{s['oof_srocc_repeats_mean']:.4f} ± {s['oof_srocc_repeats_sd']:.4f}" and rows[0].reused == 6


def test_weights_reach_the_training_loss(channel_root, runs_dir, monkeypatch):
    """A run with data.weight_column gives the fit split its videos' weights and the loss gets them batch by batch;
    without it, no weights at all."""
    from mediaeval_mem.config import load_config
    from mediaeval_mem.experiments import runner
    from mediaeval_mem.training import losses

    seen, fits = [], []
    real_forward, real_fit = losses.WeightedLoss.forward, runner.fit

    def recording(self, pred, target, video_weight=None):
        seen.append(None if video_weight is None else video_weight.clone())
        return real_forward(self, pred, target, video_weight)

    def recording_fit(cfg, splits, device, on_epoch=None):
        fits.append(splits.fit)
        return real_fit(cfg, splits, device, on_epoch)

    monkeypatch.setattr(losses.WeightedLoss, "forward", recording)
    monkeypatch.setattr(runner, "fit", recording_fit)
    with open(channel_root / "ads" / "videos.csv") as f:
        weight = {r["video_id"]: float(r["weight"]) for r in csv.DictReader(f)}
    cfg = load_config(REPO / "configs" / "demo.yaml", SETS + ["data.weight_column=weight"])
    runner.run_experiment(0, "ads", "ads", cfg, channel_root, progress=False, echo=lambda *a: None)
    (fit,) = fits
    assert fit.weights.tolist() == [weight[v] for v in fit.ids]
    per_epoch = sorted(torch.cat([w for w in seen if w is not None and len(w) > 0][: -(-len(fit) // cfg.train.batch_size)]).tolist())
    assert per_epoch == sorted(fit.weights.tolist())  # the first epoch's batches: every fit video's weight once
    seen.clear()
    runner.run_experiment(0, "ads", "ads", load_config(REPO / "configs" / "demo.yaml", SETS), channel_root, progress=False,
                          echo=lambda *a: None)
    assert seen and all(w is None for w in seen)


def test_a_grid_files_cv_is_checked_when_read(tmp_path):
    from mediaeval_mem.experiments.grid import load_grid

    head = f"pairs: [{{train: ads, test: ads}}]\nconfigs: [{REPO / 'configs' / 'demo.yaml'}]\n"
    for cv, message in (("{folds: 1}", r"g.yaml: cv: cv.folds must be >= 2, got 1"),
                        ("{folds: 3, repeats: 0}", r"g.yaml: cv: cv.repeats must be >= 1, got 0"),
                        ("{folds: 3, group: channel}", r"g.yaml: cv: unknown key 'group' \(valid: folds, group_by, repeats, with_dev\)")):
        (tmp_path / "g.yaml").write_text(head + f"cv: {cv}\n")
        with pytest.raises(ConfigError, match=message):
            load_grid(tmp_path / "g.yaml")
    (tmp_path / "g.yaml").write_text(head + "cv: {folds: 3}\nlayout: table2\n")
    with pytest.raises(ConfigError, match="cv rows are shown in the table1 layout"):
        load_grid(tmp_path / "g.yaml")
    (tmp_path / "g.yaml").write_text(head + "cv: {folds: 4, group_by: brand, repeats: 3}\n")
    assert load_grid(tmp_path / "g.yaml").cv.group_by == "brand"


def test_weights_are_refused_before_training_where_they_cannot_apply(monkeypatch):
    from mediaeval_mem.training.losses import LOSSES
    from mediaeval_mem.training.weights import with_weights

    with pytest.raises(ConfigError, match=r"^data.weight_column: head ridge is fitted in closed form without loss weights"):
        with_weights(None, None, "weight", "l1", "ridge")
    monkeypatch.setitem(LOSSES, "lab-huber", lambda: torch.nn.HuberLoss())
    monkeypatch.setitem(LOSSES.infos, "lab-huber", None)  # a plugin loss registered without a weighted form
    with pytest.raises(ConfigError, match=r"^data.weight_column: loss lab-huber has no weighted form; use l1, mse, spearman"):
        with_weights(None, None, "weight", {"l1": 1.0, "lab-huber": 0.5})
