"""The pixels an encoder sees: full-size frames, decoded in chunks, resized by the encoder's own transform.

`frames_for` is what extraction's decoding workers (and the I3D fine-tuning's clip loader) run;
`pixels_for` adds the normalisation that extraction then applies on the device, so that anyone can
check what the model was fed:

    >>> pixels_for("clip-vit-b32", "data/demo/memento10k/dev_set/Videos/00013.mp4", "uniform:4").shape
    torch.Size([4, 3, 224, 224])
"""

from __future__ import annotations

from pathlib import Path

import torch

from mediaeval_mem.encoders.preprocess import ImageTransform
from mediaeval_mem.video import Sampling
from mediaeval_mem.video.decode import iter_chunks

# What the feature key records about this path (any change to how pixels are made changes it).
PIXEL_PATH = "full-size decode in chunks; antialiased bicubic short-side resize on uint8 (Pillow's filter); centre crop"


def frames_for(path: str | Path, transform: ImageTransform, sampling: str | Sampling = "all", backend: str = "auto",
               random_crop: bool = False) -> torch.Tensor:
    """uint8 (T, 3, S, S): the video's sampled frames, resized chunk by chunk, then cropped.

    Memory holds a few full-size chunks at a time (the one being resized, the next being decoded) and
    the resized frames, never the whole full-size video.
    """
    resized = [transform.resize(chunk) for chunk in iter_chunks(path, sampling, backend)]  # each (n, 3, h, w)
    return transform.crop_to(torch.cat(resized), random_crop)


def pixels_for(encoder_name: str, video_path: str | Path, sampling: str = "all", backend: str = "auto",
               weights: str | None = "random") -> torch.Tensor:
    """float32 (T, 3, S, S): the frames of `video_path` normalised exactly as `encoder_name` receives them
    in `mem extract` (same decoding, resizing, cropping and normalisation code).

    `weights` picks the preprocessing where a weights folder carries its own (preprocessor_config.json);
    the default, 'random', gives the architecture's standard one without needing any weights.
    """
    from mediaeval_mem.encoders import encoder_recipe

    transform = encoder_recipe(encoder_name, weights).transform
    return transform.normalize(frames_for(video_path, transform, sampling, backend)).float()
