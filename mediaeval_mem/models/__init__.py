"""Models: aggregator and head registries, and the model that joins them."""

from mediaeval_mem.models.aggregators import AGGREGATORS
from mediaeval_mem.models.heads import HEADS
from mediaeval_mem.models.model import MemModel, build_model, check_builds, count_trainable
from mediaeval_mem.models import baselines  # noqa: F401,E402  (registers ridge and svr; scikit-learn loads lazily)

__all__ = ["AGGREGATORS", "HEADS", "MemModel", "build_model", "check_builds", "count_trainable"]
