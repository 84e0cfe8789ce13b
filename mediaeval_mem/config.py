"""Run configs: plain YAML that becomes one frozen dataclass, in one place (STYLE.md 5-6).

The defaults are the paper's model and recipe; a config file states only what it changes:

    # configs/demo.yaml
    features: {encoder: clip-demo}
    train: {epochs: 30, lr: 1.0e-3}

`load_config("configs/demo.yaml", ["train.seed=1"])` -> RunConfig. An unknown section or key, or a
value of the wrong type, raises ConfigError naming the file and the key.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from mediaeval_mem.errors import ConfigError


@dataclass(frozen=True)
class FeaturesCfg:
    encoder: str = "clip-vit-l14-336"
    weights: str | None = None  # a save_pretrained folder, a hub id, 'random'; None = the encoder's default
    sampling: str = "all"  # the paper encodes every frame
    dtype: str = "auto"
    batch_size: int = 64  # frames per forward pass when extracting
    workers: int = 2


@dataclass(frozen=True)
class StreamCfg:
    """A further feature stream for fusion: its own encoder and aggregator."""

    encoder: str
    weights: str | None = None
    aggregator: str = "linear-avg"
    aggregator_args: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ModelCfg:
    aggregator: str = "bigru-attention"  # over the frames of features.encoder
    aggregator_args: Mapping[str, Any] = field(default_factory=dict)
    head: str = "mlp"  # over the concatenated outputs of every stream
    head_args: Mapping[str, Any] = field(default_factory=dict)
    fuse: tuple[StreamCfg, ...] = ()  # more streams (the paper's CLIP + I3D rows), concatenated before the head


@dataclass(frozen=True)
class TrainCfg:
    epochs: int = 100  # at most
    batch_size: int = 8
    lr: float = 1e-4  # Adam
    lr_decay: float = 0.95  # multiplied in ...
    lr_step_epochs: int = 5  # ... every this many epochs
    patience: int = 5  # epochs without improvement before stopping
    loss: str = "l1"  # l1 | mse
    shuffle_frames: bool = True  # the paper's augmentation: frame order shuffled in training
    select_on: str = "holdout"  # holdout: a seeded slice of the training split; dev: the paper's protocol
    holdout_fraction: float = 0.1
    monitor: str = "srocc"  # what early stopping watches on the selection split: srocc | loss
    seed: int = 0
    device: str = "auto"

    def __post_init__(self):
        checks = [
            (self.epochs >= 1, "train.epochs must be >= 1"),
            (self.batch_size >= 1, "train.batch_size must be >= 1"),
            (self.lr > 0, "train.lr must be > 0"),
            (0 < self.lr_decay <= 1, "train.lr_decay must lie in (0, 1]"),
            (self.lr_step_epochs >= 1, "train.lr_step_epochs must be >= 1"),
            (self.patience >= 1, "train.patience must be >= 1"),
            (self.loss in ("l1", "mse"), "train.loss must be l1 or mse"),
            (self.select_on in ("holdout", "dev"), "train.select_on must be holdout or dev"),
            (0 < self.holdout_fraction < 1, "train.holdout_fraction must lie in (0, 1)"),
            (self.monitor in ("srocc", "loss"), "train.monitor must be srocc or loss"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)


@dataclass(frozen=True)
class FinetuneCfg:
    """Training the I3D end to end for memorability (encoder i3d-finetune); the rest of the recipe is train's."""

    init: str | None = None  # piergiaj checkpoint to start from; None: i3d-kinetics's default file; 'random'
    frames: int = 32  # frames per clip, sampled uniformly
    size: int = 224  # crop side; the features of the fine-tuned net are extracted at the same size
    epochs: int = 10
    batch_size: int = 4
    lr: float = 1e-4
    patience: int = 3
    workers: int = 2  # DataLoader workers decoding clips on the fly


@dataclass(frozen=True)
class DataCfg:
    target: str = "short-term"  # the normalised short-term score
    dev_fraction: float = 0.2  # only for layouts without an official dev split (original VideoMem)
    split_seed: int = 0


@dataclass(frozen=True)
class SubmissionCfg:
    # The 2022 run-file name is unverified; this follows the one seen in a 2023 team's script.
    filename: str = "me22mem-{team}-subtask{subtask}-run{run}.csv"
    columns: tuple[str, str] = ("video_id", "mem_score")
    max_runs: int = 5  # per subtask per team


@dataclass(frozen=True)
class RunConfig:
    name: str = "paper-best"
    features: FeaturesCfg = field(default_factory=FeaturesCfg)
    model: ModelCfg = field(default_factory=ModelCfg)
    train: TrainCfg = field(default_factory=TrainCfg)
    data: DataCfg = field(default_factory=DataCfg)
    finetune: FinetuneCfg = field(default_factory=FinetuneCfg)
    submission: SubmissionCfg = field(default_factory=SubmissionCfg)


def _coerce(value: Any, hint: Any, where: str) -> Any:
    """Check (and where lossless, convert) a YAML value against a field's type hint."""
    origin = typing.get_origin(hint)
    if origin is typing.Union or type(hint).__name__ == "UnionType":
        args = typing.get_args(hint)
        if value is None and type(None) in args:
            return None
        return _coerce(value, next(a for a in args if a is not type(None)), where)
    if origin in (Mapping, dict) or hint is Mapping:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        item = typing.get_args(hint)[0]
        if dataclasses.is_dataclass(item):
            return tuple(_build(item, v, f"{where}[{i}]") for i, v in enumerate(value))
        return tuple(value)
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


def _build(cls, data: Mapping, where: str):
    where_ = where or "top level"
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where_}: expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"{where_}: unknown key {unknown[0]!r} (valid: {', '.join(sorted(names))})")
    missing = sorted(f.name for f in dataclasses.fields(cls) if f.default is dataclasses.MISSING
                     and f.default_factory is dataclasses.MISSING and f.name not in data)
    if missing:
        raise ConfigError(f"{where_}: missing key {missing[0]!r}")
    kwargs = {}
    for k, v in data.items():
        hint = hints[k]
        where_k = f"{where}.{k}" if where else k
        kwargs[k] = _build(hint, v, where_k) if dataclasses.is_dataclass(hint) else _coerce(v, hint, where_k)
    return cls(**kwargs)


def _set(tree: dict, dotted: str, value: Any) -> None:
    *parents, last = dotted.split(".")
    for p in parents:
        node = tree.setdefault(p, {})
        if not isinstance(node, dict):
            raise ConfigError(f"--set {dotted}: {p!r} is not a section")
        tree = node
    tree[last] = value


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


def _override(data: dict, overrides: typing.Iterable[str], source: str) -> dict:
    import yaml

    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"{source} {item!r}: expected key=value, e.g. train.epochs=20")
        key, raw = item.split("=", 1)
        _set(data, key.strip(), yaml.safe_load(raw))
    return data


def load_config(path: str | Path | None = None, overrides: typing.Iterable[str] = ()) -> RunConfig:
    """Read a YAML config (None: the defaults) and apply `key=value` overrides (values parsed as YAML)."""
    data: dict = {}
    source = "--set" if overrides else "defaults"
    if path is not None:
        data, source = read_yaml_mapping(path), str(path)
        data.setdefault("name", Path(path).stem)
    return config_from_dict(_override(data, overrides, "--set"), source)


def config_from_dict(data: Mapping, source: str = "config") -> RunConfig:
    """A RunConfig from plain data (as `to_dict` gives); errors name `source` and the key."""
    try:
        return _build(RunConfig, data, "")
    except ConfigError as e:
        raise ConfigError(f"{source}: {e}") from None


def apply_overrides(cfg: RunConfig, overrides: typing.Iterable[str], source: str = "--set") -> RunConfig:
    """`cfg` with `key=value` overrides (values parsed as YAML)."""
    return config_from_dict(_override(to_dict(cfg), overrides, source), source)


def to_dict(cfg) -> dict:
    """A config as plain data (tuples as lists), ready for YAML or JSON."""
    def plain(x):
        if isinstance(x, Mapping):
            return {k: plain(v) for k, v in x.items()}
        if isinstance(x, (list, tuple)):
            return [plain(v) for v in x]
        return x

    return plain(dataclasses.asdict(cfg))


def to_yaml(cfg) -> str:
    import yaml

    return yaml.safe_dump(to_dict(cfg), sort_keys=False)


def flatten(cfg) -> dict[str, Any]:
    """{'train.epochs': 100, 'model.aggregator_args.hidden': 64, ...} for MLflow params."""
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

    walk("", to_dict(cfg))
    return out
