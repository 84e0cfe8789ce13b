"""Small real videos for the speech tests, written with PyAV: a tone track, silence, no audio track, a truncated
file and one whose audio codec FFmpeg does not know (its Matroska codec id renamed)."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np

FPS, SIZE = 8, 32


def write_video(path: Path, seconds: float = 1.0, audio: str | None = "tone", freq: float = 440.0,
                rate: int = 16_000, fmt: str | None = None) -> Path:
    """A SIZE x SIZE mpeg4 video of `seconds` with an AAC mono track: a `freq` Hz tone, `silence`, or none (None)."""
    c = av.open(str(path), "w", format=fmt)
    v = c.add_stream("mpeg4", rate=FPS)
    v.width = v.height = SIZE
    v.pix_fmt = "yuv420p"
    a = None
    if audio is not None:
        a = c.add_stream("aac", rate=rate)
        a.layout = "mono"
    for i in range(int(seconds * FPS)):
        img = np.full((SIZE, SIZE, 3), (i * 20 + int(freq)) % 255, np.uint8)
        for p in v.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
            c.mux(p)
    if a is not None:
        t = np.arange(int(seconds * rate)) / rate
        x = (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32) if audio == "tone" else np.zeros(len(t), np.float32)
        for s in range(0, len(x), 1024):
            f = av.AudioFrame.from_ndarray(x[None, s : s + 1024], format="flt", layout="mono")
            f.sample_rate, f.pts = rate, s
            for p in a.encode(f):
                c.mux(p)
        for p in a.encode(None):
            c.mux(p)
    for p in v.encode(None):
        c.mux(p)
    c.close()
    return path


def truncate(path: Path, keep: float = 0.5) -> Path:
    """Cut a file to `keep` of its bytes (an mp4 then lacks its index: FFmpeg cannot open it)."""
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


def write_unknown_codec(path: Path) -> Path:
    """A Matroska video whose audio track names a codec no FFmpeg has (A_AAC renamed A_XYZ, same length)."""
    write_video(path, fmt="matroska")
    data = path.read_bytes()
    assert data.count(b"A_AAC") == 1
    path.write_bytes(data.replace(b"A_AAC", b"A_XYZ"))
    return path


def write_ads(root: Path, bad: dict[str, str] | None = None) -> Path:
    """A generic dataset `ads` under data root `root`: 12 tone videos (train 6, dev 3, test 3), their pitch part of
    the score, one with a silent track and one with no audio track among them; `bad`: video id -> truncated |
    unknown-codec, written broken in place."""
    folder = root / "ads"
    (folder / "clips").mkdir(parents=True, exist_ok=True)
    (root / "datasets.yaml").write_text("ads: {folder: ads}\n")
    rows = ["video_id,path,score,split"]
    for i in range(12):
        vid, split = f"ad-{i:02d}", "train" if i < 6 else "dev" if i < 9 else "test"
        kind = "silence" if i == 1 else None if i == 2 else "tone"
        path = folder / "clips" / f"{vid}.mp4"
        what = (bad or {}).get(vid)
        if what == "unknown-codec":
            path = write_unknown_codec(path.with_suffix(".mkv"))
        else:
            write_video(path, audio=kind, freq=200.0 + 150 * i)
            if what == "truncated":
                truncate(path)
        score = "" if split == "test" else f"{0.5 + 0.03 * (i % 7):.3f}"
        rows.append(f"{vid},clips/{path.name},{score},{split}")
    (folder / "videos.csv").write_text("\n".join(rows) + "\n")
    return root
