"""CLIPImageProcessor's preprocessing, on uint8 tensors and in batches instead of PIL images.

Two stages, so that the cheap-to-move uint8 result can travel to the device and be normalised there:
    resize_crop: uint8 (N, H, W, 3) -> uint8 (N, 3, S, S)   bicubic shortest-side resize, centre crop
    normalize:   uint8 (N, 3, S, S) -> float (N, 3, S, S)   /255, minus mean, over std
Resizing rounds back to uint8 as the PIL path does, which keeps the two within 0.01 mean |diff|.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

from mediaeval_mem.video.decode import resized_hw

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass(frozen=True)
class ImageTransform:
    short_side: int  # shortest edge after resizing
    crop: int  # square centre crop
    mean: tuple[float, float, float] = OPENAI_MEAN
    std: tuple[float, float, float] = OPENAI_STD
    resample: str = "bicubic"

    def __post_init__(self):
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

    def resize_crop(self, frames: torch.Tensor, random_crop: bool = False) -> torch.Tensor:
        """uint8 (N, H, W, 3) -> uint8 (N, 3, crop, crop). No resize when the short side already fits.

        random_crop: one crop position for all N frames, drawn from torch's RNG (training augmentation).
        """
        x = frames.permute(0, 3, 1, 2)  # (N, 3, H, W)
        h, w = x.shape[-2:]
        th, tw = resized_hw(h, w, self.short_side)
        if (th, tw) != (h, w):
            x = F.interpolate(x.float(), size=(th, tw), mode="bicubic", antialias=True, align_corners=False)
            x = x.round_().clamp_(0, 255).to(torch.uint8)
        if random_crop:
            top, left = (torch.randint(0, n - self.crop + 1, ()).item() for n in (th, tw))
        else:
            top, left = (th - self.crop) // 2, (tw - self.crop) // 2
        return x[..., top : top + self.crop, left : left + self.crop].contiguous()

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 (N, 3, S, S) -> float32 (N, 3, S, S) on x's device."""
        mean = torch.tensor(self.mean, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(self.std, device=x.device).view(1, 3, 1, 1)
        return (x.float() / 255.0 - mean) / std

    def __call__(self, frames: torch.Tensor) -> torch.Tensor:
        return self.normalize(self.resize_crop(frames))
