"""CLIPImageProcessor's and SiglipImageProcessor's preprocessing, on uint8 tensors and in batches instead of PIL images.

Two stages, so that the cheap-to-move uint8 result can travel to the device and be normalised there:
    resize_crop: uint8 (N, H, W, 3) -> uint8 (N, 3, S, S)   antialiased short-side resize and centre crop (CLIP),
                                                            or the whole frame to S x S, aspect not kept (SigLIP)
    normalize:   uint8 (N, 3, S, S) -> float (N, 3, S, S)   /255, minus mean, over std
The resize runs on uint8 with Pillow's filter (video/decode.py: resize_short_side), so on full-size
frames the result is CLIPImageProcessor's to within one 8-bit level (mean |diff| < 1e-4, normalised).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from mediaeval_mem.video.decode import resize_short_side

PIL_RESAMPLE = {2: "bilinear", 3: "bicubic"}  # PIL's filter numbers in preprocessor_config.json (antialiased in torch)
OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)
RESAMPLES = ("bicubic", "bilinear")  # the antialiased filters resize_short_side runs on uint8, as Pillow's


@dataclass(frozen=True)
class ImageTransform:
    short_side: int  # shortest edge after resizing
    crop: int  # square centre crop
    mean: tuple[float, float, float] = OPENAI_MEAN
    std: tuple[float, float, float] = OPENAI_STD
    resample: str = "bicubic"  # bicubic | bilinear (PIL's antialiased filters)
    # False: the whole frame is resized to short_side x short_side, aspect not kept, no crop (SiglipImageProcessor);
    # True: the short side is resized, the aspect kept, then centre-cropped (CLIPImageProcessor).
    keep_aspect: bool = True

    def __post_init__(self):
        if self.resample not in RESAMPLES:
            raise ValueError(f"resample {self.resample!r} is not one of {', '.join(RESAMPLES)}")
        if self.crop > self.short_side:
            raise ValueError(f"crop {self.crop} is larger than the resized short side {self.short_side}")

    @classmethod
    def from_processor_config(cls, cfg: dict) -> "ImageTransform":
        """From a Hugging Face preprocessor_config.json (both the int and the dict forms of sizes).

        A size of height x width with no centre crop (SiglipImageProcessor's) resizes the whole frame to that
        square with the config's filter; a shortest_edge (CLIPImageProcessor's) keeps the aspect and crops.
        """
        size, crop = cfg.get("size", 224), cfg.get("crop_size", 224)
        mean, std = tuple(cfg.get("image_mean", OPENAI_MEAN)), tuple(cfg.get("image_std", OPENAI_STD))
        if isinstance(size, dict) and "shortest_edge" not in size and not cfg.get("do_center_crop", False):
            if size.get("height") != size.get("width"):
                raise ValueError(f"size {size} is not square: only square fixed-size resizes are supported")
            resample = cfg.get("resample", 2)
            if resample not in PIL_RESAMPLE:
                raise ValueError(f"resample {resample} is not PIL's bilinear (2) or bicubic (3)")
            side = int(size["height"])
            return cls(side, side, mean, std, PIL_RESAMPLE[resample], keep_aspect=False)
        size = size.get("shortest_edge", size.get("height")) if isinstance(size, dict) else size
        crop = crop.get("height") if isinstance(crop, dict) else crop
        return cls(int(size), int(crop), mean, std)

    @classmethod
    def square(cls, side: int, resample: str = "bilinear", mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5)) -> "ImageTransform":
        """The whole frame to side x side, aspect not kept (SiglipImageProcessor's defaults: bilinear, [-1, 1])."""
        return cls(side, side, tuple(mean), tuple(std), resample, keep_aspect=False)

    def describe(self) -> dict:
        d = asdict(self)
        if self.keep_aspect:  # the default: absent, so that CLIP's and I3D's feature keys stay as they were
            del d["keep_aspect"]
        return d

    def resize(self, frames: torch.Tensor) -> torch.Tensor:
        """uint8 (N, H, W, 3) full-size frames -> uint8 (N, 3, h, w): the short side resized (PIL's filter: `resample`),
        or, keep_aspect False, the whole frame to (S, S) with PIL's filter (no resize when it already is)."""
        x = frames.permute(0, 3, 1, 2)  # (N, 3, H, W), a channels-last view
        if self.keep_aspect:
            return resize_short_side(x, self.short_side, self.resample)
        if tuple(x.shape[-2:]) == (self.short_side, self.short_side):
            return x
        # uint8 channels-last: torch runs Pillow's separable antialiased filter, the pixels of Image.resize
        x = x.contiguous(memory_format=torch.channels_last)
        return torch.nn.functional.interpolate(x, size=(self.short_side,) * 2, mode=self.resample, antialias=True)

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
