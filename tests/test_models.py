"""Models: the paper's exact size, masking, and config-driven building."""

from __future__ import annotations

import pytest
import torch

from mediaeval_mem.config import RunConfig, load_config
from mediaeval_mem.core.errors import ConfigError
from mediaeval_mem.models import AGGREGATORS, HEADS, build_model, count_trainable

from conftest import REPO


def test_paper_model_has_exactly_the_papers_parameter_count():
    model = build_model(load_config(REPO / "configs" / "paper-best.yaml").model, [1024])
    assert count_trainable(model) == 1_381_762
    assert count_trainable(build_model(RunConfig().model, [1024])) == 1_381_762  # the defaults are the paper's


def cfg_of(aggregator="bigru-attention", head="mlp", encoder="clip-demo", **kw):
    """The model section of a one-stream config."""
    return load_config(None, [f"model.streams.0.encoder={encoder}", f"model.streams.0.aggregator={aggregator}",
                              f"model.head={head}"] + [f"{k}={v}" for k, v in kw.items()]).model


@pytest.mark.parametrize("aggregator", sorted(a for a, cls in AGGREGATORS.items() if a != "none"))
@pytest.mark.parametrize("head", sorted(h for h in HEADS if HEADS.info(h) is None))  # trained heads (ridge, svr: test_baselines)
def test_padding_never_changes_a_videos_output(aggregator, head):
    """Each video alone vs. the same videos padded into one batch: identical outputs."""
    torch.manual_seed(0)
    model = build_model(cfg_of(aggregator, head), [16]).eval()
    videos = [torch.randn(t, 16) for t in (5, 9, 2)]
    alone = torch.cat([model([(v[None], torch.ones(1, len(v), dtype=torch.bool))]) for v in videos])
    x = torch.zeros(3, 9, 16)
    mask = torch.zeros(3, 9, dtype=torch.bool)
    for i, v in enumerate(videos):
        x[i, : len(v)], mask[i, : len(v)] = v, True
    x[~mask] = 123.0  # whatever sits in the padding must not matter
    batched = model([(x, mask)])
    assert batched.shape == (3,) and torch.allclose(alone, batched, atol=1e-5)
    assert ((batched >= 0) & (batched <= 1)).all()


def test_attention_is_the_papers_equation():
    """e_v = (1/T) sum_t e_t * w_t with w = Linear(BiGRU(E)), no softmax."""
    torch.manual_seed(1)
    agg = AGGREGATORS.build("bigru-attention", in_dim=8, hidden=4, layers=2, dropout=0.0).eval()
    e = torch.randn(1, 6, 8)
    h, _ = agg.gru(e)
    w = agg.score(h)  # (1, 6, 1)
    expected = (e * w).sum(1) / 6
    assert torch.allclose(agg(e, torch.ones(1, 6, dtype=torch.bool)), expected, atol=1e-6)
    assert h.shape == (1, 6, 8)  # 2 x hidden


def test_widths_are_derived_from_the_input():
    model = build_model(RunConfig().model, [64])
    assert model.aggregators[0].out_dim == 64
    assert model.head.layers[0].in_features == 64
    gru = build_model(cfg_of("bigru", "linear", **{"model.streams.0.aggregator_args": "{hidden: 5, layers: 1}"}), [64])
    assert gru.head.layers[0].in_features == 10  # 2 x hidden


def test_bad_builder_arguments_name_the_key():
    with pytest.raises(ConfigError, match=r"model.streams\[0\].aggregator_args: bad arguments \['hiden'\]"):
        build_model(cfg_of(**{"model.streams.0.aggregator_args": "{hiden: 3}"}), [16])
