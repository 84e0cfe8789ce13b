"""`mem results`: MLflow runs side by side with a 95% bootstrap CI on SROCC.

Each row says what the run is: its kind (run, refit, cv, sweep-trial, ensemble, ...), MLflow run name,
config, head and encoder(s), pair and seed; and its id as the shortest prefix (8 characters at least) that
no other run of the store shares, which every command taking a run id accepts.

The interval comes from each run's logged dev predictions: 1000 resamples of the dev videos with
replacement (seeded, so the same runs give the same intervals), Spearman on each, 2.5th-97.5th percentile.
A run of several targets (data.targets) shows its first target's figures in those columns, and each other
target's dev SROCC in a column of its own (`brand_score SROCC`), present only where some run has one.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass, field

import numpy as np

from mediaeval_mem.core.errors import MemError
from mediaeval_mem.tracking import client, id_prefixes, record, search_runs
from mediaeval_mem.tracking.record import Kind, Tag
from mediaeval_mem.training.bootstrap import bootstrap_srocc_ci


@dataclass
class ResultRow:
    run_id: str
    experiment: str
    config: str
    pair: str
    seed: str
    plcc: float
    srocc: float
    mse: float
    ci_low: float
    ci_high: float
    kind: str = "run"
    name: str = ""
    head: str = "?"
    encoder: str = "?"
    short_id: str = ""  # a unique prefix of run_id
    targets: dict[str, float] = field(default_factory=dict)  # another target's name -> its dev SROCC
    note: str = ""  # a grouped or repeated cv parent: how it folded, the repeats' mean ± sd (shown beside the kind)

    def cells(self, targets: list[str] = ()) -> list[str]:
        """The row's cells under HEADER, then its SROCC of each of `targets` ('-' where it has none)."""
        ci = f"[{self.ci_low:.4f}, {self.ci_high:.4f}]" if not np.isnan(self.ci_low) else "-"
        kind = self.kind + (f" ({self.note})" if self.note else "")
        return [self.short_id or self.run_id, kind, self.name, self.config, self.head, self.encoder, self.pair,
                self.seed, f"{self.plcc:.4f}", f"{self.srocc:.4f}", ci, f"{self.mse:.4f}",
                *(f"{self.targets[t]:.4f}" if t in self.targets else "-" for t in targets)]


HEADER = ["run id", "kind", "name", "config", "head", "encoder", "pair", "seed", "PLCC", "SROCC", "SROCC 95% CI", "MSE"]
TARGET_SROCC = re.compile(r"dev_(.+)_srocc")  # another target's dev SROCC (runner.evaluate_and_predict's names)


def other_targets(rows: list[ResultRow]) -> list[str]:
    """The targets besides the first that some row has figures of, in the order first seen."""
    return list(dict.fromkeys(t for r in rows for t in r.targets))


def results_table(rows: list[ResultRow]) -> tuple[list[str], list[list[str]]]:
    """(header, cells) of the rows: HEADER, plus a column per other target where some run has one."""
    targets = other_targets(rows)
    return HEADER + [f"{t} SROCC" for t in targets], [r.cells(targets) for r in rows]


SORT_KEYS = {"srocc": lambda r: -r.srocc, "plcc": lambda r: -r.plcc, "mse": lambda r: r.mse,
             "config": lambda r: r.config, "pair": lambda r: r.pair, "kind": lambda r: r.kind, "name": lambda r: r.name}


def collect_results(experiments: list[str] | None = None, ci: bool = True, sort: str = "srocc") -> list[ResultRow]:
    """Every finished run (of the named experiments, default all) that has dev metrics."""

    if sort not in SORT_KEYS:
        raise MemError(f"cannot sort by {sort!r}: use one of {', '.join(SORT_KEYS)}")
    names = {e.experiment_id: e.name for e in client().search_experiments()}
    if experiments:
        unknown = [e for e in experiments if e not in names.values()]
        if unknown:
            raise MemError(f"no experiment named {unknown[0]!r}; there are: {', '.join(sorted(names.values())) or 'none'}")
    rows = []
    every = search_runs()  # the ids a prefix must not be confused with: every run of the store
    prefixes = id_prefixes([r.info.run_id for r in every], [r.info.run_id for r in every])
    for run in record.finished_records(experiments):
        m = run.metrics
        if "dev_srocc" not in m or run.kind == Kind.CV_FOLD:  # a fold's figures are out-of-fold, not dev
            continue
        lo = hi = float("nan")
        if ci:
            try:
                table = record.read_predictions(run.run_id, record.DEV).rows
                lo, hi = bootstrap_srocc_ci([float(r["ground_truth"]) for r in table], [float(r["prediction"]) for r in table])
            except MemError:
                pass
        seed = run.params.get("train.seed") or run.tag(Tag.CV_SEEDS) or "-"  # a cv parent: its seeds; an ensemble: none
        rows.append(ResultRow(run.run_id, names.get(run.experiment_id, "?"), run.tag(Tag.CONFIG, "?"),
                              run.tag(Tag.PAIR, "?"), seed, m.get("dev_plcc", float("nan")),
                              m["dev_srocc"], m.get("dev_mse", float("nan")), lo, hi, run.kind,
                              run.name, run.tag(Tag.HEAD, "?"), run.tag(Tag.ENCODER, "?"),
                              prefixes.get(run.run_id, run.run_id),
                              {match[1]: v for k, v in m.items() if (match := TARGET_SROCC.fullmatch(k))}, _cv_note(run)))
    return sorted(rows, key=SORT_KEYS[sort])


def _cv_note(run) -> str:
    """A grouped or repeated cv parent: how it folded and, with repeats, the mean ± sd of the repeats' pooled
    out-of-fold SROCC (the dev figures beside it are the fold models' mean); '' for any other run."""
    if run.kind != Kind.CV:
        return ""
    group, m = run.params.get("cv.group_by"), run.metrics
    parts = [f"by {group}"] if group else []
    if "oof_srocc_repeats_mean" in m:
        parts.append(f"OOF SROCC {m['oof_srocc_repeats_mean']:.4f} ± {m['oof_srocc_repeats_sd']:.4f} over "
                     f"{run.params.get('cv.repeats', '?')} repeats")
    return ", ".join(parts)


def format_results(rows: list[ResultRow], fmt: str) -> str:
    """csv or markdown text of the rows (the table format is rendered by the CLI with rich)."""
    targets = other_targets(rows)
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["experiment", "kind", "name", "config", "head", "encoder", "pair", "seed", "plcc", "srocc",
                    "srocc_ci_low", "srocc_ci_high", "mse", *(f"{t}_srocc" for t in targets), "run_id"])
        for r in rows:
            w.writerow([r.experiment, r.kind, r.name, r.config, r.head, r.encoder, r.pair, r.seed, f"{r.plcc:.6f}",
                        f"{r.srocc:.6f}", f"{r.ci_low:.6f}", f"{r.ci_high:.6f}", f"{r.mse:.6f}",
                        *(f"{r.targets.get(t, float('nan')):.6f}" for t in targets), r.run_id])
        return buf.getvalue()
    header, cells = results_table(rows)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(c) + " |" for c in cells]
    return "\n".join(lines) + "\n"
