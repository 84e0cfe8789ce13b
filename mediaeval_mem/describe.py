"""`mem describe CONFIG`: the parts of a model, their widths and parameter counts, without any weights."""

from __future__ import annotations

from mediaeval_mem.config import RunConfig


def _args(d) -> str:
    return " {" + ", ".join(f"{k}: {v}" for k, v in d.items()) + "}" if d else ""


def describe(cfg: RunConfig, in_dim: int | None = None) -> list[str]:
    """Lines describing `cfg`; `in_dim` (first stream) defaults to the encoder architecture's width."""
    from mediaeval_mem.encoders import ENCODER_INFO, ENCODERS
    from mediaeval_mem.models import build_model, count_trainable
    from mediaeval_mem.models.model import streams_of

    streams = streams_of(cfg)
    for encoder, *_ in streams:
        ENCODERS[encoder]  # unknown names fail with the list of valid ones
    dims = [ENCODER_INFO[e].width for e, *_ in streams]
    dims[0] = in_dim or dims[0]
    model = build_model(cfg, dims)
    lines = [f"config      {cfg.name}"]
    for (encoder, _, agg_name, args, _), d, agg in zip(streams, dims, model.aggregators):
        unit = "video" if ENCODER_INFO[encoder].clip_level else "frame"
        lines.append(f"stream      {encoder}: one {d}-d vector per {unit} (sampling {cfg.features.sampling}), frozen")
        lines.append(f"  aggregator  {agg_name}{_args(args)}  (B, T, {d}) -> (B, {agg.out_dim})  {count_trainable(agg):,} parameters")
    width = sum(a.out_dim for a in model.aggregators)
    t = cfg.train
    selection = f"holdout {t.holdout_fraction:.0%} of train (seed {t.seed})" if t.select_on == "holdout" else "dev (the paper's protocol)"
    lines += [
        f"head        {cfg.model.head}{_args(cfg.model.head_args)}  (B, {width}) -> (B,) in [0, 1]  {count_trainable(model.head):,} parameters",
        f"recipe      Adam lr {t.lr:g} x{t.lr_decay} every {t.lr_step_epochs} epochs, {t.loss} loss, batch {t.batch_size}, "
        f"at most {t.epochs} epochs, patience {t.patience} on {t.monitor}, frame shuffling {'on' if t.shuffle_frames else 'off'}",
        f"selection   {selection}",
        f"trainable parameters: {count_trainable(model)}",
    ]
    return lines
