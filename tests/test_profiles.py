"""The profile a grid runs under: asked for, the demo profile on generated demo data, or none."""

from __future__ import annotations

import json

import pytest
from conftest import REPO

from mediaeval_mem.core.errors import MemError
from mediaeval_mem.datasets.synthetic import DEMO_MARKER
from mediaeval_mem.experiments.profiles import DEMO_PROFILE, choose_profile


@pytest.fixture
def marked(tmp_path):
    (tmp_path / DEMO_MARKER).write_text(json.dumps({"made_by": "mem demo-data"}))
    return tmp_path


@pytest.mark.parametrize("given, demo_data, expected, noted", [
    (None, True, "demo", True),  # generated demo data: the demo profile, and a line saying why
    (None, False, None, False),  # other data: the configs as written
    ("none", True, None, False),  # asked for no profile: none, even on demo data
    ("given", True, "given", False),  # asked for one: that one
    ("given", False, "given", False),
])
def test_choose_profile(tmp_path, marked, given, demo_data, expected, noted):
    root = marked if demo_data else tmp_path / "other"
    given_file = REPO / "configs" / "profiles" / "demo.yaml"
    chosen = choose_profile(str(given_file) if given == "given" else given, root)
    want = {"demo": str(REPO / DEMO_PROFILE), "given": str(given_file), None: None}[expected]
    assert chosen.path == want and (chosen.profile is None) == (want is None)
    assert (chosen.note is not None) == noted
    if noted:
        assert chosen.note == (f"{root} holds generated demo data: using the stand-ins of {want} (clip-demo for the "
                               f"CLIPs, random I3Ds); --profile none runs the configs as written")
    if chosen.profile is not None:  # {data_root} filled in with the root in use
        assert chosen.profile.weights["i3d-kinetics"] == f"{root}/i3d/rgb_imagenet.pt"


def test_missing_profile_file_is_one_clear_error(tmp_path, monkeypatch):
    with pytest.raises(MemError, match="nope.yaml"):
        choose_profile(str(tmp_path / "nope.yaml"), tmp_path)
