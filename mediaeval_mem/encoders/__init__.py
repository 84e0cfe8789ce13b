"""Encoders: the registry (each name with its EncoderInfo), CLIP and I3D over frames, text towers over captions,
CLAP and AST over sound."""

from mediaeval_mem.encoders.base import (
    ENCODERS,
    EncoderInfo,
    EncoderRecipe,
    FrameEncoder,
    build_encoder,
    encoder_recipe,
)
from mediaeval_mem.encoders import audio, clip, i3d, precomputed, text, vlm, vlm_lora  # noqa: F401,E402  (register their names; transformers loads lazily)

__all__ = ["ENCODERS", "EncoderInfo", "EncoderRecipe", "FrameEncoder", "build_encoder", "encoder_recipe"]
