"""Your own parts without forking: modules that register encoders, aggregators, heads, losses, trainers and dataset layouts.

A plugin is a Python module that imports the harness's registries and registers into them, exactly as
the built-in parts do (see the README's worked example). It is loaded

- by name in a run config: `plugins: [my_lab.memorability]` (an importable module) or
  `plugins: [parts/my_parts.py]` (a file, relative to the working directory or to the config's folder);
- or, installed as a package, through the entry-point group `mediaeval_mem.plugins`:
      [project.entry-points."mediaeval_mem.plugins"]
      my_lab = "my_lab.memorability"
  which every `mem` command loads at start.

A name that is taken (a built-in one, or another plugin's) is refused in one line naming the plugin.
One file is one plugin, however it is named: `parts/my_lab.py` and the module `my_lab` (the same file) load once.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from typing import Iterable

from mediaeval_mem.core.errors import ConfigError
from mediaeval_mem.core.registry import RegistryClash

ENTRY_POINT_GROUP = "mediaeval_mem.plugins"
_loaded: set[str] = set()  # plugins imported by this process (a second load is a no-op)


def _register_builtins() -> None:
    """Import the packages whose parts a plugin's names must not clash with.

    (Imported here, not at the top: they load torch, and every `mem` command imports this module, most loading no plugin.)"""
    import mediaeval_mem.datasets.catalog  # noqa: F401  (the layouts)
    import mediaeval_mem.encoders  # noqa: F401
    import mediaeval_mem.models  # noqa: F401
    import mediaeval_mem.training.losses  # noqa: F401
    import mediaeval_mem.training.trainers  # noqa: F401


def plugin_path(spec: str, base: Path | None = None) -> Path:
    """The file a `.py` plugin names: relative to `base` (the config's folder), else as given (the working directory)."""
    candidates = ([Path(base) / spec] if base is not None else []) + [Path(spec)]
    for p in candidates:
        if p.is_file():
            return p.resolve()
    raise ConfigError(f"plugin {spec}: file not found (looked in {', '.join(str(p.parent.resolve()) for p in candidates)})")


def _import_file(path: Path) -> None:
    name = f"mem_plugin_{path.stem}_{len(_loaded)}"
    module_spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[name] = module
    try:
        module_spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise


def _module_file(name: str) -> Path | None:
    """The file module `name` would be imported from, if it is a file (None: not found, or not a file)."""
    try:
        found = importlib.util.find_spec(name)
    except Exception:  # a missing parent package, or one that fails: the import itself says so
        return None
    return Path(found.origin).resolve() if found is not None and found.has_location and found.origin else None


def _imported(path: Path) -> bool:
    """Whether this process already runs the module of file `path`, under whatever name (`import my_lab`)."""
    return any(getattr(m, "__file__", None) and Path(m.__file__).resolve() == path for m in list(sys.modules.values()))


def load_plugin(spec: str, base: Path | None = None) -> None:
    """Import one plugin (once per process): a dotted module name, or a .py file (see plugin_path).
    One file is one plugin: `parts/my_lab.py` and the module `my_lab` of that file load once between them."""
    path = plugin_path(spec, base) if spec.endswith(".py") else _module_file(spec)
    key = str(path) if path else spec
    if key in _loaded:
        return
    _register_builtins()
    if path is not None and _imported(path):  # its parts are registered already: a second import would clash
        _loaded.add(key)
        return
    try:
        _import_file(path) if spec.endswith(".py") else importlib.import_module(spec)
    except RegistryClash as e:
        raise ConfigError(f"plugin {spec}: {e}: give your part a name of its own") from None
    except ModuleNotFoundError as e:
        if path is None and e.name and spec.startswith(e.name):  # the plugin's own package is not on the path
            raise ConfigError(f"plugin {spec} cannot be loaded: ModuleNotFoundError: {e}: put the folder holding "
                              f"{e.name}/ on PYTHONPATH (or install it), or name the file instead, "
                              f"plugins: [{spec.replace('.', '/')}.py] (relative to the config)") from None
        raise ConfigError(f"plugin {spec} cannot be loaded: {type(e).__name__}: {e}") from None
    except Exception as e:  # an import error, or a bug in the plugin: one line, naming it
        raise ConfigError(f"plugin {spec} cannot be loaded: {type(e).__name__}: {e}") from None
    _loaded.add(key)


def load_plugins(specs: Iterable[str] = (), base: Path | None = None) -> None:
    """Load the installed plugins (entry points, once per process) and the plugins `specs` names."""
    if "entry-points" not in _loaded:
        _loaded.add("entry-points")
        from importlib.metadata import entry_points

        for ep in entry_points(group=ENTRY_POINT_GROUP):
            load_plugin(ep.value.split(":")[0])
    for spec in specs:
        load_plugin(spec, base)
