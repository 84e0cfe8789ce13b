"""Features: what an encoder reads (inputs/), how they are extracted (options, pixels, engine, extract, distributed),
stored (store, key, rows) and checked.

`pixels_for` is imported on first use, so that importing this package stays light (`mem --help`).
"""


def __getattr__(name: str):
    if name == "pixels_for":
        from mediaeval_mem.features.pixels import pixels_for

        return pixels_for
    raise AttributeError(f"module 'mediaeval_mem.features' has no attribute {name!r}")
