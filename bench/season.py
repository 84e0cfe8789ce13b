"""A competition season on the CPU, measured stage by stage: data the size of Memento10k's and VideoMem's times S;
and, from seasons at several scales, each stage's growth and the plan of the real-size season.

    .venv/bin/python bench/season.py --scale 0.05                      # 350/75/75 videos per dataset, 5 folds x 3 seeds
    .venv/bin/python bench/season.py --scale 1 --seeds 1 --epochs 1   # the real size (issue 21's figures)
    .venv/bin/python bench/season.py --scale 0.01 --stages generate,data-check,extract-frames --workdir /tmp/season
    .venv/bin/python bench/season.py --plan A.json B.json C.json     # exponents, and the real size fitted from them
    .venv/bin/python bench/season.py --scale 0.02 --device cuda       # the one-GPU plan: real architectures at S, 2S

The data are the two demo datasets (datasets/synthetic.py) with the real counts times S: Memento10k 7,000 train,
1,500 dev, 1,500 test clips of 3 s with 5 captions each; VideoMem the same counts of 7 s clips with one caption
(about one in twelve without). They are generated in parallel (one process per core) into <workdir>/data-s<S>-seed<seed>
and kept there: a later call at the same scale and seed reuses them. Each call then runs the protocol of the README's "The
protocol that wins" on subtask 1 with the demo's tiny stand-ins (clip-demo frames, clip-demo-text captions), each
stage a `mem` command in a child process, against a fresh runs folder (<workdir>/season-<time>/runs: its MLflow
store and feature cache start empty, so every stage does its whole work):

  generate        the data (skipped, 0 s, when cached)
  data-check      mem data check
  extract-frames  mem extract memento10k clip-demo (what configs/demo.yaml reads)
  extract-captions  mem extract memento10k clip-demo-text (the captions stream of configs/demo-fused.yaml)
  cv-video        mem cv configs/demo.yaml, --folds K x --seeds N (the paper's model); --epochs E sets train.epochs
  cv-fused        mem cv configs/demo-fused.yaml, the same folds and seeds (video + captions)
  ridge           mem run, a ridge baseline on time-averaged frame features
  ensemble        mem ensemble of both cv parents, --method weighted (weights fit on their out-of-fold predictions)
  refit           mem run configs/demo-fused.yaml --refit <the fused cv parent> (the epochs it chose)
  results         mem results
  package         mem package-submission of 5 runs (ensemble, refit, fused cv, video cv, ridge), which validates
                  every run's test predictions against the test split before it writes anything

For each stage: wall_s, cpu_s (user + system of the child and its children, from wait4's rusage) and
peak_rss_mb (the child's max resident set). Writes <workdir>/season-<time>.json and prints a table, then the
same JSON as the last line. A stage that fails stops the season: its stderr's end is printed and the JSON says
which stage (`failed`), with the figures of the stages before it. --cprofile runs each `mem` stage under cProfile
(<season>/logs/<stage>.prof).

--plan reads season JSONs (the same protocol at two or more scales) and prints each stage's growth exponent between
consecutive scales and the real-size season fitted from them (bench/season_plan.py: a + b * videos per stage, the
training stages scaled to --plan-epochs and --plan-seeds). --device D runs two seasons itself, at S and 2S, with CLIP
L/14-336's real architectures (random weights: nothing to download) on D, configs/paper-best.yaml and
configs/text/fused.yaml, 2 epochs per fold run, and on CUDA the folds of each cross-validation as Ray tasks sharing
the card (--share K: 1/K of it each; default 4); then prints the plan in wall time. --stand-ins keeps the demo's
tiny encoders (the plan of a CPU season).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import print_table  # noqa: E402
from season_plan import exponents, plan  # noqa: E402

MEM = [sys.executable, "-m", "mediaeval_mem"]  # with --cprofile, run under cProfile instead (see stage())
REAL_COUNTS = {"memento10k": (7000, 1500, 1500), "videomem": (7000, 1500, 1500)}  # train, dev, test (DESIGN.md)
STAGES = ("generate", "data-check", "extract-frames", "extract-captions", "cv-video", "cv-fused", "ridge",
          "ensemble", "refit", "results", "package")
PAIR = ["--train", "memento10k", "--test", "memento10k"]
VIDEO, FUSED = str(REPO / "configs" / "demo.yaml"), str(REPO / "configs" / "demo-fused.yaml")
PAPER, TEXT_FUSED = str(REPO / "configs" / "paper-best.yaml"), str(REPO / "configs" / "text" / "fused.yaml")
RUN_ID = r"([0-9a-f]{32})"
TEAM = "season"


def child_env(runs: Path, submissions: Path) -> dict[str, str]:
    """The children's environment: this one's, with the season's runs and submissions folders, no network, a wide
    console (rich wraps run ids at 80 columns)."""
    env = dict(os.environ)
    env.update(MEM_RUNS_DIR=str(runs), MEM_SUBMISSIONS_DIR=str(submissions), PYTHONPATH=str(REPO), COLUMNS="250",
               HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    env.pop("MLFLOW_TRACKING_URI", None)
    return env


class StageFailed(Exception):
    pass


def timed(cmd: list[str], env: dict, log: Path) -> tuple[dict, str]:
    """Run `cmd` to its end with stdout and stderr in `log`; its figures (wall, CPU, peak RSS) and its output."""
    t0 = time.perf_counter()
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=REPO)
        _, status, usage = os.wait4(proc.pid, 0)  # this child's own rusage (and its waited-for children's)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - t0
    text = log.read_text()
    if proc.returncode != 0:
        raise StageFailed(f"{' '.join(cmd[2:])} exited {proc.returncode}:\n{text[-3000:]}")
    figures = {"wall_s": round(wall, 2), "cpu_s": round(usage.ru_utime + usage.ru_stime, 2),
               "peak_rss_mb": round(usage.ru_maxrss / 1024, 1)}
    return figures, text


def one_id(pattern: str, text: str, what: str) -> str:
    m = re.findall(pattern, " ".join(text.split()))  # rich may wrap a line: whitespace made one space
    if not m:
        raise StageFailed(f"no {what} run id in its output:\n{text[-2000:]}")
    return m[-1]


def generate_command(data: Path, scale: float, seed: int, workers: int) -> list[str]:
    code = ("import sys; from pathlib import Path; from mediaeval_mem.datasets.synthetic import generate_demo_data; "
            f"print(generate_demo_data(Path(sys.argv[1]), seed={seed}, scale={scale}, counts={REAL_COUNTS!r}, "
            f"workers={workers}))")
    return [sys.executable, "-c", code, str(data)]


def cached(data: Path, marker: dict) -> bool:
    done = data / "season-data.json"
    return done.is_file() and json.loads(done.read_text()) == marker


def check_package(submissions: Path, data: Path, env: dict) -> int:
    """The packaged run files read back and validated by the packager's own check against the test split; the
    number of run files (raises StageFailed on any problem)."""
    code = ("import json, sys; from pathlib import Path; from mediaeval_mem.datasets import open_dataset; "
            "from mediaeval_mem.submission import read_predictions, validate_predictions; "
            "d = Path(sys.argv[1]); m = json.loads((d / sys.argv[3]).read_text()); "
            "ids = [it.video_id for it in open_dataset('memento10k', sys.argv[2]).split('test')]; "
            "bad = [(r['file'], p) for r in m['runs'] for p in validate_predictions(read_predictions("
            "(d / r['file']).read_text(), r['file'], tuple(m['columns'][1:])), ids)]; "
            "print(json.dumps({'runs': len(m['runs']), 'problems': bad}))")
    out = subprocess.run([sys.executable, "-c", code, str(submissions), str(data), f"{TEAM}-subtask1-manifest.json"],
                         capture_output=True, text=True, env=env, cwd=REPO)
    if out.returncode != 0:
        raise StageFailed(f"reading the packaged run files failed:\n{out.stderr[-2000:]}")
    got = json.loads(out.stdout.strip().splitlines()[-1])
    if got["problems"]:
        raise StageFailed(f"packaged run files do not validate: {got['problems']}")
    return got["runs"]


@dataclass(frozen=True)
class Profile:
    """What a season extracts and trains: the demo's tiny stand-ins on the CPU, or the real architectures with random
    weights on a device (--device: the plan's rates)."""

    frames: list[str]  # mem extract arguments of the frame stream
    captions: list[str]  # ... of the caption stream
    video: list[str]  # config and --set arguments of the paper's model
    fused: list[str]  # ... of the fused model
    cv: list[str]  # extra mem cv arguments (runs sharing a GPU)


DEMO = Profile(["--encoder", "clip-demo"], ["--encoder", "clip-demo-text"], [VIDEO], [FUSED], [])


def real_profile(device: str, share: int) -> Profile:
    """The paper's best model and the fused one (configs/paper-best.yaml, configs/text/fused.yaml) with CLIP
    L/14-336's full-size towers, random weights, on `device`; `share` > 1: cv folds share the card through Ray."""
    random, dev = ["--weights", "random", "--device", device], ["--set", f"train.device={device}"]
    cv = ["--ray", "--ray-gpus", f"{1 / share:g}"] if share > 1 else []
    return Profile(["--encoder", "clip-vit-l14-336", *random], ["--encoder", "clip-vit-l14-336-text", *random],
                   [PAPER, "--set", "model.streams.0.weights=random", *dev],
                   [TEXT_FUSED, "--set", "model.streams.0.weights=random", "--set", "model.streams.1.weights=random", *dev],
                   cv)


def config_args(spec: list[str]) -> list[str]:
    """A profile's config and its --set overrides as `mem run` takes them (--config PATH ...)."""
    return ["--config", *spec]


def run_season(args: argparse.Namespace, scale: float, profile: Profile = DEMO) -> dict:
    work = Path(args.workdir).resolve()
    data = work / f"data-s{scale:g}-seed{args.seed}"  # one folder per scale: another scale's files never mix in
    stamp = time.strftime("%Y%m%d-%H%M%S")
    season = work / f"season-{stamp}"
    runs, submissions, logs = season / "runs", season / "submissions", season / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    env = child_env(runs, submissions)
    stages = [s for s in STAGES if s in args.stages]
    seeds = [str(s) for s in range(args.seeds)]
    root = ["--data-root", str(data)]
    figures: dict = {"scale": scale, "folds": args.folds, "seeds": args.seeds, "epochs_trained": args.epochs,
                     "device": getattr(args, "device", None) or "cpu",
                     "cores": len(os.sched_getaffinity(0)), "profile": "demo" if profile is DEMO else profile.frames[1],
                     "loadavg_start": round(os.getloadavg()[0], 2), "workdir": str(season), "data": str(data), "stages": {}}
    marker = {"scale": scale, "seed": args.seed, "counts": {k: list(v) for k, v in REAL_COUNTS.items()}}
    ids: dict[str, str] = {}
    epochs = [] if args.epochs is None else ["--set", f"train.epochs={args.epochs}"]

    def stage(name: str, cmd: list[str]) -> str:
        if args.cprofile and cmd[:3] == MEM:  # the same command under cProfile: logs/<stage>.prof
            cmd = [sys.executable, "-m", "cProfile", "-o", str(logs / f"{name}.prof"), *cmd[1:]]
        print(f"{name} ...", file=sys.stderr, flush=True)
        f, text = timed(cmd, env, logs / f"{name}.log")
        figures["stages"][name] = f
        print(f"{name}: {f['wall_s']} s wall, {f['cpu_s']} s CPU, {f['peak_rss_mb']} MB", file=sys.stderr, flush=True)
        return text

    try:
        if "generate" in stages:
            if cached(data, marker):
                figures["stages"]["generate"] = {"wall_s": 0.0, "cpu_s": 0.0, "peak_rss_mb": 0.0, "cached": True}
            else:
                stage("generate", generate_command(data, scale, args.seed, figures["cores"]))
                (data / "season-data.json").write_text(json.dumps(marker))
        if not cached(data, marker):
            raise StageFailed(f"no data at scale {scale} in {data}: run the generate stage first")
        figures["videos"] = {name: {split: sum(1 for _ in (data / name / f"{split}_set" / "Videos").iterdir())
                                    for split in ("train", "dev", "test")} for name in REAL_COUNTS}
        if "data-check" in stages:
            stage("data-check", [*MEM, "data", "check", *root])
        if "extract-frames" in stages:
            stage("extract-frames", [*MEM, "extract", "--dataset", "memento10k", *profile.frames, *root, "--quiet"])
        if "extract-captions" in stages:
            stage("extract-captions", [*MEM, "extract", "--dataset", "memento10k", *profile.captions, *root, "--quiet"])
        def cv(name: str, spec: list[str]) -> str:  # a cross-validation of the profile's config `spec`; its output
            text = stage(name, [*MEM, "cv", *spec, "--train", "memento10k", "--folds", str(args.folds), "--seeds", *seeds,
                                *epochs, *profile.cv, *root, "--quiet"])
            ids[name] = one_id(r"parent run " + RUN_ID, text, "cv parent")
            return text

        if "cv-video" in stages:
            cv("cv-video", profile.video)
        if "cv-fused" in stages:
            text = cv("cv-fused", profile.fused)
            figures["refit_epochs"] = int(one_id(r"median (\d+)", text, "refit epochs"))  # what the refit trains
        if "ridge" in stages:
            ids["ridge"] = one_id(r"logged to MLflow experiment .*?, run " + RUN_ID, stage("ridge", [
                *MEM, "run", *PAIR, *config_args(profile.video), "--set", "model.head=ridge", "--set", "model.head_args={}",
                "--set", "model.streams.0.aggregator=avg", "--set", "model.streams.0.aggregator_args={}", *root,
                "--quiet"]), "ridge")  # args cleared: paper-best.yaml's Bi-GRU and MLP have some, avg and ridge none
        if "ensemble" in stages:
            members = [ids[k] for k in ("cv-video", "cv-fused") if k in ids]
            if len(members) < 2:
                raise StageFailed("the ensemble needs both cv stages (cv-video, cv-fused)")
            ids["ensemble"] = one_id(r"logged as run " + RUN_ID, stage("ensemble", [
                *MEM, "ensemble", *members, "--method", "weighted"]), "ensemble")
        if "refit" in stages:
            if "cv-fused" not in ids:
                raise StageFailed("the refit needs the cv-fused stage")
            ids["refit"] = one_id(r"logged to MLflow experiment .*?, run " + RUN_ID, stage("refit", [
                *MEM, "run", *PAIR, *config_args(profile.fused), "--refit", ids["cv-fused"], *root, "--quiet"]), "refit")
        if "results" in stages:
            stage("results", [*MEM, "results"])
        if "package" in stages:
            chosen = [ids[k] for k in ("ensemble", "refit", "cv-fused", "cv-video", "ridge") if k in ids]
            if len(chosen) < 5:
                raise StageFailed(f"packaging 5 runs needs the stages that make them; only {len(chosen)} ran")
            stage("package", [*MEM, "package-submission", "--team", TEAM, "--subtask", "1", *chosen, *root])
            figures["packaged_runs"] = check_package(submissions, data, env)
    except StageFailed as e:
        figures["failed"] = str(e).splitlines()[0]
        print(f"season stopped: {e}", file=sys.stderr)
    figures["run_ids"] = ids
    figures["total_wall_s"] = round(sum(s["wall_s"] for s in figures["stages"].values()), 2)
    figures["loadavg_end"] = round(os.getloadavg()[0], 2)
    (work / f"season-{stamp}.json").write_text(json.dumps(figures, indent=1) + "\n")
    return figures


def print_season(figures: dict) -> None:
    rows = [(name, f"{f['wall_s']:8.1f} s wall {f['cpu_s']:8.1f} s CPU {f['peak_rss_mb']:8.0f} MB peak"
             + (" (cached)" if f.get("cached") else "")) for name, f in figures["stages"].items()]
    rows.append(("total", f"{figures['total_wall_s']:8.1f} s wall"))
    if "failed" in figures:
        rows.append(("FAILED", figures["failed"]))
    print_table(rows)


def print_plan(seasons: list[dict], epochs: int, seeds: int, measure: str) -> dict:
    """Each stage's growth exponents and the real-size season's planned time, printed; the plan returned."""
    growth = exponents(seasons, "wall_s" if measure == "wall_s" and seasons[0].get("device", "cpu") != "cpu" else "cpu_s")
    planned = plan(seasons, epochs, seeds, measure)
    print(f"planned real-size season ({planned['videos']:,} Memento10k videos, {epochs} epochs per fold run, "
          f"{seeds} seeds) from scales {', '.join(f'{s:g}' for s in planned['scales'])}, {measure}:")
    print_table([(name, f"{p['planned_s'] / 60:8.1f} min {p['share']:6.1%}   fixed {p['fixed_s']:7.1f} s + "
                  f"{p['per_video_s'] * 1000:8.2f} ms/video x {p['factor']:g}   growth {growth.get(name, '-')}")
                 for name, p in planned["stages"].items()]
                + [("total", f"{planned['total_s'] / 3600:8.2f} h")])
    planned["exponents"] = growth
    return planned


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scale", type=float, help="S: the real counts times S (1 = the real size)")
    ap.add_argument("--workdir", default="runs/season",
                    help="the data (kept for the next call) and each season's runs (default runs/season)")
    ap.add_argument("--seeds", type=int, default=3, help="seeds of each cross-validation (default 3)")
    ap.add_argument("--folds", type=int, default=5, help="K of each cross-validation (default 5)")
    ap.add_argument("--seed", type=int, default=0, help="the data's seed (default 0)")
    ap.add_argument("--epochs", type=int, help="train.epochs of both cross-validations (default: the configs'; 2 with "
                    "--device); the refit trains for the epochs they choose")
    ap.add_argument("--cprofile", action="store_true", help="run each mem stage under cProfile: <season>/logs/<stage>.prof")
    ap.add_argument("--stages", default=",".join(STAGES), help=f"comma-separated, of {', '.join(STAGES)} (default all)")
    ap.add_argument("--device", help="plan a real-size season on this device (cuda, cpu): seasons at S and 2S with CLIP "
                    "L/14-336's real architectures (random weights), each stage fitted, the plan printed")
    ap.add_argument("--stand-ins", action="store_true", help="with --device: the demo's tiny encoders instead")
    ap.add_argument("--share", type=int, help="with --device: fold runs sharing the card (mem cv --ray --ray-gpus "
                    "1/K; default 4 on cuda, 1 on cpu)")
    ap.add_argument("--plan", nargs="+", metavar="JSON", help="no season: exponents and the plan from these season JSONs")
    ap.add_argument("--plan-epochs", type=int, default=20, help="epochs a fold run trains in the planned season (20)")
    ap.add_argument("--plan-seeds", type=int, default=3, help="seeds of the planned cross-validations (3)")
    args = ap.parse_args()
    args.stages = args.stages.split(",")
    unknown = [s for s in args.stages if s not in STAGES]
    if unknown:
        ap.error(f"unknown stage {unknown[0]} (one of {', '.join(STAGES)})")
    if args.plan:
        seasons = [json.loads(Path(p).read_text()) for p in args.plan]
        on_cpu = all(s.get("device", "cpu") == "cpu" for s in seasons)  # a GPU's work is not CPU time: plan its wall time
        print(json.dumps(print_plan(seasons, args.plan_epochs, args.plan_seeds, "cpu_s" if on_cpu else "wall_s")))
        return
    if args.scale is None or args.scale <= 0 or args.seeds < 1 or args.folds < 2 or (args.epochs is not None and args.epochs < 1):
        ap.error("--scale must be given and > 0, --seeds >= 1, --folds >= 2, --epochs >= 1")
    if not args.device:
        figures = run_season(args, args.scale)
        print_season(figures)
        print(json.dumps(figures))
        sys.exit(1 if "failed" in figures else 0)
    share = args.share or (4 if args.device.startswith("cuda") else 1)
    profile = DEMO if args.stand_ins else real_profile(args.device, share)
    args.epochs = args.epochs or 2
    seasons = []
    for scale in (args.scale, 2 * args.scale):
        figures = run_season(args, scale, profile)
        print_season(figures)
        if "failed" in figures:
            print(json.dumps(figures))
            sys.exit(1)
        seasons.append(figures)
    print(json.dumps(print_plan(seasons, args.plan_epochs, args.plan_seeds, "wall_s")))


if __name__ == "__main__":
    main()
