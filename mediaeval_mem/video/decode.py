"""Video decoding: decord first, PyAV for what decord cannot open (AV1, some VP9 streams) and for long videos.

Frames come out as uint8 RGB, decoded at full size and in chunks (`iter_chunks`), so that a long or
large video never sits whole in memory. Resizing is ours, not the decoder's: `resize_short_side`
is an antialiased bicubic resize on uint8 (torch's port of Pillow's filter), which gives the pixels
that CLIPImageProcessor (PIL) gives on the same frames to within one 8-bit level. The decoders' own
scalers (decord's at open time, PyAV's reformat) are faster but were measured 0.013-0.033 off in
normalised units on realistic footage, depending on the clip and the scaler (bench/README.md), so
they are not used.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from mediaeval_mem.core.errors import DecodeError
from mediaeval_mem.video.sampling import Sampling

BACKENDS = ("decord", "pyav")
CHUNK = 32  # frames decoded at a time: a 1080p chunk is 200 MB of uint8
# "auto" leaves videos longer than this to PyAV. decord decodes ahead of its reader in a thread of its
# own, with no bound (measured: left idle after its first chunk of a 2-minute 640x360 video, it held
# 2.6 GB within 4 s, the whole video in RGB; dmlc/decord#157, #304), so with decord a video costs up to
# its own length in memory. PyAV decodes only as frames are read. 300 frames (10 s at 30 fps) keeps
# the challenge's clips (Memento10k 3 s, VideoMem 7 s) on decord.
DECORD_MAX_FRAMES = 300


def resized_hw(height: int, width: int, short_side: int) -> tuple[int, int]:
    """(H, W) with the short side set to `short_side`, the long side truncated as CLIPImageProcessor does."""
    if height <= width:
        return short_side, int(short_side * width / height)
    return int(short_side * height / width), short_side


def resize_short_side(x: torch.Tensor, short_side: int, mode: str = "bicubic") -> torch.Tensor:
    """uint8 (N, 3, H, W) -> uint8 (N, 3, h, w), the short side to `short_side`, antialiased bicubic
    (or `mode` "bilinear": PIL's BILINEAR, which VideoMAE's and V-JEPA 2's processors use).

    On uint8 in channels-last layout, torch runs Pillow's separable filter (SIMD): the same pixels as
    PIL's Image.resize(BICUBIC), about 10x faster than resizing in float (1280x720: 1,200 frames/s on
    one core). No resize when the size already fits.
    """
    h, w = x.shape[-2:]
    th, tw = resized_hw(h, w, short_side)
    if (th, tw) == (h, w):
        return x
    x = x.contiguous(memory_format=torch.channels_last)
    return torch.nn.functional.interpolate(x, size=(th, tw), mode=mode, antialias=True)


def probe(path: str | Path) -> tuple[int, int]:
    """(height, width) of the first video stream, from the container header (PyAV; nothing is decoded)."""
    import av

    with av.open(str(path)) as c:
        ctx = c.streams.video[0].codec_context
        return ctx.height, ctx.width


# What decord and its FFmpeg print on fd 2 when a file does not open, e.g.
#   [mov,mp4,m4a,3gp,3g2,mj2 @ 0x55b5977a6200] moov atom not found
#   [18:46:19] /github/workspace/src/video/video_reader.cc:83: ERROR opening: broken.mp4, Invalid data ...
# Our DecodeError already names the file and the reason, in one line.
_NATIVE_LOG = re.compile(rb"^(\[[^\]\n]* @ 0x[0-9a-f]+\] |\[\d\d:\d\d:\d\d\] \S+\.(cc|h):\d+: )")
_quiet = {"depth": 0, "saved": -1, "sink": None}
_quiet_lock = threading.Lock()


@contextmanager
def _native_log_dropped():
    """Point fd 2 at a scratch file while decord opens a video (from any decoding thread), then write back
    to the terminal everything that came meanwhile except decord's and FFmpeg's own log lines: a progress
    bar drawn in between is kept. Native code writes to fd 2 directly, so sys.stderr cannot catch it."""
    with _quiet_lock:
        if _quiet["depth"] == 0:
            sys.stderr.flush()
            _quiet["saved"], _quiet["sink"] = os.dup(2), tempfile.TemporaryFile()  # noqa: SIM115 (closed on the way out)
            os.dup2(_quiet["sink"].fileno(), 2)
        _quiet["depth"] += 1
    try:
        yield
    finally:
        with _quiet_lock:
            _quiet["depth"] -= 1
            if _quiet["depth"] == 0:
                sys.stderr.flush()
                os.dup2(_quiet["saved"], 2)
                os.close(_quiet["saved"])
                sink = _quiet["sink"]
                sink.seek(0)
                kept = b"".join(line for line in sink.read().splitlines(keepends=True) if not _NATIVE_LOG.match(line))
                sink.close()
                if kept:
                    os.write(2, kept)


class _LongVideo(Exception):
    """decord declines a video longer than its `max_frames` (see DECORD_MAX_FRAMES): not a failure."""


def _decord(path: Path, sampling: Sampling, chunk: int, max_frames: int | None = None) -> Iterator[np.ndarray]:
    import decord

    with _native_log_dropped():  # a file decord cannot open: its C++ log lines stay off the terminal
        vr = decord.VideoReader(str(path), num_threads=1)
    n = len(vr)
    if n == 0:
        raise RuntimeError("no frames")
    if max_frames is not None and n > max_frames:
        raise _LongVideo
    idx = sampling.indices(n).tolist()
    for i in range(0, len(idx), chunk):
        yield vr.get_batch(idx[i : i + chunk]).asnumpy()


def _count_frames(path: Path) -> int:
    """Frames of the first video stream: the header's count, else by reading packets (no decoding)."""
    import av

    with av.open(str(path)) as c:
        stream = c.streams.video[0]
        if stream.frames:
            return stream.frames
        return sum(1 for p in c.demux(stream) if p.size)


def _pyav(path: Path, sampling: Sampling, chunk: int) -> Iterator[np.ndarray]:
    import av

    # The frame count in a WebM header is often absent: count packets first when sampling needs it.
    wanted = None if sampling.kind == "all" else sampling.indices(_count_frames(path))
    keep = None if wanted is None else set(wanted.tolist())
    frames, seen, last = [], 0, wanted[-1] if wanted is not None and len(wanted) else None
    with av.open(str(path)) as c:
        stream = c.streams.video[0]
        stream.thread_type = "AUTO"
        for i, frame in enumerate(c.decode(stream)):
            if keep is None or i in keep:
                frames.append(frame.to_ndarray(format="rgb24"))
                seen += 1
                if len(frames) == chunk:
                    yield np.stack(frames)
                    frames = []
            if last is not None and i >= last:
                break
    if frames:
        yield np.stack(frames)
    if not seen:
        raise RuntimeError("no frames")


def iter_chunks(path: str | Path, sampling: str | Sampling = "all", backend: str = "auto",
                chunk: int = CHUNK) -> Iterator[torch.Tensor]:
    """A video's sampled frames at full size, as uint8 (n, H, W, 3) chunks of at most `chunk` frames.

    backend: "auto" (decord, then PyAV if decord fails before giving a frame; PyAV for a video of more
    than DECORD_MAX_FRAMES frames, whose memory then stays bounded), "decord" or "pyav".
    Raises DecodeError naming the file and each backend's reason.
    """
    path = Path(path)
    sampling = Sampling.parse(sampling)
    if not path.is_file():
        raise DecodeError(f"{path}: video file not found")
    if backend not in ("auto",) + BACKENDS:
        raise DecodeError(f"unknown decoding backend {backend!r}; use auto, {', '.join(BACKENDS)}")
    reasons = []
    limit = DECORD_MAX_FRAMES if backend == "auto" else None
    for name in BACKENDS if backend == "auto" else (backend,):
        given = 0
        try:
            for frames in _decord(path, sampling, chunk, limit) if name == "decord" else _pyav(path, sampling, chunk):
                given += 1
                yield torch.from_numpy(np.ascontiguousarray(frames))
            return
        except _LongVideo:
            continue
        except Exception as e:  # each backend fails in its own way; keep every reason
            if given:  # frames were already handed out: another backend cannot take over cleanly
                raise DecodeError(f"{path}: {name} failed after {given} chunk(s): {type(e).__name__}: {e}") from None
            reasons.append(f"{name}: {type(e).__name__}: {str(e).strip().splitlines()[-1] if str(e).strip() else ''}")
    raise DecodeError(f"{path}: cannot decode ({'; '.join(reasons)})")


def decode(
    path: str | Path,
    sampling: str | Sampling = "all",
    short_side: int | None = None,
    backend: str = "auto",
) -> torch.Tensor:
    """Decode a video's sampled frames as uint8 (T, H, W, 3), resized (faithfully) if `short_side` is given.

    >>> decode("data/demo/memento10k/train_set/Videos/00000.mp4", "uniform:8", short_side=224).shape
    torch.Size([8, 224, 398, 3])
    """
    chunks = [resize_short_side(c.permute(0, 3, 1, 2), short_side).permute(0, 2, 3, 1) if short_side else c
              for c in iter_chunks(path, sampling, backend)]
    return torch.cat(chunks).contiguous()
