"""Transcription cost: Whisper's parts per 30 s window, full-size architectures with random weights.

    .venv/bin/python bench/transcribe.py                        # whisper-small, 2 windows a batch, 32 tokens
    .venv/bin/python bench/transcribe.py --model whisper-large-v3-turbo --windows 1 --tokens 16

What a video's transcript costs (encoders/whisper.py), per 30 s window of audio:

- `audio_decode_s`: decoding a video's AAC track to 16 kHz mono (video/audio.py iter_windows), from a
  generated 10-minute video, per window;
- `features_s`: the processor's log-mel features (WhisperFeatureExtractor), per window;
- `encoder_s`: the encoder's forward on a batch of `--windows` windows, per window (computed once per window:
  the no-speech check and the decoding share it);
- `token_ms`: one greedy decoding step with the key/value cache, per window of the batch (a real model stops
  at its end token: a commercial's 30 s of speech is some 60-100 tokens);
- `encoder_cpu_s`, `token_cpu_ms`: the same in CPU seconds of this process (a shared machine's wall time
  includes waiting for a core);
- `window_s_at_80_tokens`: audio + features + encoder + 80 tokens: the cost of one 30 s window of speech.

Random weights never stop by themselves, so decoding runs exactly `--tokens` steps. The last line is one JSON
object with every figure.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

# The shapes of the released checkpoints (their config.json), for random builds.
ARCHS = {
    "whisper-small": dict(num_mel_bins=80, d_model=768, encoder_layers=12, decoder_layers=12, encoder_attention_heads=12,
                          decoder_attention_heads=12, encoder_ffn_dim=3072, decoder_ffn_dim=3072, vocab_size=51865),
    "whisper-large-v3-turbo": dict(num_mel_bins=128, d_model=1280, encoder_layers=32, decoder_layers=4,
                                   encoder_attention_heads=20, decoder_attention_heads=20, encoder_ffn_dim=5120,
                                   decoder_ffn_dim=5120, vocab_size=51866),
}


def audio_decode_seconds(minutes: float) -> tuple[float, int]:
    """Seconds to decode a generated `minutes`-long video's audio track into 30 s windows, and the windows."""
    from mediaeval_mem.video.audio import iter_windows

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    from speech_media import write_video

    with tempfile.TemporaryDirectory() as tmp:
        path = write_video(Path(tmp) / "long.mp4", seconds=minutes * 60, freq=440.0)
        t0 = time.perf_counter()
        n = sum(1 for _ in iter_windows(path, 16_000, 30.0))
        return time.perf_counter() - t0, n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="whisper-small", choices=sorted(ARCHS))
    ap.add_argument("--windows", type=int, default=2, help="30 s windows per forward pass")
    ap.add_argument("--tokens", type=int, default=32, help="greedy steps decoded")
    ap.add_argument("--minutes", type=float, default=10.0, help="length of the generated video whose audio is decoded")
    ap.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", "2")))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from transformers import WhisperConfig, WhisperFeatureExtractor, WhisperForConditionalGeneration

    decode_s, n_windows = audio_decode_seconds(args.minutes)
    arch = ARCHS[args.model]
    torch.manual_seed(0)
    model = WhisperForConditionalGeneration(WhisperConfig(**arch, max_source_positions=1500,
                                                          max_target_positions=448)).eval()
    params = sum(p.numel() for p in model.parameters())
    fe = WhisperFeatureExtractor(feature_size=arch["num_mel_bins"])
    rng = np.random.default_rng(0)
    windows = [(0.1 * rng.standard_normal(480_000)).astype(np.float32) for _ in range(args.windows)]

    t0 = time.perf_counter()
    feats = fe(windows, sampling_rate=16_000, return_tensors="pt").input_features  # (B, n_mels, 3000)
    features_s = time.perf_counter() - t0
    with torch.inference_mode():
        t0, c0 = time.perf_counter(), time.process_time()
        enc = model.get_encoder()(feats).last_hidden_state  # (B, 1500, d_model)
        encoder_s, encoder_cpu = time.perf_counter() - t0, time.process_time() - c0
        ids = torch.full((args.windows, 4), 1, dtype=torch.long)  # <|startoftranscript|> <|lang|> <|task|> <|notimestamps|>
        past, t0, c0 = None, time.perf_counter(), time.process_time()
        for _ in range(args.tokens):
            out = model(encoder_outputs=(enc,), decoder_input_ids=ids if past is None else ids[:, -1:],
                        cache=past, use_cache=True)
            past = out.past_key_values
            ids = torch.cat([ids, out.logits[:, -1].argmax(-1, keepdim=True)], 1)
        decode_s_total, decode_cpu = time.perf_counter() - t0, time.process_time() - c0

    b = args.windows
    figures = {
        "model": args.model, "params_m": round(params / 1e6, 1), "threads": args.threads, "windows": b,
        "tokens": args.tokens,
        "audio_decode_s": round(decode_s / max(1, n_windows), 4), "audio_windows": n_windows,
        "features_s": round(features_s / b, 3), "encoder_s": round(encoder_s / b, 2),
        "token_ms": round(1000 * decode_s_total / args.tokens / b, 1),
        # CPU seconds of this process: on a shared machine, wall time above includes waiting for a core
        "encoder_cpu_s": round(encoder_cpu / b, 2), "token_cpu_ms": round(1000 * decode_cpu / args.tokens / b, 1),
    }
    figures["window_s_at_80_tokens"] = round(figures["audio_decode_s"] + figures["features_s"] + figures["encoder_s"]
                                             + 80 * figures["token_ms"] / 1000, 2)
    for k, v in figures.items():
        print(f"{k:>24}  {v}")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
