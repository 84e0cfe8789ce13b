"""Frame encoders: a registry of names, each fixing its weights and preprocessing."""

from mediaeval_mem.encoders.base import ENCODERS, FrameEncoder, build_encoder

__all__ = ["ENCODERS", "FrameEncoder", "build_encoder"]
