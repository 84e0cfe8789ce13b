"""Video foundation encoders through transformers: V-JEPA 2, VideoMAE and X-CLIP's video tower, one vector per clip.

Each reads the `clip` input kind (one video at a time; features/engine.py runs a long video in windows of
at most CLIP_WINDOW sampled frames and averages the windows' vectors, weighted by frame count). Each window
is resampled to the number of frames the checkpoint was trained on (`clip_frames`): the centre frame of each
of that many equal segments of the window, so a shorter window repeats frames (and a video shorter than a
clip is recorded as padded). The stream's sampling therefore decides which part of the video is seen and at
what rate; the model always gets the clip length it was trained on. The vector is L2-normalised, as CLIP's.

What each checkpoint was trained with, and what the harness feeds it:

    vjepa2-vitl-256   facebook/vjepa2-vitl-fpc64-256 (VJEPA2Model, ViT-L/16, tubelet 2, 1024-d): pre-trained
                      on 16-frame clips, then 64-frame clips at 256 px ("fpc64"); its processor
                      (VJEPA2VideoProcessor) resizes the short side to int(256 * 256 / 224) = 292 (bilinear),
                      centre-crops 256, ImageNet mean/std. Harness: 64 frames per window, the encoder's
                      last_hidden_state (64/2 x 16 x 16 = 8192 tokens) averaged over tokens. The predictor
                      is loaded with the checkpoint but never run.
    videomae-base     MCG-NJU/videomae-base (VideoMAEModel, ViT-B/16, tubelet 2, 768-d): self-supervised on
                      Kinetics-400 with 16-frame clips taken every 4th frame (about 2 s at 30 fps); its
                      processor (VideoMAEImageProcessor) resizes the short side to 224 (bilinear) and
                      centre-crops 224, ImageNet mean/std. Its position embeddings fix 16 frames. Harness: 16
                      frames per window, last_hidden_state (8 x 14 x 14 = 1568 tokens) averaged.
    xclip-base-p32    microsoft/xclip-base-patch32 (XCLIPModel, 512-d): trained on Kinetics-400 with 8 frames,
                      one from each of 8 equal segments (TSN sampling, the centre one at test time), 224 px with
                      VideoMAEImageProcessor (bilinear, short side 224, centre crop). Harness: 8 frames per
                      window, get_video_features (the frames' projected CLS tokens through the multi-frame
                      integration transformer, averaged): the video tower only, no text.

With a stream's sampling `all`, a 3 s Memento10k video (90 frames at 30 fps) is one window: X-CLIP gets
exactly its test-time sampling (the centre frame of each of 8 segments), VideoMAE 16 frames about 5.6 apart
(trained 4 apart), V-JEPA 2 64 frames over the 90. `uniform:N` with N below the clip length repeats frames.

A weights folder's own preprocessor config (preprocessor_config.json or video_preprocessor_config.json)
and model config (frames per clip, image size) win over these defaults, as for CLIP. `weights: random`
builds the full-size architecture with seeded random weights (benches); `vjepa2-demo`, `videomae-demo` and
`xclip-demo` are tiny seeded models saved under runs/models/ with save_pretrained and loaded back from there.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from mediaeval_mem.core.errors import WeightsError
from mediaeval_mem.core.paths import runs_dir
from mediaeval_mem.encoders.base import ENCODERS, EncoderInfo, EncoderRecipe, FrameEncoder
from mediaeval_mem.encoders.preprocess import ImageTransform
from mediaeval_mem.encoders.weights import dir_identity, quiet_transformers, resolve_hf_weights, saved_once
from mediaeval_mem.video.sampling import segment_centres

IMAGENET_MEAN = (0.485, 0.456, 0.406)  # transformers' IMAGENET_DEFAULT_MEAN / _STD, as these checkpoints use
IMAGENET_STD = (0.229, 0.224, 0.225)
PIL_FILTERS = {2: "bilinear", 3: "bicubic"}  # a processor config's `resample` (PIL's numbering)
SEED = 0


def vjepa2_short_side(crop: int) -> int:
    """VJEPA2VideoProcessor's resize: the short side to int(crop * 256 / 224), whatever `size` a config says."""
    return int(crop * 256 / 224)


# --------------------------------------------------------------------------- the three model families

class Family:
    """What differs between the model families: the transformers classes, where a config keeps its
    clip length and image size, the default preprocessing, and how a clip becomes one vector."""

    model_type: str  # config.json's model_type
    model_class: str  # the transformers class loaded
    config_class: str
    processor_files = ("preprocessor_config.json",)

    def frames(self, cfg) -> int:
        """Frames per clip the checkpoint was trained with."""
        raise NotImplementedError

    def crop(self, cfg) -> int:
        return cfg.image_size

    def transform(self, cfg) -> ImageTransform:
        """The preprocessing of the checkpoint's own processor, where a folder gives none."""
        return ImageTransform(self.crop(cfg), self.crop(cfg), IMAGENET_MEAN, IMAGENET_STD, "bilinear")

    def transform_from(self, processor: dict, cfg) -> ImageTransform:
        """From a VideoMAEImageProcessor preprocessor config (both the int and the dict forms of sizes)."""
        size, crop = processor.get("size", self.crop(cfg)), processor.get("crop_size", self.crop(cfg))
        size = size.get("shortest_edge", size.get("height")) if isinstance(size, dict) else size
        crop = crop.get("height") if isinstance(crop, dict) else crop
        return ImageTransform(int(size), int(crop), tuple(processor.get("image_mean", IMAGENET_MEAN)),
                              tuple(processor.get("image_std", IMAGENET_STD)), _filter(processor))

    def embed(self, model, video: torch.Tensor) -> torch.Tensor:
        """(B, T, 3, S, S) normalised clip -> (B, D)."""
        raise NotImplementedError


def _filter(processor: dict) -> str:
    code = processor.get("resample", 2)
    if code not in PIL_FILTERS:
        raise WeightsError(f"preprocessor config asks for PIL resample filter {code}; the harness resizes with "
                           f"{' or '.join(f'{v} ({k})' for k, v in PIL_FILTERS.items())}")
    return PIL_FILTERS[code]


class VJEPA2(Family):
    model_type, model_class, config_class = "vjepa2", "VJEPA2Model", "VJEPA2Config"
    processor_files = ("video_preprocessor_config.json", "preprocessor_config.json")

    def frames(self, cfg) -> int:
        return cfg.frames_per_clip

    def crop(self, cfg) -> int:
        return cfg.crop_size

    def transform(self, cfg) -> ImageTransform:
        crop = self.crop(cfg)
        return ImageTransform(vjepa2_short_side(crop), crop, IMAGENET_MEAN, IMAGENET_STD, "bilinear")

    def transform_from(self, processor: dict, cfg) -> ImageTransform:
        # VJEPA2VideoProcessor.__init__ derives the resize from the crop and ignores a saved `size`
        crop = processor.get("crop_size", self.crop(cfg))
        crop = int(crop.get("height") if isinstance(crop, dict) else crop)
        return ImageTransform(vjepa2_short_side(crop), crop, tuple(processor.get("image_mean", IMAGENET_MEAN)),
                              tuple(processor.get("image_std", IMAGENET_STD)), _filter(processor))

    def embed(self, model, video):
        tokens = model(pixel_values_videos=video, skip_predictor=True).last_hidden_state  # (B, T/2 * (S/16)^2, 1024)
        return tokens.mean(dim=1)


class VideoMAE(Family):
    model_type, model_class, config_class = "videomae", "VideoMAEModel", "VideoMAEConfig"

    def frames(self, cfg) -> int:
        return cfg.num_frames

    def embed(self, model, video):
        tokens = model(pixel_values=video).last_hidden_state  # (B, T/2 * (S/16)^2, 768)
        return tokens.mean(dim=1)


class XCLIP(Family):
    model_type, model_class, config_class = "xclip", "XCLIPModel", "XCLIPConfig"

    def frames(self, cfg) -> int:
        return cfg.vision_config.num_frames

    def crop(self, cfg) -> int:
        return cfg.vision_config.image_size

    def embed(self, model, video):
        return model.get_video_features(pixel_values=video).pooler_output  # (B, projection_dim)


FAMILIES = {f.model_type: f for f in (VJEPA2(), VideoMAE(), XCLIP())}


@dataclass(frozen=True)
class VideoArch:
    """A registered name's architecture: its family, hub id and the model config's fields (the checkpoint's shapes)."""

    family: str
    width: int  # the feature width (EncoderInfo)
    config: dict = field(default_factory=dict)
    hf_id: str | None = None  # None: a stand-in, saved under runs/models/


ARCHS = {
    # The checkpoints' shapes, so that the full-size architectures build with random weights without a download.
    "vjepa2-vitl-256": VideoArch("vjepa2", 1024, dict(
        crop_size=256, frames_per_clip=64, tubelet_size=2, patch_size=16, hidden_size=1024, num_hidden_layers=24,
        num_attention_heads=16, mlp_ratio=4.0, pred_hidden_size=384, pred_num_hidden_layers=12,
        pred_num_attention_heads=12, pred_num_mask_tokens=10), "facebook/vjepa2-vitl-fpc64-256"),
    "videomae-base": VideoArch("videomae", 768, dict(
        image_size=224, patch_size=16, num_frames=16, tubelet_size=2, hidden_size=768, num_hidden_layers=12,
        num_attention_heads=12, intermediate_size=3072, use_mean_pooling=False), "MCG-NJU/videomae-base"),
    "xclip-base-p32": VideoArch("xclip", 512, dict(
        projection_dim=512,
        vision_config=dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                           patch_size=32, image_size=224, num_frames=8, mit_hidden_size=512,
                           mit_intermediate_size=2048, mit_num_hidden_layers=1, mit_num_attention_heads=8),
        text_config=dict(hidden_size=512, intermediate_size=2048, num_hidden_layers=12, num_attention_heads=8)),
        "microsoft/xclip-base-patch32"),
    # Tiny stand-ins for the demo and tests: 32 px, 4 frames (2 tubelets), 2 layers, 32-d.
    "vjepa2-demo": VideoArch("vjepa2", 32, dict(
        crop_size=32, frames_per_clip=4, tubelet_size=2, patch_size=8, hidden_size=32, num_hidden_layers=2,
        num_attention_heads=2, mlp_ratio=2.0, pred_hidden_size=32, pred_num_hidden_layers=1,
        pred_num_attention_heads=2, pred_num_mask_tokens=2, num_pooler_layers=1)),
    "videomae-demo": VideoArch("videomae", 32, dict(
        image_size=32, patch_size=8, num_frames=4, tubelet_size=2, hidden_size=32, num_hidden_layers=2,
        num_attention_heads=2, intermediate_size=64, use_mean_pooling=False)),
    "xclip-demo": VideoArch("xclip", 32, dict(
        projection_dim=32, prompt_layers=1, prompt_num_attention_heads=2,
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                           patch_size=8, image_size=32, num_frames=4, mit_hidden_size=32, mit_intermediate_size=64,
                           mit_num_hidden_layers=1, mit_num_attention_heads=2),
        text_config=dict(vocab_size=1000, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=2, max_position_embeddings=16))),
}


def clip_frames(window: torch.Tensor, frames: int) -> torch.Tensor:
    """(n, ...) one window -> (frames, ...): the centre frame of each of `frames` equal segments (repeats when n < frames)."""
    return window[torch.from_numpy(segment_centres(len(window), frames)).to(window.device)]


class VideoClipEncoder(FrameEncoder):
    """A frozen video transformer over one window of a video: (n, 3, S, S) -> (1, out_dim), unit length."""

    clip_level = True

    def __init__(self, name: str, family: Family, model, transform: ImageTransform, weights_id: str):
        super().__init__()
        self.name, self.family, self.model, self.transform, self.weights_id = name, family, model, transform, weights_id
        self.frames = family.frames(model.config)
        self.min_frames = self.frames  # windows are cut at least a clip long; a shorter video is noted as padded
        self.out_dim = model.config.projection_dim if family.model_type == "xclip" else model.config.hidden_size
        self.eval().requires_grad_(False)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """(n, 3, S, S) normalised frames of one window, in order -> (1, out_dim) fp32."""
        video = clip_frames(pixels, self.frames)[None]  # (1, T, 3, S, S): the clip length it was trained on
        return F.normalize(self.family.embed(self.model, video).float(), dim=-1)


# --------------------------------------------------------------------------- building and loading

def _random_model(name: str, seed: int = SEED):
    import transformers

    arch = ARCHS[name]
    family = FAMILIES[arch.family]
    torch.manual_seed(seed)
    cfg = getattr(transformers, family.config_class)(**arch.config)
    return getattr(transformers, family.model_class)(cfg).eval()


def _read_json(name: str, path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise WeightsError(f"{name}: cannot read {path} ({type(e).__name__}): is it a save_pretrained folder?") from None


def _folder_config(name: str, family: Family, folder: Path):
    """The model config of a weights folder, checked to be of `name`'s family."""
    import transformers

    raw = _read_json(name, folder / "config.json")
    if raw.get("model_type") != family.model_type:
        raise WeightsError(f"{name}: {folder} holds a {raw.get('model_type')!r} model, not a {family.model_type!r} "
                           f"one: give a {family.model_class} save_pretrained folder")
    with quiet_transformers():
        return getattr(transformers, family.config_class).from_pretrained(folder)


def _folder_transform(name: str, family: Family, folder: Path, cfg) -> ImageTransform:
    for file in family.processor_files:
        if (folder / file).is_file():
            try:
                return family.transform_from(_read_json(name, folder / file), cfg)
            except WeightsError as e:
                raise WeightsError(f"{name}: {folder / file}: {e}") from None
    return family.transform(cfg)


def _load_model(name: str, family: Family, folder: Path):
    import transformers

    try:
        with quiet_transformers():
            return getattr(transformers, family.model_class).from_pretrained(folder).eval()
    except (OSError, ValueError) as e:
        raise WeightsError(f"{name}: cannot load {family.model_class} weights from {folder}: {e}") from None


def create_video_encoder(name: str, weights: str | None = None) -> EncoderRecipe:
    """Encoder `name` from `weights`: None (its hub id), a save_pretrained folder, a hub id, or 'random'."""
    arch = ARCHS[name]
    family = FAMILIES[arch.family]
    if weights == "random":
        import transformers

        transform = family.transform(getattr(transformers, family.config_class)(**arch.config))
        wid = f"random:seed={SEED}"
        return EncoderRecipe(name, wid, transform, lambda: VideoClipEncoder(name, family, _random_model(name), transform, wid))
    folder = resolve_hf_weights(weights or arch.hf_id, name)
    cfg = _folder_config(name, family, folder)
    transform, wid = _folder_transform(name, family, folder, cfg), dir_identity(folder)
    return EncoderRecipe(name, wid, transform,
                         lambda: VideoClipEncoder(name, family, _load_model(name, family, folder), transform, wid))


def demo_weights_dir(name: str) -> Path:
    """A tiny stand-in, made once with a fixed seed and saved with save_pretrained (and its processor config)
    under runs/models/<name>."""
    def write(tmp: Path) -> None:
        model = _random_model(name)
        model.save_pretrained(tmp)
        family = FAMILIES[ARCHS[name].family]
        t = family.transform(model.config)
        processor = {"do_resize": True, "do_center_crop": True, "do_rescale": True, "do_normalize": True,
                     "size": {"shortest_edge": t.short_side}, "crop_size": {"height": t.crop, "width": t.crop},
                     "image_mean": list(t.mean), "image_std": list(t.std), "resample": 2,
                     "rescale_factor": 1 / 255}
        if family.model_type == "vjepa2":  # as VJEPA2VideoProcessor.save_pretrained writes it
            (tmp / "video_preprocessor_config.json").write_text(
                json.dumps({**processor, "video_processor_type": "VJEPA2VideoProcessor"}, indent=2))
        else:  # what VideoMAEImageProcessor(Pil).save_pretrained writes
            (tmp / "preprocessor_config.json").write_text(
                json.dumps({**processor, "image_processor_type": "VideoMAEImageProcessor"}, indent=2))

    return saved_once(runs_dir() / "models" / name, write)


def _demo(name: str, weights: str | None) -> EncoderRecipe:
    if weights == "random":
        return create_video_encoder(name, "random")
    return create_video_encoder(name, weights or str(demo_weights_dir(name).resolve()))


def _info(name: str) -> EncoderInfo:
    return EncoderInfo(ARCHS[name].width, input="clip")


@ENCODERS.register("vjepa2-vitl-256", info=_info("vjepa2-vitl-256"))
def vjepa2_vitl_256(weights: str | None = None) -> EncoderRecipe:
    """V-JEPA 2 ViT-L (facebook/vjepa2-vitl-fpc64-256): 64 frames at 256 px, tokens averaged, 1024-d per clip."""
    return create_video_encoder("vjepa2-vitl-256", weights)


@ENCODERS.register("videomae-base", info=_info("videomae-base"))
def videomae_base(weights: str | None = None) -> EncoderRecipe:
    """VideoMAE ViT-B (MCG-NJU/videomae-base, self-supervised on Kinetics-400): 16 frames, tokens averaged, 768-d."""
    return create_video_encoder("videomae-base", weights)


@ENCODERS.register("xclip-base-p32", info=_info("xclip-base-p32"))
def xclip_base_p32(weights: str | None = None) -> EncoderRecipe:
    """X-CLIP B/32's video tower (microsoft/xclip-base-patch32): 8 frames, get_video_features, 512-d."""
    return create_video_encoder("xclip-base-p32", weights)


@ENCODERS.register("vjepa2-demo", info=_info("vjepa2-demo"))
def vjepa2_demo(weights: str | None = None) -> EncoderRecipe:
    """A tiny V-JEPA 2 with seeded random weights (4 frames, 32 px, 32-d), saved under runs/models/ and loaded back."""
    return _demo("vjepa2-demo", weights)


@ENCODERS.register("videomae-demo", info=_info("videomae-demo"))
def videomae_demo(weights: str | None = None) -> EncoderRecipe:
    """A tiny VideoMAE with seeded random weights (4 frames, 32 px, 32-d), saved under runs/models/ and loaded back."""
    return _demo("videomae-demo", weights)


@ENCODERS.register("xclip-demo", info=_info("xclip-demo"))
def xclip_demo(weights: str | None = None) -> EncoderRecipe:
    """A tiny X-CLIP with seeded random weights (4 frames, 32 px, 32-d), saved under runs/models/ and loaded back."""
    return _demo("xclip-demo", weights)
