"""What a user met following the README end to end: silences, the plugin example, misleading lines, leaks."""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys

import pytest
from conftest import REPO

from mediaeval_mem.cli import main

DEMO = str(REPO / "configs" / "demo.yaml")


def _mem(args: list[str], cwd=None, **kw) -> subprocess.CompletedProcess:
    """`mem ARGS` as a real process importing this checkout."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "mediaeval_mem.cli", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300, check=False, **kw)


def _readme_section(title: str) -> str:
    text = (REPO / "README.md").read_text()
    start = text.index(f"\n## {title}")
    return text[start : text.index("\n## ", start + 1)]


def _blocks(section: str, lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", section, re.DOTALL)


# --------------------------------------------------------------------------- 1. progress on every long stage
def test_run_says_what_it_does_before_and_during_training_and_quiet_silences_it(demo_root, capsys):
    argv = ["run", "--train", "memento10k", "--test", "memento10k", "--config", DEMO, "--data-root", str(demo_root),
            "--set", "train.epochs=2", "--set", "train.patience=2"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    before, epoch1 = out.index("reading the cached features"), out.index("epoch   1")
    assert before < out.index("training on ") < epoch1 < out.index("epoch   2")
    assert main(argv + ["--quiet"]) == 0
    quiet = capsys.readouterr().out
    assert "reading the cached features" not in quiet and "epoch   1" not in quiet and "MLflow run id" in quiet
    # the demo data at a tenth: 4 dev videos, a holdout of 1: one warning line, even with --quiet
    quiet = " ".join(quiet.split())  # the console wraps long lines
    assert quiet.count("warning: too few videos") == 1
    assert "the reported split (memento10k dev) has 4" in quiet and "the selection split (a holdout of memento10k" in quiet


def test_cv_draws_a_bar_per_fold(demo_root, capsys):
    argv = ["cv", DEMO, "--train", "memento10k", "--folds", "2", "--data-root", str(demo_root),
            "--set", "train.epochs=2", "--set", "train.patience=2", "--set", "train.holdout_fraction=0.3"]
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "seed 0 fold 1/2 epochs" in err and "seed 0 fold 2/2 epochs" in err
    assert main(argv + ["--quiet", "--rerun"]) == 0
    assert "fold 1/2 epochs" not in capsys.readouterr().err


# --------------------------------------------------------------------------- 3. the README's plugin example, verbatim
def test_readme_plugin_example_runs_as_written(demo_root, tmp_path):
    """The README's files are the shipped ones, and its commands run as written from a checkout with data/demo."""
    section = _readme_section("Your own parts: plugins")
    code, config = _blocks(section, "python")[0], _blocks(section, "yaml")[0]
    assert code == (REPO / "examples" / "my_lab" / "parts.py").read_text()
    assert config == (REPO / "examples" / "lab.yaml").read_text()
    (tmp_path / "examples").symlink_to(REPO / "examples")  # a checkout: examples/ and the demo data under data/demo
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "demo").symlink_to(demo_root)
    commands = [line for line in _blocks(section, "bash")[0].splitlines() if line.startswith("mem ")]
    assert len(commands) == 2
    said = []
    for line in commands:
        done = _mem(shlex.split(line)[1:], cwd=tmp_path)
        assert done.returncode == 0, (line, done.stderr)
        said.append(done.stdout)
    assert "lab-max" in said[0]
    # the module form: importable once examples/ is on the path, as the README says; else one line saying so
    module = tmp_path / "module.yaml"
    module.write_text(config.replace("plugins: [my_lab/parts.py]", "plugins: [my_lab.parts]"))
    missing = _mem(["describe", str(module)], cwd=tmp_path)
    assert missing.returncode == 2 and missing.stderr.count("\n") == 1
    assert "No module named 'my_lab': put the folder holding my_lab/ on PYTHONPATH" in missing.stderr
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}examples"}
    found = subprocess.run([sys.executable, "-m", "mediaeval_mem.cli", "describe", str(module)], cwd=tmp_path, env=env,
                           capture_output=True, text=True, timeout=300, check=False)
    assert found.returncode == 0 and "lab-max" in found.stdout, found.stderr


# --------------------------------------------------------------------------- 4. paper cuts
def test_missing_weights_say_how_each_command_takes_them(demo_root, capsys):
    argv = ["run", "--train", "memento10k", "--test", "memento10k", "--config", DEMO, "--data-root", str(demo_root),
            "--set", "model.streams.0.encoder=clip-vit-b32", "--quiet"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "hf download openai/clip-vit-base-patch32" in err
    assert "`weights: DIR` in the run config (mem run, grid, cv)" in err and "`--weights DIR` to mem extract" in err
    assert "pass --weights" not in err


def test_a_caption_stream_is_described_and_tabled_per_caption(demo_root, capsys):
    assert main(["describe", str(REPO / "configs" / "demo-captions.yaml")]) == 0
    out = capsys.readouterr().out
    assert "clip-demo-text: one 64-d vector per caption, frozen" in out and "per frame" not in out
    assert main(["extract", "--dataset", "memento10k", "--encoder", "clip-demo-text", "--splits", "dev",
                 "--data-root", str(demo_root), "--quiet"]) == 0
    table = capsys.readouterr().out
    assert "captions/s" in table and "frames" not in table


def test_ray_before_the_grid_file_takes_it_as_the_grid(tmp_path, capsys):
    missing = tmp_path / "nope.yaml"
    assert main(["grid", "--ray", str(missing)]) == 2  # read as the grid (not found), not as a Ray address
    assert f"{missing}" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # an address still is one: the grid is then missing, as argparse says
        main(["grid", "--ray", "head:6379"])


def test_a_broken_video_fails_in_one_line_of_ours(demo_copy, runs_dir):
    video = demo_copy / "memento10k" / "dev_set" / "Videos" / "00013.mp4"
    video.write_bytes(os.urandom(5000))
    done = _mem(["extract", "--dataset", "memento10k", "--encoder", "clip-demo", "--splits", "dev",
                 "--sampling", "uniform:2", "--data-root", str(demo_copy), "--quiet"])
    assert done.returncode == 1
    both = done.stdout + done.stderr
    assert "failed dev/13: " in both and "00013.mp4: cannot decode" in both.replace("\n", "")
    assert "video_reader.cc" not in both and "moov atom" not in both, both


def test_ctrl_c_in_mem_run_says_training_restarts(demo_root):
    """A real SIGINT during training: the line says what is kept and that the model's training starts over."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    argv = [sys.executable, "-m", "mediaeval_mem.cli", "run", "--train", "memento10k", "--test", "memento10k",
            "--config", DEMO, "--data-root", str(demo_root), "--set", "train.epochs=500", "--set", "train.patience=500"]
    # SIGINT's default in the child, whatever this process inherited (a background job starts with it ignored)
    with subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL)) as proc:
        for line in proc.stdout:
            if line.startswith("epoch   2"):
                proc.send_signal(signal.SIGINT)
                break
        err = proc.stderr.read()
        assert proc.wait(timeout=120) == 130
    assert "interrupted: the features extracted so far are kept" in err
    assert "the model's training starts again at epoch 1" in err and "run the same command again to resume" not in err



def test_demo_prints_every_epoch_of_its_trainings(demo_copy, capsys):
    """`mem demo` at a tenth of its data: every training says what it does before epoch 1 and prints its epochs."""
    assert main(["demo", "--data-root", str(demo_copy), "--scale", "0.1"]) == 0
    out = capsys.readouterr().out
    assert out.count("reading the cached features") == 5 and out.count("epoch   1 ") == 5  # 3 pairs, captions, fused
    assert out.index("epoch   1 ") < out.index("results on the dev split")
