"""core/cluster.py: one options class for every --ray command, one GPU default, checked options in one line."""

from __future__ import annotations

import pytest

from mediaeval_mem.core.cluster import GPUS_PER_RUN, RayOptions, gpus_each
from mediaeval_mem.core.errors import ConfigError


@pytest.mark.parametrize("options, have, use, gpus", [
    (RayOptions(), {"CPU": 8}, "run", 0),  # no GPU: runs on CPUs
    (RayOptions(), {"CPU": 8, "GPU": 1}, "run", GPUS_PER_RUN),  # four runs to a card
    (RayOptions(gpus=1), {"CPU": 8, "GPU": 2}, "run", 1),  # given: as given
    (RayOptions(workers=2), {"CPU": 8, "GPU": 4}, "encoder", 1.0),  # a card per encoder actor
    (RayOptions(workers=4), {"CPU": 8, "GPU": 2}, "encoder", 0.5),  # fewer cards than actors: an even share
    (RayOptions(workers=2), {"CPU": 8}, "encoder", 0.0),
    (RayOptions(workers=2, gpus=0), {"CPU": 8, "GPU": 2}, "encoder", 0),
])
def test_the_one_gpu_default(options, have, use, gpus):
    assert gpus_each(options, have, use) == gpus


@pytest.mark.parametrize("kwargs, message", [
    ({"cpus": 0}, "--ray-cpus must be > 0 and --ray-gpus >= 0"),
    ({"gpus": -1}, "--ray-cpus must be > 0 and --ray-gpus >= 0"),
    ({"workers": 0}, "--ray-workers must be >= 1"),
])
def test_bad_options_fail_in_one_line(kwargs, message):
    with pytest.raises(ConfigError, match=f"^{message}$"):
        RayOptions(**kwargs)
