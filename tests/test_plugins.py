"""Plugins: a researcher's own module registers an encoder, an aggregator, a head and a dataset layout,
named in a config (or found through an entry point); its parts then work in mem describe, mem data
check, mem run and mem grid like the built-in ones; a name that clashes with a built-in is refused."""

from __future__ import annotations

import json
import textwrap
from importlib.metadata import EntryPoint

from mediaeval_mem.cli import main

PLUGIN = '''
"""A lab's own parts: a colour-statistics frame encoder, max pooling, a bare linear head, a JSON layout."""
import json
from pathlib import Path

import torch
from torch import nn

from mediaeval_mem.datasets.layouts import LAYOUTS, Layout, LayoutRead, canonical_id, make_items
from mediaeval_mem.encoders import ENCODERS, EncoderInfo, EncoderRecipe, FrameEncoder
from mediaeval_mem.encoders.preprocess import ImageTransform
from mediaeval_mem.models.aggregators import AGGREGATORS, Aggregator
from mediaeval_mem.models.heads import HEADS, ScoreHead


class ColourStats(FrameEncoder):
    """Per frame: the mean and standard deviation of each colour channel."""

    def __init__(self):
        super().__init__()
        self.name, self.out_dim, self.weights_id = "lab-colour", 6, "none"
        self.transform = ImageTransform(32, 32)
        self.dummy = nn.Parameter(torch.zeros(1), requires_grad=False)

    def forward(self, pixels):  # (N, 3, S, S) -> (N, 6)
        flat = pixels.flatten(2)
        return torch.cat([flat.mean(-1), flat.std(-1)], 1)


@ENCODERS.register("lab-colour", info=EncoderInfo(6))
def lab_colour(weights=None):
    return EncoderRecipe("lab-colour", "none", ImageTransform(32, 32), ColourStats)


@AGGREGATORS.register("lab-max")
class MaxPool(Aggregator):
    def __init__(self, in_dim):
        super().__init__()
        self.out_dim = in_dim

    def forward(self, x, mask):  # (B, T, D), (B, T) -> (B, D)
        return x.masked_fill(~mask.unsqueeze(-1), -1e4).max(1).values


@HEADS.register("lab-linear")
def lab_linear(in_dim):
    return ScoreHead(nn.Sequential(nn.Linear(in_dim, 1)))


def _read(root, column, dev_fraction, split_seed):
    problems, splits = [], {}
    records = json.loads((root / "videos.json").read_text())
    for split in ("train", "dev", "test"):
        rows = [(r["id"], r.get(column), (), root / "videos.json", i) for i, r in enumerate(records) if r["split"] == split]
        splits[split] = make_items(rows, {canonical_id(r["id"]): Path(r["file"]) for r in records}, lambda v: v, problems)
    return LayoutRead(splits, problems, {"source": "videos.json"})


LAYOUTS.add("lab-json", Layout("lab-json", lambda root: (root / "videos.json").is_file(), _read, {"short-term": "score"},
                               "videos.json (the lab's own listing)"))
'''


def _lab(tmp_path, demo_root):
    """The plugin file, a config naming it (a path relative to the config), and a dataset in the plugin's layout."""
    (tmp_path / "plugins").mkdir()
    (tmp_path / "plugins" / "lab_parts.py").write_text(PLUGIN)
    cfg = tmp_path / "lab.yaml"
    cfg.write_text("plugins: [plugins/lab_parts.py]\n"
                   "model: {streams: [{encoder: lab-colour, sampling: 'uniform:4', aggregator: lab-max}], head: lab-linear}\n"
                   "train: {epochs: 2, lr: 1.0e-2}\n")
    root = tmp_path / "data"
    (root / "lab-data").mkdir(parents=True)
    records = []
    for split in ("train", "dev", "test"):
        for p in sorted((demo_root / "memento10k" / f"{split}_set" / "Videos").glob("*.mp4")):
            records.append({"id": p.stem, "file": str(p), "split": split, "score": None if split == "test" else 0.5 + 0.01 * len(records) % 0.4})
    (root / "lab-data" / "videos.json").write_text(json.dumps(records))
    (root / "datasets.yaml").write_text("lab: {folder: lab-data, layout: lab-json}\n")
    return cfg, root


def test_a_plugins_parts_work_everywhere(tmp_path, demo_root, runs_dir, capsys):
    from mediaeval_mem.tracking import get_run, search_runs

    cfg, root = _lab(tmp_path, demo_root)
    assert main(["describe", str(cfg)]) == 0
    out = capsys.readouterr().out
    assert "lab-colour: one 6-d vector per frame" in out and "lab-max  (B, T, 6) -> (B, 6)" in out
    assert "lab-linear  (B, 6) -> (B,)" in out and "trainable parameters: 7" in out

    assert main(["data", "check", "lab", "--config", str(cfg), "--data-root", str(root)]) == 0
    assert "lab-json layout" in capsys.readouterr().out

    assert main(["run", "--train", "lab", "--test", "lab", "--config", str(cfg), "--data-root", str(root), "--quiet"]) == 0
    runs = search_runs()
    assert len(runs) == 1 and runs[0].data.tags["encoder"] == "lab-colour" and runs[0].data.tags["head"] == "lab-linear"
    assert (runs_dir / "features" / "lab" / "lab-colour").is_dir()  # keyed like any encoder's features

    grid = tmp_path / "grid.yaml"
    grid.write_text(f"pairs: [{{train: lab, test: lab}}]\nconfigs: [{cfg}]\nseeds: [1]\n")
    assert main(["grid", str(grid), "--data-root", str(root), "--profile", "none", "--quiet"]) == 0
    assert len(search_runs()) == 2 and get_run(search_runs()[0].info.run_id).data.tags["aggregator"] == "lab-max"


def test_a_name_taken_by_a_built_in_part_is_refused(tmp_path, capsys):
    (tmp_path / "clash.py").write_text(textwrap.dedent('''
        from mediaeval_mem.models.aggregators import AGGREGATORS, Average

        AGGREGATORS.register("avg")(Average)
    '''))
    (tmp_path / "c.yaml").write_text("plugins: [clash.py]\nmodel: {streams: [{encoder: clip-demo}]}\n")
    assert main(["describe", str(tmp_path / "c.yaml")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "clash.py: aggregator 'avg' is registered twice (first by mediaeval_mem.models.aggregators)" in err
    (tmp_path / "m.yaml").write_text("plugins: [no_such_lab.parts]\n")
    assert main(["describe", str(tmp_path / "m.yaml")]) == 2
    assert "plugin no_such_lab.parts cannot be loaded: ModuleNotFoundError" in capsys.readouterr().err


def test_an_installed_plugin_is_found_through_its_entry_point(tmp_path, monkeypatch):
    import importlib.metadata

    from mediaeval_mem import plugins
    from mediaeval_mem.models import HEADS

    (tmp_path / "lab_pkg").mkdir()
    (tmp_path / "lab_pkg" / "__init__.py").write_text("")
    (tmp_path / "lab_pkg" / "parts.py").write_text(textwrap.dedent('''
        from mediaeval_mem.models.heads import HEADS, linear

        HEADS.register("lab-pkg-linear")(linear)
    '''))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(plugins, "_loaded", set())
    found = [EntryPoint("lab", "lab_pkg.parts", plugins.ENTRY_POINT_GROUP)]
    monkeypatch.setattr(importlib.metadata, "entry_points", lambda group=None: found if group == plugins.ENTRY_POINT_GROUP else [])
    assert "lab-pkg-linear" not in HEADS
    plugins.load_plugins()
    try:
        assert "lab-pkg-linear" in HEADS
        plugins.load_plugins()  # once per process: no second registration (which would raise)
    finally:
        del HEADS["lab-pkg-linear"]


def test_one_plugin_file_loaded_as_a_file_and_as_a_module_registers_once(tmp_path, monkeypatch, capsys):
    """`plugins: [lab_twice.py]` in one config, `plugins: [lab_twice]` (the same file, importable) in another,
    both in one process, in either order: the second load is a no-op, not a clash with itself."""
    import sys

    from mediaeval_mem import plugins
    from mediaeval_mem.models import HEADS

    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(plugins, "_loaded", {"entry-points"})
    for order, name in ((("lab_twice.py", "lab_twice"), "lab-twice-a"), (("lab_twice_b", "lab_twice_b.py"), "lab-twice-b")):
        stem = order[0].removesuffix(".py")
        (tmp_path / f"{stem}.py").write_text(f"from mediaeval_mem.models.heads import HEADS, linear\n\n"
                                             f"HEADS.register({name!r})(linear)\n")
        try:
            for i, spec in enumerate(order):
                (tmp_path / f"c{i}.yaml").write_text(f"plugins: [{spec}]\nmodel: {{streams: [{{encoder: clip-demo}}], head: {name}}}\n")
                assert main(["describe", str(tmp_path / f"c{i}.yaml")]) == 0, capsys.readouterr().err
            assert name in HEADS
        finally:
            HEADS.pop(name, None)
            for m in [m for m, mod in sys.modules.items() if stem in m]:
                del sys.modules[m]
