"""The `mem` command: a thin argparse layer over library functions that return results.

Heavy modules (torch, transformers, mlflow) are imported inside the handlers, so `mem --help` is instant.
"""

from __future__ import annotations

import argparse
import sys

DATASET_NAMES = ("memento10k", "videomem")  # mirrors datasets.DATASETS, kept here so --help stays light
DEMO_ROOT = "data/demo"


def _console():
    from rich.console import Console

    return Console(highlight=False)


def _add_data_root(p: argparse.ArgumentParser, default: str | None = None) -> None:
    p.add_argument("--data-root", default=default, help="folder holding memento10k/ and videomem/ (default: $MEM_DATA_ROOT or data/)")


# --------------------------------------------------------------------------- handlers
def cmd_demo_data(args) -> int:
    from pathlib import Path

    from mediaeval_mem.datasets.synthetic import generate_demo_data

    counts = generate_demo_data(Path(args.out), seed=args.seed, scale=args.scale, force=args.force)
    con = _console()
    for name, per_split in counts.items():
        con.print(f"{name}: " + ", ".join(f"{s} {n}" for s, n in per_split.items()) + f" videos under {Path(args.out) / name}")
    con.print(f"next: mem data check --data-root {args.out}")
    return 0


def cmd_data_check(args) -> int:
    from mediaeval_mem.datasets import open_dataset
    from mediaeval_mem.datasets.check import render_check

    con, bad = _console(), 0
    for name in args.datasets or DATASET_NAMES:
        index = open_dataset(name, args.data_root, target=args.target)
        render_check(index, con)
        bad += len(index.problems)
    return 1 if bad else 0


def _render_extract(report, con) -> None:
    from rich.table import Table

    table = Table(title=f"{report.dataset} / {report.encoder} -> {report.cache_dir}")
    for col in ("split", "videos", "extracted", "cached (skipped)", "failed", "frames", "frames/s"):
        table.add_column(col, justify="left" if col == "split" else "right")
    for s in report.splits:
        fps = f"{s.frames / s.seconds:,.0f}" if s.seconds > 0 and s.frames else "-"
        table.add_row(s.split, str(s.total), str(s.extracted), str(s.cached), str(len(s.failed)), str(s.frames), fps)
    con.print(table)
    for s in report.splits:
        for vid, reason in s.failed.items():
            con.print(f"  [red]failed[/] {s.split}/{vid}: {reason}", soft_wrap=True)


def cmd_extract(args) -> int:
    from mediaeval_mem.features.extract import ExtractOptions, extract_features

    opts = ExtractOptions(
        sampling=args.sampling, batch_size=args.batch_size, device=args.device, dtype=args.dtype,
        workers=args.workers, backend=args.backend, flush_every=args.flush_every,
    )
    splits = tuple(s.strip() for s in args.splits.split(",") if s.strip())
    report = extract_features(args.dataset, args.encoder, splits, args.weights, args.data_root, opts, progress=not args.quiet)
    _render_extract(report, _console())
    return 1 if report.failed else 0


def cmd_demo(args) -> int:
    """Generate the demo data, check it, extract clip-demo features for both datasets."""
    from pathlib import Path

    from mediaeval_mem.datasets import open_dataset
    from mediaeval_mem.datasets.check import render_check
    from mediaeval_mem.datasets.synthetic import generate_demo_data
    from mediaeval_mem.features.extract import extract_features

    con = _console()
    con.rule("1/3 generate demo data")
    generate_demo_data(Path(args.data_root), seed=args.seed)
    con.rule("2/3 check it")
    indexes = {}
    for name in DATASET_NAMES:
        indexes[name] = open_dataset(name, args.data_root)
        render_check(indexes[name], con)
        if indexes[name].problems:
            return 1
    con.rule("3/3 extract clip-demo frame features")
    for name, index in indexes.items():
        report = extract_features(index, "clip-demo", progress=not args.quiet)
        _render_extract(report, con)
        if report.failed:
            return 1
    con.print(f"features cached under {report.cache_dir.parent.parent.parent}; a second `mem demo` finds them all cached")
    return 0


# --------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mem", description="MediaEval Predicting Media Memorability harness")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("demo", help="generate demo data, check it and extract features (minutes on 2 CPU cores)")
    p.add_argument("--data-root", default=DEMO_ROOT, help=f"where the demo data goes (default {DEMO_ROOT})")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("demo-data", help="generate small synthetic Memento10k/VideoMem stand-ins (MediaEval layout)")
    p.add_argument("--out", default=DEMO_ROOT, help=f"data root to write (default {DEMO_ROOT})")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--scale", type=float, default=1.0, help="multiply every split's size (e.g. 0.1 for a tiny set)")
    p.add_argument("--force", action="store_true", help="delete and regenerate existing demo datasets")
    p.set_defaults(func=cmd_demo_data)

    data = sub.add_parser("data", help="dataset tools").add_subparsers(dest="data_command", required=True, metavar="ACTION")
    p = data.add_parser("check", help="per split: videos, missing files, score range, layout; exit 1 on any problem")
    p.add_argument("datasets", nargs="*", choices=[[], *DATASET_NAMES], metavar="DATASET", help="memento10k and/or videomem (default both)")
    _add_data_root(p)
    p.add_argument("--target", default="short-term", help="score to read: short-term (normalised, default), short-term-raw, long-term")
    p.set_defaults(func=cmd_data_check)

    p = sub.add_parser("extract", help="encode videos into cached frame features (resumable)")
    p.add_argument("--dataset", required=True, choices=DATASET_NAMES)
    p.add_argument("--encoder", required=True, help="clip-vit-b32, clip-vit-l14-336 or clip-demo")
    p.add_argument("--splits", default="train,dev,test", help="comma-separated (default train,dev,test)")
    p.add_argument("--sampling", default="all", help="all (default, the paper's) or uniform:N")
    p.add_argument("--device", default="auto", help="auto (cuda if present), cpu, cuda, cuda:N")
    p.add_argument("--dtype", default="auto", help="auto (bf16 where native), bf16, fp32")
    p.add_argument("--batch-size", type=int, default=64, help="frames per forward pass (default 64)")
    p.add_argument("--workers", type=int, default=2, help="decoding threads (default 2)")
    p.add_argument("--backend", default="auto", help="decoder: auto (decord, then PyAV), decord, pyav")
    p.add_argument("--flush-every", type=int, default=32, help="videos per stored segment: the most an interruption loses (default 32)")
    p.add_argument("--weights", help="weights: a save_pretrained directory, a hub id, or 'random'")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_data_root(p)
    p.set_defaults(func=cmd_extract)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of `mem`; returns the exit status (tests call main([...]) in-process)."""
    from mediaeval_mem.errors import MemError

    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except MemError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: everything finished so far is saved; run the same command again to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
