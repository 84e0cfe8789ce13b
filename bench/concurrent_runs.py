"""Throughput of several `mem run` processes at once against one run alone, on this machine.

    .venv/bin/python bench/concurrent_runs.py                      # 1, 2, 4 and 8 runs of configs/demo.yaml
    .venv/bin/python bench/concurrent_runs.py --counts 1,4 --torch-defaults

(Not `concurrent.py`: a script of that name in bench/ would stand in for the standard library's
`concurrent` package in every bench script, which Python runs with bench/ first on its path.)

Generates demo data (`mem demo-data --scale`), extracts its clip-demo features once, makes the MLflow
store, then for each N in --counts starts N identical `mem run --task 1 ... --config configs/demo.yaml`
processes together and times them. The runs' environment is this process's with OMP_* and MEM_THREADS
removed, so what is measured is what a user gets with nothing set; --torch-defaults gives them torch's
own defaults instead (OpenMP threads that spin while they wait, one per core), as `mem` ran before it
chose its threads (core/threads.py).

  alone_s            one run's wall time, nothing else of ours running (N = 1)
  total_s_<N>        wall time from starting N runs to the last one ending
  fair_share_<N>     N x alone_s / total_s_<N>: 1.0 means N runs cost exactly N lone runs (fair
                     sharing of the cores); above 1, running them together is faster than one after
                     the other; far below 1, concurrent processes fight over the cores
  cpu_s_per_run_<N>  CPU seconds (user + system) a run took when N ran at once: it stays flat where the runs
                     share the cores, and grows where their threads spin against each other
  srocc_<N>          every run's dev SROCC (they must agree: the same config and seed)
The last line printed is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import print_table  # noqa: E402

MEM = [sys.executable, "-m", "mediaeval_mem"]
SROCC = re.compile(r"│\s*\d\s*│\s*memento10k->memento10k\s*│[^│]*│\s*([\d.]+)\s*│\s*([\d.]+)\s*│")


def run_env(runs: Path, torch_defaults: bool) -> dict[str, str]:
    """The environment of the runs: nothing of OpenMP's or ours set (or torch's spinning defaults)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OMP_") and k != "MEM_THREADS"}
    env.update(MEM_RUNS_DIR=str(runs), PYTHONPATH=str(REPO), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    if torch_defaults:
        env.update(OMP_WAIT_POLICY="ACTIVE", MEM_THREADS=str(len(os.sched_getaffinity(0))))
    return env


def check(cmd: list[str], env: dict) -> str:
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO)
    if out.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{out.stderr[-3000:]}")
    return out.stdout


def children_cpu_s() -> float:
    """CPU seconds (user + system) of this process's finished, waited-for children so far."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def together(n: int, cmd: list[str], env: dict) -> tuple[float, list[float], list[float], float]:
    """Start `n` copies of `cmd` at once; (wall time to the last end, each one's wall time, each one's dev SROCC,
    their CPU seconds per run)."""
    cpu0, t0 = children_cpu_s(), time.perf_counter()
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO)
             for _ in range(n)]
    ends, sroccs = [0.0] * n, []
    pending = dict(enumerate(procs))
    while pending:
        for i, p in list(pending.items()):
            if p.poll() is not None:
                ends[i] = time.perf_counter() - t0
                del pending[i]
        time.sleep(0.05)
    for p in procs:
        out, err = p.communicate()
        if p.returncode != 0:
            raise SystemExit(f"a run failed:\n{err[-3000:]}")
        m = SROCC.search(out)
        sroccs.append(float(m.group(2)) if m else float("nan"))
    return max(ends), ends, sroccs, (children_cpu_s() - cpu0) / n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--counts", default="1,2,4,8", help="how many runs at once, comma-separated (default 1,2,4,8)")
    ap.add_argument("--scale", type=float, default=1.0, help="demo data size (mem demo-data --scale; default 1)")
    ap.add_argument("--config", default=str(REPO / "configs" / "demo.yaml"))
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="passed to every mem run")
    ap.add_argument("--torch-defaults", action="store_true", help="runs with torch's defaults (spinning OpenMP threads, one per core)")
    ap.add_argument("--no-warmup", action="store_true", help="time the first run too (the MLflow store's creation in it)")
    ap.add_argument("--workdir", help="where data and runs/ go (default: a temporary folder)")
    args = ap.parse_args()
    counts = [int(c) for c in args.counts.split(",")]

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.workdir or tmp)
        root, env = work / "data", run_env(work / "runs", args.torch_defaults)
        check([*MEM, "demo-data", "--data-root", str(root), "--scale", str(args.scale)], env)
        check([*MEM, "extract", "--dataset", "memento10k", "--encoder", "clip-demo", "--data-root", str(root), "--quiet"], env)
        run = [*MEM, "run", "--task", "1", "--train", "memento10k", "--test", "memento10k", "--config", args.config,
               "--data-root", str(root), "--quiet", *(x for s in args.set for x in ("--set", s))]
        if not args.no_warmup:
            check(run, env)  # warm up: the MLflow store made, files in the page cache; not timed
        figures: dict = {"cores": len(os.sched_getaffinity(0)), "loadavg_start": os.getloadavg()[0],
                         "torch_defaults": args.torch_defaults, "counts": counts, "scale": args.scale}
        alone = together(1, run, env)
        figures["alone_s"], figures["cpu_s_per_run_1"] = round(alone[0], 2), round(alone[3], 2)
        for n in counts:
            total, each, sroccs, cpu = together(n, run, env) if n != 1 else alone
            figures[f"total_s_{n}"], figures[f"cpu_s_per_run_{n}"] = round(total, 2), round(cpu, 2)
            figures[f"fair_share_{n}"] = round(n * figures["alone_s"] / figures[f"total_s_{n}"], 3)
            if sroccs:
                figures[f"srocc_{n}"] = sroccs
            print(f"{n} run(s) at once: {total:.1f} s, each {min(each):.1f}-{max(each):.1f} s, "
                  f"fair share {figures[f'fair_share_{n}']:.2f}", file=sys.stderr, flush=True)
        figures["loadavg_end"] = os.getloadavg()[0]
    print_table([(k, str(v)) for k, v in figures.items()])
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
