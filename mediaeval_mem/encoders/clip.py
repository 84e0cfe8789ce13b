"""CLIP ViT frame encoders through transformers: the vision tower's pooled output, L2-normalised.

The pooled output is the post-layernorm CLS token, i.e. before the vision projection (768-d for
B/32, 1024-d for L/14-336), as in the paper. Names are thin builders over one class (STYLE.md 2).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F

from mediaeval_mem.core.errors import WeightsError
from mediaeval_mem.core.paths import runs_dir
from mediaeval_mem.encoders.base import ENCODERS, EncoderInfo, EncoderRecipe, FrameEncoder
from mediaeval_mem.encoders.preprocess import ImageTransform
from mediaeval_mem.encoders.weights import dir_identity, quiet_transformers, resolve_hf_weights, saved_once

# Vision-tower shapes of the OpenAI checkpoints, so the full-size architectures can be built with
# random weights (tests, benchmarks) without a download. Activation: quick_gelu (CLIPVisionConfig's default).
CLIP_ARCHS = {
    "clip-vit-b32": dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12, patch_size=32, image_size=224),
    "clip-vit-l14-336": dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16, patch_size=14, image_size=336),
    # Tiny, for the demo and tests: 32 px, 16 patches, 2 layers, 64-d.
    "clip-demo": dict(hidden_size=64, intermediate_size=256, num_hidden_layers=2, num_attention_heads=4, patch_size=8, image_size=32),
}
HF_IDS = {"clip-vit-b32": "openai/clip-vit-base-patch32", "clip-vit-l14-336": "openai/clip-vit-large-patch14-336"}
DEMO_SEED = 0


class ClipEncoder(FrameEncoder):
    def __init__(self, name: str, vision, transform: ImageTransform, weights_id: str):
        super().__init__()
        self.name, self.vision, self.transform, self.weights_id = name, vision, transform, weights_id
        self.out_dim = vision.config.hidden_size
        self.eval().requires_grad_(False)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """(N, 3, S, S) normalised pixels -> (N, out_dim) unit vectors (fp32)."""
        pooled = self.vision(pixel_values=pixels).pooler_output  # (N, hidden)
        return F.normalize(pooled.float(), dim=-1)


def _random_clip(name: str, seed: int = DEMO_SEED):
    from transformers import CLIPVisionConfig, CLIPVisionModel

    torch.manual_seed(seed)
    return CLIPVisionModel(CLIPVisionConfig(**CLIP_ARCHS[name]))


def _load_clip_dir(name: str, folder: Path):
    from transformers import CLIPVisionModel

    try:
        with quiet_transformers():
            return CLIPVisionModel.from_pretrained(folder)
    except (OSError, ValueError) as e:
        raise WeightsError(f"{name}: cannot load CLIP weights from {folder}: {e}") from None


def _dir_transform(name: str, folder: Path) -> ImageTransform:
    """The preprocessing a weights folder asks for: its preprocessor_config.json, else its image size."""
    cfg_file = folder / "preprocessor_config.json"
    if cfg_file.is_file():
        return ImageTransform.from_processor_config(json.loads(cfg_file.read_text()))
    try:
        cfg = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError) as e:
        raise WeightsError(f"{name}: {folder} has no readable config.json ({e}): is it a save_pretrained folder?") from None
    size = cfg.get("vision_config", cfg).get("image_size", 224)
    return ImageTransform(size, size)


def create_clip(name: str, weights: str | None = None) -> EncoderRecipe:
    """CLIP encoder `name` from `weights`: None (its hub id), a directory, a hub id, or 'random'."""
    if weights == "random":
        size = CLIP_ARCHS[name]["image_size"]
        transform = ImageTransform(size, size)
        load = lambda: ClipEncoder(name, _random_clip(name), transform, f"random:seed={DEMO_SEED}")
        return EncoderRecipe(name, f"random:seed={DEMO_SEED}", transform, load)
    folder = resolve_hf_weights(weights or HF_IDS[name], name)
    transform, weights_id = _dir_transform(name, folder), dir_identity(folder)
    return EncoderRecipe(name, weights_id, transform, lambda: ClipEncoder(name, _load_clip_dir(name, folder), transform, weights_id))


def demo_weights_dir() -> Path:
    """The tiny demo CLIP, made once with a fixed seed and saved with save_pretrained under runs/models/."""
    def write(tmp: Path) -> None:
        import transformers

        size = CLIP_ARCHS["clip-demo"]["image_size"]
        _random_clip("clip-demo").save_pretrained(tmp)
        processor_cls = getattr(transformers, "CLIPImageProcessorPil", None) or transformers.CLIPImageProcessor
        processor_cls(size={"shortest_edge": size}, crop_size={"height": size, "width": size}).save_pretrained(tmp)

    return saved_once(runs_dir() / "models" / "clip-demo", write)


@ENCODERS.register("clip-vit-b32", info=EncoderInfo(CLIP_ARCHS["clip-vit-b32"]["hidden_size"]))
def clip_vit_b32(weights: str | None = None) -> EncoderRecipe:
    """CLIP ViT-B/32 (openai/clip-vit-base-patch32), 224 px, 768-d pooled output."""
    return create_clip("clip-vit-b32", weights)


@ENCODERS.register("clip-vit-l14-336", info=EncoderInfo(CLIP_ARCHS["clip-vit-l14-336"]["hidden_size"]))
def clip_vit_l14_336(weights: str | None = None) -> EncoderRecipe:
    """CLIP ViT-L/14 at 336 px (openai/clip-vit-large-patch14-336), 1024-d pooled output: the paper's best."""
    return create_clip("clip-vit-l14-336", weights)


@ENCODERS.register("clip-demo", info=EncoderInfo(CLIP_ARCHS["clip-demo"]["hidden_size"]))
def clip_demo(weights: str | None = None) -> EncoderRecipe:
    """A tiny CLIP vision tower with seeded random weights, saved under runs/models/ and loaded back from there."""
    if weights == "random":
        return create_clip("clip-demo", "random")
    return create_clip("clip-demo", weights or str(demo_weights_dir().resolve()))
