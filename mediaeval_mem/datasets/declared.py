"""Datasets the user registers under a name: `<data root>/datasets.yaml`, or `data.datasets` in a run config.

    # data/datasets.yaml
    commercials: {folder: commercials-2026}        # under the data root, or an absolute path; layout generic
    moviemem: {folder: /data/moviemem, layout: generic, dev_fraction: 0.15}

Both are read by the one schema engine into DatasetDecl records; an unknown key fails naming the file
and the key. The names are checked against the built-in datasets by the catalog (datasets/catalog.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mediaeval_mem.core.errors import ConfigError, MemError
from mediaeval_mem.core.schema import build_mapping, read_yaml_mapping
from mediaeval_mem.datasets.layouts import LAYOUTS

DECLARATIONS_FILE = "datasets.yaml"


@dataclass(frozen=True)
class DatasetDecl:
    """One declared dataset: where it is and how it is read. dev_fraction / split_seed, where given,
    replace the run config's for this dataset (they matter only where the layout draws the dev split)."""

    folder: str  # relative to the data root, or absolute
    layout: str = "generic"
    dev_fraction: float | None = None
    split_seed: int | None = None

    def __post_init__(self):
        try:
            LAYOUTS[self.layout]
        except MemError as e:
            raise ConfigError(f"layout: {e}") from None
        if self.dev_fraction is not None and not 0 < self.dev_fraction < 1:
            raise ConfigError("dev_fraction must lie in (0, 1)")

    def path(self, data_root: Path) -> Path:
        """The dataset's folder: `folder` itself if absolute, else under the data root."""
        folder = Path(self.folder).expanduser()
        return folder if folder.is_absolute() else data_root / folder


def read_declarations(data_root: Path) -> dict[str, DatasetDecl]:
    """The datasets declared in `<data_root>/datasets.yaml` ({} without the file); errors name the file and key."""
    path = data_root / DECLARATIONS_FILE
    if not path.is_file():
        return {}
    data = read_yaml_mapping(path, "dataset declarations")
    try:
        return build_mapping(DatasetDecl, data)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None
