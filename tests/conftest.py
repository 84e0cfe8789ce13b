"""Shared fixtures: a private runs/ folder, and one small generated demo dataset per test session."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

# Before anything imports huggingface_hub (it reads these once): no test may reach the hub or a cache
# this machine happens to have; the session fixture below points HF_HOME at an empty folder.
os.environ["HF_HUB_OFFLINE"] = os.environ["TRANSFORMERS_OFFLINE"] = "1"
# OpenMP threads sleep while they wait, as in every `mem` process (core/threads.py): tests that start several
# torch processes share the cores instead of spinning against each other. Read once, when torch loads.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

DATA = Path(__file__).parent / "data"
REPO = Path(__file__).resolve().parent.parent


# Modules whose tests start Ray, in two units of work for pytest-xdist: the two-node cluster of test_ray_cluster
# (its own temp dirs and ports) and the modules that start a local Ray (`address="local"`: never a cluster found on
# this machine), one after another. The two units may run at once, one on each worker.
RAY_UNITS = {"test_ray_cluster": "ray-cluster", **{m: "ray-local" for m in (
    "test_cv_grouped_ray", "test_executor", "test_extract_ray", "test_ray", "test_sweep")}}
# The longest units of work (measured), given out first, longest first: a long unit given out last would end last,
# alone, while the other worker has nothing left to do. The others follow in xdist's order (most tests first).
FIRST = ("ray-cluster", "ray-local", "test_registry_walk", "test_bench_season", "test_tracking_store", "test_bench", "test_paper_cuts",
         "test_season")


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """`pytest -n 2 --dist loadscope` (make test): a test module runs whole on one worker, so its module-scoped
    fixtures are built once; the Ray modules are two units of work; the longest units go out first. Other --dist
    modes are xdist's own."""
    if config.getvalue("dist") != "loadscope":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class ModuleScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            module = nodeid.split("::")[0]
            return RAY_UNITS.get(Path(module).stem, module)

        def _assign_work_unit(self, node) -> None:
            rank = {unit: i for i, unit in enumerate(FIRST)}  # a unit is a module's path or a Ray unit's name
            for scope in sorted((s for s in self.workqueue if Path(s).stem in rank), key=lambda s: -rank[Path(s).stem]):
                self.workqueue.move_to_end(scope, last=False)  # to the front of the queue, FIRST's first in front
            super()._assign_work_unit(node)

    return ModuleScheduling(config, log)


ISOLATED = ("MEM_RUNS_DIR", "MEM_SUBMISSIONS_DIR", "MEM_DATA_ROOT", "MEM_I3D_DIR", "MLFLOW_TRACKING_URI", "HF_HOME",
            "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")


@pytest.fixture(scope="session", autouse=True)
def _private_runs(tmp_path_factory):
    """Every test writes under a temporary runs/ and submissions/, never the checkout's, with an empty
    Hugging Face cache and the hub offline: no test depends on what this machine has downloaded."""
    root = tmp_path_factory.mktemp("runs")
    old = {k: os.environ.get(k) for k in ISOLATED}
    for k in ("MEM_DATA_ROOT", "MEM_I3D_DIR", "MLFLOW_TRACKING_URI"):
        os.environ.pop(k, None)
    os.environ["MEM_RUNS_DIR"] = str(root / "runs")
    os.environ["MEM_SUBMISSIONS_DIR"] = str(root / "submissions")
    os.environ["HF_HOME"] = str(root / "hf-home")
    os.environ["HF_HUB_OFFLINE"] = os.environ["TRANSFORMERS_OFFLINE"] = "1"
    yield
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture(scope="session")
def demo_root(tmp_path_factory) -> Path:
    """A tiny demo data root (about a tenth of `mem demo-data`), generated once, never modified."""
    from mediaeval_mem.experiments.demo import make_demo_data

    root = tmp_path_factory.mktemp("demo")
    make_demo_data(root, seed=0, scale=0.1)
    return root


@pytest.fixture
def demo_copy(demo_root, tmp_path) -> Path:
    """A private copy of the demo data root that a test may break."""
    dst = tmp_path / "data"
    shutil.copytree(demo_root, dst)
    return dst


@pytest.fixture(scope="session")
def empty_store(tmp_path_factory) -> Path:
    """An empty MLflow store (runs/mlflow.db) at this MLflow's schema, made once per session: creating the schema
    takes about a second, so a fresh runs/ folder starts with a copy of this one (what `mem` would create there)."""
    from mediaeval_mem.tracking.store import prepare_sqlite_store

    path = tmp_path_factory.mktemp("empty-store") / "mlflow.db"
    prepare_sqlite_store(path)
    return path


def fresh_runs(folder: Path, empty_store: Path) -> Path:
    """`folder` made as a new runs/ folder: no features, no models, an empty MLflow store."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(empty_store, folder / "mlflow.db")
    return folder


@pytest.fixture
def runs_dir(tmp_path, monkeypatch, empty_store) -> Path:
    """A fresh runs/ folder for one test (empty feature cache, empty MLflow store)."""
    monkeypatch.setenv("MEM_RUNS_DIR", str(tmp_path / "runs"))
    return fresh_runs(tmp_path / "runs", empty_store)
