"""How features are extracted (not what: that is a stream's encoder, weights and sampling).

One dataclass for the `extract:` section of a run config, the options of `mem extract` (whose
defaults come from here) and the library's `extract_features`.
"""

from __future__ import annotations

from dataclasses import dataclass

from mediaeval_mem.core.errors import ConfigError


@dataclass(frozen=True)
class ExtractOptions:
    batch_size: int = 64  # frames per forward pass, packed across videos
    dtype: str = "auto"  # auto (bf16 where the hardware computes it natively) | bf16 | fp32
    workers: int = 2  # decoding threads
    flush_every: int = 32  # videos per stored segment: what an interruption can lose at most
    backend: str = "auto"  # decoder: auto (decord, then PyAV) | decord | pyav
    overlap: str = "auto"  # decode while the model runs: auto (on CUDA only) | on | off

    def __post_init__(self):
        checks = [
            (self.batch_size >= 1, "batch_size must be >= 1"),
            (self.workers >= 1, "workers must be >= 1"),
            (self.flush_every >= 1, "flush_every must be >= 1"),
            (self.dtype in ("auto", "bf16", "fp32"), "dtype must be auto, bf16 or fp32"),
            (self.backend in ("auto", "decord", "pyav"), "backend must be auto, decord or pyav"),
            (self.overlap in ("auto", "on", "off"), "overlap must be auto, on or off"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)


# what each option means, for `mem extract --help` (the defaults are read from the dataclass)
HELP = {
    "batch_size": "frames per forward pass, packed across videos",
    "dtype": "auto (bf16 where native), bf16, fp32",
    "workers": "decoding threads",
    "flush_every": "videos per stored segment: the most an interruption loses",
    "backend": "decoder: auto (decord, then PyAV), decord, pyav",
    "overlap": "decode while the model runs: auto (on CUDA only), on, off",
}
