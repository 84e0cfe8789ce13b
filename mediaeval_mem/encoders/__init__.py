"""Encoders: the registry (each name with its EncoderInfo), CLIP and SigLIP 2 over frames, the I3D, V-JEPA 2, VideoMAE,
X-CLIP and Qwen2.5-VL over clips, text towers over captions, CLAP and AST over sound."""

from mediaeval_mem.encoders.base import (
    ENCODERS,
    EncoderInfo,
    EncoderRecipe,
    FrameEncoder,
    build_encoder,
    encoder_recipe,
)
from mediaeval_mem.encoders import audio, clip, i3d, precomputed, siglip, text, video_models, vlm, vlm_lora  # noqa: F401,E402  (register their names; transformers loads lazily)

__all__ = ["ENCODERS", "EncoderInfo", "EncoderRecipe", "FrameEncoder", "build_encoder", "encoder_recipe"]
