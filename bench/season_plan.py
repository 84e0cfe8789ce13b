"""Growth and plans from measured seasons (bench/season.py's JSON): each stage's exponent between scales, and the wall
time of the real-size season from two or more smaller ones.

A stage's time at n videos is fitted as a + b * n (least squares over the seasons given): a is what does not grow
with the data (a process starting, torch and MLflow imports, a store's schema, per-fold set-up), b the cost of one more
video. The real-size season is then, per stage,

    a + b * n_real * factor

where factor is 1, except for the two cross-validations and the refit, whose b is scaled to the plan's epochs (a season
measured with `--epochs E` trained E epochs per fold; the refit as many as its cross-validation chose) and the
cross-validations' to the plan's seeds (each seed is its own K fold runs). `generate` is left out: a real season's data
exist. The growth exponent of a stage between two scales is log(t2 / t1) / log(n2 / n1) of its CPU seconds (wall time
where a GPU did the work): 1 is linear, above 1 the stage costs more per video as the data grow.
"""

from __future__ import annotations

import math

REAL_VIDEOS = 10_000  # Memento10k: 7,000 train + 1,500 dev + 1,500 test (both datasets have this count)
TRAINING = ("cv-video", "cv-fused")  # stages whose per-video cost is epochs x seeds of training


def videos(season: dict) -> int:
    """Memento10k's videos in a season (what every stage after generate reads)."""
    return sum(season["videos"]["memento10k"].values())


def exponents(seasons: list[dict], measure: str = "cpu_s") -> dict[str, list[float]]:
    """Per stage, the growth exponent of `measure` between each pair of consecutive scales (seasons sorted by size)."""
    seasons = sorted(seasons, key=videos)
    out: dict[str, list[float]] = {}
    for small, big in zip(seasons, seasons[1:]):
        ratio = math.log(videos(big) / videos(small))
        for name, f in big["stages"].items():
            g = small["stages"].get(name)
            if g and not f.get("cached") and not g.get("cached") and g[measure] > 0 and f[measure] > 0:
                out.setdefault(name, []).append(round(math.log(f[measure] / g[measure]) / ratio, 2))
    return out


def fit(points: list[tuple[int, float]]) -> tuple[float, float]:
    """(a, b) of t = a + b * n by least squares, both clipped at 0 (a cost is never negative)."""
    n_mean = sum(n for n, _ in points) / len(points)
    t_mean = sum(t for _, t in points) / len(points)
    spread = sum((n - n_mean) ** 2 for n, _ in points)
    if spread == 0:
        raise ValueError("a plan needs seasons at two or more scales")
    b = max(0.0, sum((n - n_mean) * (t - t_mean) for n, t in points) / spread)
    return max(0.0, t_mean - b * n_mean), b


def plan(seasons: list[dict], epochs: int, seeds: int, measure: str = "wall_s") -> dict:
    """The real-size season's planned time per stage (seconds of `measure`) and its share, from `seasons` (the same
    stages and protocol at two or more scales)."""
    protocol = {(s.get("epochs_trained") or s.get("epochs"), s["seeds"], s.get("folds")) for s in seasons}
    if len(protocol) > 1:
        raise ValueError(f"the seasons ran different protocols (epochs, seeds, folds): {sorted(protocol, key=str)}")
    trained = seasons[0].get("epochs_trained") or seasons[0].get("epochs")
    if not trained:
        raise ValueError("a plan needs seasons measured with --epochs (every fold run then trains that many)")
    names = [name for name in seasons[0]["stages"] if name != "generate"
             and all(name in s["stages"] for s in seasons)]
    stages: dict[str, dict] = {}
    for name in names:
        a, b = fit([(videos(s), s["stages"][name][measure]) for s in seasons])
        factor = 1.0
        if name in TRAINING:
            factor = epochs / trained * seeds / seasons[0]["seeds"]
            a *= seeds / seasons[0]["seeds"]  # per-fold set-up, once per seed's folds (the process start too: an upper bound)
        elif name == "refit":
            factor = epochs / max(1, seasons[0].get("refit_epochs") or trained)
        stages[name] = {"fixed_s": round(a, 1), "per_video_s": round(b, 5), "factor": round(factor, 2),
                        "planned_s": round(a + b * REAL_VIDEOS * factor, 1)}
    total = sum(s["planned_s"] for s in stages.values())
    for s in stages.values():
        s["share"] = round(s["planned_s"] / total, 4) if total else 0.0
    return {"videos": REAL_VIDEOS, "epochs": epochs, "seeds": seeds, "measure": measure, "stages": stages,
            "total_s": round(total, 1), "scales": sorted(s["scale"] for s in seasons)}
