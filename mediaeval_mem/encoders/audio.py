"""Audio encoders (input kind `audio`: windows of a video's sound) and CLAP's text tower (input kind `captions`).

An AudioEncoder maps windows of mono float32 samples at its rate to L2-normalised vectors (N, out_dim);
its input is made by the model's own Hugging Face feature extractor, loaded from the same folder as
the weights. Extraction (features/inputs/audio.py) cuts a video's track into windows of
`transform.window_s` seconds, one row each.

- `clap-audio`: the audio tower of CLAP (laion/clap-htsat-unfused, ClapModel.get_audio_features: the
  HTSAT's pooled output through the audio projection, 512-d), ClapFeatureExtractor at 48 kHz. One row
  per 10 s window: the extractor's whole input (480,000 samples), so its random crop (`rand_trunc`,
  for longer input) never fires and a shorter last window is repeat-padded by the extractor itself.
- `ast-audioset`: the Audio Spectrogram Transformer fine-tuned on AudioSet
  (MIT/ast-finetuned-audioset-10-10-0.4593), ASTModel's pooled output (mean of the CLS and
  distillation tokens, 768-d; the classifier is not used), ASTFeatureExtractor at 16 kHz: 128 mel
  bins, 1024 frames (10.24 s) zero-padded; one row per 10 s window, the length of an AudioSet clip.
- `clap-text`: CLAP's text tower (RoBERTa, get_text_features, 512-d), a caption encoder in the same
  space as `clap-audio`'s rows.
- `clap-audio-demo`, `clap-demo-text`, `ast-demo`: tiny seeded models (the real feature extractors,
  small towers) saved under runs/models/clap-demo/ and runs/models/ast-demo/ and loaded back through
  the same from_pretrained code as the real ones (the demo and the tests).

`weights`: None (the hub id), a save_pretrained folder, a hub id, or 'random' (the full-size
architecture with seeded random weights, not saved: the benches).
"""

from __future__ import annotations

import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from mediaeval_mem.core.errors import WeightsError
from mediaeval_mem.core.paths import runs_dir
from mediaeval_mem.encoders.base import ENCODERS, EncoderInfo, EncoderRecipe
from mediaeval_mem.encoders.text import DEMO_SEED, DEMO_WORDS, TextEncoder, TextPreprocess, _byte_chars
from mediaeval_mem.encoders.weights import dir_identity, quiet_transformers, resolve_hf_weights, saved_once

AUDIO_FILES = (".json", ".safetensors", ".bin", ".txt")  # weights, configs, the extractor's and tokenizer's files
HF_PATTERNS = ("*.json", "*.safetensors", "*.txt")
WINDOW_S = 10.0  # seconds of sound per row
CLAP_HF = "laion/clap-htsat-unfused"
AST_HF = "MIT/ast-finetuned-audioset-10-10-0.4593"
CLAP_CONTEXT = 77  # the text tower's length cap (ClapProcessor's max_length for RoBERTa captions)

# The checkpoints' preprocessor_config.json (the demo folders are saved with the same settings).
CLAP_EXTRACTOR = dict(feature_size=64, sampling_rate=48_000, hop_length=480, max_length_s=10, fft_window_size=1024,
                      frequency_min=50, frequency_max=14_000, padding="repeatpad", truncation="rand_trunc")
AST_EXTRACTOR = dict(feature_size=1, sampling_rate=16_000, num_mel_bins=128, max_length=1024, do_normalize=True,
                     mean=-4.2677393, std=4.5689974)

# Tower shapes: the real checkpoints' (transformers' defaults are laion/clap-htsat-unfused's and the AudioSet
# AST's), and the tiny stand-ins (same input sizes, so the same extractors feed them).
CLAP_ARCHS = {
    "clap": dict(audio={}, text={}, projection_dim=512),
    "clap-demo": dict(audio=dict(patch_embeds_hidden_size=16, depths=[1, 1], num_attention_heads=[2, 4], hidden_size=32),
                      text=dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64),
                      projection_dim=32),
}
AST_ARCHS = {
    "ast": dict(num_labels=527),
    "ast-demo": dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                     frequency_stride=16, time_stride=16, num_labels=527),
}


@dataclass(frozen=True)
class AudioPreprocess:
    """What turns a video's sound into model input, for the feature key: rate, window and the extractor's settings."""

    rate: int  # Hz, mono
    window_s: float  # seconds of sound per row
    extractor: dict = field(default_factory=dict)  # the feature extractor's class and scalar settings

    def describe(self) -> dict:
        return {"rate": self.rate, "window_s": self.window_s, "extractor": self.extractor}


def extractor_description(extractor) -> dict:
    """A feature extractor's class and scalar settings (its filter banks and windows follow from them)."""
    return {k: v for k, v in sorted(extractor.to_dict().items()) if isinstance(v, (str, int, float, bool, type(None)))}


class AudioEncoder(nn.Module):
    """Maps windows of mono float32 sound at `transform.rate` to L2-normalised vectors (N, out_dim)."""

    name: str
    out_dim: int
    transform: AudioPreprocess
    weights_id: str

    identity = EncoderRecipe.identity  # a loaded encoder can be given to extraction as it is (the benches)

    def __init__(self, name: str, model: nn.Module, extractor, transform: AudioPreprocess, weights_id: str, out_dim: int):
        super().__init__()
        self.name, self.model, self.extractor = name, model, extractor
        self.transform, self.weights_id, self.out_dim = transform, weights_id, out_dim
        self.eval().requires_grad_(False)

    def inputs(self, windows: list[np.ndarray]) -> dict[str, torch.Tensor]:
        """The model's input for N windows (each (n,) float32), made by its own feature extractor (CPU tensors)."""
        return dict(self.extractor(list(windows), sampling_rate=self.transform.rate, return_tensors="pt"))

    def embed(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """The feature extractor's output -> (N, out_dim) fp32 unit vectors."""
        raise NotImplementedError

    def encode(self, windows: list[np.ndarray]) -> torch.Tensor:
        """N windows of sound -> (N, out_dim) fp32 unit vectors on the encoder's device."""
        device = next(self.parameters()).device
        return self.embed({k: v.to(device) for k, v in self.inputs(windows).items()})


class ClapAudioEncoder(AudioEncoder):
    def embed(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        # input_features (N, 1, 1001, 64): log-mel of the (repeat-padded) 10 s; is_longer (N, 1) all False here
        x = inputs["input_features"].to(next(self.parameters()).dtype)
        out = self.model.get_audio_features(input_features=x, is_longer=inputs.get("is_longer"))
        return out.pooler_output.float()  # (N, projection_dim), already normalised by CLAP


class AstEncoder(AudioEncoder):
    def embed(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        # input_values (N, 1024, 128): normalised log-mel filterbank frames, zero-padded to 10.24 s
        x = inputs["input_values"].to(next(self.parameters()).dtype)
        return torch.nn.functional.normalize(self.model(input_values=x).pooler_output.float(), dim=-1)  # (N, hidden)


class ClapTextEncoder(TextEncoder):
    """CLAP's text tower: captions -> (N, projection_dim) unit vectors, the space of clap-audio's rows."""

    def __init__(self, name: str, model, tokenizer, transform: TextPreprocess, weights_id: str):
        super().__init__()
        self.name, self.model, self.tokenizer, self.transform, self.weights_id = name, model, tokenizer, transform, weights_id
        self.out_dim = model.config.projection_dim
        self.eval().requires_grad_(False)

    def encode(self, texts: list[str]) -> torch.Tensor:
        device = next(self.parameters()).device
        batch = self.tokenizer(list(texts), padding=True, truncation=True, max_length=self.transform.max_length,
                               return_tensors="pt")  # (N, L) ids, padded to the longest caption
        out = self.model.get_text_features(input_ids=batch["input_ids"].to(device),
                                           attention_mask=batch["attention_mask"].to(device))
        return out.pooler_output.float()  # (N, projection_dim), normalised by CLAP


# --------------------------------------------------------------------------- building and loading
def _clap_config(arch: str, vocab_size: int | None = None):
    from transformers import ClapAudioConfig, ClapConfig, ClapTextConfig

    a = CLAP_ARCHS[arch]
    text = dict(a["text"], projection_dim=a["projection_dim"], **({"vocab_size": vocab_size} if vocab_size else {}))
    return ClapConfig(text_config=ClapTextConfig(**text).to_dict(),
                      audio_config=ClapAudioConfig(**a["audio"], projection_dim=a["projection_dim"]).to_dict(),
                      projection_dim=a["projection_dim"])


def demo_clap_tokenizer():
    """A RoBERTa tokenizer (CLAP's class, byte-level BPE) whose merges spell out DEMO_WORDS; no download."""
    from transformers import RobertaTokenizer

    chars = _byte_chars()
    specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    vocab = {t: i for i, t in enumerate(specials + chars)}
    merges = []
    for word in DEMO_WORDS:  # "Ġ" stands for the space before a word: Ġ b -> Ġb, Ġb r -> Ġbr, ...
        parts = ["Ġ", *word]
        while len(parts) > 1:
            merges.append((parts[0], parts[1]))
            parts = [parts[0] + parts[1]] + parts[2:]
            vocab.setdefault(parts[0], len(vocab))
    return RobertaTokenizer(vocab=vocab, merges=list(dict.fromkeys(merges)), add_prefix_space=True)


def _random_clap(arch: str):
    """(ClapModel, ClapFeatureExtractor, tokenizer): `arch` with seeded random weights, the real extractor settings."""
    from transformers import ClapFeatureExtractor, ClapModel

    tokenizer = demo_clap_tokenizer()
    torch.manual_seed(DEMO_SEED)
    vocab = len(tokenizer) if arch == "clap-demo" else None
    return ClapModel(_clap_config(arch, vocab)), ClapFeatureExtractor(**CLAP_EXTRACTOR), tokenizer


@contextmanager
def _known_mel_warning_dropped():
    """AST's 128 mel bins over a 400-point FFT at 16 kHz leave its lowest filters empty (the checkpoint's own setting,
    kaldi's too): transformers warns each time the extractor is made. Nothing to act on."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="At least one mel filter has all zero values")
        yield


def _ast_extractor():
    from transformers import ASTFeatureExtractor

    with _known_mel_warning_dropped():
        return ASTFeatureExtractor(**AST_EXTRACTOR)


def _random_ast(arch: str):
    from transformers import ASTConfig, ASTForAudioClassification

    torch.manual_seed(DEMO_SEED)
    return ASTForAudioClassification(ASTConfig(**AST_ARCHS[arch])), _ast_extractor()


def demo_clap_dir() -> Path:
    """The tiny demo CLAP (both towers, extractor, tokenizer), made once (seeded) and saved under runs/models/."""
    def write(tmp: Path) -> None:
        for part in _random_clap("clap-demo"):
            part.save_pretrained(tmp)

    return saved_once(runs_dir() / "models" / "clap-demo", write)


def demo_ast_dir() -> Path:
    """The tiny demo AST (a classifier checkpoint, as the AudioSet one is) and its extractor, saved under runs/models/."""
    def write(tmp: Path) -> None:
        for part in _random_ast("ast-demo"):
            part.save_pretrained(tmp)

    return saved_once(runs_dir() / "models" / "ast-demo", write)


def _load(name: str, folder: Path, what: str, *loaders):
    try:
        with quiet_transformers(), _known_mel_warning_dropped():
            return tuple(cls.from_pretrained(folder) for cls in loaders)
    except (OSError, ValueError, TypeError, KeyError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise WeightsError(f"{name}: cannot load {what} from {folder}: {first}") from None


def _folder(name: str, weights: str | None, default: str) -> Path:
    return resolve_hf_weights(weights or default, name, HF_PATTERNS)


def create_clap_audio(name: str, weights: str | None, default: str, arch: str = "clap") -> EncoderRecipe:
    """CLAP's audio tower from `weights` (None: `default`, a hub id or a folder), or 'random' (`arch`, seeded)."""
    from transformers import ClapFeatureExtractor, ClapModel

    if weights == "random":
        extractor = ClapFeatureExtractor(**CLAP_EXTRACTOR)
        wid, made = f"random:seed={DEMO_SEED}", lambda: (_random_clap(arch)[0], extractor)
    else:
        folder = _folder(name, weights, default)
        wid = dir_identity(folder, AUDIO_FILES)
        (extractor,) = _load(name, folder, "CLAP's feature extractor", ClapFeatureExtractor)
        made = lambda: (_load(name, folder, "a CLAP model", ClapModel)[0], extractor)  # noqa: E731
    transform = AudioPreprocess(extractor.sampling_rate, WINDOW_S, extractor_description(extractor))

    def load() -> AudioEncoder:
        model, ext = made()
        return ClapAudioEncoder(name, model, ext, transform, wid, model.config.projection_dim)

    return EncoderRecipe(name, wid, transform, load)


def create_ast(name: str, weights: str | None, default: str, arch: str = "ast") -> EncoderRecipe:
    """The AST from `weights` (None: `default`, a hub id or a folder; a classifier checkpoint loads its body), or
    'random' (`arch`, seeded)."""
    from transformers import ASTFeatureExtractor, ASTModel

    if weights == "random":
        extractor = _ast_extractor()
        wid, made = f"random:seed={DEMO_SEED}", lambda: (_random_ast(arch)[0].audio_spectrogram_transformer, extractor)
    else:
        folder = _folder(name, weights, default)
        wid = dir_identity(folder, AUDIO_FILES)
        (extractor,) = _load(name, folder, "the AST feature extractor", ASTFeatureExtractor)
        made = lambda: (_load(name, folder, "an AST model", ASTModel)[0], extractor)  # noqa: E731
    transform = AudioPreprocess(extractor.sampling_rate, WINDOW_S, extractor_description(extractor))

    def load() -> AudioEncoder:
        model, ext = made()
        return AstEncoder(name, model, ext, transform, wid, model.config.hidden_size)

    return EncoderRecipe(name, wid, transform, load)


def create_clap_text(name: str, weights: str | None, default: str, arch: str = "clap") -> EncoderRecipe:
    """CLAP's text tower from `weights` (None: `default`), or 'random' (`arch`, seeded, the demo tokenizer)."""
    from transformers import AutoTokenizer, ClapModel

    if weights == "random":
        wid = f"random:seed={DEMO_SEED}"
        transform = TextPreprocess("demo-vocab", CLAP_CONTEXT)
        return EncoderRecipe(name, wid, transform,
                             lambda: ClapTextEncoder(name, *_random_clap(arch)[::2], transform, wid))
    folder = _folder(name, weights, default)
    wid = dir_identity(folder, AUDIO_FILES)
    transform = TextPreprocess(wid, CLAP_CONTEXT)
    return EncoderRecipe(name, wid, transform, lambda: ClapTextEncoder(
        name, *_load(name, folder, "a CLAP model and its tokenizer", ClapModel, AutoTokenizer), transform, wid))


# --------------------------------------------------------------------------- registered names
def _audio(width: int) -> EncoderInfo:
    return EncoderInfo(width, input="audio")


def _demo(weights: str | None, make) -> str:
    """A demo name's weights: the saved stand-in by default ('random' builds the same tiny architecture unsaved)."""
    return weights or str(make().resolve())


@ENCODERS.register("clap-audio", info=_audio(512))
def clap_audio(weights: str | None = None) -> EncoderRecipe:
    """CLAP's audio tower (laion/clap-htsat-unfused), 512-d, one row per 10 s window at 48 kHz."""
    return create_clap_audio("clap-audio", weights, CLAP_HF)


@ENCODERS.register("ast-audioset", info=_audio(768))
def ast_audioset(weights: str | None = None) -> EncoderRecipe:
    """The AudioSet-fine-tuned AST (MIT/ast-finetuned-audioset-10-10-0.4593), 768-d pooled output per 10 s window at 16 kHz."""
    return create_ast("ast-audioset", weights, AST_HF)


@ENCODERS.register("clap-text", info=EncoderInfo(512, input="captions"))
def clap_text(weights: str | None = None) -> EncoderRecipe:
    """CLAP's text tower (laion/clap-htsat-unfused), 512-d, in the space of clap-audio's rows."""
    return create_clap_text("clap-text", weights, CLAP_HF)


@ENCODERS.register("clap-audio-demo", info=_audio(CLAP_ARCHS["clap-demo"]["projection_dim"]))
def clap_audio_demo(weights: str | None = None) -> EncoderRecipe:
    """A tiny CLAP audio tower with seeded random weights, saved under runs/models/clap-demo/ and loaded from there."""
    return create_clap_audio("clap-audio-demo", _demo(weights, demo_clap_dir), CLAP_HF, "clap-demo")


@ENCODERS.register("clap-demo-text", info=EncoderInfo(CLAP_ARCHS["clap-demo"]["projection_dim"], input="captions"))
def clap_demo_text(weights: str | None = None) -> EncoderRecipe:
    """The tiny demo CLAP's text tower (runs/models/clap-demo/), in the space of clap-audio-demo's rows."""
    return create_clap_text("clap-demo-text", _demo(weights, demo_clap_dir), CLAP_HF, "clap-demo")


@ENCODERS.register("ast-demo", info=_audio(AST_ARCHS["ast-demo"]["hidden_size"]))
def ast_demo(weights: str | None = None) -> EncoderRecipe:
    """A tiny AST with seeded random weights, saved under runs/models/ast-demo/ and loaded from there."""
    return create_ast("ast-demo", _demo(weights, demo_ast_dir), AST_HF, "ast-demo")
