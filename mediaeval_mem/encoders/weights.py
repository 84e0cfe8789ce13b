"""Finding model weights: a local directory, or a Hugging Face hub id (cache first, then network).

This project's machines have no network, so the error for a missing download says exactly what to
fetch elsewhere and where to point `--weights`.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from mediaeval_mem.core.errors import WeightsError

WEIGHT_SUFFIXES = (".json", ".safetensors", ".bin", ".pt", ".pth")


def _looks_like_path(source: str) -> bool:
    return source.startswith(("/", ".", "~")) or source.count("/") != 1


def resolve_hf_weights(source: str, encoder: str, allow_patterns=("*.json", "*.safetensors")) -> Path:
    """A local directory holding the weights of `source` (a directory path or a hub id)."""
    path = Path(source).expanduser()
    if path.is_dir():
        return path
    if path.exists() or _looks_like_path(source):
        raise WeightsError(f"{encoder}: weights directory {source} not found: pass --weights DIR (a save_pretrained folder)")
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
            f"or save it with save_pretrained and pass --weights DIR"
        ) from None


def dir_identity(path: Path) -> str:
    """A short digest of a weights directory: config files whole, weight files by name, size, head and tail."""
    return files_identity(sorted(p for p in Path(path).iterdir() if p.suffix in WEIGHT_SUFFIXES and p.is_file()))


def files_identity(files: list[Path]) -> str:
    """A short digest of weight files by name, size, first and last MB (whole, for small files).

    Cheap (a few MB read) yet changes with any retrained or replaced checkpoint.
    """
    h = hashlib.sha256()
    for f in files:
        size = f.stat().st_size
        h.update(f"{f.name}:{size}".encode())
        with open(f, "rb") as fh:
            h.update(fh.read(1 << 20))
            if size > 2 << 20:
                fh.seek(-(1 << 20), 2)
                h.update(fh.read())
    return h.hexdigest()[:16]
