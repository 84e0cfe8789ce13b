"""SigLIP 2 frame encoders and text towers through transformers, their pooled outputs L2-normalised.

- `siglip2-base-p16-224` (google/siglip2-base-patch16-224, 768-d) and `siglip2-so400m-p14-384`
  (google/siglip2-so400m-patch14-384, 1152-d): the vision tower's attention-pooling head output
  (`pooler_output`, before any projection; SigLIP has no CLS token) per frame. These fixed-resolution
  SigLIP 2 checkpoints are `model_type: siglip` (SiglipModel; SiglipImageProcessor: the whole frame
  resized to S x S, aspect not kept, no crop, rescaled to [-1, 1]), so SiglipVisionModel reads them.
  The NaFlex checkpoints (`model_type: siglip2`: variable patch grids with a pixel mask) are refused.
- `siglip2-base-p16-224-text`, `siglip2-so400m-p14-384-text`: the text towers of the same checkpoints
  (SiglipTextModel's pooled output: the last position after the final layer norm, through the tower's
  linear head), with the checkpoint's Gemma tokenizer.
- `siglip2-demo`, `siglip2-demo-text`: one tiny seeded SiglipModel (both towers, an image processor and
  a small Gemma-style tokenizer) saved under runs/models/ and loaded back through the same code.
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
from mediaeval_mem.encoders.text import DEMO_WORDS, HF_PATTERNS, TEXT_FILES, TextEncoder, TextPreprocess
from mediaeval_mem.encoders.weights import dir_identity, quiet_transformers, resolve_hf_weights, saved_once

DEMO_SEED = 0
# The checkpoints' towers (config.json of each, vision_config / text_config), for full-size random builds.
SIGLIP_ARCHS = {
    "siglip2-base-p16-224": dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                                 patch_size=16, image_size=224),
    "siglip2-so400m-p14-384": dict(hidden_size=1152, intermediate_size=4304, num_hidden_layers=27, num_attention_heads=16,
                                   patch_size=14, image_size=384),
    # Tiny, for the demo and tests: 32 px, 16 patches, 2 layers, 64-d.
    "siglip2-demo": dict(hidden_size=64, intermediate_size=256, num_hidden_layers=2, num_attention_heads=4, patch_size=8,
                         image_size=32),
}
TEXT_CONTEXT = 64  # the text towers' positions: SigLIP 2 was trained on captions padded to 64 tokens
SIGLIP_TEXT_ARCHS = {
    "siglip2-base-p16-224-text": dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                                      num_attention_heads=12, vocab_size=256000),
    "siglip2-so400m-p14-384-text": dict(hidden_size=1152, intermediate_size=4304, num_hidden_layers=27,
                                        num_attention_heads=16, vocab_size=256000),
    "siglip2-demo-text": dict(hidden_size=64, intermediate_size=256, num_hidden_layers=2, num_attention_heads=4),
}
HF_IDS = {"siglip2-base-p16-224": "google/siglip2-base-patch16-224",
          "siglip2-so400m-p14-384": "google/siglip2-so400m-patch14-384"}
HF_IDS.update({f"{name}-text": hub_id for name, hub_id in HF_IDS.items()})
NAFLEX = ("siglip2", "siglip2_vision_model", "siglip2_text_model")


# --------------------------------------------------------------------------- the folder
def _check_model_type(name: str, folder: Path, tower: str) -> None:
    """The folder's config.json must be a whole SigLIP or its `tower` ('vision', 'text') alone; a NaFlex or
    other folder is one clear line."""
    try:
        kind = json.loads((folder / "config.json").read_text()).get("model_type", "")
    except (OSError, ValueError) as e:
        raise WeightsError(f"{name}: {folder} has no readable config.json ({e}): is it a save_pretrained folder?") from None
    if kind in NAFLEX:
        raise WeightsError(f"{name}: {folder} is a SigLIP 2 NaFlex checkpoint (model_type {kind}: variable patch grids), "
                           "which this encoder does not read: give a fixed-resolution one such as "
                           "google/siglip2-base-patch16-224 or google/siglip2-so400m-patch14-384")
    if kind not in ("siglip", f"siglip_{tower}_model"):
        raise WeightsError(f"{name}: {folder} holds a {kind or 'model without a model_type'}, not a SigLIP checkpoint "
                           f"with a {tower} tower")


def _dir_transform(name: str, folder: Path) -> ImageTransform:
    """The folder's preprocessor_config.json (SiglipImageProcessor's), else its image size at SigLIP's defaults."""
    cfg_file = folder / "preprocessor_config.json"
    try:
        if cfg_file.is_file():
            return ImageTransform.from_processor_config(json.loads(cfg_file.read_text()))
        cfg = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError) as e:
        raise WeightsError(f"{name}: cannot read the preprocessing of {folder}: {e}") from None
    return ImageTransform.square(int(cfg.get("vision_config", cfg).get("image_size", 224)))


# --------------------------------------------------------------------------- frames
class SiglipEncoder(FrameEncoder):
    def __init__(self, name: str, vision, transform: ImageTransform, weights_id: str):
        super().__init__()
        self.name, self.vision, self.transform, self.weights_id = name, vision, transform, weights_id
        self.out_dim = vision.config.hidden_size
        self.eval().requires_grad_(False)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """(N, 3, S, S) pixels in [-1, 1] -> (N, out_dim) unit vectors (fp32)."""
        pooled = self.vision(pixel_values=pixels).pooler_output  # (N, hidden): the attention-pooling head
        return F.normalize(pooled.float(), dim=-1)


def _random_vision(name: str):
    from transformers import SiglipVisionConfig, SiglipVisionModel

    torch.manual_seed(DEMO_SEED)
    return SiglipVisionModel(SiglipVisionConfig(**SIGLIP_ARCHS[name]))


def _load_vision(name: str, folder: Path):
    from transformers import SiglipVisionModel

    try:
        with quiet_transformers():  # a whole SiglipModel: the text tower's weights are left unused
            return SiglipVisionModel.from_pretrained(folder)
    except (OSError, ValueError) as e:
        raise WeightsError(f"{name}: cannot load SigLIP vision weights from {folder}: {e}") from None


def create_siglip(name: str, weights: str | None = None) -> EncoderRecipe:
    """SigLIP 2 frame encoder `name` from `weights`: None (its hub id), a directory, a hub id, or 'random'."""
    if weights == "random":
        transform, wid = ImageTransform.square(SIGLIP_ARCHS[name]["image_size"]), f"random:seed={DEMO_SEED}"
        return EncoderRecipe(name, wid, transform, lambda: SiglipEncoder(name, _random_vision(name), transform, wid))
    folder = resolve_hf_weights(weights or HF_IDS[name], name)
    _check_model_type(name, folder, "vision")
    transform, wid = _dir_transform(name, folder), dir_identity(folder)
    return EncoderRecipe(name, wid, transform, lambda: SiglipEncoder(name, _load_vision(name, folder), transform, wid))


# --------------------------------------------------------------------------- text towers
class SiglipTextEncoder(TextEncoder):
    """SigLIP's text tower over captions as it was trained (HF's SigLIP and SigLIP 2 model docs):

    - lowercased: SigLIP 2 was trained on lowercased text (transformers' Siglip2Tokenizer adds a Lowercase
      normaliser for that reason; the checkpoints' GemmaTokenizer does not, so we lowercase here);
    - padded on the right to exactly 64 tokens (padding="max_length"), truncated beyond: the pooled vector
      is the *last position*, which for a short caption is a padding token, as in training;
    - no attention mask: the tower attended to its padding in training (big_vision; SigLIP's own
      tokenizer returns no mask), so a mask would change what the last position sees.
    """

    def __init__(self, name: str, text_model, tokenizer, transform: TextPreprocess, weights_id: str):
        super().__init__()
        self.name, self.text, self.tokenizer, self.transform, self.weights_id = name, text_model, tokenizer, transform, weights_id
        self.tokenizer.padding_side = "right"  # GemmaTokenizer's class default is left
        self.out_dim = text_model.config.projection_size
        self.eval().requires_grad_(False)

    def encode(self, texts: list[str]) -> torch.Tensor:
        device = next(self.parameters()).device
        ids = self.tokenizer([t.lower() for t in texts], padding="max_length", truncation=True,
                             max_length=self.transform.max_length, return_tensors="pt")["input_ids"]  # (N, 64)
        out = self.text(input_ids=ids.to(device))
        return F.normalize(out.pooler_output.float(), dim=-1)  # (N, projection_size)


def _random_text(name: str):
    """(model, tokenizer): the tower of `name` with seeded random weights, and the demo tokenizer."""
    from transformers import SiglipTextConfig, SiglipTextModel

    tokenizer = demo_gemma_tokenizer()
    arch = {"vocab_size": len(tokenizer), **SIGLIP_TEXT_ARCHS[name]}
    torch.manual_seed(DEMO_SEED)
    return SiglipTextModel(SiglipTextConfig(**arch, max_position_embeddings=TEXT_CONTEXT, **_token_ids(tokenizer))), tokenizer


def _token_ids(tokenizer) -> dict:
    return dict(pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)


def _load_text(name: str, folder: Path):
    from transformers import AutoTokenizer, SiglipTextModel

    try:
        with quiet_transformers():  # a whole SiglipModel: the vision tower's weights are left unused
            return SiglipTextModel.from_pretrained(folder), AutoTokenizer.from_pretrained(folder)
    except (OSError, ValueError, TypeError) as e:
        raise WeightsError(f"{name}: cannot load a SigLIP text tower and its tokenizer from {folder}: {e}") from None


def create_siglip_text(name: str, weights: str | None = None) -> EncoderRecipe:
    """SigLIP 2 text tower `name` from `weights`: None (its hub id), a directory, a hub id, or 'random'."""
    if weights == "random":
        wid = f"random:seed={DEMO_SEED}"
        transform = TextPreprocess("demo-vocab", TEXT_CONTEXT)
        return EncoderRecipe(name, wid, transform, lambda: SiglipTextEncoder(name, *_random_text(name), transform, wid))
    folder = resolve_hf_weights(weights or HF_IDS[name], name, HF_PATTERNS)
    _check_model_type(name, folder, "text")
    wid = dir_identity(folder, TEXT_FILES)
    transform = TextPreprocess(wid, TEXT_CONTEXT)
    return EncoderRecipe(name, wid, transform, lambda: SiglipTextEncoder(name, *_load_text(name, folder), transform, wid))


# --------------------------------------------------------------------------- the demo checkpoint
def demo_gemma_tokenizer():
    """A GemmaTokenizer (the class SigLIP 2 ships: byte-fallback BPE, '▁' for spaces) whose merges spell out
    DEMO_WORDS, with or without a leading space; any other character falls back to its bytes. No download."""
    from transformers import GemmaTokenizer

    vocab = {t: i for i, t in enumerate(["<pad>", "<eos>", "<bos>", "<unk>", "<mask>"])}  # Gemma's special ids
    vocab.update({f"<0x{b:02X}>": len(vocab) + b for b in range(256)})
    for c in "▁abcdefghijklmnopqrstuvwxyz":
        vocab.setdefault(c, len(vocab))
    merges = []
    for word in [*DEMO_WORDS, *(f"▁{w}" for w in DEMO_WORDS)]:  # left to right: ▁ b -> ▁b, ▁b r -> ▁br, ...
        parts = list(word)
        while len(parts) > 1:
            merges.append((parts[0], parts[1]))
            parts = [parts[0] + parts[1]] + parts[2:]
            vocab.setdefault(parts[0], len(vocab))
    return GemmaTokenizer(vocab=vocab, merges=list(dict.fromkeys(merges)))


def demo_weights_dir() -> Path:
    """The tiny demo SigLIP (both towers, image processor, tokenizer), made once with a fixed seed and saved
    with save_pretrained under runs/models/, as a downloaded checkpoint is laid out."""
    def write(tmp: Path) -> None:
        import transformers
        from transformers import SiglipConfig, SiglipModel

        tokenizer = demo_gemma_tokenizer()
        text = {**SIGLIP_TEXT_ARCHS["siglip2-demo-text"], "vocab_size": len(tokenizer),
                "max_position_embeddings": TEXT_CONTEXT, **_token_ids(tokenizer)}
        torch.manual_seed(DEMO_SEED)
        SiglipModel(SiglipConfig(text_config=text, vision_config=SIGLIP_ARCHS["siglip2-demo"])).save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        size = SIGLIP_ARCHS["siglip2-demo"]["image_size"]
        processor_cls = getattr(transformers, "SiglipImageProcessorPil", None) or transformers.SiglipImageProcessor
        processor_cls(size={"height": size, "width": size}, resample=2).save_pretrained(tmp)  # 2: PIL's bilinear

    return saved_once(runs_dir() / "models" / "siglip2-demo", write)


# --------------------------------------------------------------------------- registered names
@ENCODERS.register("siglip2-base-p16-224", info=EncoderInfo(768))
def siglip2_base_p16_224(weights: str | None = None) -> EncoderRecipe:
    """SigLIP 2 B/16 at 224 px (google/siglip2-base-patch16-224): 768-d attention-pooled frame embedding."""
    return create_siglip("siglip2-base-p16-224", weights)


@ENCODERS.register("siglip2-so400m-p14-384", info=EncoderInfo(1152))
def siglip2_so400m_p14_384(weights: str | None = None) -> EncoderRecipe:
    """SigLIP 2 So400m/14 at 384 px (google/siglip2-so400m-patch14-384): 1152-d attention-pooled frame embedding."""
    return create_siglip("siglip2-so400m-p14-384", weights)


@ENCODERS.register("siglip2-demo", info=EncoderInfo(SIGLIP_ARCHS["siglip2-demo"]["hidden_size"]))
def siglip2_demo(weights: str | None = None) -> EncoderRecipe:
    """A tiny SigLIP vision tower with seeded random weights, saved under runs/models/ and loaded back from there."""
    return create_siglip("siglip2-demo", weights if weights is not None else str(demo_weights_dir().resolve()))


def _text(width: int) -> EncoderInfo:
    return EncoderInfo(width, input="captions")


@ENCODERS.register("siglip2-base-p16-224-text", info=_text(768))
def siglip2_base_p16_224_text(weights: str | None = None) -> EncoderRecipe:
    """SigLIP 2 B/16's text tower (google/siglip2-base-patch16-224): 768-d pooled output, Gemma tokenizer, 64 tokens."""
    return create_siglip_text("siglip2-base-p16-224-text", weights)


@ENCODERS.register("siglip2-so400m-p14-384-text", info=_text(1152))
def siglip2_so400m_p14_384_text(weights: str | None = None) -> EncoderRecipe:
    """SigLIP 2 So400m/14's text tower (google/siglip2-so400m-patch14-384): 1152-d pooled output, 64 tokens."""
    return create_siglip_text("siglip2-so400m-p14-384-text", weights)


@ENCODERS.register("siglip2-demo-text", info=_text(SIGLIP_TEXT_ARCHS["siglip2-demo-text"]["hidden_size"]))
def siglip2_demo_text(weights: str | None = None) -> EncoderRecipe:
    """The tiny demo SigLIP's text tower (the same saved folder as siglip2-demo) and its small Gemma-style tokenizer."""
    return create_siglip_text("siglip2-demo-text", weights if weights is not None else str(demo_weights_dir().resolve()))
