"""Qwen2.5-VL as a video reader: a frozen embedder (one vector per video), a captioner, and the base of the LoRA
regressor (training/vlm_lora.py).

A video's sampled frames go in as Qwen2.5-VL's *video* input, prepared exactly as Qwen2VLVideoProcessor prepares
them (which needs torchvision, so it is redone here on uint8 tensors):
    smart_resize   every frame to (h, w), multiples of patch * merge (28), the pixel count within
                   [min_pixels, max_pixels], the aspect kept; antialiased bicubic on uint8 (Pillow's filter)
    normalize      /255, OpenAI-CLIP mean and std
    patchify       (T, 3, h, w) -> (T/2 * h/14 * w/14, 3 * 2 * 14 * 14), frames padded to an even count by
                   repeating the last, in the processor's order (merge windows together)
and the prompt is Qwen's chat format with one <|video_pad|> per merged patch (T/2 * h/28 * w/28 of them):

    <|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n<|im_start|>user\\n
    <|vision_start|><|video_pad|>...<|vision_end|>{prompt}<|im_end|>\\n<|im_start|>assistant\\n

The embedding is the language model's last hidden states (1, L, D), pooled one of two ways (POOLINGS): `answer`,
the mean over the assistant header's tokens (the positions that would start the answer), or `mean`, the mean over
the whole sequence; L2-normalised. Names: qwen2.5-vl-3b / -7b (answer pooling), their `-mean` variants, and their
`-captioned` variants, whose prompt also holds the video's first caption (CAPTIONED_PROMPT; "" where it has none);
qwen2.5-vl-demo is a tiny seeded Qwen2.5-VL (2 text layers, 64-d, a byte-level tokenizer) saved with
save_pretrained under runs/models/ and loaded back through the same code.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from mediaeval_mem.core.errors import DecodeError, WeightsError
from mediaeval_mem.core.paths import runs_dir
from mediaeval_mem.encoders.base import ENCODERS, EncoderInfo, EncoderRecipe, FrameEncoder
from mediaeval_mem.encoders.preprocess import OPENAI_MEAN, OPENAI_STD
from mediaeval_mem.encoders.text import DEMO_WORDS, _byte_chars
from mediaeval_mem.encoders.weights import dir_identity, quiet_transformers, resolve_hf_weights, saved_once

QWEN_IDS = {"qwen2.5-vl-3b": "Qwen/Qwen2.5-VL-3B-Instruct", "qwen2.5-vl-7b": "Qwen/Qwen2.5-VL-7B-Instruct"}
# The checkpoints' shapes (their config.json), so the full-size architectures build with random weights.
_QWEN_TOKENS = dict(image_token_id=151655, video_token_id=151656, vision_start_token_id=151652, vision_end_token_id=151653)
QWEN_ARCHS = {
    "qwen2.5-vl-3b": dict(
        text=dict(hidden_size=2048, intermediate_size=11008, num_hidden_layers=36, num_attention_heads=16,
                  num_key_value_heads=2, vocab_size=151936, max_position_embeddings=128000,
                  rope_scaling={"type": "mrope", "mrope_section": [16, 24, 24]}, rope_theta=1e6),
        vision=dict(depth=32, hidden_size=1280, intermediate_size=3420, num_heads=16, out_hidden_size=2048,
                    fullatt_block_indexes=[7, 15, 23, 31], tokens_per_second=2, window_size=112),
        tie_word_embeddings=True, **_QWEN_TOKENS),
    "qwen2.5-vl-7b": dict(
        text=dict(hidden_size=3584, intermediate_size=18944, num_hidden_layers=28, num_attention_heads=28,
                  num_key_value_heads=4, vocab_size=152064, max_position_embeddings=128000,
                  rope_scaling={"type": "mrope", "mrope_section": [16, 24, 24]}, rope_theta=1e6),
        vision=dict(depth=32, hidden_size=1280, intermediate_size=3420, num_heads=16, out_hidden_size=3584,
                    fullatt_block_indexes=[7, 15, 23, 31], tokens_per_second=2, window_size=112),
        tie_word_embeddings=False, **_QWEN_TOKENS),
    # Tiny, for the demo and tests: 2 text layers of 64, a 2-block vision tower of 32, the byte-level demo vocabulary.
    "qwen2.5-vl-demo": dict(
        text=dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, max_position_embeddings=4096,
                  rope_scaling={"type": "mrope", "mrope_section": [2, 3, 3]}, rope_theta=1e4,
                  initializer_range=0.3),  # larger than 0.02: random logits that depend on the video
        vision=dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=64,
                    fullatt_block_indexes=[1], tokens_per_second=2, window_size=112),
        tie_word_embeddings=True),
}
DEMO_SEED = 0
SYSTEM = "You are a helpful assistant."
EMBED_PROMPT = "How memorable is this video?"  # the fixed prompt the embeddings read (it is in their feature key)
CAPTIONED_PROMPT = 'Caption: "{caption}"\n{prompt}'  # the -captioned names: the video's first caption, then the prompt
ASSISTANT_HEADER = "<|im_start|>assistant\n"
POOLINGS = ("answer", "mean")
# The demo tokenizer's special tokens, in Qwen's spelling, after the 256 byte characters.
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>", "<|image_pad|>",
            "<|video_pad|>"]


# --------------------------------------------------------------------------- pixels
class FrameSizeError(DecodeError):
    """Frames Qwen's resize refuses (an aspect ratio over 200): a video the model cannot read, alone."""


@dataclass(frozen=True)
class VideoTransform:
    """Qwen2VLVideoProcessor's preprocessing, on uint8 tensors (same interface as ImageTransform where extraction
    uses it: resize_crop, normalize, describe). Frames keep their aspect; no crop."""

    min_pixels: int
    max_pixels: int
    patch: int = 14
    merge: int = 2
    temporal: int = 2
    mean: tuple[float, float, float] = OPENAI_MEAN
    std: tuple[float, float, float] = OPENAI_STD
    resample: str = "bicubic"
    # what the feature key records about how pixels are made (features/pixels.py pixel_path)
    pixel_path = ("full-size decode in chunks; antialiased bicubic resize on uint8 (Pillow's filter) to smart_resize's "
                  "size (aspect kept, multiples of patch x merge); no crop")

    @classmethod
    def from_processor_config(cls, cfg: dict, max_pixels: int | None = None) -> "VideoTransform":
        """From a (video_)preprocessor_config.json, both its `size` and its older min/max_pixels spellings."""
        size = cfg.get("size") or {}
        lo = cfg.get("min_pixels", size.get("shortest_edge", 128 * 28 * 28))
        hi = cfg.get("max_pixels", size.get("longest_edge", 768 * 28 * 28))
        return cls(int(lo), int(min(hi, max_pixels or hi)), int(cfg.get("patch_size", 14)), int(cfg.get("merge_size", 2)),
                   int(cfg.get("temporal_patch_size", 2)), tuple(cfg.get("image_mean", OPENAI_MEAN)),
                   tuple(cfg.get("image_std", OPENAI_STD)))

    def describe(self) -> dict:
        return {"kind": "qwen-vl video", **asdict(self)}

    def size_for(self, height: int, width: int) -> tuple[int, int]:
        """(h, w) the processor resizes an (height, width) frame to (its own smart_resize)."""
        from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import smart_resize

        try:
            return smart_resize(height, width, factor=self.patch * self.merge, min_pixels=self.min_pixels,
                                max_pixels=self.max_pixels)
        except ValueError as e:  # a frame thinner than the model reads (aspect ratio over 200): this video alone
            raise FrameSizeError(f"{width}x{height} frames: {e}") from None

    def resize(self, frames: torch.Tensor) -> torch.Tensor:
        """uint8 (N, H, W, 3) -> uint8 (N, 3, h, w), antialiased bicubic on uint8 (Pillow's filter, as PIL's resize)."""
        x = frames.permute(0, 3, 1, 2)
        h, w = self.size_for(*x.shape[-2:])
        if (h, w) == tuple(x.shape[-2:]):
            return x.contiguous()
        x = x.contiguous(memory_format=torch.channels_last)
        return F.interpolate(x, size=(h, w), mode="bicubic", antialias=True).contiguous()

    def resize_crop(self, frames: torch.Tensor, random_crop: bool = False) -> torch.Tensor:
        """uint8 (N, H, W, 3) -> uint8 (N, 3, h, w): no crop (the name is extraction's interface)."""
        return self.resize(frames)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 (N, 3, h, w) -> float32 (N, 3, h, w) on x's device."""
        mean = torch.tensor(self.mean, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(self.std, device=x.device).view(1, 3, 1, 1)
        return (x.float() / 255.0 - mean) / std

    def patchify(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """float (T, 3, h, w) -> (patches (T'/2 * h/14 * w/14, 3 * 2 * 14 * 14), grid_thw (1, 3)), as the processor:
        T padded to a multiple of `temporal` by repeating the last frame, patches grouped by merge window."""
        if pad := -len(pixels) % self.temporal:
            pixels = torch.cat([pixels, pixels[-1:].expand(pad, -1, -1, -1)])
        t, c, h, w = pixels.shape
        gt, gh, gw, p, m = t // self.temporal, h // self.patch, w // self.patch, self.patch, self.merge
        x = pixels.reshape(gt, self.temporal, c, gh // m, m, p, gw // m, m, p)
        x = x.permute(0, 3, 6, 4, 7, 2, 1, 5, 8)  # (gt, gh/m, gw/m, m, m, c, temporal, p, p)
        patches = x.reshape(gt * gh * gw, c * self.temporal * p * p)
        return patches, torch.tensor([[gt, gh, gw]])

    def tokens(self, grid_thw: torch.Tensor) -> int:
        """How many <|video_pad|> tokens a video of `grid_thw` takes (one per merged patch)."""
        return int(grid_thw.prod()) // self.merge**2


DEMO_TRANSFORM = VideoTransform(min_pixels=56 * 56, max_pixels=56 * 56)  # 56 x 56 frames: 4 tokens per frame pair
# Real checkpoints: the processor's min_pixels, and at most qwen-vl-utils' example video budget per frame (360 x 420):
# about 190 tokens per pair of frames; the processor's own default (768 * 28 * 28) is four times that.
VIDEO_MAX_PIXELS = 360 * 420


# --------------------------------------------------------------------------- the model and its prompt
def chat(prompt: str, video_tokens: int) -> str:
    """Qwen's chat text for one user turn holding a video of `video_tokens` merged patches and `prompt`."""
    video = "<|vision_start|>" + "<|video_pad|>" * video_tokens + "<|vision_end|>" if video_tokens else ""
    return (f"<|im_start|>system\n{SYSTEM}<|im_end|>\n<|im_start|>user\n{video}{prompt}<|im_end|>\n"
            + ASSISTANT_HEADER)


def video_inputs(tokenizer, transform: VideoTransform, pixels: torch.Tensor | None, prompt: str) -> dict[str, torch.Tensor]:
    """Normalised frames (T, 3, h, w) (or None: text only) and a prompt -> the model's keyword inputs, batch 1, on the
    CPU (what QwenVL.inputs moves to the model's device; the LoRA training builds them in its decoding workers)."""
    extra, tokens = {}, 0
    if pixels is not None:
        patches, grid = transform.patchify(pixels)
        tokens = transform.tokens(grid)
        # second_per_grid_ts: seconds per temporal patch; the processor's default sampling (2 fps) gives 1.0
        extra = dict(pixel_values_videos=patches, video_grid_thw=grid, second_per_grid_ts=torch.tensor([1.0]))
    ids = tokenizer(chat(prompt, tokens), add_special_tokens=False, return_tensors="pt")
    return {**ids, **extra}


def header_length(tokenizer) -> int:
    """How many tokens the assistant header takes (the positions `answer` pooling averages)."""
    return len(tokenizer(ASSISTANT_HEADER, add_special_tokens=False)["input_ids"])


def pool_hidden(hidden: torch.Tensor, pooling: str, header_len: int) -> torch.Tensor:
    """(B, L, D) -> (B, D): `answer` the mean over the last `header_len` tokens (the assistant header), `mean` all."""
    if pooling == "answer":
        return hidden[:, -header_len:].mean(dim=1)
    return hidden.mean(dim=1)


class QwenVL(torch.nn.Module):
    """A Qwen2.5-VL (ForConditionalGeneration), its tokenizer and its video preprocessing: `inputs` builds a
    video's model inputs, `hidden` its last hidden states, `caption` greedy-decodes a text about it."""

    def __init__(self, model, tokenizer, transform: VideoTransform):
        super().__init__()
        self.model, self.tokenizer, self.transform = model, tokenizer, transform
        self.width = model.config.text_config.hidden_size
        self.header_len = header_length(tokenizer)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def inputs(self, pixels: torch.Tensor | None, prompt: str) -> dict[str, torch.Tensor]:
        """Normalised frames (T, 3, h, w) (or None: text only) and a prompt -> the model's keyword inputs, batch 1."""
        device = self.device
        return {k: v.to(device) for k, v in video_inputs(self.tokenizer, self.transform, pixels, prompt).items()}

    def hidden(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """The language model's last hidden states (1, L, D) for `inputs` (through LoRA adapters where peft put some:
        they sit inside the same modules)."""
        model = self.model.get_base_model() if hasattr(self.model, "get_base_model") else self.model
        return model.model(**inputs).last_hidden_state  # Qwen2_5_VLModel: vision tower + LM, no LM head

    def pool(self, hidden: torch.Tensor, pooling: str) -> torch.Tensor:
        """(B, L, D) -> (B, D): `answer` the mean over the assistant header's tokens (the last ones), `mean` all."""
        return pool_hidden(hidden, pooling, self.header_len)

    @torch.inference_mode()
    def caption(self, pixels: torch.Tensor, prompt: str, max_new_tokens: int = 48) -> str:
        """Greedy decoding of the answer to `prompt` about normalised frames (T, 3, h, w)."""
        inputs = self.inputs(pixels, prompt)
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.tokenizer.eos_token_id
        out = self.model.generate(**inputs, do_sample=False, max_new_tokens=max_new_tokens, pad_token_id=pad)
        new = out[0, inputs["input_ids"].shape[1] :]
        return self.tokenizer.decode(new, skip_special_tokens=True).strip()


class QwenVLEncoder(FrameEncoder):
    """A frozen Qwen2.5-VL as a clip-level encoder: one video's frames (T, 3, h, w) -> (1, D), D the LM's width."""

    clip_level = True
    min_frames = 2  # one temporal patch

    def __init__(self, name: str, vlm: QwenVL, pooling: str, prompt: str, weights_id: str, reads_caption: bool = False):
        super().__init__()
        self.name, self.vlm, self.pooling, self.prompt, self.weights_id = name, vlm, pooling, prompt, weights_id
        self.reads_caption = reads_caption
        self.transform = EmbedTransform(**asdict(vlm.transform), prompt=prompt, pooling=pooling, reads_caption=reads_caption)
        self.out_dim = vlm.width
        self.eval().requires_grad_(False)

    def forward(self, pixels: torch.Tensor, caption: str | None = None) -> torch.Tensor:
        """(T, 3, h, w) normalised frames of one video, in order (and its caption, for the -captioned names) -> (1, D)
        unit vector (fp32)."""
        prompt = self.prompt if caption is None else CAPTIONED_PROMPT.format(caption=caption, prompt=self.prompt)
        hidden = self.vlm.hidden(self.vlm.inputs(pixels, prompt))  # (1, L, D)
        return F.normalize(self.vlm.pool(hidden, self.pooling).float(), dim=-1)


def demo_tokenizer():
    """A byte-level BPE tokenizer with Qwen's special tokens whose merges spell out " word" for the demo vocabulary
    (encoders/text.py DEMO_WORDS), so that the demo VLM can write words; any text still tokenizes, byte by byte."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    chars = _byte_chars()
    vocab, merges = {c: i for i, c in enumerate(chars)}, []
    for word in DEMO_WORDS:  # " bright" is "Ġbright": merged left to right, Ġ b -> Ġb, Ġb r -> Ġbr, ...
        parts = ["Ġ", *word]
        while len(parts) > 1:
            merges.append((parts[0], parts[1]))
            parts = [parts[0] + parts[1]] + parts[2:]
            vocab.setdefault(parts[0], len(vocab))
    tok = Tokenizer(models.BPE(vocab=vocab, merges=list(dict.fromkeys(merges))))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens(SPECIALS)
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>")


def demo_generation(tokenizer) -> dict:
    """The demo's generation_config: it may write only the demo words and the end token, each word once (greedy
    decoding of random weights otherwise repeats one byte)."""
    words = {tokenizer.convert_tokens_to_ids("Ġ" + w) for w in DEMO_WORDS} | {tokenizer.eos_token_id}
    return dict(suppress_tokens=[i for i in range(len(tokenizer)) if i not in words], no_repeat_ngram_size=1)


def _config(name: str, tokenizer=None):
    from transformers import Qwen2_5_VLConfig

    arch = QWEN_ARCHS[name]
    extra = {k: v for k, v in arch.items() if k not in ("text", "vision")}
    text = dict(arch["text"])
    if tokenizer is not None:  # the demo: its token ids
        ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIALS}
        extra.update(image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
                     vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"])
        text.update(vocab_size=len(tokenizer), bos_token_id=ids["<|endoftext|>"], eos_token_id=ids["<|im_end|>"],
                    pad_token_id=ids["<|endoftext|>"])
    return Qwen2_5_VLConfig(text_config=text, vision_config=arch["vision"], **extra)


def random_vlm(name: str, seed: int = DEMO_SEED, dtype: torch.dtype | None = None):
    """(model, tokenizer): the architecture of `name` with seeded random weights (the demo tokenizer for every size:
    a random model's vocabulary is its own; the full-size one keeps the checkpoint's vocabulary size), made in `dtype`
    (None: fp32), so a bf16 3B never holds an fp32 copy (15 GB) on the way."""
    from transformers import Qwen2_5_VLForConditionalGeneration

    tokenizer = demo_tokenizer()
    cfg = _config(name, tokenizer if name == "qwen2.5-vl-demo" else None)
    if name != "qwen2.5-vl-demo":  # the demo tokenizer's ids for the special tokens
        ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIALS}
        cfg.image_token_id, cfg.video_token_id = ids["<|image_pad|>"], ids["<|video_pad|>"]
        cfg.vision_start_token_id, cfg.vision_end_token_id = ids["<|vision_start|>"], ids["<|vision_end|>"]
    torch.manual_seed(seed)
    with quiet_transformers():
        model = (Qwen2_5_VLForConditionalGeneration(cfg) if dtype in (None, torch.float32)
                 else Qwen2_5_VLForConditionalGeneration._from_config(cfg, dtype=dtype))
    return model.eval(), tokenizer


def load_vlm_folder(name: str, folder: Path, max_pixels: int | None = VIDEO_MAX_PIXELS, **load_args) -> QwenVL:
    """A QwenVL from a save_pretrained folder (weights, tokenizer, preprocessor config), in fp32 (autocast gives bf16)
    unless `load_args` say otherwise (from_pretrained's dtype, quantization_config, device_map: the LoRA training's)."""
    from transformers import AutoTokenizer, Qwen2_5_VLForConditionalGeneration

    try:
        with quiet_transformers():
            model = Qwen2_5_VLForConditionalGeneration.from_pretrained(folder, **{"dtype": torch.float32, **load_args})
            tokenizer = AutoTokenizer.from_pretrained(folder)
    except (OSError, ValueError, TypeError, KeyError) as e:
        raise WeightsError(f"{name}: cannot load a Qwen2.5-VL and its tokenizer from {folder}: {e}") from None
    return QwenVL(model.eval(), tokenizer, folder_transform(folder, max_pixels))


def folder_transform(folder: Path, max_pixels: int | None = VIDEO_MAX_PIXELS) -> VideoTransform:
    """The video preprocessing a weights folder asks for (video_preprocessor_config.json, else
    preprocessor_config.json), with the pixel budget capped at `max_pixels`."""
    for file in ("video_preprocessor_config.json", "preprocessor_config.json"):
        if (folder / file).is_file():
            return VideoTransform.from_processor_config(json.loads((folder / file).read_text()), max_pixels)
    raise WeightsError(f"{folder} has no video_preprocessor_config.json or preprocessor_config.json: is it a "
                       "save_pretrained folder of a Qwen2.5-VL?")


def demo_vlm_dir() -> Path:
    """The tiny demo Qwen2.5-VL, made once with a fixed seed and saved with save_pretrained under runs/models/."""
    def write(tmp: Path) -> None:
        from transformers import GenerationConfig

        model, tokenizer = random_vlm("qwen2.5-vl-demo")
        model.generation_config = GenerationConfig(**model.generation_config.to_diff_dict(), **demo_generation(tokenizer))
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        t = DEMO_TRANSFORM
        (tmp / "preprocessor_config.json").write_text(json.dumps({
            "image_processor_type": "Qwen2VLImageProcessor", "min_pixels": t.min_pixels, "max_pixels": t.max_pixels,
            "patch_size": t.patch, "merge_size": t.merge, "temporal_patch_size": t.temporal,
            "image_mean": list(t.mean), "image_std": list(t.std)}, indent=2))

    return saved_once(runs_dir() / "models" / "qwen2.5-vl-demo", write)


@dataclass(frozen=True)
class VlmSource:
    """Where a VLM comes from, known without loading it: for cache keys, and to load it."""

    name: str  # qwen2.5-vl-3b | qwen2.5-vl-7b | qwen2.5-vl-demo
    weights_id: str
    transform: VideoTransform
    folder: Path | None  # None: random weights

    def load(self, **load_args) -> QwenVL:
        """The model, tokenizer and preprocessing; `load_args` go to from_pretrained (random weights: `dtype` only)."""
        if self.folder is None:
            model, tokenizer = random_vlm(self.name, dtype=load_args.get("dtype"))
            return QwenVL(model, tokenizer, self.transform)
        return load_vlm_folder(self.name, self.folder, self.transform.max_pixels, **load_args)


def vlm_source(name: str, weights: str | None = None) -> VlmSource:
    """VLM `name` (an architecture of QWEN_ARCHS) from `weights`: None (its hub id; the demo: its saved folder),
    a save_pretrained directory, a hub id, or 'random' (the full-size architecture with seeded random weights)."""
    if name not in QWEN_ARCHS:
        raise WeightsError(f"unknown VLM {name!r}: use one of {', '.join(QWEN_ARCHS)}")
    demo = name == "qwen2.5-vl-demo"
    if weights == "random":
        transform = DEMO_TRANSFORM if demo else VideoTransform(128 * 28 * 28, VIDEO_MAX_PIXELS)
        return VlmSource(name, f"random:seed={DEMO_SEED}", transform, None)
    default = str(demo_vlm_dir().resolve()) if demo else QWEN_IDS[name]
    folder = resolve_hf_weights(weights or default, name)
    return VlmSource(name, dir_identity(folder), folder_transform(folder), folder)


# --------------------------------------------------------------------------- registered names
def create_vlm_encoder(name: str, arch: str, pooling: str, weights: str | None = None,
                       reads_caption: bool = False) -> EncoderRecipe:
    """The frozen-VLM embedding encoder `name` over architecture `arch`, pooled by `pooling`, prompted with the
    video's first caption too where `reads_caption`."""
    src = vlm_source(arch, weights)
    transform = EmbedTransform(**asdict(src.transform), prompt=EMBED_PROMPT, pooling=pooling, reads_caption=reads_caption)
    return EncoderRecipe(name, src.weights_id, transform,
                         lambda: QwenVLEncoder(name, src.load(), pooling, EMBED_PROMPT, src.weights_id, reads_caption))


@dataclass(frozen=True)
class EmbedTransform(VideoTransform):
    """The video preprocessing, plus what an embedding reads besides pixels (the prompt, the pooling): all of it is
    in describe(), so in the feature key."""

    prompt: str = EMBED_PROMPT
    pooling: str = "answer"
    reads_caption: bool = False  # the video's first caption goes in the prompt (CAPTIONED_PROMPT)

    def describe(self) -> dict:
        caption = {"reads_caption": True, "prompt": CAPTIONED_PROMPT.format(caption="{caption}", prompt=self.prompt)} \
            if self.reads_caption else {}
        return {**super().describe(), "prompt": self.prompt, "pooling": self.pooling, **caption}


def _width(arch: str) -> int:
    return QWEN_ARCHS[arch]["text"]["hidden_size"]


def _register(arch: str) -> None:
    """arch (answer pooling), arch-mean (the sequence's mean), arch-captioned (answer pooling, the caption in the prompt)."""
    for suffix, pooling, captioned in (("", "answer", False), ("-mean", "mean", False), ("-captioned", "answer", True)):
        name = arch + suffix

        def build(weights: str | None = None, _name=name, _pooling=pooling, _captioned=captioned) -> EncoderRecipe:
            return create_vlm_encoder(_name, arch, _pooling, weights, _captioned)

        build.__doc__ = (f"{arch}: the frozen VLM's last hidden states over a video's frames"
                         f"{', its first caption' if captioned else ''} and a fixed prompt, "
                         f"{'the assistant header tokens' if pooling == 'answer' else 'the whole sequence'} averaged.")
        ENCODERS.add(name, build, EncoderInfo(_width(arch), input="clip", reads_caption=captioned))


for _arch in QWEN_ARCHS:
    _register(_arch)
