"""Which profile a grid runs under: the one asked for, else the demo profile on generated demo data, else none.

A profile (experiments/grid.py `Profile`, configs/profiles/*.yaml) swaps in stand-ins for what a machine lacks.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mediaeval_mem.core.paths import data_root, repo_file
from mediaeval_mem.datasets.synthetic import DEMO_MARKER
from mediaeval_mem.experiments.grid import Profile, load_profile

DEMO_PROFILE = Path("configs") / "profiles" / "demo.yaml"  # the stand-ins that let the grids run on the demo data
NO_PROFILE = "none"  # asked for explicitly: the configs as written, even on demo data


@dataclass(frozen=True)
class ProfileChoice:
    path: str | None  # the profile file in use; None: no profile
    profile: Profile | None
    note: str | None = None  # why a profile was chosen that nobody asked for (shown to the user), else None


def choose_profile(given: str | None, root: str | Path | None = None) -> ProfileChoice:
    """The profile for a grid on data root `root`: `given` (a file, or 'none' for no profile), else the demo
    profile where `root` holds generated demo data (`mem demo-data` marks it), else no profile.

    >>> choose_profile(None, "data/demo").path
    '.../configs/profiles/demo.yaml'
    """
    path, note = given, None
    if path is None and (data_root(root) / DEMO_MARKER).is_file():
        path = str(repo_file(DEMO_PROFILE))
        note = (f"{data_root(root)} holds generated demo data: using the stand-ins of {path} "
                f"(clip-demo for the CLIPs, random I3Ds); --profile {NO_PROFILE} runs the configs as written")
    if path == NO_PROFILE:
        path = None
    return ProfileChoice(path, load_profile(path, root) if path else None, note)
