"""Feature-cache keys: what fixes a set of features, hashed into the cache folder's name."""

from __future__ import annotations

from pathlib import Path

from mediaeval_mem.core.paths import runs_dir
from mediaeval_mem.core.schema import digest

FORMAT_VERSION = 2  # 2: frames decoded at full size and resized by the harness, not by the decoder


def feature_key(dataset_name: str, dataset_root: Path, encoder_identity: dict, sampling: str, dtype: str,
                pixels: str, clip_window: int | None = None) -> dict:
    """Dataset (name and folder), encoder (name, weights, preprocessing), sampling, how pixels are made, compute dtype;
    for a clip-level encoder (I3D) the frames per forward pass too: a longer video's vector combines windows of
    that many frames, so another window is another vector. Other encoders' keys have no such field (and keep
    the digests they had before it existed)."""
    window = {} if clip_window is None else {"clip_window": clip_window}
    return {
        "format": FORMAT_VERSION,
        "dataset": dataset_name,
        "data": str(Path(dataset_root).resolve()),
        **encoder_identity,
        "sampling": sampling,
        "compute_dtype": dtype,
        "decode": pixels,
        "storage": "float16",
        **window,
    }


def key_digest(key: dict) -> str:
    return digest(key, 12)


def cache_dir(key: dict) -> Path:
    """runs/features/<dataset>/<encoder>/<digest>/ (one subfolder per split)."""
    return runs_dir() / "features" / key["dataset"] / key["encoder"] / key_digest(key)


def repair_command(split_folder: Path) -> str:
    """The `mem extract` command that (re)fills one split folder of the cache, from the key.json beside it."""
    import json
    from shlex import quote

    split_folder = Path(split_folder)
    try:
        key = json.loads((split_folder.parent / "key.json").read_text())
        frames = "" if key["sampling"].startswith(("captions:", "speech:", "generated:", "as stored")) else f"--sampling {key['sampling']} "
        dtype = "" if key["compute_dtype"] == "none" else f"--dtype {key['compute_dtype']} "
        source = key.get("source") or {}  # a caption stream's text source: its settings
        texts = _source_flags(source) if source else ""
        cmd = (f"mem extract --dataset {key['dataset']} --encoder {key['encoder']} --splits {split_folder.name} "
               f"{frames}{dtype}{texts}--data-root {quote(str(Path(key['data']).parent))}")
    except (OSError, ValueError, KeyError, TypeError):
        return f"mem extract --splits {split_folder.name} (with the dataset and encoder that made {split_folder})"
    return cmd  # plus the --weights it was made with, if any: the key holds only their digest


NOT_SOURCE_ARGS = ("name", "weights", "preprocess")


def _source_flags(source: dict) -> str:
    """The `mem extract` flags of a text source as its key describes it (its weights aside: the key holds their digest)."""
    import json
    from shlex import quote

    import yaml

    if source["name"] == "speech":
        return (f"--source speech --transcriber {source['transcriber']} "
                + (f"--language {source['language']} " if source.get("language") else ""))

    def value(v) -> str:  # as YAML reads it back: a text that would read as something else is written as JSON
        return v if isinstance(v, str) and yaml.safe_load(v) == v else json.dumps(v)

    # every setting the key records is a source_arg, but its name, its weights (a digest here) and what the weights
    # fix (their preprocessing): not TEXT_SOURCES' fields, which would import captions.py, which imports this module
    settings = [k for k in source if k not in NOT_SOURCE_ARGS]
    return f"--source {source['name']} " + "".join(f"--source-arg {quote(f'{k}={value(source[k])}')} " for k in settings)
