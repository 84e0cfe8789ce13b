"""`mem cv --group-by --repeats` on a local Ray: every fold task rebuilds the same grouped, repeated
cross-validation (same key, same foldings), so the figures are those of the run without Ray."""

from __future__ import annotations

import pytest

from mediaeval_mem.core.cluster import RayOptions

from conftest import REPO
from test_cv_grouped import SETS, make_channel_root


@pytest.fixture(scope="module")
def ray_and_channels(tmp_path_factory):
    ray = pytest.importorskip("ray")
    root = make_channel_root(tmp_path_factory.mktemp("channels"))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MEM_RUNS_DIR", str(tmp_path_factory.mktemp("ray") / "runs"))
        ray.init(address="local", num_cpus=2, include_dashboard=False)
        yield RayOptions(), root
        ray.shutdown()


def test_grouped_repeated_cv_on_ray_gives_the_sequential_folds(ray_and_channels):
    from mediaeval_mem.config import load_config
    from mediaeval_mem.experiments.cv import run_cv
    from mediaeval_mem.tracking import get_run

    ray, root = ray_and_channels
    cfg = load_config(REPO / "configs" / "demo.yaml", SETS + ["data.weight_column=weight"])
    kw = dict(folds=2, data_root=root, progress=False, echo=lambda *a: None, group_by="channel", repeats=2)
    alone = run_cv(cfg, "ads", **kw)
    on_ray = run_cv(cfg, "ads", rerun=True, ray=ray, **kw)
    assert [(f.repeat, f.seed, f.fold) for f in on_ray.folds] == [(f.repeat, f.seed, f.fold) for f in alone.folds]
    for a, r in zip(alone.folds, on_ray.folds):
        assert not r.reused and r.run_id != a.run_id and set(r.oof) == set(a.oof)  # the same folding
        assert r.metrics == pytest.approx(a.metrics, abs=1e-6)
        tags, before = get_run(r.run_id).data.tags, get_run(a.run_id).data.tags
        assert tags["cv_key"] == before["cv_key"] and tags["cv_fold"] == before["cv_fold"]
    assert on_ray.summary == pytest.approx(alone.summary, abs=1e-6) and "oof_srocc_repeats_sd" in on_ray.summary
