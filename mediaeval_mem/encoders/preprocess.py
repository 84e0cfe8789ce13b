"""CLIPImageProcessor's preprocessing, on uint8 tensors and in batches instead of PIL images.

Two stages, so that the cheap-to-move uint8 result can travel to the device and be normalised there:
    resize_crop: uint8 (N, H, W, 3) -> uint8 (N, 3, S, S)   antialiased bicubic short-side resize, centre crop
    normalize:   uint8 (N, 3, S, S) -> float (N, 3, S, S)   /255, minus mean, over std
The resize runs on uint8 with Pillow's filter (video/decode.py: resize_short_side), so on full-size
frames the result is CLIPImageProcessor's to within one 8-bit level (mean |diff| < 1e-4, normalised).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from mediaeval_mem.video.decode import resize_short_side

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)
RESAMPLES = ("bicubic", "bilinear")  # the antialiased filters resize_short_side runs on uint8, as Pillow's


@dataclass(frozen=True)
class ImageTransform:
    short_side: int  # shortest edge after resizing
    crop: int  # square centre crop
    mean: tuple[float, float, float] = OPENAI_MEAN
    std: tuple[float, float, float] = OPENAI_STD
    resample: str = "bicubic"

    def __post_init__(self):
        if self.resample not in RESAMPLES:
            raise ValueError(f"resample {self.resample!r} is not one of {', '.join(RESAMPLES)}")
        if self.crop > self.short_side:
            raise ValueError(f"crop {self.crop} is larger than the resized short side {self.short_side}")

    @classmethod
    def from_processor_config(cls, cfg: dict) -> "ImageTransform":
        """From a Hugging Face preprocessor_config.json (both the int and the dict forms of sizes)."""
        size, crop = cfg.get("size", 224), cfg.get("crop_size", 224)
        size = size.get("shortest_edge", size.get("height")) if isinstance(size, dict) else size
        crop = crop.get("height") if isinstance(crop, dict) else crop
        return cls(int(size), int(crop), tuple(cfg.get("image_mean", OPENAI_MEAN)), tuple(cfg.get("image_std", OPENAI_STD)))

    def describe(self) -> dict:
        return asdict(self)

    def resize(self, frames: torch.Tensor) -> torch.Tensor:
        """uint8 (N, H, W, 3) full-size frames -> uint8 (N, 3, h, w), the short side resized (PIL's filter: `resample`)."""
        return resize_short_side(frames.permute(0, 3, 1, 2), self.short_side, self.resample)

    def crop_to(self, x: torch.Tensor, random_crop: bool = False) -> torch.Tensor:
        """uint8 (N, 3, h, w) -> (N, 3, crop, crop): centred, or (training) one random position for all N."""
        h, w = x.shape[-2:]
        if random_crop:
            top, left = (torch.randint(0, n - self.crop + 1, ()).item() for n in (h, w))
        else:
            top, left = (h - self.crop) // 2, (w - self.crop) // 2
        return x[..., top : top + self.crop, left : left + self.crop].contiguous()

    def resize_crop(self, frames: torch.Tensor, random_crop: bool = False) -> torch.Tensor:
        """uint8 (N, H, W, 3) -> uint8 (N, 3, crop, crop). No resize when the short side already fits."""
        return self.crop_to(self.resize(frames), random_crop)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 (N, 3, S, S) -> float32 (N, 3, S, S) on x's device."""
        mean = torch.tensor(self.mean, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(self.std, device=x.device).view(1, 3, 1, 1)
        return (x.float() / 255.0 - mean) / std

    def __call__(self, frames: torch.Tensor) -> torch.Tensor:
        return self.normalize(self.resize_crop(frames))
