"""`mem extract`: videos -> cached features, resumable, one bad video never stops the rest.

The front door: the encoder's recipe and the dataset, the cache key and folder (what the encoder reads
decides both: features/inputs/), then each split filled by its input kind under the split's lock
(features/store.py). Frame and clip encoders run through the threaded engine (features/engine.py), in this
process or on Ray encoder actors (features/distributed.py).
"""

from __future__ import annotations

from pathlib import Path

import torch

from mediaeval_mem.core.errors import ConfigError, MemError
from mediaeval_mem.core.io import atomic_write_json
from mediaeval_mem.core.runtime import resolve_device, resolve_dtype
from mediaeval_mem.datasets import DatasetIndex, open_dataset
from mediaeval_mem.encoders import ENCODERS, EncoderInfo, EncoderRecipe, FrameEncoder, encoder_recipe
from mediaeval_mem.features.distributed import RayOptions, encoder_pool
from mediaeval_mem.features.inputs import Extraction, InputKind, input_kind
from mediaeval_mem.features.key import cache_dir
from mediaeval_mem.features.options import ExtractOptions
from mediaeval_mem.features.report import ExtractReport, SplitReport
from mediaeval_mem.features.store import FeatureStore
from mediaeval_mem.video import Sampling


def extract_features(
    dataset: str | DatasetIndex,
    encoder: str | EncoderRecipe | FrameEncoder,
    splits: tuple[str, ...] = ("train", "dev", "test"),
    weights: str | None = None,
    data_root: str | Path | None = None,
    sampling: str | Sampling = "all",
    opts: ExtractOptions = ExtractOptions(),
    device: str = "auto",
    progress: bool = True,
    ray: RayOptions | str | None = None,
    source=None,
) -> ExtractReport:
    """Extract and cache features for `splits` of a dataset; returns what was done, cached and failed.

    What is extracted (encoder, weights, sampling) fixes the cache key, with the compute dtype; how
    (`opts`, `device`, `ray`) does not otherwise. With `ray` (a RayOptions, or an address: "local"
    starts a private Ray here) the videos are encoded by actors on a Ray cluster and stored by this
    process (features/distributed.py): the same cache entry, the same features.

    >>> report = extract_features("memento10k", "clip-demo", data_root="data/demo", sampling="uniform:16")
    >>> report.splits[0].extracted, report.cache_dir
    (120, PosixPath('runs/features/memento10k/clip-demo/3f2c...'))

    The model is loaded only if some video is not cached yet. `source`: where a caption encoder's texts come from
    (a features/captions.py TextSource, e.g. `text_source("speech")`; None: the dataset's captions).
    """
    # an unknown name, missing weights: refused here, before any data is read
    recipe = encoder_recipe(encoder, weights) if isinstance(encoder, str) else encoder
    index = dataset if isinstance(dataset, DatasetIndex) else open_dataset(dataset, data_root)
    # segments:N draws its frames afresh every epoch, as batches are cut: it extracts every frame, so it is `all`
    # here and in the key (one cache entry for both)
    asked = Sampling.parse(sampling)
    sampling = asked.extracted
    # an encoder module given as it is, and not registered, reads frames
    kind = input_kind(ENCODERS.info(recipe.name) if recipe.name in ENCODERS else EncoderInfo(getattr(recipe, "out_dim", 0)))
    refused = kind.sampling_refusal(recipe.name, str(asked))
    if refused:
        raise ConfigError(f"sampling {asked} {refused}: leave --sampling at all")
    if source is not None and not kind.takes_source:
        raise ConfigError(f"{recipe.name} reads no texts: a text source ({source.name}) is for caption encoders")
    if ray is None:
        device = resolve_device(device)
        return _extract(index, recipe, kind, splits, sampling, opts, device, resolve_dtype(opts.dtype, device), progress,
                        source=source)
    if not kind.ray or isinstance(recipe, torch.nn.Module):
        raise MemError(f"--ray shards videos over actors that build a frame or clip encoder from its recipe; "
                       f"extract {recipe.name} without it")
    with encoder_pool(ray, recipe, sampling, opts, device) as pool:
        return _extract(index, recipe, kind, splits, sampling, opts, torch.device(pool.device), pool.dtype, progress, pool)


def _extract(index: DatasetIndex, recipe, kind: InputKind, splits: tuple[str, ...], sampling: Sampling,
             opts: ExtractOptions, device: torch.device, dtype: str, progress: bool, pool=None,
             source=None) -> ExtractReport:
    """extract_features once the device and dtype are known; `pool`: the Ray encoder actors, if any."""
    key = kind.key(index, recipe, sampling, dtype, **({"source": source} if source is not None else {}))
    folder = cache_dir(key)
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_json(folder / "key.json", key)
    loaded: list = [recipe] if isinstance(recipe, torch.nn.Module) else []

    def load_encoder():  # once, and only if some video is not cached
        if not loaded:
            loaded.append(recipe.load().to(device))
        return loaded[0]

    job = Extraction(index, recipe, sampling, opts, device, dtype, progress, load_encoder, pool, source)
    reports = []
    for split in splits:
        items, store = index.split(split), FeatureStore(folder / split)
        report = SplitReport(split, len(items))
        if {it.video_id for it in items} <= store.done_ids():
            report.cached = len(items)  # nothing to do: no model load, no lock
        else:
            kind.fill(job, items, store, report)
        reports.append(report)
    # a clip-level encoder still decodes frames: its count is of frames, not of its rows
    return ExtractReport(index.name, recipe.name, folder, key, reports, kind.report_unit)
