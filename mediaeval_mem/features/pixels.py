"""The pixels an encoder sees: full-size frames, decoded in chunks, resized by the encoder's own transform.

`iter_frames` is what extraction's decoding workers run (chunk by chunk, so that a video of any length
is never whole in memory); `frames_for` gives a whole clip (the I3D fine-tuning's clip loader);
`pixels_for` adds the normalisation that extraction then applies on the device, so that anyone can
check what the model was fed:

    >>> pixels_for("clip-vit-b32", "data/demo/memento10k/dev_set/Videos/00013.mp4", "uniform:4").shape
    torch.Size([4, 3, 224, 224])
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import torch

from mediaeval_mem.encoders import encoder_recipe
from mediaeval_mem.encoders.preprocess import ImageTransform
from mediaeval_mem.video import Sampling
from mediaeval_mem.video.decode import iter_chunks

# What the feature key records about this path (any change to how pixels are made changes it).
PIXEL_PATH = "full-size decode in chunks; antialiased bicubic short-side resize on uint8 (Pillow's filter); centre crop"


def pixel_path(transform) -> str:
    """What the feature key records about how `transform`'s pixels are made: PIXEL_PATH (CLIP, I3D: unchanged, so
    their keys stay), the whole-frame resize of a transform that does not keep the aspect (SigLIP), or what a
    transform of another kind says of itself (its `pixel_path`: the VLM's)."""
    if getattr(transform, "pixel_path", None):
        return transform.pixel_path
    if getattr(transform, "keep_aspect", True):  # a short side resized: bicubic (CLIP, I3D), or the checkpoint's filter
        return PIXEL_PATH if transform.resample == "bicubic" else PIXEL_PATH.replace("bicubic", transform.resample)
    return (f"full-size decode in chunks; antialiased {transform.resample} resize of the whole frame to "
            f"{transform.short_side}x{transform.short_side} on uint8 (Pillow's filter), aspect not kept; no crop")


def iter_frames(path: str | Path, transform: ImageTransform, sampling: str | Sampling = "all",
                backend: str = "auto") -> Iterator[torch.Tensor]:
    """The video's sampled frames as uint8 (n, 3, S, S) chunks (n <= video.decode.CHUNK), resized and centre-cropped.

    Memory holds one full-size chunk at a time (the one being resized), whatever the video's length.
    Cropping chunk by chunk gives the pixels of cropping the whole clip: every frame of a video has the
    same size, so the centre is the same.
    """
    for chunk in iter_chunks(path, sampling, backend):  # uint8 (n, H, W, 3)
        yield transform.resize_crop(chunk)


def frames_for(path: str | Path, transform: ImageTransform, sampling: str | Sampling = "all", backend: str = "auto",
               random_crop: bool = False) -> torch.Tensor:
    """uint8 (T, 3, S, S): the video's sampled frames, resized chunk by chunk, then cropped.

    Holds the whole clip (resized): for clips of a bounded number of frames (fine-tuning samples
    uniform:N); extraction streams `iter_frames` instead. `random_crop` (training) crops every frame
    at one random position, so it crops once all chunks are resized.
    """
    if not random_crop:
        return torch.cat(list(iter_frames(path, transform, sampling, backend)))
    resized = [transform.resize(chunk) for chunk in iter_chunks(path, sampling, backend)]  # each (n, 3, h, w)
    return transform.crop_to(torch.cat(resized), random_crop=True)


def pixels_for(encoder_name: str, video_path: str | Path, sampling: str = "all", backend: str = "auto",
               weights: str | None = "random") -> torch.Tensor:
    """float32 (T, 3, S, S): the frames of `video_path` normalised exactly as `encoder_name` receives them
    in `mem extract` (same decoding, resizing, cropping and normalisation code).

    `weights` picks the preprocessing where a weights folder carries its own (preprocessor_config.json);
    the default, 'random', gives the architecture's standard one without needing any weights.
    """

    transform = encoder_recipe(encoder_name, weights).transform
    return transform.normalize(frames_for(video_path, transform, sampling, backend)).float()
