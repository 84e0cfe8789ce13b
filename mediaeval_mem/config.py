"""Run configs: plain YAML that becomes one frozen RunConfig through the schema engine (core/schema.py).

The defaults are the paper's model and recipe; a config file states only what it changes:

    # configs/demo.yaml
    model: {streams: [{encoder: clip-demo}]}
    train: {epochs: 20, lr: 2.0e-3}

A run's inputs are its streams (model.streams): each names an encoder (and its weights and frame
sampling: what fixes the features) and the aggregator that pools them; the streams' outputs are
concatenated before the head. `load_config("configs/demo.yaml", ["train.seed=1"])` -> RunConfig.
An unknown section or key, a value of the wrong type, or an aggregator that does not fit its
encoder raises ConfigError naming the file and the key.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

from mediaeval_mem.core.errors import ConfigError, MemError
from mediaeval_mem.core.schema import LATER, build, flatten, override, read_yaml_mapping, to_dict, to_yaml
from mediaeval_mem.datasets.catalog import check_declared
from mediaeval_mem.datasets.declared import DatasetDecl
from mediaeval_mem.features.captions import stream_source
from mediaeval_mem.features.inputs import input_kind
from mediaeval_mem.features.options import ExtractOptions
from mediaeval_mem.models import AGGREGATORS
from mediaeval_mem.plugins import load_plugins, plugin_path
from mediaeval_mem.training.options import FinetuneCfg, LoraCfg, TrainCfg, known_head
from mediaeval_mem.video import Sampling

__all__ = ["RunConfig", "StreamCfg", "ModelCfg", "TrainCfg", "FinetuneCfg", "LoraCfg", "DataCfg", "DatasetDecl", "ExtractOptions",
           "load_config", "config_from_dict", "apply_overrides", "to_dict", "to_yaml", "flatten"]


@dataclass(frozen=True)
class StreamCfg:
    """One input of the model: what is extracted (encoder, weights, sampling) and how it is pooled."""

    encoder: str = "clip-vit-l14-336"  # a frame, clip or caption encoder, or precomputed (features already extracted)
    weights: str | None = None  # a save_pretrained folder, a hub id, a checkpoint, 'random'; None = the encoder's default;
    #                             for precomputed: the features' folder
    sampling: str = "all"  # the paper encodes every frame; or uniform:N, segments:N (video encoders only)
    aggregator: str = "bigru-attention"
    aggregator_args: Mapping[str, Any] = field(default_factory=dict)
    # caption encoders: where their texts come from (features/captions.py TEXT_SOURCES): captions (the dataset's) |
    # speech (each video's transcript: source_args transcriber, weights, language, batch_size; features/transcripts.py)
    source: str = field(default="captions", metadata=LATER)
    source_args: Mapping[str, Any] = field(default_factory=dict, metadata=LATER)

    def __post_init__(self):
        """The encoder and aggregator exist and fit each other (from the metadata registered with each)."""

        try:
            kind, agg = input_kind(self.encoder), AGGREGATORS[self.aggregator]  # what the encoder reads
            Sampling.parse(self.sampling)
            stream_source(self)  # an unknown source or source_args key
        except MemError as e:  # an unknown name, a bad sampling
            raise ConfigError(str(e)) from None
        if (self.source != "captions" or self.source_args) and not kind.takes_source:
            raise ConfigError(f"source {self.source!r} gives texts to caption encoders; {self.encoder} reads "
                              f"{kind.reads}: leave source out")
        if kind.per_video and agg.temporal:
            raise ConfigError(f"aggregator {self.aggregator!r} models frame order, but {self.encoder} gives one vector "
                              f"per video: use none, avg or linear-avg")
        if self.aggregator == "none" and not kind.per_video:
            raise ConfigError(f"aggregator 'none' is for clip-level encoders; {self.encoder} gives one vector per "
                              f"{kind.unit}: use avg")
        if kind.per_video and Sampling.parse(self.sampling).kind == "segments":  # drawn from per-frame vectors
            raise ConfigError(f"sampling {self.sampling!r} draws frames from every frame's vector as batches are cut; "
                              f"{self.encoder} gives one vector per video: use all or uniform:N")
        refused = kind.sampling_refusal(self.encoder, self.sampling)
        if refused:
            raise ConfigError(f"sampling {self.sampling!r} {refused}: leave sampling at all")


@dataclass(frozen=True)
class ModelCfg:
    streams: tuple[StreamCfg, ...] = (StreamCfg(),)  # concatenated before the head (the paper's CLIP + I3D rows)
    head: str = "mlp"
    head_args: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        if not self.streams:
            raise ConfigError("streams: needs at least one stream")
        if known_head(self.head, "head") is not None:  # a closed-form baseline (ridge, svr) on time-pooled features
            pooling = [s.aggregator for s in self.streams if s.aggregator not in ("avg", "none")]
            if pooling:
                raise ConfigError(f"head {self.head!r} is fitted on time-pooled features: give its streams aggregator "
                                  f"avg (or none for clip-level encoders), not {pooling[0]}")


@dataclass(frozen=True)
class DataCfg:
    # the normalised short-term score; or a score column of a generic dataset by its name (brand_score)
    target: str = "short-term"
    # several targets, one model with one output each (a shared body, the loss summed): [score, brand_score];
    # the first is the one a one-target reader sees (metrics without a prefix, the `prediction` column)
    targets: tuple[str, ...] = field(default=(), metadata=LATER)
    dev_fraction: float = 0.2  # only for layouts without an official dev split (original VideoMem, generic)
    split_seed: int = 0
    # name -> a dataset of your own, as in <data root>/datasets.yaml (this wins for a name in both)
    datasets: Mapping[str, DatasetDecl] = field(default_factory=dict)
    # a column of the training dataset's CSV (e.g. the number of annotations) weighting each video's training loss;
    # None: every video weighs the same
    weight_column: str | None = field(default=None, metadata=LATER)

    def __post_init__(self):
        if self.weight_column is not None and not str(self.weight_column).strip():
            raise ConfigError("weight_column: give a column name, or leave it out")
        for key, name in [("target", self.target)] + [(f"targets[{i}]", t) for i, t in enumerate(self.targets)]:
            if name not in TARGETS and not COLUMN.fullmatch(name):
                raise ConfigError(f"{key} must be one of {', '.join(TARGETS)}, or the name of a generic dataset's "
                                  f"score column (letters, digits and _), got {name!r}")
        if len(set(self.targets)) < len(self.targets):
            raise ConfigError(f"targets: a target is named twice in {list(self.targets)}")
        if self.targets and self.target not in ("short-term", self.targets[0]):
            raise ConfigError(f"give target ({self.target}) or targets ({', '.join(self.targets)}), not both")
        if not 0 < self.dev_fraction < 1:
            raise ConfigError("dev_fraction must lie in (0, 1)")
        check_declared(self.datasets)

    @property
    def target_names(self) -> tuple[str, ...]:
        """The run's targets, in order: `targets`, or `target` alone."""
        return self.targets or (self.target,)


TARGETS = ("short-term", "short-term-raw", "long-term")  # what the layouts can read (datasets/layouts.py)
COLUMN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")  # a score column named as a target (the generic layout reads any)


@dataclass(frozen=True)
class RunConfig:
    name: str = "paper-best"
    plugins: tuple[str, ...] = ()  # modules or .py files that register parts of their own (plugins.py)
    model: ModelCfg = field(default_factory=ModelCfg)
    extract: ExtractOptions = field(default_factory=ExtractOptions)
    train: TrainCfg = field(default_factory=TrainCfg)
    data: DataCfg = field(default_factory=DataCfg)
    finetune: FinetuneCfg = field(default_factory=FinetuneCfg)
    # the VLM regressor's LoRA training (qwen2.5-vl-*-lora streams); LATER: runs that do not set it keep their keys
    lora: LoraCfg = field(default_factory=LoraCfg, metadata=LATER)

    def __post_init__(self):
        if len(self.data.target_names) > 1 and known_head(self.model.head, "head") is not None:
            raise ConfigError(f"model.head {self.model.head!r} fits one target; data.targets "
                              f"({', '.join(self.data.target_names)}) needs a trained head (mlp, linear)")


def _old_shape(data: Mapping) -> str | None:
    """A config of the shape before streams, rewritten in the new one (as a one-line hint), or None."""
    features = data.get("features") if isinstance(data.get("features"), Mapping) else None
    model = data.get("model") if isinstance(data.get("model"), Mapping) else {}
    old_features = features is not None and bool({"encoder", "weights", "sampling"} & set(features))
    old_model = bool({"aggregator", "aggregator_args", "fuse"} & set(model)) and "streams" not in model
    if not (old_features or old_model or "submission" in data):
        return None  # (a stray old key beside model.streams is an unknown key, reported as such)
    features = dict(features or {})
    first = {k: features.pop(k) for k in ("encoder", "weights", "sampling") if k in features}
    first.update({k: model[k] for k in ("aggregator", "aggregator_args") if k in model})
    streams = [first] + [dict(s, sampling=first["sampling"]) if "sampling" in first else dict(s)
                         for s in model.get("fuse") or [] if isinstance(s, Mapping)]
    new_model = {"streams": streams, **{k: v for k, v in model.items() if k in ("head", "head_args")}}
    rest = {k: v for k, v in data.items() if k not in ("name", "features", "model", "submission")}
    new = {"model": new_model, **({"extract": features} if features else {}), **rest}
    import yaml

    text = yaml.safe_dump(new, default_flow_style=True, width=10_000).strip()
    extra = "; the submission section moved to the packager's own file (mem package-submission --config)" \
        if "submission" in data else ""
    return (f"this config has the shape from before streams (features.encoder, model.aggregator, model.fuse): "
            f"write its inputs as model.streams; the whole file in the new shape: {text}{extra}")


def config_from_dict(data: Mapping, source: str = "config") -> RunConfig:
    """A RunConfig from plain data (as `to_dict` gives); errors name `source` and the key."""
    hint = _old_shape(data)
    if hint:
        raise ConfigError(f"{source}: {hint}")
    plugins = data.get("plugins") or ()
    if not isinstance(plugins, (list, tuple)) or not all(isinstance(p, str) for p in plugins):
        raise ConfigError(f"{source}: plugins must be a list of module names or .py files, got {plugins!r}")
    try:
        load_plugins(plugins)  # before the streams are checked: their names may be the plugins'
        return build(RunConfig, data, "")
    except ConfigError as e:
        raise ConfigError(f"{source}: {e}") from None


def load_config(path: str | Path | None = None, overrides: Iterable[str] = ()) -> RunConfig:
    """Read a YAML config (None: the defaults) and apply `key=value` overrides (values parsed as YAML).

    >>> load_config("configs/demo.yaml", ["train.seed=1", "model.streams.0.sampling=uniform:16"]).train.seed
    1
    """
    cfg = RunConfig()
    if path is not None:
        data = read_yaml_mapping(path)
        data.setdefault("name", Path(path).stem)
        if isinstance(data.get("plugins"), list):  # plugin files relative to the config's folder: made absolute
            data["plugins"] = [str(plugin_path(p, Path(path).parent)) if isinstance(p, str) and p.endswith(".py") else p
                               for p in data["plugins"]]
        cfg = config_from_dict(data, str(path))
    return apply_overrides(cfg, overrides) if overrides else cfg


def apply_overrides(cfg: RunConfig, overrides: Iterable[str], source: str = "--set") -> RunConfig:
    """`cfg` with `key=value` overrides (values parsed as YAML)."""
    return config_from_dict(override(to_dict(cfg), overrides, source), source)
