"""Frame encoders: a registry of names, each fixing its weights and preprocessing."""

from mediaeval_mem.encoders.base import ENCODER_INFO, ENCODERS, EncoderInfo, EncoderRecipe, FrameEncoder, build_encoder, encoder_recipe
from mediaeval_mem.encoders import clip, i3d  # noqa: F401,E402  (register their names; transformers loads lazily)

__all__ = ["ENCODER_INFO", "ENCODERS", "EncoderInfo", "EncoderRecipe", "FrameEncoder", "build_encoder", "encoder_recipe"]
