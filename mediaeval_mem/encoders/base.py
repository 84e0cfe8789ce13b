"""The encoder registry and the interfaces encoders offer (STYLE.md 1-4).

A registered name maps to a builder(weights) -> EncoderRecipe: what the name fixes (weights identity,
preprocessing), known without loading the model, so a fully cached feature set never loads weights.
`recipe.load()` gives the encoder itself. What an encoder reads is in its EncoderInfo.input, the name of
a registered input kind (features/inputs/: how a dataset item becomes the encoder's input and rows):

    frames    one vector per video frame (CLIP): FrameEncoder over (N, 3, S, S)
    clip      one vector per video (I3D): FrameEncoder over one whole video (T, 3, S, S)
    captions  one vector per caption (CLIP text towers, sentence-transformers): TextEncoder (encoders/text.py)
    features  rows read from files someone already extracted (encoders/precomputed.py)
    audio     one vector per window of a video's sound (CLAP, AST): AudioEncoder (encoders/audio.py)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import nn

from mediaeval_mem.core.registry import Registry
from mediaeval_mem.encoders.preprocess import ImageTransform

# name -> builder(weights: str | None = None) -> EncoderRecipe
ENCODERS: Registry = Registry("encoder")


@dataclass(frozen=True)
class EncoderInfo:
    """What a name says about its features before any weights are loaded; registered with its builder."""

    width: int  # feature width of the architecture the name stands for (0: known only from the data)
    input: str = "frames"  # the input kind it reads: frames | clip | captions | features | a plugin's (features/inputs/)
    # Encoders that must be trained before they extract (the fine-tuned I3D) name their trainer
    # (training/trainers.py), which the run's feature stage calls when a stream gives no weights;
    # None for frozen extractors.
    trainer: str | None = None
    reads_caption: bool = False  # a clip-level encoder that also reads the video's first caption (a VLM's prompt)


@dataclass(frozen=True)
class EncoderRecipe:
    name: str
    weights_id: str
    transform: Any  # what prepares the input, with a describe(): ImageTransform (video) or TextPreprocess (captions)
    load: Callable[[], nn.Module]  # -> FrameEncoder, TextEncoder or FeatureReader

    def identity(self) -> dict:
        """Everything that fixes this encoder's features, for the feature-cache key."""
        return {"encoder": self.name, "weights": self.weights_id, "preprocess": self.transform.describe()}


class FrameEncoder(nn.Module):
    """Maps preprocessed frames (N, 3, S, S) to L2-normalised vectors (N, out_dim).

    Subclasses set `name`, `out_dim`, `transform` (the preprocessing its weights expect) and
    `weights_id` (what identifies the weights, for cache keys).
    """

    name: str
    out_dim: int
    transform: ImageTransform
    weights_id: str
    clip_level = False  # True: forward takes one whole video (T, 3, S, S) and returns (1, out_dim)
    min_frames = 1  # clip-level encoders: shorter videos are padded by repeating frames
    reads_caption = False  # clip-level encoders: forward also takes `caption=` (the video's first; a VLM's prompt)

    identity = EncoderRecipe.identity

    @torch.inference_mode()
    def encode_frames(self, frames: torch.Tensor) -> torch.Tensor:
        """uint8 (N, H, W, 3) -> (N, out_dim), preprocessing included (convenience, not the fast path)."""
        device = next(self.parameters()).device
        return self(self.transform.normalize(self.transform.resize_crop(frames).to(device)))


def encoder_recipe(name: str, weights: str | None = None) -> EncoderRecipe:
    """What encoder `name` with `weights` (a directory, a hub id, 'random', or None for its default) fixes."""
    return ENCODERS.build(name, weights=weights)


def build_encoder(name: str, weights: str | None = None) -> FrameEncoder:
    """Load encoder `name` with `weights` (see encoder_recipe)."""
    return encoder_recipe(name, weights).load()
