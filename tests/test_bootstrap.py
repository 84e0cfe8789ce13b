"""The bootstrap's row-wise metrics (training/bootstrap.py) give scipy's values, ties and constant rows included."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import pearsonr, rankdata, spearmanr

from mediaeval_mem.training import bootstrap
from mediaeval_mem.training.bootstrap import bootstrap_interval, mse_rows, pearson_rows, rank_rows, spearman_rows


def test_rank_rows_are_scipys_average_ranks_with_ties():
    rng = np.random.default_rng(0)
    with_nan = rng.random((4, 6))
    with_nan[1, 2] = np.nan
    for a in (rng.integers(0, 4, (30, 25)).astype(float), rng.random((30, 25)), np.full((2, 5), 0.5),
              rng.random((1, 1)), with_nan):
        assert np.array_equal(rank_rows(a), rankdata(a, axis=1), equal_nan=True)


def test_row_metrics_match_scipy_row_by_row_and_constant_rows_are_nan():
    rng = np.random.default_rng(1)
    ys, ps = rng.integers(0, 6, (20, 40)).astype(float), rng.random((20, 40))  # ties in the truth, as resamples have
    ys[3] = 0.7  # a constant row: undefined, NaN (the interval leaves it out)
    want_s = [spearmanr(y, p)[0] if np.ptp(y) else np.nan for y, p in zip(ys, ps)]
    want_p = [pearsonr(y, p)[0] if np.ptp(y) else np.nan for y, p in zip(ys, ps)]
    np.testing.assert_allclose(spearman_rows(ys, ps), want_s, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(pearson_rows(ys, ps), want_p, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(mse_rows(ys, ps), ((ys - ps) ** 2).mean(1))
    assert np.isnan(spearman_rows(ys, ps)[3]) and np.isnan(pearson_rows(ys, ps)[3])
    for value in (0.1, 0.3, 0.7):  # constants whose mean rounds: deviations of ~1e-17 must not make a correlation
        for n in (3, 7, 100, 1000):
            c = np.full((2, n), value)
            assert np.isnan(pearson_rows(c, rng.random((2, n)))).all() and np.isnan(pearson_rows(c, c)).all()
            assert np.isnan(spearman_rows(c, rng.random((2, n)))).all()


def test_the_interval_does_not_depend_on_the_chunk_size(monkeypatch):
    rng = np.random.default_rng(2)
    y = np.round(rng.random(300), 2)
    p = y + rng.random(300)
    whole = bootstrap_interval(y, p, spearman_rows)
    monkeypatch.setattr(bootstrap, "CHUNK_VALUES", 300 * 7)  # 7 resamples at a time, the last chunk shorter
    assert bootstrap_interval(y, p, spearman_rows) == pytest.approx(whole, abs=1e-15)
    assert whole[0] < spearmanr(y, p)[0] < whole[1]
