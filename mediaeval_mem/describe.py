"""`mem describe CONFIG`: the parts of a model, their widths and parameter counts, without any weights."""

from __future__ import annotations

from mediaeval_mem.config import RunConfig


def _args(d) -> str:
    return "{" + ", ".join(f"{k}: {v}" for k, v in d.items()) + "}" if d else ""


def describe(cfg: RunConfig, in_dim: int | None = None) -> list[str]:
    """Lines describing `cfg`; `in_dim` defaults to the encoder architecture's feature width."""
    from mediaeval_mem.encoders import ENCODERS, NATIVE_WIDTHS
    from mediaeval_mem.models import build_model, count_trainable

    ENCODERS[cfg.features.encoder]  # unknown names fail with the list of valid ones
    d = in_dim or NATIVE_WIDTHS[cfg.features.encoder]
    model = build_model(cfg.model, d)
    agg, head = model.aggregator, model.head
    t = cfg.train
    selection = f"holdout {t.holdout_fraction:.0%} of train (seed {t.seed})" if t.select_on == "holdout" else "dev (the paper's protocol)"
    return [
        f"config      {cfg.name}",
        f"encoder     {cfg.features.encoder}  frames -> {d}-d each (sampling {cfg.features.sampling}), frozen",
        f"aggregator  {cfg.model.aggregator} {_args(cfg.model.aggregator_args)}  (B, T, {d}) -> (B, {agg.out_dim})  "
        f"{count_trainable(agg):,} parameters",
        f"head        {cfg.model.head} {_args(cfg.model.head_args)}  (B, {agg.out_dim}) -> (B,) in [0, 1]  {count_trainable(head):,} parameters",
        f"recipe      Adam lr {t.lr:g} x{t.lr_decay} every {t.lr_step_epochs} epochs, {t.loss} loss, batch {t.batch_size}, "
        f"at most {t.epochs} epochs, patience {t.patience} on {t.monitor}, frame shuffling {'on' if t.shuffle_frames else 'off'}",
        f"selection   {selection}",
        f"trainable parameters: {count_trainable(model)}",
    ]
