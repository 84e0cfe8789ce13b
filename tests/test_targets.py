"""Several targets (data.targets): a generic dataset's score columns read by name, one model with one output per
target, each target's metrics and prediction columns, `mem predict` and the packager writing one column each."""

from __future__ import annotations

import pytest

from mediaeval_mem.config import load_config
from mediaeval_mem.core.errors import ConfigError, DataError
from mediaeval_mem.datasets import open_dataset


def _write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def _two_scores(folder, rows="a,a.mp4,0.5,0.1\nb,b.mp4,0.6,0.2\nc,c.mp4,0.7,0.3\nd,d.mp4,,\n",
                header="video_id,path,score,brand_score"):
    _write(folder / "videos.csv", f"{header}\n{rows}")
    for line in rows.splitlines():
        (folder / line.split(",")[1]).touch()
    _write(folder.parent / "datasets.yaml", f"ads: {{folder: {folder.name}, dev_fraction: 0.34}}\n")
    return folder.parent


def test_a_score_column_is_a_target_by_name_and_several_are_read_at_once(tmp_path):
    root = _two_scores(tmp_path / "ads")
    one = open_dataset("ads", root, target="brand_score")
    scored = {it.video_id: it.score for s in ("train", "dev") for it in one.split(s)}
    assert scored == {"a": 0.1, "b": 0.2, "c": 0.3} and one.targets == ("brand_score",)
    assert all(it.targets == {} for s in one.splits.values() for it in s)
    both = open_dataset("ads", root, target="score", more_targets=("brand_score",))
    items = {it.video_id: it for s in ("train", "dev") for it in both.split(s)}
    assert {v: it.scores(both.targets) for v, it in items.items()} == {"a": [0.5, 0.1], "b": [0.6, 0.2], "c": [0.7, 0.3]}
    assert both.targets == ("score", "brand_score") and [it.video_id for it in both.split("test")] == ["d"]
    assert not both.problems
    # one-target reads are as before: the same splits, the same scores
    plain = open_dataset("ads", root)
    assert {s: [(it.video_id, it.score) for it in v] for s, v in plain.splits.items()} == \
           {s: [(it.video_id, it.score) for it in v] for s, v in both.splits.items()}


def test_a_labelled_test_row_may_lack_another_target(tmp_path):
    """Per-split files: a test row with a score but no brand score is read (the test split's scores are hidden
    anyway); only the seeded draw's scored rows need every target's."""
    folder = tmp_path / "ads"
    for split, rows in {"train": "a,a.mp4,0.5,0.1\nb,b.mp4,0.6,0.2\n", "dev": "c,c.mp4,0.7,0.3\n",
                        "test": "d,d.mp4,0.4,\n"}.items():
        _write(folder / f"{split}.csv", f"video_id,path,score,brand_score\n{rows}")
    for v in "abcd":
        (folder / f"{v}.mp4").touch()
    _write(tmp_path / "datasets.yaml", "ads: {folder: ads}\n")
    index = open_dataset("ads", tmp_path, target="score", more_targets=("brand_score",))
    assert not index.problems and [it.video_id for it in index.split("test")] == ["d"]


def test_two_targets_naming_one_column_are_refused_in_one_line(tmp_path):
    root = _two_scores(tmp_path / "ads", header="video_id,path,score,long_term_score")
    with pytest.raises(DataError, match=r"ads: targets score, long_term_score, long-term name the same column twice"):
        open_dataset("ads", root, target="score", more_targets=("long_term_score", "long-term"))


def test_a_missing_target_column_is_refused_in_one_line(tmp_path):
    root = _two_scores(tmp_path / "ads")
    with pytest.raises(DataError) as e:
        open_dataset("ads", root, target="score", more_targets=("recall_score",))
    msg = str(e.value)
    assert msg.startswith("ads (generic layout at") and "\n" not in msg
    assert "videos.csv has no 'recall_score' column (it has video_id, path, score, brand_score)" in msg
    with pytest.raises(DataError, match=r"memento10k \(memento-json layout .*\) has no brand_score scores"):
        from conftest import DATA
        open_dataset("memento10k", DATA / "layouts" / "memento-json", target="brand_score")


def test_an_empty_or_bad_cell_of_another_target_is_a_problem_naming_the_row(tmp_path):
    root = _two_scores(tmp_path / "ads", rows="a,a.mp4,0.5,0.1\nb,b.mp4,0.6,\nc,c.mp4,0.7,x\nd,d.mp4,,\n")
    index = open_dataset("ads", root, target="score", more_targets=("brand_score",))
    lines = sorted(str(p).split("/")[-1] for p in index.problems)
    assert len(lines) == 2 and lines[0].startswith("videos.csv:3: column 'brand_score' is empty")
    assert lines[1] == "videos.csv:4: column 'brand_score': 'x' is not a number"


@pytest.mark.parametrize("overrides, message", [
    (["data.target=short term"], "data: target must be one of short-term, short-term-raw, long-term, or the name"),
    (["data.targets=[score, score]"], "data: targets: a target is named twice"),
    (["data.target=long-term", "data.targets=[score, brand_score]"], "data: give target (long-term) or targets"),
    (["data.targets=[score, brand_score]", "model.head=ridge", "model.streams.0.aggregator=avg"],
     "model.head 'ridge' fits one target; data.targets (score, brand_score) needs a trained head"),
])
def test_bad_target_settings_fail_naming_the_key(overrides, message):
    with pytest.raises(ConfigError) as e:
        load_config(None, overrides)
    assert str(e.value).startswith(f"--set: {message}") and "\n" not in str(e.value)


# --------------------------------------------------------------------------- the model, the loss, selection
def test_a_head_of_k_targets_shares_its_body_and_one_target_is_as_before():
    import torch

    from mediaeval_mem.config import ModelCfg
    from mediaeval_mem.models import build_model

    torch.manual_seed(0)
    one = build_model(ModelCfg(), [8])
    torch.manual_seed(0)
    two = build_model(ModelCfg(), [8], outputs=2)
    x, mask = torch.randn(5, 3, 8), torch.ones(5, 3, dtype=torch.bool)
    assert one([(x, mask)]).shape == (5,) and two([(x, mask)]).shape == (5, 2)
    # the same draws up to the last layer: only the output layer is wider (512 -> 128 -> K)
    shapes = {k: tuple(v.shape) for k, v in two.state_dict().items()}
    assert {k: tuple(v.shape) for k, v in one.state_dict().items()} == {
        k: (1, *s[1:]) if s[0] == 2 else s for k, s in shapes.items()}
    linear = build_model(ModelCfg(head="linear"), [8], outputs=3)
    assert linear([(x, mask)]).shape == (5, 3)


def test_the_loss_is_summed_over_targets_each_with_its_own_spearman():
    import torch

    from mediaeval_mem.training.losses import WeightedLoss

    pred, truth = torch.rand(16, 2), torch.rand(16, 2)
    loss = WeightedLoss({"l1": 1.0, "spearman": 0.5})
    per_target = [loss(pred[:, k], truth[:, k]) for k in range(2)]
    assert torch.allclose(loss(pred, truth), per_target[0] + per_target[1])
    # a target ordered perfectly and one reversed: their Spearman terms are ~0 and ~2, not their pooled value
    ordered = torch.linspace(0.1, 0.9, 16)
    both = torch.stack([ordered, ordered.flip(0)], 1)
    spearman = WeightedLoss("spearman")(both, torch.stack([ordered, ordered], 1))
    assert 1.9 < float(spearman) < 2.1


def test_selection_watches_the_mean_of_the_targets_srocc():
    import numpy as np

    from mediaeval_mem.training.loop import _selection
    from mediaeval_mem.training.losses import WeightedLoss

    truth = np.stack([np.linspace(0, 1, 10), np.linspace(0, 1, 10)], 1).astype(np.float32)
    pred = np.stack([truth[:, 0], truth[::-1, 1]], 1)  # the first target right, the second reversed
    loss, srocc = _selection(pred, truth, WeightedLoss("l1"))
    assert abs(srocc) < 1e-9 and loss > 0  # (1 + -1) / 2
    pred[3] = np.nan  # a video without a prediction is left out of both targets
    assert _selection(pred, truth, WeightedLoss("l1"))[1] == 0.0


def test_metrics_name_each_target():
    import numpy as np

    from mediaeval_mem.training.metrics import evaluate, evaluate_targets

    rng = np.random.default_rng(0)
    truth, pred = rng.random((20, 2)), rng.random((20, 2))
    got = evaluate_targets(truth, pred, ("score", "brand_score"))
    assert got == evaluate(truth[:, 0], pred[:, 0]) | {f"brand_score_{k}": v for k, v in evaluate(truth[:, 1], pred[:, 1]).items()}
    assert evaluate_targets(truth[:, 0], pred[:, 0], ("score",)) == evaluate(truth[:, 0], pred[:, 0])


def test_packaging_needs_a_run_of_every_target_of_the_subtask():
    from mediaeval_mem.submission import SubmissionCfg, prediction_columns

    assert prediction_columns(("short-term",), ()) == ("prediction",)
    assert prediction_columns(("score", "brand_score"), ("score", "brand_score")) == ("prediction", "prediction_brand_score")
    assert prediction_columns(("brand_score", "score"), ("score", "brand_score")) == ("prediction_score", "prediction")
    refused = prediction_columns(("short-term",), ("score", "brand_score"))
    assert refused == ("predicts short-term, not score, brand_score: the subtask's columns need score, brand_score "
                       "(train a run with data.targets: [score, brand_score])")
    with pytest.raises(ConfigError, match=r"columns \['video_id', 'video_mem'\]: give the id's column and one per target"):
        SubmissionCfg(columns=("video_id", "video_mem"), targets=("score", "brand_score"))


# --------------------------------------------------------------------------- a two-target run end to end
N_SCORED, N_TEST = 28, 4


@pytest.fixture(scope="module")
def two_target_root(tmp_path_factory):
    """32 tiny clips in a generic folder declared as `ads`: `score` follows brightness and size, `brand_score`
    the hue (another relation to what is seen); 4 clips have no scores (the test split)."""
    import numpy as np

    from mediaeval_mem.datasets.synthetic import FPS, render_clip, write_video

    root = tmp_path_factory.mktemp("targets")
    folder = root / "ads-2026"
    (folder / "clips").mkdir(parents=True)
    rng = np.random.default_rng(1)
    lines = ["video_id,path,score,brand_score"]
    for i in range(N_SCORED + N_TEST):
        brightness, size, hue = rng.uniform(0, 1, 3)
        frames = render_clip(np.random.default_rng(i), brightness, size, hue, FPS, width=64, height=36)
        write_video(folder / "clips" / f"ad{i:02d}.mp4", frames, "libx264", {"preset": "ultrafast"})
        scores = f"{0.4 + 0.35 * brightness + 0.2 * size:.4f},{0.1 + 0.8 * hue:.4f}" if i < N_SCORED else ","
        lines.append(f"ad{i:02d},clips/ad{i:02d}.mp4,{scores}")
    _write(folder / "videos.csv", "\n".join(lines) + "\n")
    _write(root / "datasets.yaml", "ads: {folder: ads-2026, dev_fraction: 0.25}\n")
    return root


def test_a_two_target_run_logs_predicts_and_packages_both(two_target_root, runs_dir, tmp_path, capsys, monkeypatch):
    import csv
    import io

    import numpy as np

    from conftest import REPO
    from mediaeval_mem.cli import main
    from mediaeval_mem.tracking import read_artifact_text, search_runs
    from mediaeval_mem.training.metrics import evaluate

    root = two_target_root
    argv = ["run", "--train", "ads", "--test", "ads", "--config", str(REPO / "configs" / "demo.yaml"), "--data-root",
            str(root), "--set", "train.epochs=4", "--set", "model.streams.0.sampling=uniform:4",
            "--set", "data.targets=[score, brand_score]", "--quiet"]
    assert main(argv) == 0, capsys.readouterr().err
    (run,) = search_runs(["Reference: train ads, test ads"])
    run_id, metrics = run.info.run_id, run.data.metrics
    assert run.info.status == "FINISHED"
    assert {f"dev_{t}{m}" for t in ("", "brand_score_") for m in ("plcc", "srocc", "mse")} <= set(metrics)

    def table_of(run, name):
        return list(csv.DictReader(io.StringIO(read_artifact_text(run, name))))

    def table(name):
        return table_of(run_id, name)

    dev = table("dev_predictions.csv")
    assert list(dev[0]) == ["video_id", "ground_truth", "prediction", "ground_truth_brand_score", "prediction_brand_score"]
    truth = {r["video_id"]: r for r in csv.DictReader((root / "ads-2026" / "videos.csv").open())}
    assert all(float(r["ground_truth"]) == float(truth[r["video_id"]]["score"]) and
               float(r["ground_truth_brand_score"]) == float(truth[r["video_id"]]["brand_score"]) for r in dev)
    col = lambda rows, c: np.array([float(r[c]) for r in rows])  # noqa: E731
    # each target's metrics are its own column's (six decimals in the CSV)
    for prefix, suffix in (("dev_", ""), ("dev_brand_score_", "_brand_score")):
        again = evaluate(col(dev, f"ground_truth{suffix}"), col(dev, f"prediction{suffix}"))
        assert abs(again["srocc"] - metrics[f"{prefix}srocc"]) < 1e-3 and abs(again["mse"] - metrics[f"{prefix}mse"]) < 1e-4
    assert not np.allclose(col(dev, "prediction"), col(dev, "prediction_brand_score"), atol=1e-3)  # two outputs
    test = table("test_predictions.csv")
    assert list(test[0]) == ["video_id", "prediction", "prediction_brand_score"] and len(test) == N_TEST

    # mem predict: a column per target, the run's own test scores
    out = tmp_path / "scores.csv"
    clips = [root / "ads-2026" / "clips" / f"ad{i:02d}.mp4" for i in range(N_SCORED, N_SCORED + N_TEST)]
    assert main(["predict", run_id, *map(str, clips), "--out", str(out), "--quiet"]) == 0
    scored = list(csv.DictReader(out.open()))
    assert list(scored[0]) == ["video_id", "path", "score", "score_brand_score", "run_id"]
    by_id = {r["video_id"]: r for r in test}
    for r in scored:
        assert abs(float(r["score"]) - float(by_id[r["video_id"]]["prediction"])) < 2e-6
        assert abs(float(r["score_brand_score"]) - float(by_id[r["video_id"]]["prediction_brand_score"])) < 2e-6

    # packaging: the subtask's file has one column per target, from the submission config
    sub = _write(tmp_path / "me26.yaml", 'filename: "me26mem-{team}-subtask{subtask}-run{run}.csv"\n'
                 "columns: [video_id, video_mem, brand_mem]\ntargets: [score, brand_score]\ndataset: ads\n")
    packed = ["package-submission", "--team", "us", "--subtask", "1", run_id, "--data-root", str(root),
              "--config", str(sub)]
    monkeypatch.setenv("MEM_SUBMISSIONS_DIR", str(tmp_path / "subs"))
    assert main(packed) == 0, capsys.readouterr().err
    rows = list(csv.DictReader((tmp_path / "subs" / "me26mem-us-subtask1-run1.csv").open()))
    assert list(rows[0]) == ["video_id", "video_mem", "brand_mem"]
    assert {r["video_id"]: (r["video_mem"], r["brand_mem"]) for r in rows} == {
        r["video_id"]: (r["prediction"], r["prediction_brand_score"]) for r in test}
    # a subtask of a target the run has not: refused, nothing written
    _write(sub, "columns: [video_id, video_mem, long_mem]\ntargets: [score, long_term_score]\ndataset: ads\n")
    monkeypatch.setenv("MEM_SUBMISSIONS_DIR", str(tmp_path / "none"))
    assert main(packed) == 2
    err = capsys.readouterr().err
    assert "predicts score, brand_score, not long_term_score" in err and not (tmp_path / "none").exists()

    # mem eval: the run's model scores the dev split again, each target as the run did
    assert main(["eval", run_id, "--test", "ads", "--data-root", str(root), "--quiet"]) == 0, capsys.readouterr().err
    evaluated = next(r for r in search_runs() if r.data.tags.get("kind") == "eval")
    for k in ("dev_srocc", "dev_brand_score_srocc", "dev_brand_score_mse"):
        assert evaluated.data.metrics[k] == pytest.approx(metrics[k], abs=1e-6)

    # a second seed, their ensemble: each target combined, and `mem results` shows each target's SROCC
    from mediaeval_mem.experiments.ensemble import ensemble
    from mediaeval_mem.experiments.results import collect_results, format_results, results_table

    assert main(argv + ["--set", "train.seed=1"]) == 0
    seed1 = next(r.info.run_id for r in search_runs(["Reference: train ads, test ads"])
                 if r.info.run_id != run_id and r.data.tags.get("kind") == "run")
    ens = ensemble([run_id, seed1], "weighted", echo=lambda s: None)
    assert {"srocc", "brand_score_srocc", "brand_score_mse"} <= set(ens.metrics)
    ens_dev = table_of(ens.run_id, "dev_predictions.csv")
    assert list(ens_dev[0]) == ["video_id", "ground_truth", "prediction", "ground_truth_brand_score", "prediction_brand_score"]
    again = evaluate(col(ens_dev, "ground_truth_brand_score"), col(ens_dev, "prediction_brand_score"))
    assert abs(again["srocc"] - ens.metrics["brand_score_srocc"]) < 1e-3
    capsys.readouterr()
    monkeypatch.setenv("MEM_SUBMISSIONS_DIR", str(tmp_path / "ens"))
    _write(sub, "columns: [video_id, video_mem, brand_mem]\ntargets: [score, brand_score]\ndataset: ads\n")
    assert main(["package-submission", "--team", "us", "--subtask", "1", ens.run_id, "--data-root", str(root),
                 "--config", str(sub)]) == 0, capsys.readouterr().err
    rows = collect_results(["Reference: train ads, test ads"], ci=False)
    header, cells = results_table(rows)
    assert header[-1] == "brand_score SROCC" and len(rows) == 4  # two runs, the eval, the ensemble
    by_run = {r.run_id: c for r, c in zip(rows, cells)}
    assert by_run[run_id][-1] == f"{metrics['dev_brand_score_srocc']:.4f}"
    assert format_results(rows, "csv").splitlines()[0].endswith("mse,brand_score_srocc,run_id")


def test_describe_shows_a_score_per_target():
    from mediaeval_mem.experiments.describe import describe

    one = next(line for line in describe(load_config(None)) if line.startswith("head"))
    two = next(line for line in describe(load_config(None, ["data.targets=[score, brand_score]"])) if line.startswith("head"))
    assert "-> (B,) in [0, 1]" in one and "-> (B, 2): score, brand_score in [0, 1]" in two
    # the same body, a wider last layer: 129 more parameters (128 weights and a bias)
    count = lambda line: int(line.rsplit("  ", 1)[1].split()[0].replace(",", ""))  # noqa: E731
    assert count(two) - count(one) == 129
