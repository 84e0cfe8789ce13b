"""`mem package-submission`: runs' test predictions -> the challenge's run files, validated first.

Nothing is written unless every run passes: each test video of the dataset present exactly once, no
unknown id, every value finite and within [0, 1]. A subtask scored on several targets (2026: video and brand
memorability) has a column per target, filled from runs trained on them all (data.targets):

    # me26.yaml (mem package-submission --config me26.yaml)
    filename: "me26mem-{team}-subtask{subtask}-run{run}.csv"
    columns: [video_id, video_mem, brand_mem]
    targets: [score, brand_score]     # the run's targets whose predictions fill columns 2, 3
    dataset: videm                    # the subtask's (declared) test dataset Files are written to a temporary folder and moved
into submissions/ only when all of them are complete, with a manifest tying each file to its run.
"""

from __future__ import annotations

import csv
import io
import json
import math
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from mediaeval_mem.core.errors import ConfigError, MemError
from mediaeval_mem.core.paths import submissions_dir
from mediaeval_mem.core.schema import load_yaml
from mediaeval_mem.datasets import open_dataset
from mediaeval_mem.tracking import record, resolve_run_ids


@dataclass(frozen=True)
class SubmissionCfg:
    """The run files' names and columns (`mem package-submission --config FILE`, a YAML of these keys).

    The 2022 run-file name is unverified; the default follows the one seen in a 2023 team's script.
    """

    filename: str = "me22mem-{team}-subtask{subtask}-run{run}.csv"
    columns: tuple[str, ...] = ("video_id", "mem_score")  # the id, then one per target
    max_runs: int = 5  # per subtask per team
    # the targets (data.targets of the runs) whose predictions fill columns[1:], in order; (): the run's first
    targets: tuple[str, ...] = ()
    # a subtask on a declared dataset (the commercials): runs tested on it are this subtask's, whatever their task
    # number (a declared dataset's runs are task 0); empty: a run's task must be the subtask
    dataset: str = ""

    def __post_init__(self):
        if len(self.columns) != 1 + max(1, len(self.targets)):
            wanted = ", ".join(self.targets) or "the run's first"
            raise ConfigError(f"columns {list(self.columns)}: give the id's column and one per target ({wanted})")
        if "{run}" not in self.filename:
            raise ConfigError(f"filename must contain {{run}}, or the runs' files would overwrite each other (got {self.filename!r})")
        try:
            self.filename.format(team="t", subtask=1, run=1)
        except (KeyError, IndexError, ValueError) as e:
            raise ConfigError(f"filename {self.filename!r}: only {{team}}, {{subtask}} and {{run}} can be filled in ({e!r})") from None
        if self.max_runs < 1:
            raise ConfigError("max_runs must be >= 1")


def load_submission_config(path: str | Path | None) -> SubmissionCfg:
    """The packager's settings from a YAML file (None: the defaults)."""

    return SubmissionCfg() if path is None else load_yaml(SubmissionCfg, path, what="submission config")


@dataclass(frozen=True)
class Prediction:
    video_id: str
    value: str  # as read, so that a bad cell is reported as written
    more: tuple[str, ...] = ()  # the other targets' values, as read (a subtask of several targets)


def validate_predictions(predictions: list[Prediction], expected_ids: list[str]) -> list[str]:
    """Every problem with a run's test predictions, each naming the offending ids (empty list: valid)."""
    problems = []
    seen: dict[str, int] = {}
    for p in predictions:
        seen[p.video_id] = seen.get(p.video_id, 0) + 1
    expected = set(expected_ids)
    dup = sorted(v for v, n in seen.items() if n > 1)
    missing = [v for v in expected_ids if v not in seen]
    unknown = sorted(v for v in seen if v not in expected)
    bad, out = [], []
    for p in predictions:
        for value in (p.value, *p.more):
            try:
                x = float(value)
            except ValueError:
                bad.append(f"{p.video_id}={value!r}")
                continue
            if not math.isfinite(x):
                bad.append(f"{p.video_id}={value}")
            elif not 0.0 <= x <= 1.0:
                out.append(f"{p.video_id}={value}")

    def ids(label: str, values: list[str]) -> None:
        if values:
            shown = ", ".join(values[:10]) + (f" and {len(values) - 10} more" if len(values) > 10 else "")
            problems.append(f"{len(values)} {label}: {shown}")

    ids("test videos missing", missing)
    ids("unknown ids (not in the test split)", unknown)
    ids("ids given more than once", dup)
    ids("values not a finite number", bad)
    ids("values outside [0, 1]", out)
    return problems


def read_predictions(text: str, source: str, columns: tuple[str, ...] = ("prediction",)) -> list[Prediction]:
    """A run's test predictions of each of `columns` (the first target's `prediction`, another's prediction_<name>)."""
    rows = list(csv.DictReader(io.StringIO(text)))
    if not rows or not {"video_id", *columns} <= set(rows[0]):
        raise MemError(f"{source}: expected columns video_id,{','.join(columns)}")
    return [Prediction(r["video_id"].strip(), (r[columns[0]] or "").strip(), tuple((r[c] or "").strip() for c in columns[1:]))
            for r in rows]


def prediction_columns(run_targets: tuple[str, ...], wanted: tuple[str, ...]) -> tuple[str, ...] | str:
    """The prediction columns of a run of `run_targets` that hold `wanted` (tracking/record.py's layout: the first
    target's `prediction`, another's prediction_<name>); a string says why the run cannot fill them."""
    if not wanted:
        return (record.PREDICTION,)
    missing = [t for t in wanted if t not in run_targets]
    if missing:
        return (f"predicts {', '.join(run_targets)}, not {', '.join(missing)}: the subtask's columns need "
                f"{', '.join(wanted)} (train a run with data.targets: [{', '.join(wanted)}])")
    return tuple(record.PREDICTION if t == run_targets[0] else f"{record.PREDICTION}_{t}" for t in wanted)


def write_run_file(path: Path, predictions: list[Prediction], columns: tuple[str, ...]) -> None:
    with open(path, "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(columns)
        for p in predictions:
            w.writerow([p.video_id, *(f"{float(v):.6f}" for v in (p.value, *p.more))])


@dataclass(frozen=True)
class Packaged:
    written: list[Path]  # the run files, then the manifest
    removed: list[Path]  # earlier run files of this team and subtask that the new manifest does not list


def stale_run_files(out_dir: Path, team: str, subtask: int, cfg: SubmissionCfg, keep: set[str]) -> list[Path]:
    """Run files of an earlier packaging of this team and subtask that are not in `keep`: those its manifest
    lists, and any file named by the template for another run number."""
    import re

    names = set()
    old = out_dir / manifest_name(team, subtask)
    if old.is_file():
        try:
            names |= {r["file"] for r in json.loads(old.read_text()).get("runs", []) if isinstance(r.get("file"), str)}
        except (ValueError, AttributeError, TypeError):  # a manifest damaged by hand: the template still finds them
            pass
    marker = "<RUN>"
    pattern = re.compile(re.escape(cfg.filename.format(team=team, subtask=subtask, run=marker)).replace(
        re.escape(marker), r"\d+"))
    names |= {p.name for p in out_dir.iterdir() if pattern.fullmatch(p.name)} if out_dir.is_dir() else set()
    return sorted(out_dir / n for n in names - keep if Path(n).name == n and (out_dir / n).is_file())


def manifest_name(team: str, subtask: int) -> str:
    return f"{team}-subtask{subtask}-manifest.json"


def package_submission(
    team: str,
    subtask: int,
    run_ids: list[str],
    data_root: str | Path | None = None,
    cfg: SubmissionCfg = SubmissionCfg(),
    out_dir: Path | None = None,
) -> Packaged:
    """Validate then write one CSV per run (run 1..N in the order given) and a manifest; then remove the run
    files of an earlier packaging of this team and subtask that the new manifest does not list, so the folder
    holds what the manifest says."""

    if not run_ids:
        raise MemError("give at least one MLflow run id")
    if len(run_ids) > cfg.max_runs:
        raise MemError(f"{len(run_ids)} runs given; the challenge takes at most {cfg.max_runs} per subtask")
    if not team or any(c in team for c in "/\\ "):
        raise MemError(f"bad team name {team!r}: use letters, digits, '-' or '_'")
    run_ids = resolve_run_ids(run_ids)  # whole ids, or unique prefixes of them
    if len(set(run_ids)) < len(run_ids):
        raise MemError("a run id is given twice")
    out_dir = Path(out_dir or submissions_dir())

    errors, entries = [], []
    expected_cache: dict[str, list[str]] = {}
    for n, run_id in enumerate(run_ids, start=1):
        run = record.read_record(run_id)
        if cfg.dataset and run.test_dataset != cfg.dataset:
            errors.append(f"run {n} ({run_id}): tested on {run.test_dataset}, not {cfg.dataset} (the subtask's dataset)")
            continue
        if not cfg.dataset and str(run.task) != str(subtask):
            errors.append(f"run {n} ({run_id}): made for task {run.task}, not subtask {subtask}")
            continue
        # a subtask of named targets: which of the run's prediction columns hold them (its record names its targets)
        columns = prediction_columns(record.read_targets(run_id), tuple(cfg.targets)) if cfg.targets else (record.PREDICTION,)
        if isinstance(columns, str):
            errors.append(f"run {n} ({run_id}): {columns}")
            continue
        test_ds = run.test_dataset
        if test_ds not in expected_cache:
            expected_cache[test_ds] = [it.video_id for it in open_dataset(test_ds, data_root).split("test")]
        table = record.read_predictions(run_id, record.TEST)
        preds = read_predictions(table.text, table.source, columns)
        for problem in validate_predictions(preds, expected_cache[test_ds]):
            errors.append(f"run {n} ({run_id}, {test_ds} test): {problem}")
        name = cfg.filename.format(team=team, subtask=subtask, run=n)
        entries.append((name, preds, {
            "file": name, "run": n, "run_id": run_id, "experiment_id": run.experiment_id,
            "train_dataset": run.train_dataset, "test_dataset": test_ds, "config": run.config_name,
            "encoder": run.encoder, "aggregator": run.aggregator, "head": run.head,
            "kind": run.kind, "members": run.members, "git_commit": run.git_commit, "selection": run.selection,
            "feature_keys": run.feature_key_tags, "dev_metrics": run.dev_metrics,
        }))
    if errors:
        raise MemError("nothing written; fix these first:\n  " + "\n  ".join(errors))

    out_dir.mkdir(parents=True, exist_ok=True)
    manifest = manifest_name(team, subtask)
    stale = stale_run_files(out_dir, team, subtask, cfg, {e[0] for e in entries})  # before the old manifest is replaced
    with tempfile.TemporaryDirectory(dir=out_dir, prefix=".staging-") as tmp:
        for name, preds, _ in entries:
            write_run_file(Path(tmp) / name, preds, tuple(cfg.columns))
        body = {"team": team, "subtask": subtask, "columns": list(cfg.columns), "runs": [e for *_, e in entries]}
        (Path(tmp) / manifest).write_text(json.dumps(body, indent=1) + "\n")
        written = []
        for name in [e[0] for e in entries] + [manifest]:
            shutil.move(str(Path(tmp) / name), out_dir / name)  # same filesystem: renames
            written.append(out_dir / name)
    for path in stale:  # only now: the new files are in place
        path.unlink(missing_ok=True)
    return Packaged(written, stale)
