"""The one schema engine: every YAML file a user writes becomes a frozen dataclass here (STYLE.md 5, 16).

    load_yaml(GridFile, "configs/grids/table1.yaml", what="grid file") -> GridFile(...)

Fields are checked against their type hints (a lossless conversion where YAML is loose, e.g. 1e-4
read as a string); an unknown or missing key, or a value of the wrong type, raises ConfigError naming
the file and the key. A dataclass's own __post_init__ checks values; its ConfigError gets the same
prefix. `key=value` overrides (values parsed as YAML) address nested fields with dots, list items by
index, and every item of a list with `*` (`model.streams.*.sampling=uniform:16`).
"""

from __future__ import annotations

import collections.abc
import dataclasses
import hashlib
import json
import typing
from pathlib import Path
from typing import Any, Iterable, Mapping, TypeVar

from mediaeval_mem.core.errors import ConfigError

T = TypeVar("T")


def digest(blob: Any, length: int = 16) -> str:
    """A short, stable hash of plain data (dict keys sorted): the harness's one way to key a thing."""
    return hashlib.sha256(json.dumps(blob, sort_keys=True, default=str).encode()).hexdigest()[:length]


def read_yaml_mapping(path: str | Path, what: str = "config file") -> dict:
    """A YAML file that must hold a mapping; errors name the file."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{what} {path} not found")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML ({e})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return data


def _coerce(value: Any, hint: Any, where: str) -> Any:
    """Check (and where lossless, convert) a YAML value against a field's type hint."""
    origin = typing.get_origin(hint)
    if hint is Any:
        return value
    if origin is typing.Union or type(hint).__name__ == "UnionType":  # the first alternative that takes the value
        args = typing.get_args(hint)
        if value is None and type(None) in args:
            return None
        errors = []
        for alternative in (a for a in args if a is not type(None)):
            try:
                return _coerce(value, alternative, where)
            except ConfigError as e:
                errors.append(e)
        # the error of an alternative whose shape fitted and a value inside did not (train.loss.l1), else the first
        raise next((e for e in errors if str(e).startswith((f"{where}.", f"{where}["))), errors[0])
    if dataclasses.is_dataclass(hint):
        return build(hint, value, where)
    if origin in (Mapping, collections.abc.Mapping, dict) or hint in (Mapping, dict):
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        args = typing.get_args(hint)
        if len(args) != 2 or args[1] is Any:  # free-form values (aggregator_args)
            return dict(value)
        return {_coerce(k, args[0], where or "top level"): _coerce(v, args[1], f"{where}.{k}" if where else str(k))
                for k, v in value.items()}
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        args = typing.get_args(hint)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0], f"{where}[{i}]") for i, v in enumerate(value))
        if len(args) != len(value):
            raise ConfigError(f"{where}: expected a list of {len(args)}, got {value!r}")
        return tuple(_coerce(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint is float and isinstance(value, str):  # YAML 1.1 reads 1e-4 (no dot) as a string
        try:
            return float(value)
        except ValueError:
            pass
    if hint in (int, float, str, bool) and not (isinstance(value, hint) and not (hint is int and isinstance(value, bool))):
        raise ConfigError(f"{where}: expected {hint.__name__}, got {value!r}")
    return value


def build(cls: type[T], data: Any, where: str = "") -> T:
    """`cls` (a dataclass) from plain data; errors name the key (`where` is the path so far)."""
    where_ = where or "top level"
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where_}: expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    fields = [f for f in dataclasses.fields(cls) if f.init]
    names = {f.name for f in fields}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"{where_}: unknown key {unknown[0]!r} (valid: {', '.join(sorted(names))})")
    missing = sorted(f.name for f in fields if f.default is dataclasses.MISSING
                     and f.default_factory is dataclasses.MISSING and f.name not in data)
    if missing:
        raise ConfigError(f"{where_}: missing key {missing[0]!r}")
    kwargs = {k: _coerce(v, hints[k], f"{where}.{k}" if where else k) for k, v in data.items()}
    try:
        return cls(**kwargs)
    except ConfigError as e:  # a value check of the dataclass itself
        raise ConfigError(f"{where}: {e}" if where else str(e)) from None


def build_mapping(cls: type[T], data: Any, where: str = "") -> dict[str, T]:
    """name -> `cls` for every entry of a mapping (a file of named records: datasets.yaml); errors name the key."""
    return _coerce(data, Mapping[str, cls], where)


def _set(tree: Any, keys: list[str], value: Any, dotted: str) -> None:
    key, rest = keys[0], keys[1:]
    if isinstance(tree, list):
        if key == "*":
            targets = range(len(tree))
        elif key.isdigit() and int(key) < len(tree):
            targets = [int(key)]
        else:
            raise ConfigError(f"--set {dotted}: {key!r} is not an item of a list of {len(tree)} (use 0..{len(tree) - 1} or *)")
        for i in targets:
            if rest:
                _set(tree[i], rest, value, dotted)
            else:
                tree[i] = value
        return
    if not isinstance(tree, dict):
        raise ConfigError(f"--set {dotted}: {key!r} is not inside a section")
    if not rest:
        tree[key] = value
        return
    node = tree.setdefault(key, {})
    if not isinstance(node, (dict, list)):
        raise ConfigError(f"--set {dotted}: {key!r} is not a section")
    _set(node, rest, value, dotted)


def override(data: dict, overrides: Iterable[str], source: str = "--set") -> dict:
    """`data` with each `key=value` applied in place (values parsed as YAML); returns `data`."""
    import yaml

    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"{source} {item!r}: expected key=value, e.g. train.epochs=20")
        key, raw = item.split("=", 1)
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError:
            raise ConfigError(f"{source} {item!r}: the value is not valid YAML (quote it, e.g. {key}='\"...\"')") from None
        _set(data, key.strip().split("."), value, f"{key.strip()}")
    return data


def load_yaml(cls: type[T], path: str | Path, overrides: Iterable[str] = (), what: str = "config file",
              defaults: Mapping | None = None) -> T:
    """Read a YAML file into `cls`, after `defaults` (keys the file may omit) and `overrides`."""
    data = {**(defaults or {}), **read_yaml_mapping(path, what)}
    try:
        return build(cls, override(data, overrides), "")
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None


def to_dict(obj) -> dict:
    """A dataclass as plain data (tuples as lists), ready for YAML or JSON."""
    def plain(x):
        if isinstance(x, Mapping):
            return {k: plain(v) for k, v in x.items()}
        if isinstance(x, (list, tuple)):
            return [plain(v) for v in x]
        return x

    return plain(dataclasses.asdict(obj))


LATER = {"later": True}  # field metadata: a field added after run keys were first recorded (see key_dict)


def key_dict(obj) -> dict:
    """`to_dict` for what makes two runs the same (grid and cv keys): a field marked `metadata=LATER` is left out
    while it holds its default, so a config that does not use a newer option keeps the key its runs were recorded
    under (an interrupted grid or cv made before the option existed still resumes)."""
    def plain(x):
        if dataclasses.is_dataclass(x) and not isinstance(x, type):
            out = {}
            for f in dataclasses.fields(x):
                value = getattr(x, f.name)
                if f.metadata.get("later") and value == _default(f):
                    continue
                out[f.name] = plain(value)
            return out
        if isinstance(x, Mapping):
            return {k: plain(v) for k, v in x.items()}
        if isinstance(x, (list, tuple)):
            return [plain(v) for v in x]
        return x

    return plain(obj)


def _default(f: dataclasses.Field):
    if f.default is not dataclasses.MISSING:
        return f.default
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else dataclasses.MISSING


def to_yaml(obj) -> str:
    import yaml

    return yaml.safe_dump(to_dict(obj), sort_keys=False)


def flatten(obj) -> dict[str, Any]:
    """{'train.epochs': 100, 'model.streams.0.encoder': 'clip-vit-l14-336', ...} for MLflow params."""
    out: dict[str, Any] = {}

    def walk(prefix: str, x: Any) -> None:
        if isinstance(x, dict) and x:
            for k, v in x.items():
                walk(f"{prefix}.{k}" if prefix else k, v)
        elif isinstance(x, list) and x and all(isinstance(v, dict) for v in x):
            for i, v in enumerate(x):
                walk(f"{prefix}.{i}", v)
        else:
            out[prefix] = x

    walk("", to_dict(obj))
    return out
