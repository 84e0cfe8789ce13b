"""Audio decoding: a video's first audio track, down-mixed to mono and resampled, as float32 samples.

PyAV decodes the track and its AudioResampler (FFmpeg's swresample) converts each decoded frame to
planar float32 at the rate an encoder expects (CLAP 48 kHz, AST and Whisper 16 kHz); the channels are
then averaged to mono, as librosa's `to_mono` and Hugging Face `datasets` do (swresample's own stereo
downmix scales by 1/sqrt(2), 3 dB louder than the mean: another level in every log-mel input). `iter_windows`
hands the samples out in windows of W seconds while the track is read, so a long video's audio never
sits whole in memory: at most one window plus one decoded frame are held (a 10 s window at 48 kHz is
1.9 MB). `read_audio` returns a short clip's whole track.

The last window is SHORTER, not padded: the encoders' own feature extractors pad a short input in
their own way (CLAP repeats it, `padding="repeatpad"`; AST pads its filterbank frames with zeros), so a
clip shorter than a window gets exactly the input those extractors give on the clip itself.

A video without an audio track is not an error: `has_audio` is False and `iter_windows` yields
nothing (`read_audio` returns None). A track that FFmpeg cannot decode (a truncated file, a codec it
does not know) raises DecodeError, one line naming the file.

    >>> next(iter_windows("ad.mp4", rate=48_000, window_s=10.0)).shape
    (480000,)
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import av
import numpy as np

from mediaeval_mem.core.errors import DecodeError


def _open(path: Path):
    if not path.is_file():
        raise DecodeError(f"{path}: video file not found")
    try:
        return av.open(str(path))
    except (av.FFmpegError, OSError, ValueError) as e:
        raise DecodeError(f"{path}: cannot open ({_reason(e)}); check the file (ffprobe) or re-encode it") from None


def _reason(e: Exception) -> str:
    text = str(e).strip()
    return f"{type(e).__name__}: {text.splitlines()[-1]}" if text else type(e).__name__


def has_audio(path: str | Path) -> bool:
    """Whether the file holds an audio stream (from the container header; nothing is decoded)."""
    path = Path(path)
    with _open(path) as c:
        return bool(c.streams.audio)


def iter_windows(path: str | Path, rate: int, window_s: float, min_tail_s: float = 0.0) -> Iterator[np.ndarray]:
    """The first audio track as mono float32 windows (n,) of `window_s` seconds at `rate` Hz, read as it goes.

    Every window has round(rate * window_s) samples except the last, which holds what is left (shorter,
    never empty; see the module docstring for why it is not padded). A last window shorter than
    `min_tail_s` is dropped when a full one came before it (AAC and Opus tracks end with up to 2,112
    samples of encoder padding: a 30 s commercial decodes as 30.04 s). Nothing is yielded for a file
    without an audio track or with an empty one. Raises DecodeError naming the file if the track cannot
    be decoded; windows already yielded stay valid.
    """
    path = Path(path)
    size = int(round(rate * window_s))
    if size < 1:
        raise DecodeError(f"{path}: an audio window of {window_s} s at {rate} Hz holds no sample; use a longer window")
    with _open(path) as c:
        if not c.streams.audio:
            return
        stream = c.streams.audio[0]
        buf = np.empty(size, np.float32)  # (size,): the window being filled
        filled = full = 0
        try:
            resampler = av.AudioResampler(format="fltp", rate=rate)  # the track's own channels, planar
            frames = c.decode(stream)
            while True:
                frame = next(frames, None)
                # (C, n) float32 per resampled frame; None flushes what swresample still holds
                for out in resampler.resample(frame):
                    x = out.to_ndarray().mean(axis=0, dtype=np.float32)  # (n,): the mean of the channels
                    while len(x):
                        take = min(size - filled, len(x))
                        buf[filled:filled + take] = x[:take]
                        filled, x = filled + take, x[take:]
                        if filled == size:
                            yield buf.copy()
                            filled, full = 0, full + 1
                if frame is None:
                    break
        except (av.FFmpegError, ValueError) as e:
            raise DecodeError(f"{path}: audio track cannot be decoded ({_reason(e)}); "
                              "re-encode it (e.g. to AAC) or remove the file") from None
        if filled and not (full and filled < min_tail_s * rate):
            yield buf[:filled].copy()


def read_audio(path: str | Path, rate: int) -> np.ndarray | None:
    """A short clip's whole first audio track as mono float32 (n,) at `rate` Hz; None if it has no audio track.

    For long videos use iter_windows: this holds the whole track (4 bytes a sample: 10 minutes at 48 kHz
    is 115 MB).
    """
    path = Path(path)
    if not has_audio(path):
        return None
    parts = list(iter_windows(path, rate, 60.0))
    return np.concatenate(parts) if parts else np.zeros(0, np.float32)


def write_sound_video(path: str | Path, sound: np.ndarray | None, rate: int = 48_000, codec: str = "aac", fps: int = 4,
                      size: int = 32, seconds: float = 1.0) -> Path:
    """Write a small video (grey `size` px frames at `fps`) whose audio track is `sound`, (n,) mono or (C, n), at `rate` Hz.

    `codec`: an FFmpeg audio encoder (aac for MP4, libopus for WebM, pcm_s16le or flac for a lossless
    track in MKV/MOV); float samples in [-1, 1], or uint8 with pcm_u8. The suffix of `path` picks the
    container. `sound` None: `seconds` of video without an audio track. For tests and benches: the
    demo's and users' videos come from elsewhere.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sound = None if sound is None else sound[None] if sound.ndim == 1 else sound  # (C, n)
    seconds = seconds if sound is None else sound.shape[1] / rate
    with av.open(str(path), "w") as out:
        video = out.add_stream("libvpx-vp9" if path.suffix == ".webm" else "libx264", rate=fps)
        video.width = video.height = size
        video.pix_fmt = "yuv420p"
        if sound is not None:  # every stream is added before the first packet is written
            layout = {1: "mono", 2: "stereo"}[sound.shape[0]]
            audio = out.add_stream(codec, rate=rate)
            audio.layout = layout
        grey = np.full((size, size, 3), 128, np.uint8)
        for _ in range(int(np.ceil(seconds * fps)) or 1):
            out.mux(video.encode(av.VideoFrame.from_ndarray(grey, format="rgb24")))
        out.mux(video.encode())
        if sound is None:
            return path
        fmt = "u8" if sound.dtype == np.uint8 else "s16" if codec == "pcm_s16le" else "fltp"
        step = 4096  # samples per frame handed to the encoder (which re-frames them as it needs)
        for start in range(0, sound.shape[1], step):
            part = sound[:, start:start + step]
            if fmt == "s16":
                part = (np.clip(part, -1, 1) * 32767).astype(np.int16).T.reshape(1, -1).copy()  # packed (1, n*C)
            elif fmt == "u8":
                part = part.T.reshape(1, -1).copy()
            else:
                part = np.ascontiguousarray(part, np.float32)  # planar (C, n)
            frame = av.AudioFrame.from_ndarray(part, format=fmt, layout=layout)
            frame.sample_rate, frame.pts = rate, start
            out.mux(audio.encode(frame))
        out.mux(audio.encode())
    return path
