"""`mem describe CONFIG`: the parts of a model, their widths and parameter counts, without any weights."""

from __future__ import annotations

from mediaeval_mem.config import RunConfig
from mediaeval_mem.core.errors import ConfigError
from mediaeval_mem.encoders import ENCODERS
from mediaeval_mem.features.inputs import input_kind
from mediaeval_mem.models import build_model, count_trainable
from mediaeval_mem.training.losses import describe_loss


def _args(d) -> str:
    return " {" + ", ".join(f"{k}: {v}" for k, v in d.items()) + "}" if d else ""


def describe(cfg: RunConfig, in_dims: list[int] | None = None) -> list[str]:
    """Lines describing `cfg`: each stream (encoder, aggregator, widths), the head, the recipe, the parameter count.

    `in_dims` give the first streams' feature widths; the others are their encoders' architectures'.
    """

    infos = [ENCODERS.info(s.encoder) for s in cfg.model.streams]
    given = list(in_dims or [])
    if len(given) > len(infos):
        raise ConfigError(f"{len(given)} --in-dim given for {len(infos)} stream(s) of {cfg.name}: give at most one per stream")
    dims = given + [info.width for info in infos[len(given):]]  # the first streams' widths as given, the rest derived
    model = build_model(cfg.model, dims, len(cfg.data.target_names))
    lines = [f"config      {cfg.name}"]
    for i, (s, info, d, agg) in enumerate(zip(cfg.model.streams, infos, dims, model.aggregators)):
        made = ", trained for memorability first" if info.trainer is not None and not s.weights else ", frozen"
        kind = input_kind(info)
        sampling = f" (sampling {s.sampling})" if kind.reads_video else ""  # captions and files take none
        if s.source != "captions" or s.source_args:  # a caption stream reading other texts (speech)
            sampling = f" (texts: {s.source}{_args(s.source_args)})"
        lines.append(f"stream {i}    {s.encoder}: one {d}-d vector per {kind.unit}{sampling}{made}")
        lines.append(f"  aggregator  {s.aggregator}{_args(s.aggregator_args)}  (B, {1 if kind.per_video else 'T'}, {d}) -> (B, {agg.out_dim})  "
                     f"{count_trainable(agg):,} parameters")
    width = sum(a.out_dim for a in model.aggregators)
    t = cfg.train
    selection = f"holdout {t.holdout_fraction:.0%} of train (seed {t.seed})" if t.select_on == "holdout" else "dev (the paper's protocol)"
    joined = " + ".join(str(a.out_dim) for a in model.aggregators)
    targets = cfg.data.target_names
    out = "(B,)" if len(targets) == 1 else f"(B, {len(targets)}): {', '.join(targets)}"  # data.targets: one score each
    lines += [
        f"head        {cfg.model.head}{_args(cfg.model.head_args)}  (B, {joined if len(dims) > 1 else width}) -> {out} in [0, 1]  "
        f"{count_trainable(model.head):,} parameters",
        f"recipe      Adam lr {t.lr:g} x{t.lr_decay} every {t.lr_step_epochs} epochs, {describe_loss(t.loss)} loss, batch {t.batch_size}, "
        f"at most {t.epochs} epochs, patience {t.patience} on {t.monitor}, frame shuffling {'on' if t.shuffle_frames else 'off'}",
        f"selection   {selection}",
        f"trainable parameters: {count_trainable(model)}",
    ]
    return lines
