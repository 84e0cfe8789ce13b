"""Finding model weights: a local directory, or a Hugging Face hub id (cache first, then network).

This project's machines have no network, so the error for a missing download says exactly what to
fetch elsewhere and how to give the weights (`give_weights`).
"""

from __future__ import annotations

import hashlib
from contextlib import contextmanager
from pathlib import Path

from mediaeval_mem.core.errors import WeightsError

WEIGHT_SUFFIXES = (".json", ".safetensors", ".bin", ".pt", ".pth")


def give_weights(what: str) -> str:
    """How a user gives weights, per command: `mem run`, `mem grid` and `mem cv` read them from the config."""
    return (f"give {what} as the stream's `weights: {what}` in the run config (mem run, grid, cv), "
            f"or as `--weights {what}` to mem extract")


def _looks_like_path(source: str) -> bool:
    return source.startswith(("/", ".", "~")) or source.count("/") != 1


def resolve_hf_weights(source: str, encoder: str, allow_patterns=("*.json", "*.safetensors")) -> Path:
    """A local directory holding the weights of `source` (a directory path or a hub id)."""
    path = Path(source).expanduser()
    if path.is_dir():
        return path
    if path.exists() or _looks_like_path(source):
        raise WeightsError(f"{encoder}: weights directory {source} not found: {give_weights('DIR')} (a save_pretrained folder)")
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(source, allow_patterns=list(allow_patterns), local_files_only=True))
    except Exception:
        pass
    try:
        return Path(snapshot_download(source, allow_patterns=list(allow_patterns)))
    except Exception as e:
        raise WeightsError(
            f"{encoder}: cannot load {source!r}: it is not in the Hugging Face cache and the hub is not "
            f"reachable ({type(e).__name__}). On a machine with internet run "
            f"`hf download {source}` and copy ~/.cache/huggingface here, "
            f"or save it with save_pretrained and {give_weights('DIR')}"
        ) from None


def dir_identity(path: Path, suffixes: tuple[str, ...] = WEIGHT_SUFFIXES, recursive: bool = False) -> str:
    """A short digest of a weights directory: config files whole, weight files by name, size, head and tail.

    Text models pass `.txt` too (a tokenizer's merges.txt, vocab.txt) and `recursive` (a
    sentence-transformers folder keeps its pooling config in 1_Pooling/).
    """
    files = Path(path).rglob("*") if recursive else Path(path).iterdir()
    return files_identity(sorted(p for p in files if p.suffix in suffixes and p.is_file()))


def files_identity(files: list[Path]) -> str:
    """A short digest of weight files by name, size, first and last MB (whole, for small files).

    Cheap (a few MB read) yet changes with any retrained or replaced checkpoint.
    """
    h = hashlib.sha256()
    for f in files:
        size = f.stat().st_size
        name = f.name if f.parent == files[0].parent else f"{f.parent.name}/{f.name}"  # 1_Pooling/config.json
        h.update(f"{name}:{size}".encode())
        with open(f, "rb") as fh:
            h.update(fh.read(1 << 20))
            if size > 2 << 20:
                fh.seek(-(1 << 20), 2)
                h.update(fh.read())
    return h.hexdigest()[:16]


@contextmanager
def quiet_transformers():
    """transformers reports every unused key (a vision tower loaded from a whole CLIP) and draws loading bars: keep that out."""
    from transformers.utils import logging

    level, bars = logging.get_verbosity(), logging.is_progress_bar_enabled()
    logging.set_verbosity_error()
    logging.disable_progress_bar()
    try:
        yield
    finally:  # as it was: an inner block (a model built inside a save) must not turn the bars back on
        logging.set_verbosity(level)
        if bars:
            logging.enable_progress_bar()


def saved_once(folder: Path, write) -> Path:
    """`folder`, made the first time by `write(tmp)` into a sibling and renamed into place.

    Atomic: a half-written folder never looks complete; a process that loses the race to another
    drops its copy and uses the winner's. `folder/config.json` marks it complete.
    """
    folder = Path(folder)
    if (folder / "config.json").is_file():
        return folder
    import os
    import shutil

    tmp = folder.with_name(f"{folder.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.parent.mkdir(parents=True, exist_ok=True)
    with quiet_transformers():
        write(tmp)
    try:
        tmp.rename(folder)
    except OSError:  # another process won the race
        shutil.rmtree(tmp, ignore_errors=True)
    return folder
