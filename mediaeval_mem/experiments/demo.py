"""`mem demo`'s stages: the whole pipeline on generated data, each stage a function that returns what it made.

    make_demo_data -> check_demo_data -> extract_demo_features -> train_demo_pairs -> train_with_captions
    -> cross_validate_commercials -> (the caller packages `submission_runs` with submission.package_submission: a layer above this one)

The command composes them and prints; the same seed gives the same data, configs, draws and numbers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

from mediaeval_mem.config import RunConfig, load_config
from mediaeval_mem.core.paths import repo_file
from mediaeval_mem.datasets import DatasetIndex, open_dataset
from mediaeval_mem.datasets.synthetic import generate_demo_data
from mediaeval_mem.datasets.synthetic_commercials import generate_commercials
from mediaeval_mem.encoders.i3d import write_random_checkpoint
from mediaeval_mem.experiments.cv import CVResult, run_cv
from mediaeval_mem.experiments.runner import Echo, RunResult, run_experiment
from mediaeval_mem.features.captions import stream_source
from mediaeval_mem.features.extract import ExtractReport, extract_features

DEMO_DATASETS = ("memento10k", "videomem")  # the demo's, in the order it checks and extracts them
CHECKED_DATASETS = DEMO_DATASETS + ("commercials",)  # the commercials are declared in the demo root's datasets.yaml
DEMO_PAIRS = ((1, "memento10k", "memento10k"), (2, "memento10k", "videomem"), (2, "videomem", "memento10k"))  # (task, train, test)
VIDEO_CONFIG = "demo"  # configs/demo.yaml: the paper's model on the demo's stand-in CLIP
CAPTION_CONFIGS = ("demo-captions", "demo-fused")  # task 1 on captions alone, then video + captions
# configs/commercials/: pictures, sound, and both, cross-validated in 5 folds grouped by channel
COMMERCIALS_CONFIGS, COMMERCIALS_FOLDS, COMMERCIALS_GROUPS = ("video", "audio", "fused"), 5, "channel"
# The randomly initialised I3D checkpoints (pytorch-i3d layout, 112 px sidecars) that the demo profile names, so
# the grids' I3D rows run on a CPU: file -> classes. They are not trained models.
I3D_STANDINS = {"rgb_imagenet.pt": 400, "rgb_charades.pt": 157}


def write_i3d_standins(root: str | Path, seed: int = 0) -> list[Path]:
    """Write the missing I3D stand-ins under root/i3d/; returns their paths."""
    paths = []
    for file, classes in I3D_STANDINS.items():
        path = Path(root) / "i3d" / file
        if not path.is_file():
            write_random_checkpoint(path, classes, size=112, seed=seed + classes)
        paths.append(path)
    return paths


def make_demo_data(root: str | Path, seed: int = 0, scale: float = 1.0, force: bool = False) -> dict[str, dict[str, int]]:
    """`mem demo-data`: the I3D stand-ins, both synthetic datasets (datasets/synthetic.py), then the commercials
    (datasets/synthetic_commercials.py, declared in root/datasets.yaml) under `root`; returns videos per split per
    dataset. `scale` shrinks the splits (tests use ~0.1). The commercials come last, from their own seeded draws,
    so the other two are the same files whether or not they are there.

    >>> make_demo_data("data/demo", seed=0, scale=0.1)
    {'memento10k': {'train': 12, 'dev': 4, 'test': 4}, 'videomem': {...}, 'commercials': {'train+dev': 12, 'test': 4}}
    """
    write_i3d_standins(root, seed)
    counts = generate_demo_data(Path(root), seed=seed, scale=scale, force=force)
    counts["commercials"] = generate_commercials(Path(root), seed=seed, scale=scale, force=force)
    return counts


def check_demo_data(root: str | Path) -> Iterator[DatasetIndex]:
    """Each demo dataset opened and checked, one at a time (the caller stops at the first with problems)."""
    for name in CHECKED_DATASETS:
        yield open_dataset(name, root)


def demo_config(name: str, seed: int) -> RunConfig:
    """configs/<name>.yaml with the demo's seed."""
    return load_config(repo_file(f"configs/{name}.yaml"), [f"train.seed={seed}"])


def extract_demo_features(cfg: RunConfig, root: str | Path, progress: bool = True) -> Iterator[ExtractReport]:
    """The frame features of `cfg`'s first stream for each demo dataset, one report at a time."""
    stream = cfg.model.streams[0]
    for name in DEMO_DATASETS:
        yield extract_features(name, stream.encoder, weights=stream.weights, data_root=root, sampling=stream.sampling,
                               opts=cfg.extract, progress=progress, source=stream_source(stream))


def train_demo_pairs(cfg: RunConfig, root: str | Path, progress: bool = True, echo: Echo = print,
                     starting: Callable[[int, str, str], None] | None = None) -> list[RunResult]:
    """The paper's model on task 1 and on task 2 both ways (DEMO_PAIRS), each a logged run; `starting(task, train,
    test)` is called before each (the command's heading)."""
    results = []
    for task, train, test in DEMO_PAIRS:
        if starting is not None:
            starting(task, train, test)
        results.append(run_experiment(task, train, test, cfg, root, progress=progress, echo=echo))
    return results


def train_with_captions(video_run: RunResult, seed: int, root: str | Path, progress: bool = True,
                        echo: Echo = print) -> list[RunResult]:
    """Task 1 on captions alone and on video + captions; returns [video_run, captions, fused] to compare."""
    rows = [video_run]
    for name in CAPTION_CONFIGS:
        rows.append(run_experiment(1, "memento10k", "memento10k", demo_config(name, seed), root, progress=progress,
                                   echo=echo))
    return rows


def cross_validate_commercials(seed: int, root: str | Path, progress: bool = True, echo: Echo = print
                               ) -> list[tuple[str, CVResult]]:
    """The demo commercials' pictures, sound, and both (COMMERCIALS_CONFIGS), each cross-validated in 5 folds grouped
    by channel (no channel on both sides of a fold) and logged as a cv parent with its folds; (config, result) each."""
    out = []
    for name in COMMERCIALS_CONFIGS:
        cfg = load_config(repo_file(f"configs/commercials/{name}.yaml"), [f"train.seed={seed}"])
        out.append((name, run_cv(cfg, "commercials", folds=COMMERCIALS_FOLDS, seeds=(seed,), data_root=root,
                                 progress=progress, echo=echo, group_by=COMMERCIALS_GROUPS)))
    return out


def submission_runs(results: list[RunResult]) -> dict[int, list[str]]:
    """The run ids to package per subtask (1, 2), in run order."""
    return {subtask: [r.run_id for r in results if r.plan.task == subtask] for subtask in (1, 2)}
