"""Speech to text: Whisper through transformers (WhisperForConditionalGeneration + WhisperProcessor).

The TRANSCRIBERS registry maps a name to a builder(weights) -> TranscriberRecipe (what the name fixes,
known without loading the model: a fully cached set of transcripts never loads weights), with a
TranscriberInfo beside it (its Hugging Face id):

- `whisper-large-v3-turbo` (openai/whisper-large-v3-turbo, the default: large-v3's encoder, 4 decoder layers)
- `whisper-small` (openai/whisper-small)
- `whisper-demo`: a tiny seeded Whisper (a small WhisperConfig, a byte-level BPE tokenizer built here with
  the special tokens Whisper's generation needs), saved under runs/models/whisper-demo/ and loaded back
  through the same from_pretrained path (the demo and the tests).

Any of them takes `weights`: a save_pretrained folder or a hub id in place of its default.

How a video's audio becomes text: 16 kHz mono from video/audio.py, cut into 30 s windows as the track
is read (our own chunking, not transformers' sequential long-form decoding: memory stays at one batch of
windows whatever the video's length, windows of one video batch together, and it needs no timestamp
prediction); each window padded to 30 s by the processor's feature extractor (log-mel (80 or 128, 3000));
greedy decoding, task `transcribe`, the language given or detected per window (None). A window carries no
speech, and is skipped, when its peak level is under SILENCE_PEAK or Whisper's own no-speech probability
(the <|nocaptions|> token after <|startoftranscript|>) is over NO_SPEECH_PROB, OpenAI's threshold.
A word cut by a window boundary may be heard twice or not at all: the texts are features for a caption
encoder, not a subtitle file.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import torch

from mediaeval_mem.core.errors import WeightsError
from mediaeval_mem.core.paths import runs_dir
from mediaeval_mem.core.registry import Registry
from mediaeval_mem.encoders.text import DEMO_WORDS, _byte_chars
from mediaeval_mem.encoders.weights import dir_identity, quiet_transformers, resolve_hf_weights, saved_once

# name -> builder(weights: str | None = None) -> TranscriberRecipe
TRANSCRIBERS: Registry = Registry("transcriber")

RATE = 16_000  # Whisper's feature extractor reads 16 kHz mono
WINDOW_S = 30.0  # Whisper's receptive field: 3000 mel frames of 10 ms
SILENCE_PEAK = 1e-3  # -60 dBFS: a window whose loudest sample is quieter holds no speech (Whisper would invent some)
NO_SPEECH_PROB = 0.6  # OpenAI's no_speech_threshold
WHISPER_FILES = (".json", ".safetensors", ".bin", ".txt")  # weights, configs, vocab.json, merges.txt
HF_PATTERNS = ("*.json", "*.safetensors", "*.txt")
DEMO_SEED = 0
DEMO_LANGUAGES = ("en", "de", "fr", "es", "it", "nl")  # the demo model's language tokens


@dataclass(frozen=True)
class TranscriberInfo:
    """What a name stands for, registered with its builder."""

    hub_id: str | None  # its default weights; None: made here (the demo)


@dataclass(frozen=True)
class WhisperSettings:
    """What turns audio into text besides the weights, for the transcripts' key."""

    rate: int = RATE
    window_s: float = WINDOW_S
    decoding: str = "greedy"
    task: str = "transcribe"
    silence_peak: float = SILENCE_PEAK
    no_speech_prob: float = NO_SPEECH_PROB

    def describe(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class TranscriberRecipe:
    name: str
    weights_id: str
    settings: WhisperSettings
    load: Callable[[], "WhisperTranscriber"]

    def identity(self) -> dict:
        """Everything that fixes this transcriber's output (with the language setting: features/transcripts.py)."""
        return {"transcriber": self.name, "weights": self.weights_id, "settings": self.settings.describe()}


@dataclass
class Transcript:
    """One video's speech as text; `text` is "" for a video with no speech heard."""

    text: str
    language: str | None  # given, or detected in the first window with speech; None without any
    windows: int  # 30 s windows read
    speech_windows: int  # of them, those transcribed (the others were silent or no speech)


class WhisperTranscriber:
    """A loaded Whisper and its processor; `transcribe(windows)` -> Transcript."""

    def __init__(self, name: str, model, processor, settings: WhisperSettings, batch_size: int = 8):
        self.name, self.model, self.processor, self.settings = name, model.eval().requires_grad_(False), processor, settings
        self.batch_size = batch_size
        self.no_speech_id = _token_id(processor.tokenizer, ("<|nocaptions|>", "<|nospeech|>"))
        self.sot_id = model.generation_config.decoder_start_token_id
        self.id_to_lang = {i: t.strip("<|>") for t, i in getattr(model.generation_config, "lang_to_id", {}).items()}

    def to(self, device) -> "WhisperTranscriber":
        self.model.to(device)
        return self

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def transcribe(self, windows: Iterable[np.ndarray], language: str | None = None) -> Transcript:
        """Mono float32 windows (n,) at 16 kHz, at most 30 s each (video/audio.py iter_windows) -> a Transcript.

        Windows are transcribed `batch_size` at a time as they come, so a long track is never held whole."""
        texts, seen, lang, batch = [], 0, language, []
        for w in windows:
            seen += 1
            if len(w) and float(np.abs(w).max()) >= self.settings.silence_peak:
                batch.append(w)
            if len(batch) == self.batch_size:
                out, langs = self._batch(batch, language)
                texts += out
                lang = lang or next((x for x in langs if x), None)
                batch = []
        if batch:
            out, langs = self._batch(batch, language)
            texts += out
            lang = lang or next((x for x in langs if x), None)
        kept = [t for t in texts if t]  # the windows with speech, in order
        return Transcript(" ".join(kept), lang if kept else language, seen, len(kept))

    @torch.inference_mode()
    def _batch(self, windows: list[np.ndarray], language: str | None) -> tuple[list[str], list[str | None]]:
        """B windows -> (B texts, "" where Whisper hears no speech; B detected languages)."""
        from transformers.modeling_outputs import BaseModelOutput

        inputs = self.processor.feature_extractor(windows, sampling_rate=self.settings.rate, return_tensors="pt")
        dtype = next(self.model.parameters()).dtype
        feats = inputs.input_features.to(self.device, dtype)  # (B, n_mels, 3000): each window padded to 30 s
        enc = self.model.get_encoder()(feats).last_hidden_state  # (B, 1500, d_model), computed once for both uses
        sot = torch.full((len(windows), 1), self.sot_id, device=self.device)
        logits = self.model(encoder_outputs=(enc,), decoder_input_ids=sot).logits[:, -1].float()  # (B, vocab)
        probs = logits.softmax(-1)
        no_speech = probs[:, self.no_speech_id] if self.no_speech_id is not None else torch.zeros(len(windows))
        langs: list[str | None] = [None] * len(windows)
        if language is None and self.id_to_lang:
            ids = torch.tensor(list(self.id_to_lang), device=self.device)
            langs = [self.id_to_lang[int(ids[i])] for i in logits[:, ids].argmax(-1).tolist()]
        kwargs = {"language": language} if language is not None else {}
        with quiet_transformers():  # its notes on the demo model's generation config and the unset attention mask
            tokens = self.model.generate(encoder_outputs=BaseModelOutput(last_hidden_state=enc),
                                         task=self.settings.task, num_beams=1, do_sample=False, **kwargs)
        texts = [t.strip() for t in self.processor.batch_decode(tokens, skip_special_tokens=True)]
        return ([t if p <= self.settings.no_speech_prob else "" for t, p in zip(texts, no_speech.tolist())],
                langs)


def _token_id(tokenizer, names: tuple[str, ...]) -> int | None:
    for n in names:
        i = tokenizer.convert_tokens_to_ids(n)
        if isinstance(i, int) and i != tokenizer.unk_token_id:
            return i
    return None


def _load(name: str, folder: Path, batch_size: int, settings: WhisperSettings) -> WhisperTranscriber:
    from transformers import WhisperForConditionalGeneration, WhisperProcessor

    try:
        with quiet_transformers():
            model = WhisperForConditionalGeneration.from_pretrained(folder)
            processor = WhisperProcessor.from_pretrained(folder)
    except (OSError, ValueError, TypeError, KeyError) as e:
        raise WeightsError(f"{name}: cannot load a Whisper model and its processor from {folder}: {e}") from None
    return WhisperTranscriber(name, model, processor, settings, batch_size)


def create_whisper(name: str, folder_or_id: str, batch_size: int = 8) -> TranscriberRecipe:
    """Transcriber `name` from a save_pretrained folder or a hub id (the Hugging Face cache, then the network)."""
    folder = resolve_hf_weights(folder_or_id, name, HF_PATTERNS)
    settings = WhisperSettings()
    return TranscriberRecipe(name, dir_identity(folder, WHISPER_FILES), settings,
                             lambda: _load(name, folder, batch_size, settings))


def transcriber_recipe(name: str, weights: str | None = None, batch_size: int = 8) -> TranscriberRecipe:
    """What transcriber `name` with `weights` (a folder, a hub id, or None for its default) fixes; nothing is loaded."""
    return TRANSCRIBERS.build(name, weights=weights, batch_size=batch_size)


@TRANSCRIBERS.register("whisper-large-v3-turbo", info=TranscriberInfo("openai/whisper-large-v3-turbo"))
def whisper_large_v3_turbo(weights: str | None = None, batch_size: int = 8) -> TranscriberRecipe:
    """Whisper large-v3-turbo: large-v3's 32-layer encoder (128 mel bins), 4 decoder layers; 99 languages."""
    return create_whisper("whisper-large-v3-turbo", weights or "openai/whisper-large-v3-turbo", batch_size)


@TRANSCRIBERS.register("whisper-small", info=TranscriberInfo("openai/whisper-small"))
def whisper_small(weights: str | None = None, batch_size: int = 8) -> TranscriberRecipe:
    """Whisper small (244 M parameters, 80 mel bins): a tenth of turbo's encoder cost."""
    return create_whisper("whisper-small", weights or "openai/whisper-small", batch_size)


@TRANSCRIBERS.register("whisper-demo", info=TranscriberInfo(None))
def whisper_demo(weights: str | None = None, batch_size: int = 8) -> TranscriberRecipe:
    """A tiny Whisper with seeded random weights, saved under runs/models/whisper-demo/ and loaded back from there."""
    return create_whisper("whisper-demo", weights or str(demo_whisper_dir().resolve()), batch_size)


# --------------------------------------------------------------------------- the tiny demo Whisper
def demo_whisper_tokenizer():
    """A WhisperTokenizer (same class, byte-level BPE) whose merges spell out DEMO_WORDS, with Whisper's special
    tokens in their order: <|endoftext|>, <|startoftranscript|>, the languages, <|translate|>, <|transcribe|>,
    <|startoflm|>, <|startofprev|>, <|nocaptions|>, <|notimestamps|>."""
    from transformers import AddedToken, WhisperTokenizer

    chars = _byte_chars()
    vocab = {c: i for i, c in enumerate(chars)}
    merges = []
    space = "\u0120"  # byte-level BPE's stand-in for a space: Ġ
    for word in DEMO_WORDS:  # Ġ b -> Ġb, Ġb r -> Ġbr, ... -> Ġbright
        parts = [space] + list(word)
        while len(parts) > 1:
            merges.append((parts[0], parts[1]))
            parts = [parts[0] + parts[1]] + parts[2:]
            vocab.setdefault(parts[0], len(vocab))
    merges = list(dict.fromkeys(merges))
    specials = (["<|endoftext|>", "<|startoftranscript|>"] + [f"<|{lang}|>" for lang in DEMO_LANGUAGES]
                + ["<|translate|>", "<|transcribe|>", "<|startoflm|>", "<|startofprev|>", "<|nocaptions|>",
                   "<|notimestamps|>"])
    tok = WhisperTokenizer(vocab=vocab, merges=merges)
    tok.add_special_tokens({"additional_special_tokens": [AddedToken(s, special=True, normalized=False) for s in specials[1:]]})
    return tok


def write_demo_whisper(folder: Path, seed: int = DEMO_SEED) -> None:
    """Save a tiny Whisper (2 + 2 layers, width 64, 80 mel bins) with seeded random weights, its processor and its
    generation config (the language and task tokens Whisper's generate reads) with save_pretrained."""
    from transformers import (
        GenerationConfig,
        WhisperConfig,
        WhisperFeatureExtractor,
        WhisperForConditionalGeneration,
        WhisperProcessor,
    )

    tok = demo_whisper_tokenizer()
    ids = lambda t: tok.convert_tokens_to_ids(t)  # noqa: E731
    eot, sot = ids("<|endoftext|>"), ids("<|startoftranscript|>")
    config = WhisperConfig(vocab_size=len(tok), num_mel_bins=80, d_model=64, encoder_layers=2, decoder_layers=2,
                           encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=128,
                           decoder_ffn_dim=128, max_source_positions=1500, max_target_positions=64,
                           decoder_start_token_id=sot, pad_token_id=eot, bos_token_id=eot, eos_token_id=eot,
                           init_std=0.2)  # wider than 0.02: a random decoder's words then depend on the audio
    words = {ids("\u0120" + w) for w in DEMO_WORDS}
    partial = [i for i in range(eot) if i not in words]  # bytes and half-merged words: the demo speaks whole words
    torch.manual_seed(seed)
    model = WhisperForConditionalGeneration(config)
    model.generation_config = GenerationConfig(
        decoder_start_token_id=sot, eos_token_id=eot, pad_token_id=eot, bos_token_id=eot,
        max_length=32,  # a random model never stops by itself: 28 tokens a window keep the demo fast
        is_multilingual=True, lang_to_id={f"<|{lang}|>": ids(f"<|{lang}|>") for lang in DEMO_LANGUAGES},
        task_to_id={"transcribe": ids("<|transcribe|>"), "translate": ids("<|translate|>")},
        no_timestamps_token_id=ids("<|notimestamps|>"), prev_sot_token_id=ids("<|startofprev|>"),
        begin_suppress_tokens=[eot], suppress_tokens=partial)
    model.save_pretrained(folder)
    WhisperProcessor(WhisperFeatureExtractor(feature_size=80, sampling_rate=RATE), tok).save_pretrained(folder)


def demo_whisper_dir() -> Path:
    """The tiny demo Whisper, made once (seeded) and saved under runs/models/whisper-demo/."""
    return saved_once(runs_dir() / "models" / "whisper-demo", write_demo_whisper)
