"""The `mem` command: a thin argparse layer over library functions that return results.

Every import of the package's own modules is inside the handler that needs it, not at the top: they pull in torch,
transformers or mlflow, and `mem --help` must stay instant.
"""

from __future__ import annotations

import argparse
import signal
import sys

DEMO_ROOT = "data/demo"


def _console(stderr: bool = False):
    from rich.console import Console

    con = Console(highlight=False, stderr=stderr)
    return con if con.is_terminal else Console(highlight=False, width=140, stderr=stderr)  # logs and pipes: don't squeeze tables


# --------------------------------------------------------------------------- handlers
def cmd_demo_data(args) -> int:
    from pathlib import Path

    from mediaeval_mem.experiments.demo import make_demo_data

    counts = make_demo_data(args.data_root, seed=args.seed, scale=args.scale, force=args.force)
    con = _console()
    for name, per_split in counts.items():
        con.print(f"{name}: " + ", ".join(f"{s} {n}" for s, n in per_split.items()) + f" videos under {Path(args.data_root) / name}")
    con.print(f"next: mem data check --data-root {args.data_root}")
    return 0


def cmd_data_check(args) -> int:
    from mediaeval_mem.config import DataCfg, load_config
    from mediaeval_mem.datasets import open_dataset
    from mediaeval_mem.datasets.catalog import default_names
    from mediaeval_mem.datasets.check import render_check

    data = load_config(args.config).data if args.config else DataCfg()
    con, bad, names = _console(), 0, args.datasets
    if not names:
        names, skipped = default_names(args.data_root, data.datasets)
        for name in skipped:
            con.print(f"{name}: no folder under the data root, not checked")
    for name in names:
        first, *more = (args.target,) if args.target else data.target_names
        index = open_dataset(name, args.data_root, first, data.dev_fraction, data.split_seed, data.datasets, tuple(more))
        render_check(index, con)
        bad += len(index.problems)
    return 1 if bad else 0


def _render_extract(report, con) -> None:
    from rich.table import Table

    table = Table(title=f"{report.dataset} / {report.encoder} -> {report.cache_dir}")
    unit = f"{report.unit}s"  # frames, captions (caption encoders), rows (precomputed files)
    for col in ("split", "videos", "extracted", "cached (skipped)", "failed", unit, f"{unit}/s"):
        table.add_column(col, justify="left" if col == "split" else "right")
    for s in report.splits:
        fps = f"{s.frames / s.seconds:,.0f}" if s.seconds > 0 and s.frames else "-"
        table.add_row(s.split, str(s.total), str(s.extracted), str(s.cached), str(len(s.failed)), str(s.frames), fps)
    con.print(table)
    for line in report.repairs():
        con.print(f"  [yellow]{line}[/]", soft_wrap=True)
    for s in report.splits:
        if s.uncaptioned:
            con.print(f"  {s.split}: {len(s.uncaptioned)} video(s) without captions were given the empty caption "
                      f"(listed in the manifest under 'uncaptioned')", soft_wrap=True)
        if s.no_speech:
            con.print(f"  {s.split}: {len(s.no_speech)} video(s) without speech (no audio track, or none heard) were "
                      f"given the empty transcript (listed in the manifest under 'no_speech')", soft_wrap=True)
        if s.silent:
            con.print(f"  {s.split}: {len(s.silent)} video(s) without an audio track were encoded as silence "
                      f"(listed in the manifest under 'silent')", soft_wrap=True)
    for s in report.splits:
        for vid, reason in s.failed.items():
            con.print(f"  [red]failed[/] {s.split}/{vid}: {reason}", soft_wrap=True)


def cmd_extract(args) -> int:
    from mediaeval_mem.features.extract import extract_features

    splits = tuple(x.strip() for x in args.splits.split(",") if x.strip())
    report = extract_features(args.dataset, args.encoder, splits, args.weights, args.data_root, args.sampling,
                              _extract_options(args), args.device, progress=not args.quiet, ray=_ray_options(args),
                              source=_text_source(args))
    _render_extract(report, _console())
    return 1 if report.failed else 0


def cmd_captions_generate(args) -> int:
    from mediaeval_mem.features.generated import CaptionOptions, caption_dataset

    given = {k: getattr(args, k) for k in ("model", "weights", "prompt", "sampling", "max_new_tokens")
             if getattr(args, k) is not None}  # the others: CaptionOptions' defaults
    opts = CaptionOptions(**given)
    splits = tuple(x.strip() for x in args.splits.split(",") if x.strip()) if args.splits else None
    r = caption_dataset(args.dataset, opts, args.data_root, splits, args.device, progress=not args.quiet)
    con = _console()
    con.print(f"{r.dataset}: {r.videos} video(s): {r.generated} captioned now, {r.cached} cached, {len(r.failed)} "
              f"failed ({r.model}; captions in {r.folder})", soft_wrap=True)
    for vid, reason in r.failed.items():
        con.print(f"  [red]failed[/] {vid}: {reason}", soft_wrap=True)
    args_ = ", ".join(f"{k}: {v!r}" if k == "prompt" else f"{k}: {v}" for k, v in given.items())
    con.print(f"a caption stream reads them with `source: generated, source_args: {{{args_}}}`", soft_wrap=True,
              markup=False)
    return 1 if r.failed else 0


def cmd_cache_check(args) -> int:
    from mediaeval_mem.core.paths import runs_dir
    from mediaeval_mem.features.check import check_cache

    entries = check_cache()
    if not entries:
        print(f"no cached features under {runs_dir() / 'features'}")
        return 0
    rows = [[str(e.folder), str(e.videos), str(e.frames), "ok" if e.ok else f"DAMAGED ({e.affected} video(s))"] for e in entries]
    con = _console()
    _print_table(f"feature cache: {len(entries)} split folder(s)", ["split folder", "videos", "frames", "state"], rows, con)
    for e in entries:
        if not e.ok:
            con.print(f"[red]damaged[/] {e.problem_line()}", soft_wrap=True)
    bad = sum(not e.ok for e in entries)
    con.print(f"{bad} damaged split folder(s)" if bad else "every cached feature file matches its manifest")
    return 1 if bad else 0


def _render_results(results, con, title: str = "results on the dev split of the test dataset") -> None:
    from rich.table import Table

    table = Table(title=title)
    for col in ("task", "train -> test", "config", "PLCC", "SROCC", "MSE", "best epoch", "MLflow run id"):
        table.add_column(col, justify="right" if col in ("PLCC", "SROCC", "MSE", "best epoch") else "left")
    for r in results:
        m = r.metrics
        table.add_row(str(r.plan.task), r.plan.pair, r.config.name, f"{m['plcc']:.4f}", f"{m['srocc']:.4f}",
                      f"{m['mse']:.4f}", f"{r.best_epoch}/{r.epochs}", r.run_id)
    con.print(table)


def cmd_run(args) -> int:
    from mediaeval_mem.config import load_config
    from mediaeval_mem.experiments.runner import run_experiment

    cfg = load_config(args.config, args.set)
    con = _console()
    echo = lambda line: con.print(line, highlight=False)  # noqa: E731
    if args.refit:
        from mediaeval_mem.experiments.refit import run_refit

        result = run_refit(args.task, args.train, args.test, cfg, args.refit, args.data_root, not args.quiet, echo,
                           args.name)
    else:
        from mediaeval_mem.experiments.run_log import run_name

        name = args.name or run_name(cfg, f"{args.train}->{args.test}", args.set)
        result = run_experiment(args.task, args.train, args.test, cfg, args.data_root, progress=not args.quiet, echo=echo,
                                name=name)
    _render_results([result], con, "refit: trained on every labelled video; dev figures as logged" if args.refit else
                    "results on the dev split of the test dataset")
    con.print(f"logged to MLflow experiment '{result.experiment}', run {result.run_id}; browse with `mem ui`")
    return 0


def cmd_eval(args) -> int:
    from mediaeval_mem.experiments.evaluate import evaluate_run

    con = _console()
    result = evaluate_run(args.run_id, args.test, args.data_root, progress=not args.quiet,
                          echo=lambda line: con.print(line, highlight=False))
    _render_results([result], con, f"run {args.run_id}'s model on the {args.test} dev split, not trained again")
    con.print(f"logged to MLflow experiment '{result.experiment}', run {result.run_id}; browse with `mem ui`")
    return 0


def cmd_predict(args) -> int:
    from dataclasses import asdict
    from pathlib import Path

    from mediaeval_mem.core.io import atomic_write_text
    from mediaeval_mem.experiments.predict import predict_videos, write_scores
    from mediaeval_mem.features.options import ExtractOptions

    err = _console(stderr=True)
    given = {k: v for k, v in asdict(_extract_options(args)).items() if v != getattr(ExtractOptions, k)}  # the flags set
    result = predict_videos(args.run_id, [Path(p) for p in args.inputs], given, args.device, progress=not args.quiet,
                            echo=lambda line: err.print(line, highlight=False))
    for vid, reason in result.failed.items():
        err.print(f"[red]failed[/] {vid}: {reason}", soft_wrap=True)
    if args.out:
        import io

        buf = io.StringIO()
        write_scores(result, buf)
        atomic_write_text(Path(args.out), buf.getvalue())
        err.print(f"wrote {len(result.scores)} score(s) by run {result.run_id} ({result.config}) to {args.out}")
    else:
        write_scores(result, sys.stdout)
    return 1 if result.failed else 0


def cmd_cv(args) -> int:
    from mediaeval_mem.config import load_config
    from mediaeval_mem.experiments.cv import run_cv

    con = _console()
    cfg = load_config(args.config, args.set)
    r = run_cv(cfg, args.train, args.test, args.folds, tuple(args.seeds), args.data_root, args.with_dev,
               progress=not args.quiet, echo=lambda line: con.print(line, highlight=False), rerun=args.rerun,
               ray=_ray_options(args), group_by=args.group_by, repeats=args.repeats)
    rows = [[str(f.seed) + (f" r{f.repeat}" if f.repeat else ""), str(f.fold + 1), f"{f.metrics['srocc']:.4f}", f"{f.metrics['plcc']:.4f}", f"{f.metrics['mse']:.4f}",
             str(f.best_epoch), f.run_id[:12] + (" (done before)" if f.reused else "")] for f in r.folds]
    s = r.summary
    rows.append(["all", "mean ± sd", *(f"{s[f'cv_{m}_mean']:.4f} ± {s[f'cv_{m}_sd']:.4f}" for m in ("srocc", "plcc", "mse")),
                 f"median {r.refit_epochs}", ""])
    rows.append(["all", "pooled out-of-fold", *(f"{s[f'oof_{m}']:.4f} [{s[f'oof_{m}_ci_low']:.4f}, {s[f'oof_{m}_ci_high']:.4f}]"
                                               for m in ("srocc", "plcc", "mse")), "", ""])
    if "oof_srocc_repeats_mean" in s:
        rows.append(["all", f"{args.repeats} repeats", f"{s['oof_srocc_repeats_mean']:.4f} ± {s['oof_srocc_repeats_sd']:.4f}",
                     "", "", "", "pooled out-of-fold SROCC, mean ± sd over repeats"])
    grouped = f", grouped by {args.group_by}" if args.group_by else ""
    _print_table(f"{cfg.name}: {args.folds}-fold cross-validation{grouped} on {args.train} (95% bootstrap intervals)",
                 ["seed", "fold", "SROCC", "PLCC", "MSE", "best epoch", "MLflow run id"], rows, con)
    con.print(f"the fold models' mean on the {args.test or args.train} dev split: SROCC {s['dev_srocc']:.4f}, "
              f"PLCC {s['dev_plcc']:.4f}; parent run {r.parent_id} in '{r.experiment}' "
              f"(refit with `mem run ... --refit {r.parent_id}`)")
    return 0


def cmd_sweep(args) -> int:
    from mediaeval_mem.experiments.sweep import fmt_value, load_search, run_sweep

    con = _console()
    search = load_search(args.search, tuple(args.set))
    r = run_sweep(search, args.data_root, _ray_options(args), args.out, progress=not args.quiet,
                  echo=lambda line: con.print(line, highlight=False))
    keys = list(search.space)
    rows = [[*(fmt_value(t.point[k]) for k in keys), f"{t.select:.4f}", "-" if t.dev_srocc is None else f"{t.dev_srocc:.4f}",
             str(t.epochs), "yes" if t.stopped_early else "no", (t.run_id or t.error or "-") + (" (best)" if t is r.best else "")]
            for t in r.trials]
    _print_table(f"sweep {r.name}: {len(r.trials)} trial(s), ASHA on {r.metric}", [*keys, f"best {r.metric}", "dev SROCC", "epochs",
                 "stopped early", "MLflow run id"], rows, con)
    from shlex import quote  # a path with spaces still pastes as one argument

    root = f" --data-root {quote(str(args.data_root))}" if args.data_root else ""  # the same data as the sweep's
    con.print(f"best config ({r.metric} {r.best.select:.4f}, run {r.best.run_id}) written to {r.best_path}: "
              f"mem run --config {quote(str(r.best_path))} --train {search.train} --test {search.test}{root}",
              soft_wrap=True, markup=False)
    return 0


def cmd_ensemble(args) -> int:
    from mediaeval_mem.experiments.ensemble import ensemble

    con = _console()
    r = ensemble(args.run_ids, args.method)
    rows = [[rid, f"{s:.4f}", f"{w:.3f}"] for rid, s, w in zip(r.members, r.member_srocc, r.weights)]
    rows.append([f"ensemble ({r.method}) {r.run_id}", f"{r.metrics['srocc']:.4f} [{r.ci[0]:.4f}, {r.ci[1]:.4f}]", "1"])
    _print_table("dev SROCC of the members and of their ensemble", ["run", "dev SROCC", "weight"], rows, con)
    if r.method == "weighted":
        con.print(f"weights fit on {r.weights_fit_on}")
    con.print(f"logged as run {r.run_id}; package it with `mem package-submission ... {r.run_id}`")
    return 0


def cmd_describe(args) -> int:
    from mediaeval_mem.config import load_config
    from mediaeval_mem.experiments.describe import describe

    for line in describe(load_config(args.config, args.set), args.in_dim or None):
        print(line)
    return 0


def cmd_ui(args) -> int:
    from mediaeval_mem.core.errors import MemError
    from mediaeval_mem.core.tied import port_taken, run_tied
    from mediaeval_mem.tracking import UI_ENV, client, tracking_uri, ui_command

    if port_taken("127.0.0.1", args.port):
        raise MemError(f"port {args.port} on 127.0.0.1 is already in use (another `mem ui`?): stop what serves it, "
                       f"or pick another port with --port")
    client()  # set the store up (and mark runs of dead processes) before the server opens it
    print(f"MLflow UI for {tracking_uri()} at http://127.0.0.1:{args.port} (Ctrl-C to stop)", flush=True)
    try:
        return run_tied(ui_command(args.port), UI_ENV)  # the server's processes end with this one, however it ends
    except KeyboardInterrupt:  # Ctrl-C, or kill PID
        print("MLflow UI stopped", file=sys.stderr)
        return 0


def cmd_package(args) -> int:
    from mediaeval_mem.submission import load_submission_config, package_submission

    cfg = load_submission_config(args.config)
    packaged = package_submission(args.team, args.subtask, args.run_ids, args.data_root, cfg)
    for p in packaged.written:
        print(f"wrote {p}")
    for p in packaged.removed:
        print(f"removed {p}: a run file of an earlier packaging that this manifest does not list")
    return 0


def cmd_season(args) -> int:
    from mediaeval_mem.experiments.season import dry_run, load_plan, run_season
    from mediaeval_mem.submission import package_submission

    con = _console()
    plan = load_plan(args.plan)
    if args.dry_run:
        rows = [[line.name, line.kind, "would run" if line.action == "run" else "skipped", line.why]
                for line in dry_run(plan, args.data_root)]
        _print_table(f"season {plan.file.name}: the stages a run would make (nothing ran)", ["stage", "kind", "now", "why"],
                     rows, con)
        return 0

    def pack(team, subtask, run_ids, data_root):
        return package_submission(team, subtask, run_ids, data_root).written

    r = run_season(plan, args.data_root, pack, progress=not args.quiet, echo=lambda line: con.print(line, highlight=False),
                   ray=_ray_options(args))
    fmt = lambda x: "-" if x is None else f"{x:.4f}"  # noqa: E731
    rows = [[s.name, s.kind, s.run_id or f"{len(s.files) - 1} run file(s)", fmt(s.dev_srocc), fmt(s.oof_srocc),
             f"ran ({s.seconds:.0f} s)" if s.ran else "done before"] for s in r.stages]
    _print_table(f"season {r.name}", ["stage", "kind", "MLflow run id", "dev SROCC", "OOF SROCC", "now"], rows, con)
    for p in r.files:
        con.print(f"packaged {p}", soft_wrap=True)
    con.print(f"state in {r.state}; the same command again skips what is done", soft_wrap=True)
    return 0


def cmd_grid(args) -> int:
    from mediaeval_mem.experiments.grid import load_grid, run_grid, table_rows
    from mediaeval_mem.experiments.profiles import choose_profile

    con = _console()
    grid = load_grid(args.grid)
    chosen = choose_profile(args.profile, args.data_root)
    if chosen.note:
        con.print(chosen.note)
    rows = run_grid(grid, args.data_root, chosen.profile, tuple(args.set), progress=not args.quiet,
                    echo=lambda line: con.print(line, highlight=False), rerun=args.rerun, ray=_ray_options(args))
    _print_table(grid.title + (f" (profile {chosen.path})" if chosen.path else ""), *table_rows(grid, rows), con)
    failed = [f for r in rows for f in r.failed]
    if failed:
        con.print(f"[red]{len(failed)} run(s) failed[/]; fix the cause and run the same command again to finish them")
    return 1 if failed else 0


def _print_table(title: str, header: list[str], rows: list[list[str]], con) -> None:
    from rich.table import Table

    table = Table(title=title)
    for h in header:
        table.add_column(h, overflow="fold")
    for r in rows:
        table.add_row(*r)
    con.print(table)


def cmd_results(args) -> int:
    from mediaeval_mem.experiments.results import collect_results, format_results, results_table

    rows = collect_results(args.experiment or None, ci=not args.no_ci, sort=args.sort)
    if not rows:
        print("no finished runs with dev metrics in this MLflow store yet: `mem run` makes some")
        return 0
    if args.format == "table":
        _print_table(f"{len(rows)} run(s), sorted by {args.sort}", *results_table(rows), _console())
    else:
        sys.stdout.write(format_results(rows, args.format))
    return 0


def cmd_report(args) -> int:
    from pathlib import Path

    from mediaeval_mem.experiments.report import make_report

    for p in make_report(args.run_ids, Path(args.out), args.data_root, args.worst):
        print(f"wrote {p}")
    return 0


def cmd_demo(args) -> int:
    """Generate the demo data, check it, extract features, train the paper's model on every pair, add captions, package."""
    from mediaeval_mem.core.paths import submissions_dir
    from mediaeval_mem.datasets.check import render_check
    from mediaeval_mem.experiments import demo
    from mediaeval_mem.submission import package_submission

    con, progress = _console(), not args.quiet
    con.rule("1/7 generate demo data")
    demo.make_demo_data(args.data_root, seed=args.seed, scale=args.scale)
    con.rule("2/7 check it")
    for index in demo.check_demo_data(args.data_root):
        render_check(index, con)
        if index.problems:
            return 1
    cfg = demo.demo_config(demo.VIDEO_CONFIG, args.seed)
    con.rule(f"3/7 extract {cfg.model.streams[0].encoder} frame features")
    for report in demo.extract_demo_features(cfg, args.data_root, progress):
        _render_extract(report, con)
        if report.failed:
            return 1
    con.rule("4/7 train the paper's model: task 1, and task 2 both ways")
    results = demo.train_demo_pairs(cfg, args.data_root, progress, con.print,
                                    starting=lambda task, train, test: con.print(f"[bold]task {task}: train {train}, test {test}[/]"))
    _render_results(results, con)
    con.rule("5/7 add the captions: task 1 on captions alone, and on video + captions")
    _render_results(demo.train_with_captions(results[0], args.seed, args.data_root, progress, con.print), con,
                    "video, captions, and both: task 1, on the dev split")
    con.rule(f"6/7 the commercials: pictures, sound, and both, {demo.COMMERCIALS_FOLDS} folds grouped by "
             f"{demo.COMMERCIALS_GROUPS}")
    _render_cv_rows(demo.cross_validate_commercials(args.seed, args.data_root, progress, con.print), con)
    con.rule("7/7 package a submission")
    for subtask, run_ids in demo.submission_runs(results).items():
        for p in package_submission("demo", subtask, run_ids, args.data_root).written:
            con.print(f"wrote {p}")
    con.print(
        f"\nnext{_activate_hint()}: `mem ui` to browse the runs in MLflow; the run files are in {submissions_dir()}/; "
        f"`mem describe configs/paper-best.yaml` shows the paper's model; `mem run --task 2 --train videomem "
        f"--test memento10k --config configs/demo.yaml --data-root {args.data_root}` trains one pair."
    )
    return 0


def _render_cv_rows(rows, con) -> None:
    """One line per cross-validated config: pooled out-of-fold SROCC with its interval, PLCC, the folds' SROCC."""
    from rich.table import Table

    table = Table(title="commercials, grouped cross-validation: pooled out-of-fold figures")
    for col in ("config", "OOF SROCC [95% CI]", "OOF PLCC", "fold SROCC mean ± sd", "cv run"):
        table.add_column(col)
    for name, r in rows:
        s = r.summary
        table.add_row(name, f"{s['oof_srocc']:.4f} [{s['oof_srocc_ci_low']:.4f}, {s['oof_srocc_ci_high']:.4f}]",
                      f"{s['oof_plcc']:.4f}", f"{s['cv_srocc_mean']:.4f} ± {s['cv_srocc_sd']:.4f}", r.parent_id)
    con.print(table)


def _activate_hint() -> str:
    """' (first ...activate ...)' where this `mem` is not the one on the PATH (`make demo` runs .venv/bin/mem), else ''."""
    import os
    import shutil
    from pathlib import Path

    here = Path(sys.executable).parent  # the environment's bin folder (not resolved: a venv's python is a link)
    found = shutil.which("mem")
    if (found and Path(found).parent == here) or not (here / "activate").is_file():  # on the PATH, or no venv
        return ""
    rel = os.path.relpath(here)
    return f" (first `source {rel if not rel.startswith('..') else here}/activate`: it puts mem on the PATH)"


# --------------------------------------------------------------------------- parser
def _extract_options(args):
    """ExtractOptions from the flags that mirror its fields."""
    from dataclasses import fields

    from mediaeval_mem.core.errors import ConfigError
    from mediaeval_mem.features.options import ExtractOptions

    try:
        return ExtractOptions(**{f.name: getattr(args, f.name) for f in fields(ExtractOptions)})
    except ConfigError as e:  # "batch_size must be >= 1" -> "--batch-size must be >= 1"
        name, _, rest = str(e).partition(" ")
        raise ConfigError(f"--{name.replace('_', '-')} {rest}") from None


def _text_source(args):
    """The --source flags as a text source (None: the dataset's captions, the default)."""
    from mediaeval_mem.core.errors import ConfigError
    from mediaeval_mem.features.captions import stream_source

    from mediaeval_mem.core.schema import override

    given = {k: getattr(args, a) for k, a in (("transcriber", "transcriber"), ("weights", "transcriber_weights"),
                                               ("language", "language")) if getattr(args, a) is not None}
    if given and args.source == "captions":
        raise ConfigError(f"--{next(iter(given)).replace('weights', 'transcriber-weights')} is for --source speech")
    if args.source_arg and args.source == "captions":
        raise ConfigError("--source-arg is for --source speech or generated")
    given = override(given, args.source_arg, "--source-arg")  # KEY=VALUE, as a stream's source_args
    return stream_source(argparse.Namespace(source=args.source, source_args=given))


def _ray_options(args):
    """The --ray flags as the Ray module's options (None without --ray): the one place they become an object.
    `--ray-gpus` left out (None) is the cluster's default, decided in core/cluster.py `gpus_each`."""
    if args.ray is None:
        return None
    from mediaeval_mem.core.cluster import RayOptions

    return RayOptions(args.ray, cpus=args.ray_cpus, gpus=args.ray_gpus, workers=getattr(args, "ray_workers", 2))


def _shared() -> dict[str, argparse.ArgumentParser]:
    """Parent parsers for options several commands share: one name, one meaning, everywhere."""
    data = argparse.ArgumentParser(add_help=False)
    data.add_argument("--data-root", help="folder holding memento10k/, videomem/ and datasets.yaml (default: $MEM_DATA_ROOT or data/)")
    demo = argparse.ArgumentParser(add_help=False)
    demo.add_argument("--data-root", default=DEMO_ROOT, help=f"where the demo data is (default {DEMO_ROOT})")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--scale", type=float, default=1.0, help="multiply every split's size (e.g. 0.1 for a tiny set)")
    quiet = argparse.ArgumentParser(add_help=False)
    quiet.add_argument("--quiet", action="store_true", help="no progress output")
    config = argparse.ArgumentParser(add_help=False)
    config.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config field, e.g. train.epochs=20 or model.streams.0.sampling=uniform:16 (repeatable)")
    ray = argparse.ArgumentParser(add_help=False)  # grid, cv, sweep: a unit is a run; extract: an encoder actor
    ray.add_argument("--ray", nargs="?", const="local", metavar="ADDRESS",
                     help="run on Ray: alone, a Ray started on this machine; with an address (HEAD:6379, auto, "
                          "ray://head:10001), that cluster, whose nodes all see the data and runs/ (needs pip install -e '.[ray]')")
    ray.add_argument("--ray-cpus", type=float, default=1, help="with --ray: CPUs per run, or per encoder actor of mem "
                     "extract (default 1)")
    ray.add_argument("--ray-gpus", type=float, help="with --ray: GPUs per run or encoder actor, a fraction shares a card "
                     "(default: the cluster's; 0.25 per run where it has GPUs, 1 per actor where it has a GPU per "
                     "actor, a share where fewer; else 0)")
    extract = argparse.ArgumentParser(add_help=False)
    from dataclasses import fields

    from mediaeval_mem.features.options import HELP, ExtractOptions

    for f in fields(ExtractOptions):  # the defaults come from the dataclass
        flag = "--" + f.name.replace("_", "-")
        extract.add_argument(flag, dest=f.name, type=type(f.default), default=f.default, help=f"{HELP[f.name]} (default {f.default})")
    extract.add_argument("--device", default="auto", help="auto (cuda if present), cpu, cuda, cuda:N")
    return {"data": data, "demo": demo, "quiet": quiet, "config": config, "extract": extract, "ray": ray}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mem", description="MediaEval Predicting Media Memorability harness")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sh = _shared()

    p = sub.add_parser("demo", parents=[sh["demo"], sh["quiet"]],
                       help="the whole pipeline on generated data: check, extract, train 3 pairs, package (minutes on 2 CPU cores)")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("demo-data", parents=[sh["demo"]], help="generate small synthetic Memento10k/VideoMem stand-ins (MediaEval layout)")
    p.add_argument("--force", action="store_true", help="delete and regenerate existing demo datasets")
    p.set_defaults(func=cmd_demo_data)

    data = sub.add_parser("data", help="dataset tools").add_subparsers(dest="data_command", required=True, metavar="ACTION")
    p = data.add_parser("check", parents=[sh["data"]], help="per split: videos, missing files, score range, layout; exit 1 on any problem")
    p.add_argument("datasets", nargs="*", metavar="DATASET",
                   help="memento10k, videomem, or a name declared in <data root>/datasets.yaml (default: both built-ins, "
                        "or, where datasets are declared, the built-ins found and every declared one)")
    p.add_argument("--target", help="score to read: short-term (normalised, default), short-term-raw, long-term")
    p.add_argument("--config", help="a run config whose data section applies (its declared datasets, target, dev split)")
    p.set_defaults(func=cmd_data_check)

    p = sub.add_parser("extract", parents=[sh["data"], sh["extract"], sh["quiet"], sh["ray"]], help="encode videos into cached frame features (resumable)")
    p.add_argument("--dataset", required=True, help="memento10k, videomem, or a name declared in <data root>/datasets.yaml")
    p.add_argument("--encoder", required=True, help="a registered encoder, e.g. clip-vit-b32, clip-vit-l14-336, clip-demo, i3d-kinetics, "
                   "clip-vit-l14-336-text (captions), precomputed (with --weights FOLDER)")
    p.add_argument("--weights", help="weights: a save_pretrained directory, a hub id, a checkpoint file, or 'random'")
    p.add_argument("--sampling", default="all",
                   help="all (default, the paper's), uniform:N (the centre frame of N segments), or segments:N "
                        "(extracts every frame: the same cache entry as all; a run picks N of them per video as it cuts batches)")
    p.add_argument("--splits", default="train,dev,test", help="comma-separated (default train,dev,test)")
    p.add_argument("--ray-workers", type=int, default=2, help="with --ray: encoder actors, each holding the model (default 2)")
    p.add_argument("--source", default="captions", help="caption encoders: where the texts come from: captions (the "
                   "dataset's, default), speech (each video's transcript, made once and cached) or generated (a "
                   "caption per video by a VLM, made once and cached: mem captions generate)")
    p.add_argument("--source-arg", action="append", default=[], metavar="KEY=VALUE",
                   help="a setting of the text source, as a stream's source_args, e.g. model=qwen2.5-vl-demo or "
                        "max_new_tokens=32 for --source generated (repeatable)")
    p.add_argument("--transcriber", help="with --source speech: whisper-large-v3-turbo (default), whisper-small, "
                   "whisper-demo (tiny, seeded)")
    p.add_argument("--transcriber-weights", help="with --source speech: the transcriber's save_pretrained folder or hub id")
    p.add_argument("--language", help="with --source speech: a Whisper language code (en, de, ...); default: detected")
    p.set_defaults(func=cmd_extract)

    captions = sub.add_parser("captions", help="captions written by a vision-language model").add_subparsers(
        dest="captions_command", required=True, metavar="ACTION")
    p = captions.add_parser("generate", parents=[sh["data"], sh["quiet"]],
                            help="a caption per video of a dataset by a VLM (greedy, cached): what `source: generated` "
                                 "caption streams read")
    p.add_argument("--dataset", required=True, help="memento10k, videomem, or a name declared in <data root>/datasets.yaml")
    p.add_argument("--model", help="the VLM: qwen2.5-vl-3b (default), qwen2.5-vl-7b, qwen2.5-vl-demo (tiny, seeded)")
    p.add_argument("--weights", help="the VLM's save_pretrained folder, a hub id, or 'random' (default: the model's own)")
    p.add_argument("--prompt", help="what the VLM is asked (default: 'Describe this video in one sentence.')")
    p.add_argument("--sampling", help="the frames it reads: uniform:N (default uniform:8) or all")
    p.add_argument("--max-new-tokens", type=int, help="the longest caption, in tokens (default 48)")
    p.add_argument("--splits", help="comma-separated (default: every split)")
    p.add_argument("--device", default="auto", help="auto (cuda if present), cpu, cuda, cuda:N")
    p.set_defaults(func=cmd_captions_generate)

    cache = sub.add_parser("cache", help="feature cache tools").add_subparsers(dest="cache_command", required=True, metavar="ACTION")
    p = cache.add_parser("check", help="check every cached feature file against its manifest (size, CRC-32); exit 1 on damage")
    p.set_defaults(func=cmd_cache_check)

    p = sub.add_parser("run", parents=[sh["data"], sh["config"], sh["quiet"]],
                       help="train and evaluate one task pair, predict its test split, log to MLflow")
    p.add_argument("--task", type=int, choices=(0, 1, 2),
                   help="1: Memento10k; 2: train on one dataset, test on the other; 0: reference, no subtask (same-dataset "
                        "VideoMem, any declared dataset). Default: the pair's own")
    p.add_argument("--train", required=True, help="training dataset: memento10k, videomem, or a declared name")
    p.add_argument("--test", required=True, help="dataset evaluated (dev) and predicted (test)")
    p.add_argument("--config", help="YAML config (default: the paper's model and recipe)")
    p.add_argument("--refit", metavar="RUN_ID", help="train on every labelled video of --train (train + dev) for the "
                   "epochs that RUN_ID (a run, or a `mem cv` parent) selected, no early stopping; for the submission")
    p.add_argument("--name", help="the MLflow run name (default: config, pair, seed and the --set overrides, "
                   "e.g. 'demo memento10k->memento10k seed0 model.head=ridge')")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("grid", parents=[sh["data"], sh["config"], sh["quiet"], sh["ray"]],
                       help="run every config x pair x seed of a grid file (resumable), print the paper's table")
    p.add_argument("grid", help="grid file, e.g. configs/grids/table1.yaml")
    p.add_argument("--profile", help="stand-ins for this machine (default on generated demo data: configs/profiles/demo.yaml; 'none' for no profile)")
    p.add_argument("--rerun", action="store_true", help="run everything again, even runs finished before (e.g. after a code change)")
    p.set_defaults(func=cmd_grid)

    p = sub.add_parser("season", parents=[sh["data"], sh["quiet"], sh["ray"]],
                       help="a season's plan (cross-validations, baselines, ensemble, refit, run files) run in order, "
                            "each stage remembered: the same command again resumes")
    p.add_argument("plan", help="season plan file, e.g. configs/seasons/demo.yaml")
    p.add_argument("--dry-run", action="store_true", help="print the stages and which would run or be skipped; run nothing")
    p.set_defaults(func=cmd_season)

    p = sub.add_parser("results", help="MLflow runs side by side with a bootstrap CI on SROCC")
    p.add_argument("--experiment", action="append", default=[], help="experiment name (repeatable; default all)")
    p.add_argument("--format", choices=("table", "csv", "markdown"), default="table")
    p.add_argument("--sort", default="srocc", help="srocc (default), plcc, mse, config, pair, kind, name")
    p.add_argument("--no-ci", action="store_true", help="skip the bootstrap (faster)")
    p.set_defaults(func=cmd_results)

    p = sub.add_parser("report", parents=[sh["data"]], help="figures for runs: truth vs prediction, and the worst predictions with a frame each")
    p.add_argument("run_ids", nargs="+", metavar="RUN_ID", help="MLflow run ids or unique prefixes")
    p.add_argument("--out", default="runs/reports", help="folder for the PNGs (default runs/reports)")
    p.add_argument("--worst", type=int, default=8, help="how many worst predictions to show (default 8)")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("eval", parents=[sh["data"], sh["quiet"]],
                       help="score a trained run's model on another dataset (dev metrics, test predictions), no training; "
                            "logged as a run of its own")
    p.add_argument("run_id", metavar="RUN_ID", help="a finished `mem run`, refit, sweep trial, cv fold, or a cv parent "
                   "(its fold models averaged)")
    p.add_argument("--test", required=True, metavar="DATASET",
                   help="dataset evaluated (dev) and predicted (test): memento10k, videomem, or a declared name")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("predict", parents=[sh["extract"], sh["quiet"]],
                       help="score any videos (files or folders) with a trained run's encoders and model; CSV out")
    p.add_argument("run_id", metavar="RUN_ID", help="an MLflow run id or a unique prefix of it, from `mem run` or `mem results`")
    p.add_argument("inputs", nargs="+", metavar="VIDEO_OR_FOLDER", help="video files and/or folders searched recursively")
    p.add_argument("--out", help="CSV to write (video_id, path, score, run_id); default: standard output")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("cv", parents=[sh["data"], sh["config"], sh["quiet"], sh["ray"]],
                       help="K-fold cross-validation (stratified, seeded, resumable) with per-fold and pooled figures")
    p.add_argument("config", help="YAML config")
    p.add_argument("--train", required=True, help="the dataset whose labelled videos are cross-validated")
    p.add_argument("--test", help="the dataset whose dev and test splits the fold models also predict (default --train)")
    p.add_argument("--folds", type=int, default=5, help="K (default 5)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0], help="fold draws and training seeds (default 0)")
    p.add_argument("--group-by", metavar="COLUMN", help="a column of the training dataset's CSV (channel, brand): "
                   "no group is split across folds (StratifiedGroupKFold on the score's quintiles)")
    p.add_argument("--repeats", type=int, default=1, help="fold R times per seed with distinct foldings; reports the "
                   "pooled out-of-fold SROCC's mean ± sd over repeats (default 1)")
    p.add_argument("--with-dev", action="store_true", help="fold the training dataset's dev split in too (cross-dataset pairs)")
    p.add_argument("--rerun", action="store_true", help="train every fold again, even those finished before")
    p.set_defaults(func=cmd_cv)

    p = sub.add_parser("sweep", parents=[sh["data"], sh["config"], sh["quiet"], sh["ray"]],
                       help="search config fields on Ray Tune (seeded, ASHA early stopping), write the best config; "
                            "always on Ray (a local one without --ray ADDRESS), each trial a run")
    p.add_argument("search", help="search file: base config, pair, trials, space of dotted config fields (see README)")
    p.add_argument("--out", help="where the best config goes (default runs/sweeps/<name>/best.yaml)")
    p.set_defaults(func=cmd_sweep)

    p = sub.add_parser("ensemble", help="combine finished runs of one pair (mean, rank-mean, weighted) into a run of its own")
    p.add_argument("run_ids", nargs="+", metavar="RUN_ID", help="MLflow run ids or unique prefixes (runs, cv parents, refits, ensembles)")
    p.add_argument("--method", default="mean", choices=("mean", "rank-mean", "weighted"),
                   help="mean (default), rank-mean, or weighted (weights fit on out-of-fold or cross-fitted dev predictions)")
    p.set_defaults(func=cmd_ensemble)

    p = sub.add_parser("describe", parents=[sh["config"]], help="print a config's streams, widths and trainable parameters")
    p.add_argument("config", nargs="?", help="YAML config (default: the paper's model)")
    p.add_argument("--in-dim", type=int, action="append", default=[], metavar="D",
                   help="feature width of a stream (repeat once per stream; default: the encoder architecture's)")
    p.set_defaults(func=cmd_describe)

    p = sub.add_parser("ui", help="start the MLflow UI on 127.0.0.1 against the harness's store")
    p.add_argument("--port", type=int, default=5000)
    p.set_defaults(func=cmd_ui)

    p = sub.add_parser("package-submission", parents=[sh["data"]], help="validate runs' test predictions and write the challenge's CSVs")
    p.add_argument("--team", required=True)
    p.add_argument("--subtask", type=int, required=True, choices=(1, 2))
    p.add_argument("run_ids", nargs="+", metavar="RUN_ID", help="MLflow run ids or unique prefixes, in run order (at most 5)")
    p.add_argument("--config", help="YAML with the run files' filename template, columns and max_runs (see submission.py)")
    p.set_defaults(func=cmd_package)
    _add_threads(parser)
    return parser


def _add_threads(parser: argparse.ArgumentParser) -> None:
    """--threads on every command (core/threads.py): one flag, one meaning, wherever torch computes."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                if any(isinstance(a, argparse._SubParsersAction) for a in sub._actions):
                    _add_threads(sub)
                else:
                    sub.add_argument("--threads", type=int, metavar="N",
                                     help="threads for every stage (default: one to train the small models, every "
                                          "usable core to encode; also MEM_THREADS)")


# What Ctrl-C (or SIGTERM) leaves behind, per command. Training on cached features keeps no checkpoint: only
# extraction (per video) and the I3D fine-tuning (per epoch, runs/finetune/) resume where they stopped.
_RESTARTS = "training starts again at epoch 1 (only a fine-tuned I3D resumes from its last finished epoch)"
INTERRUPTED = {
    "extract": "every video stored so far is kept; run the same command again to extract the rest",
    "captions": "every caption written so far is kept; run the same command again to write the rest",
    "run": f"the features extracted so far are kept (an MLflow run already started is marked KILLED); the same "
           f"command again extracts only what is missing, but the model's {_RESTARTS}",
    "grid": f"finished runs and extracted features are kept; the same command again runs only the runs that did not "
            f"finish, whose {_RESTARTS}",
    "cv": f"finished folds and extracted features are kept; the same command again runs only the folds that did not "
          f"finish, whose {_RESTARTS}",
    "season": "every stage that finished is recorded in the state file, and a cross-validation's finished folds are "
              "kept; the same command again skips them and resumes where it stopped",
    "sweep": "extracted features and the trials' MLflow runs are kept; the same command again runs every trial anew",
    "demo": "the demo data and the extracted features are kept; `mem demo` again skips them and trains its models anew",
}


def _ray_then_path(argv: list[str]) -> list[str]:
    """`mem grid --ray configs/grids/x.yaml`: argparse would take the file for --ray's address (and then miss the
    grid); a YAML file or an existing file right after a bare --ray is the positional argument, --ray a local Ray."""
    from pathlib import Path

    out = list(argv)
    if out and out[0] in ("grid", "cv", "sweep"):
        for i, tok in enumerate(out[:-1]):
            nxt = out[i + 1]
            if tok == "--ray" and (nxt.endswith((".yaml", ".yml")) or Path(nxt).is_file()):
                out[i] = "--ray=local"
    return out


def main(argv: list[str] | None = None) -> int:
    """Entry point of `mem`; returns the exit status (tests call main([...]) in-process)."""
    from mediaeval_mem.core.errors import MemError
    from mediaeval_mem.core.process import one_malloc_arena, sigterm_as_interrupt
    from mediaeval_mem.core.threads import passive_waiting, threads_requested

    args = build_parser().parse_args(_ray_then_path(sys.argv[1:] if argv is None else argv))
    one_malloc_arena()  # before torch starts its threads: extraction's peak memory stays flat
    passive_waiting()  # before torch loads OpenMP: concurrent mem processes share cores instead of spinning
    if getattr(args, "threads", None) is not None and args.threads < 1:
        print("error: --threads must be >= 1", file=sys.stderr)
        return 2
    previous = sigterm_as_interrupt()
    try:
        from mediaeval_mem.plugins import load_plugins

        load_plugins()  # installed plugins (entry points): their names work in every command
        with threads_requested(getattr(args, "threads", None)):
            return args.func(args)
    except MemError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # output piped into `head` and the like: stop quietly (Python's own advice)
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except OSError as e:  # the machine's doing (a full disk, a read-only folder, a vanished mount): one line
        from mediaeval_mem.core.io import NO_SPACE, write_error

        where = e.filename or "."
        line = write_error(e, where) if e.errno in NO_SPACE else f"{where}: {e.strerror or e}"
        print(f"error: {line}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        kept = INTERRUPTED.get(args.command, "nothing was left half-written; run the same command again")
        print(f"interrupted: {kept}", file=sys.stderr)
        return 130
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    raise SystemExit(main())
