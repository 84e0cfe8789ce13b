"""Caption encoders: CLIP's text towers (one for each CLIP image encoder) and sentence-transformers models.

A TextEncoder maps captions to L2-normalised vectors (N, out_dim). Extraction encodes each caption of
a video as one row (features/captions.py), so a stream's aggregator pools a video's captions exactly
as it pools frames: `avg` or `bigru-attention` over captions needs no code of its own.

- `clip-vit-b32-text`, `clip-vit-l14-336-text`: the text towers of the same Hugging Face checkpoints
  as the image encoders (openai/clip-vit-base-patch32: 512-d; openai/clip-vit-large-patch14-336:
  768-d), their pooled output (the end-of-text token after the final layer norm, before the text
  projection, as the image side takes the CLS token before its projection).
- `sentence-minilm` (sentence-transformers/all-MiniLM-L6-v2, 384-d), `sentence-mpnet`
  (sentence-transformers/all-mpnet-base-v2, 768-d): loaded by the sentence-transformers package,
  with the pooling the model folder declares.
- `clip-demo-text`, `sentence-demo`: tiny seeded models with a small word-level vocabulary, saved
  under runs/models/ and loaded back through the same code (the demo and the tests).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from mediaeval_mem.core.errors import WeightsError
from mediaeval_mem.core.paths import runs_dir
from mediaeval_mem.encoders.base import ENCODERS, EncoderInfo, EncoderRecipe
from mediaeval_mem.encoders.weights import dir_identity, quiet_transformers, resolve_hf_weights, saved_once

TEXT_FILES = (".json", ".safetensors", ".bin", ".txt", ".model")  # weights, configs, vocabularies, merges
HF_PATTERNS = ("*.json", "*.safetensors", "*.txt", "*.model")
DEMO_SEED = 0

# Text-tower shapes of the OpenAI checkpoints (CLIPTextConfig), for full-size random builds.
CLIP_TEXT_ARCHS = {
    "clip-vit-b32-text": dict(hidden_size=512, intermediate_size=2048, num_hidden_layers=12, num_attention_heads=8),
    "clip-vit-l14-336-text": dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12),
    "clip-demo-text": dict(hidden_size=64, intermediate_size=256, num_hidden_layers=2, num_attention_heads=4),
}
CLIP_TEXT_HF = {"clip-vit-b32-text": "openai/clip-vit-base-patch32", "clip-vit-l14-336-text": "openai/clip-vit-large-patch14-336"}
CLIP_CONTEXT = 77  # CLIP's text context: longer captions are truncated

# Encoder shapes of the sentence-transformers checkpoints, for full-size random builds (mean pooling).
SENTENCE_ARCHS = {
    "sentence-minilm": dict(model="bert", hidden_size=384, intermediate_size=1536, num_hidden_layers=6, num_attention_heads=12),
    "sentence-mpnet": dict(model="mpnet", hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12),
    "sentence-demo": dict(model="bert", hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2),
}
SENTENCE_HF = {"sentence-minilm": "sentence-transformers/all-MiniLM-L6-v2",
               "sentence-mpnet": "sentence-transformers/all-mpnet-base-v2"}

# The demo tokenizers' whole words (anything else is spelled out letter by letter): the words of the
# demo captions (datasets/synthetic.py) and a few common ones.
DEMO_WORDS = (
    "a an the of over across against on in with and is moving drifting sliding gliding rolling disc circle ball "
    "blob shape background scene screen frame video clip dark dim bright pale vivid colourful colour light "
    "ordinary plain dull familiar curious odd striking unusual remarkable unforgettable memorable strange "
    "small large big tiny huge medium slowly quickly"
).split()


@dataclass(frozen=True)
class TextPreprocess:
    """What turns a caption into model input, for the feature key: the tokenizer's files and the length cap."""

    tokenizer: str  # digest of the tokenizer (its files, or 'demo-vocab' for the generated one)
    max_length: int

    def describe(self) -> dict:
        return asdict(self)


class TextEncoder(nn.Module):
    """Maps captions to L2-normalised vectors (N, out_dim). Subclasses set name, out_dim, transform, weights_id."""

    name: str
    out_dim: int
    transform: TextPreprocess
    weights_id: str

    def encode(self, texts: list[str]) -> torch.Tensor:
        """N captions -> (N, out_dim) fp32 unit vectors on the encoder's device."""
        raise NotImplementedError


# --------------------------------------------------------------------------- CLIP text towers
class ClipTextEncoder(TextEncoder):
    def __init__(self, name: str, text_model, tokenizer, transform: TextPreprocess, weights_id: str):
        super().__init__()
        self.name, self.text, self.tokenizer, self.transform, self.weights_id = name, text_model, tokenizer, transform, weights_id
        self.out_dim = text_model.config.hidden_size
        self.eval().requires_grad_(False)

    def encode(self, texts: list[str]) -> torch.Tensor:
        device = next(self.parameters()).device
        batch = self.tokenizer(list(texts), padding=True, truncation=True, max_length=self.transform.max_length,
                               return_tensors="pt")  # (N, L) ids, padded to the longest caption
        out = self.text(input_ids=batch["input_ids"].to(device), attention_mask=batch["attention_mask"].to(device))
        return F.normalize(out.pooler_output.float(), dim=-1)  # (N, hidden): the end-of-text token


def _byte_chars() -> list[str]:
    """The 256 printable stand-ins byte-level BPE uses for bytes (GPT-2's and CLIP's bytes_to_unicode)."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    extra = [b for b in range(256) if b not in keep]
    return [chr(b) for b in keep] + [chr(256 + i) for i in range(len(extra))]


def demo_clip_tokenizer():
    """A CLIP tokenizer (same class, same byte-level BPE) whose merges spell out DEMO_WORDS; no download."""
    from transformers import CLIPTokenizer

    chars = _byte_chars()
    vocab = {c: i for i, c in enumerate(chars + [c + "</w>" for c in chars])}
    merges = []
    for word in DEMO_WORDS:  # merge left to right: b r -> br, br i -> bri, ... -> bright</w>
        parts = list(word[:-1]) + [word[-1] + "</w>"]
        while len(parts) > 1:
            merges.append((parts[0], parts[1]))
            parts = [parts[0] + parts[1]] + parts[2:]
            vocab.setdefault(parts[0], len(vocab))
    merges = list(dict.fromkeys(merges))
    for special in ("<|startoftext|>", "<|endoftext|>"):
        vocab[special] = len(vocab)
    return CLIPTokenizer(vocab=vocab, merges=merges)


def _clip_text_config(name: str, tokenizer):
    from transformers import CLIPTextConfig

    ids = dict(bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    vocab = max(49408, len(tokenizer)) if name != "clip-demo-text" else len(tokenizer)
    return CLIPTextConfig(**CLIP_TEXT_ARCHS[name], vocab_size=vocab, max_position_embeddings=CLIP_CONTEXT, **ids)


def _random_clip_text(name: str):
    """(model, tokenizer): the architecture of `name` with seeded random weights, and the demo tokenizer."""
    from transformers import CLIPTextModel

    tokenizer = demo_clip_tokenizer()
    torch.manual_seed(DEMO_SEED)
    return CLIPTextModel(_clip_text_config(name, tokenizer)), tokenizer


def _load_clip_text(name: str, folder: Path):
    from transformers import CLIPTextModel, CLIPTokenizer

    try:
        with quiet_transformers():
            return CLIPTextModel.from_pretrained(folder), CLIPTokenizer.from_pretrained(folder)
    except (OSError, ValueError, TypeError) as e:
        raise WeightsError(f"{name}: cannot load a CLIP text tower and its tokenizer from {folder}: {e}") from None


def create_clip_text(name: str, weights: str | None = None) -> EncoderRecipe:
    """CLIP text tower `name` from `weights`: None (its hub id), a save_pretrained directory, a hub id, or 'random'."""
    if weights == "random":
        wid = f"random:seed={DEMO_SEED}"
        transform = TextPreprocess("demo-vocab", CLIP_CONTEXT)
        return EncoderRecipe(name, wid, transform, lambda: ClipTextEncoder(name, *_random_clip_text(name), transform, wid))
    folder = resolve_hf_weights(weights or CLIP_TEXT_HF[name], name, HF_PATTERNS)
    wid = dir_identity(folder, TEXT_FILES)
    transform = TextPreprocess(wid, CLIP_CONTEXT)
    return EncoderRecipe(name, wid, transform, lambda: ClipTextEncoder(name, *_load_clip_text(name, folder), transform, wid))


def demo_clip_text_dir() -> Path:
    """The tiny demo text tower, made once (seeded) and saved with save_pretrained under runs/models/."""
    def write(tmp: Path) -> None:
        model, tokenizer = _random_clip_text("clip-demo-text")
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)

    return saved_once(runs_dir() / "models" / "clip-demo-text", write)


# --------------------------------------------------------------------------- sentence-transformers
class SentenceEncoder(TextEncoder):
    def __init__(self, name: str, model, transform: TextPreprocess, weights_id: str):
        super().__init__()
        self.name, self.model, self.transform, self.weights_id = name, model, transform, weights_id
        dim = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension  # renamed in v6
        self.out_dim = dim()
        self.eval().requires_grad_(False)

    def encode(self, texts: list[str]) -> torch.Tensor:
        out = self.model.encode(list(texts), batch_size=max(1, len(texts)), convert_to_tensor=True,
                                normalize_embeddings=True, show_progress_bar=False)
        return out.float()  # (N, out_dim)


def _load_sentence(name: str, folder: Path):
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError:
        raise WeightsError(f"{name} needs the sentence-transformers package: pip install sentence-transformers") from None
    try:
        with quiet_transformers():
            return SentenceTransformer(str(folder), device="cpu", local_files_only=True)
    except (OSError, ValueError, TypeError, KeyError) as e:
        raise WeightsError(f"{name}: cannot load a sentence-transformers model from {folder}: {e}") from None


def write_sentence_model(folder: Path, name: str, seed: int = DEMO_SEED) -> None:
    """Save the architecture of `name` with seeded random weights, a word-level vocabulary and mean
    pooling as a sentence-transformers folder (what `SentenceTransformer(folder)` loads)."""
    import tempfile

    import transformers
    from sentence_transformers import SentenceTransformer

    arch = dict(SENTENCE_ARCHS[name])
    kind = arch.pop("model")
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] if kind == "bert" else ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)]
    vocab = specials + sorted(set(DEMO_WORDS)) + letters + [f"##{c}" for c in letters] + list(".,!?'-0123456789")
    config_cls, model_cls, tok_cls = {
        "bert": (transformers.BertConfig, transformers.BertModel, transformers.BertTokenizer),
        "mpnet": (transformers.MPNetConfig, transformers.MPNetModel, transformers.MPNetTokenizer),
    }[kind]
    with tempfile.TemporaryDirectory() as raw:
        (Path(raw) / "vocab.txt").write_text("\n".join(vocab) + "\n")
        torch.manual_seed(seed)
        model_cls(config_cls(vocab_size=len(vocab), max_position_embeddings=514, **arch)).save_pretrained(raw)
        tok_cls(str(Path(raw) / "vocab.txt")).save_pretrained(raw)
        SentenceTransformer(raw, device="cpu").save(str(folder))  # a plain model gets mean pooling


def create_sentence(name: str, weights: str | None = None) -> EncoderRecipe:
    """sentence-transformers model `name` from `weights`: None (its hub id), a folder, a hub id, or 'random'."""
    if weights == "random" or (weights is None and name not in SENTENCE_HF):
        folder = saved_once(runs_dir() / "models" / (name if name not in SENTENCE_HF else f"{name}-random"),
                            lambda tmp: write_sentence_model(tmp, name))
    else:
        folder = resolve_hf_weights(weights or SENTENCE_HF[name], name, HF_PATTERNS)
    wid = dir_identity(folder, TEXT_FILES, recursive=True)
    transform = TextPreprocess(wid, _max_seq_length(folder))
    return EncoderRecipe(name, wid, transform, lambda: SentenceEncoder(name, _load_sentence(name, folder), transform, wid))


def _max_seq_length(folder: Path) -> int:
    """The length cap a sentence-transformers folder declares (sentence_bert_config.json), else 512."""
    import json

    try:
        return int(json.loads((folder / "sentence_bert_config.json").read_text())["max_seq_length"])
    except (OSError, ValueError, KeyError, TypeError):
        return 512


# --------------------------------------------------------------------------- registered names
def _text(width: int) -> EncoderInfo:
    return EncoderInfo(width, input="captions")


@ENCODERS.register("clip-vit-b32-text", info=_text(512))
def clip_vit_b32_text(weights: str | None = None) -> EncoderRecipe:
    """CLIP ViT-B/32's text tower (openai/clip-vit-base-patch32), 512-d pooled output."""
    return create_clip_text("clip-vit-b32-text", weights)


@ENCODERS.register("clip-vit-l14-336-text", info=_text(768))
def clip_vit_l14_336_text(weights: str | None = None) -> EncoderRecipe:
    """CLIP ViT-L/14-336's text tower (openai/clip-vit-large-patch14-336), 768-d pooled output."""
    return create_clip_text("clip-vit-l14-336-text", weights)


@ENCODERS.register("clip-demo-text", info=_text(CLIP_TEXT_ARCHS["clip-demo-text"]["hidden_size"]))
def clip_demo_text(weights: str | None = None) -> EncoderRecipe:
    """A tiny CLIP text tower with seeded random weights, saved under runs/models/ and loaded back from there."""
    if weights == "random":
        return create_clip_text("clip-demo-text", "random")
    return create_clip_text("clip-demo-text", weights or str(demo_clip_text_dir().resolve()))


@ENCODERS.register("sentence-minilm", info=_text(384))
def sentence_minilm(weights: str | None = None) -> EncoderRecipe:
    """all-MiniLM-L6-v2 through sentence-transformers: 384-d, mean pooling (the package's most used model)."""
    return create_sentence("sentence-minilm", weights)


@ENCODERS.register("sentence-mpnet", info=_text(768))
def sentence_mpnet(weights: str | None = None) -> EncoderRecipe:
    """all-mpnet-base-v2 through sentence-transformers: 768-d, mean pooling."""
    return create_sentence("sentence-mpnet", weights)


@ENCODERS.register("sentence-demo", info=_text(SENTENCE_ARCHS["sentence-demo"]["hidden_size"]))
def sentence_demo(weights: str | None = None) -> EncoderRecipe:
    """A tiny BERT with seeded random weights, saved as a sentence-transformers folder under runs/models/."""
    return create_sentence("sentence-demo", weights)
