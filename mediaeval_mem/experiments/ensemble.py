"""`mem ensemble RUN_ID ... --method mean|rank-mean|weighted`: runs' predictions combined into a run of its own.

Members are finished runs of one pair (`mem run`, a `mem cv` parent, a refit, another ensemble): each
has dev predictions (with the ground truth) and test predictions. The methods:

- `mean`: the average of the members' scores;
- `rank-mean`: the average of their ranks, scaled to (0, 1] (what Spearman sees; MSE means little here);
- `weighted`: a weighted average, the weights non-negative and summing to one, fit (scipy's SLSQP, least
  squares) on predictions that are never the reported ones. Where every member is a `mem cv` parent,
  they are fit on the members' out-of-fold predictions of the training videos. Otherwise they are fit
  on the dev split by cross-fitting: each fifth of the dev videos is predicted with weights fit on the
  other four fifths, so no reported prediction used its own video; the test split's weights are then
  fit on the whole dev split.

The ensemble is an MLflow run in the members' experiment, with its metrics, the bootstrap interval of
its SROCC, its members and weights; `mem package-submission` accepts it like any run. Members of several
targets (data.targets) are combined per target (the weighted method fits each target's own weights); the
members must share their first target, and the other targets all of them predict are combined too.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np

from mediaeval_mem.core.errors import MemError
from mediaeval_mem.tracking import git_commit, record, resolve_run_ids
from mediaeval_mem.tracking.record import Kind, Tag
from mediaeval_mem.training.bootstrap import bootstrap_srocc_ci
from mediaeval_mem.training.metrics import evaluate

METHODS = ("mean", "rank-mean", "weighted")
CROSS_FIT_FOLDS = 5


@dataclass
class Member:
    run_id: str
    run: record.RunRecord
    dev: dict[str, tuple[float, float]]  # video id -> (ground truth, prediction)
    test: dict[str, float]  # video id -> prediction
    oof: dict[str, tuple[float, float]] | None = None  # a cv parent's out-of-fold predictions
    srocc: float = float("nan")
    targets: tuple[str, ...] = ()  # what it predicts, the first (dev, test) first; () read before targets were
    more: dict[str, "Member"] = field(default_factory=dict)  # another target -> its predictions as a Member


@dataclass
class EnsembleResult:
    run_id: str
    method: str
    members: list[str]
    weights: list[float]
    weights_fit_on: str
    metrics: dict[str, float]
    member_srocc: list[float] = field(default_factory=list)
    ci: tuple[float, float] = (float("nan"), float("nan"))


def load_member(run_id: str) -> Member:
    """A finished run's dev and test predictions (and out-of-fold ones where it is a cv parent)."""
    run = record.read_record(run_id)
    if run.status != "FINISHED":
        raise MemError(f"run {run_id} is {run.status}: only finished runs can be ensembled")
    if "dev_srocc" not in run.metrics:  # a same-dataset refit (refit_dev_*), a cv fold, ...: no honest dev figures
        raise MemError(f"run {run_id} has no dev figures that are an estimate (a refit trained on the dev split?): "
                       f"ensemble runs, cv parents or cross-dataset refits, and package a same-dataset refit on its own")
    dev_table, test_table = record.read_predictions(run_id, record.DEV), record.read_predictions(run_id, record.TEST)
    oof = record.read_predictions(run_id, record.OOF).truth_and_prediction() if run.kind == Kind.CV else None
    try:
        targets = record.read_targets(run_id)
    except MemError:  # a run that records neither config nor ensemble body: its one column is all there is
        targets = ()
    more = {t: Member(run_id, run, dev_table.truth_and_prediction(t), test_table.by_id(t),
                      srocc=run.metrics.get(f"dev_{t}_srocc", float("nan"))) for t in targets[1:]}
    return Member(run_id, run, dev_table.truth_and_prediction(), test_table.by_id(), oof,
                  run.metrics.get("dev_srocc", float("nan")), targets, more)


def shared_targets(members: list[Member]) -> tuple[str, ...]:
    """The targets every member predicts, the first first; members of different first targets are refused (a member
    that does not record its targets predicts the others' first)."""
    known = [m.targets for m in members if m.targets]
    firsts = {t[0] for t in known}
    if len(firsts) > 1:
        raise MemError(f"the runs predict different targets first ({', '.join(sorted(firsts))}): ensemble runs of "
                       f"the same target")
    if len(known) < len(members):
        return known[0][:1] if known else ()
    return tuple(t for t in known[0] if all(t in k for k in known))


def rank01(x: np.ndarray) -> np.ndarray:
    """Ranks scaled to (0, 1] (ties share their average rank)."""
    from scipy.stats import rankdata

    return rankdata(x) / len(x)


def fit_weights(preds: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Non-negative weights summing to one that minimise the squared error of preds.T @ w against y.

    preds: (M, N) members' predictions; y: (N,). Solved with scipy's SLSQP from equal weights, on the part of
    the loss that the weights change, scaled to order one: seeds of one model agree closely, so the loss
    itself (about 0.01) differs between their mixtures by far less than SLSQP's stopping tolerance, and a
    fit on it stops where it started (equal weights).
    """
    from scipy.optimize import minimize

    m = len(preds)
    centre = preds.mean(0)  # (N,): with sum(w) = 1, w @ preds - y = (centre - y) + w @ spread
    spread, resid = preds - centre, centre - y  # (M, N), (N,)
    scale = float(np.mean(spread**2))
    if scale == 0:  # identical members: every mixture is the same
        return np.full(m, 1 / m)
    # mean((w @ preds - y)^2) - mean(resid^2), divided by the members' spread: O(1) and exact in w
    loss = lambda w: float(np.mean((w @ spread) ** 2 + 2 * resid * (w @ spread))) / scale  # noqa: E731
    grad = lambda w: 2 * spread @ (w @ spread + resid) / (len(y) * scale)  # noqa: E731
    res = minimize(loss, np.full(m, 1 / m), jac=grad, method="SLSQP", bounds=[(0, 1)] * m, options={"ftol": 1e-12},
                   constraints=[{"type": "eq", "fun": lambda w: w.sum() - 1, "jac": lambda w: np.ones(m)}])
    w = np.clip(res.x, 0, None)
    return w / w.sum()


def cross_fitted(preds: np.ndarray, y: np.ndarray, folds: int = CROSS_FIT_FOLDS, seed: int = 0) -> np.ndarray:
    """(N,) weighted predictions where each video's weights were fit on the other folds only."""
    which = np.random.default_rng(seed).permutation(len(y)) % folds
    out = np.empty(len(y))
    for f in range(folds):
        held = which == f
        out[held] = fit_weights(preds[:, ~held], y[~held]) @ preds[:, held]
    return out


def combine(members: list[Member], method: str) -> tuple[list[str], np.ndarray, np.ndarray, list[str], np.ndarray,
                                                        np.ndarray, str]:
    """(dev ids, dev truth, dev predictions, test ids, test predictions, weights, what the weights were fit on)."""
    dev_ids = sorted(set.intersection(*(set(m.dev) for m in members)))
    test_ids = sorted(set.intersection(*(set(m.test) for m in members)))
    if len(dev_ids) < max(len(m.dev) for m in members) or len(test_ids) < max(len(m.test) for m in members):
        raise MemError("the members' dev or test predictions cover different videos: ensemble runs of the same pair "
                       "on the same data")
    y = np.array([members[0].dev[v][0] for v in dev_ids])
    dev = np.array([[m.dev[v][1] for v in dev_ids] for m in members])  # (M, N_dev)
    test = np.array([[m.test[v] for v in test_ids] for m in members])  # (M, N_test)
    if method == "mean":
        w = np.full(len(members), 1 / len(members))
        return dev_ids, y, w @ dev, test_ids, w @ test, w, "-"
    if method == "rank-mean":
        w = np.full(len(members), 1 / len(members))
        return (dev_ids, y, w @ np.array([rank01(p) for p in dev]), test_ids, w @ np.array([rank01(p) for p in test]),
                w, "-")
    if all(m.oof is not None for m in members):
        oof_ids = sorted(set.intersection(*(set(m.oof) for m in members)))
        w = fit_weights(np.array([[m.oof[v][1] for v in oof_ids] for m in members]),
                        np.array([members[0].oof[v][0] for v in oof_ids]))
        return dev_ids, y, w @ dev, test_ids, w @ test, w, f"out-of-fold predictions ({len(oof_ids)} videos)"
    w = fit_weights(dev, y)  # for the test split: every dev video
    return (dev_ids, y, cross_fitted(dev, y), test_ids, w @ test, w,
            f"dev, cross-fitted in {CROSS_FIT_FOLDS} folds (each reported video's weights fit without it)")


def members_feature_keys(members: list[Member]) -> dict[str, str]:
    """The members' `feature_key.*` tags: per name, the distinct digests the members read, comma-separated."""
    seen: dict[str, list[str]] = {}
    for m in members:
        for k, v in m.run.feature_key_tags.items():
            digests = seen.setdefault(k, [])
            digests += [d for d in v.split(",") if d not in digests]  # a member that is an ensemble lists several
    return {k: ",".join(v) for k, v in sorted(seen.items())}


def ensemble(run_ids: list[str], method: str = "mean", echo=print) -> EnsembleResult:
    """Combine finished runs of one pair into an MLflow run of its own; returns what it logged."""

    if method not in METHODS:
        raise MemError(f"unknown ensemble method {method!r}; use one of {', '.join(METHODS)}")
    if len(set(run_ids)) < 2 or len(set(run_ids)) < len(run_ids):
        raise MemError("give at least two different run ids")
    run_ids = resolve_run_ids(run_ids)  # whole ids, or unique prefixes of them
    if len(set(run_ids)) < len(run_ids):  # a prefix and the whole id of one run
        raise MemError("give at least two different run ids")
    members = [load_member(r) for r in run_ids]
    pairs = {m.run.pair for m in members}
    if len(pairs) > 1:
        raise MemError(f"the runs are of different pairs ({', '.join(sorted(map(str, pairs)))}): ensemble runs of one pair")
    targets = shared_targets(members)
    dev_ids, y, dev, test_ids, test, w, fit_on = combine(members, method)
    metrics = evaluate(y, dev)
    ci = bootstrap_srocc_ci(y, dev)
    ys, devs, tests = [y], [dev], [test]  # per target: each other target's combined the same way (its own weights)
    for t in targets[1:]:
        ids_t, y_t, dev_t, test_ids_t, test_t, *_ = combine([m.more[t] for m in members], method)
        if ids_t != dev_ids or test_ids_t != test_ids:
            raise MemError(f"the members' {t} predictions cover other videos than their first target's")
        ys, devs, tests = ys + [y_t], devs + [dev_t], tests + [test_t]
        metrics |= {f"{t}_{k}": v for k, v in evaluate(y_t, dev_t).items()}
    first = members[0].run.tags
    experiment = record.experiment_name(members[0].run)
    tags = {k: first[k] for k in (Tag.TASK, Tag.TRAIN, Tag.TEST, Tag.PAIR) if k in first}
    tags.update({Tag.KIND: Kind.ENSEMBLE, Tag.CONFIG: f"ensemble-{method}", Tag.MEMBERS: ",".join(run_ids),
                 Tag.ENCODER: "+".join(dict.fromkeys(m.run.tag(Tag.ENCODER, "?") for m in members)),
                 Tag.AGGREGATOR: "ensemble", Tag.HEAD: method, Tag.WEIGHTS_FIT_ON: fit_on, Tag.GIT_COMMIT: git_commit(),
                 **members_feature_keys(members)})
    with record.RecordWriter(experiment, f"ensemble {method} of {len(members)}", tags) as run:
        run.params({"method": method, "members": ",".join(run_ids),
                    "weights": json.dumps([round(float(x), 6) for x in w])})
        run.metrics({f"dev_{k}": v for k, v in metrics.items()} | {"dev_srocc_ci_low": ci[0], "dev_srocc_ci_high": ci[1],
                    "members_mean_srocc": float(np.nanmean([m.srocc for m in members]))})
        run.write_predictions(record.DEV, dev_ids, np.stack(devs, 1), np.stack(ys, 1), targets)
        run.write_predictions(record.TEST, test_ids, np.stack(tests, 1), targets=targets)
        run.write_ensemble({"method": method, "weights_fit_on": fit_on, "targets": list(targets), "members": [
            {"run_id": m.run_id, "weight": float(x), "dev_srocc": m.srocc, "config": m.run.config_name}
            for m, x in zip(members, w)]})
    return EnsembleResult(run.run_id, method, run_ids, [float(x) for x in w], fit_on, metrics,
                          [m.srocc for m in members], ci)
