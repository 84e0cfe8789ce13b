"""Realistic test footage, made offline: camera moves over real photographs, encoded as users' videos are.

scikit-image ships photographs (astronaut, coffee, chelsea, rocket, hubble_deep_field, ...) that load
without network. A clip pans and zooms over one of them, adds sensor grain (the fine detail that
separates a faithful resize from a decoder's quick one), and is encoded at a size users have:
H.264 in MP4 or VP9 in WebM, optionally with an AAC / Opus audio track.

    write_footage(Path("pan.mp4"), FootageSpec("coffee", 1280, 720, "h264", audio=True))

Used by the fidelity tests and benches; scikit-image is a test dependency (`pip install -e .[test]`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mediaeval_mem.core.errors import MemError

CODECS = {"h264": ("libx264", ".mp4", {"crf": "18", "preset": "veryfast"}, "aac"),
          "vp9": ("libvpx-vp9", ".webm", {"crf": "30", "b": "0", "deadline": "realtime", "cpu-used": "8"}, "libopus")}


@dataclass(frozen=True)
class FootageSpec:
    photo: str = "astronaut"
    width: int = 1280
    height: int = 720
    codec: str = "h264"  # h264 (MP4) or vp9 (WebM)
    frames: int = 24
    fps: int = 24
    audio: bool = False
    grain: float = 4.0  # std of the sensor noise, in 8-bit levels
    seed: int = 0

    @property
    def suffix(self) -> str:
        return CODECS[self.codec][1]


def photo(name: str) -> np.ndarray:
    """A scikit-image sample photograph as uint8 (H, W, 3)."""
    try:
        import skimage.data
    except ImportError:
        raise MemError("realistic footage needs scikit-image: pip install -e .[test]") from None
    img = getattr(skimage.data, name)()
    return np.repeat(img[..., None], 3, axis=2) if img.ndim == 2 else img[..., :3]


def render(spec: FootageSpec) -> np.ndarray:
    """uint8 (T, H, W, 3): a slow pan with a zoom over the photo, plus grain."""
    import torch
    import torch.nn.functional as F

    rng = np.random.default_rng(spec.seed)
    src = torch.from_numpy(photo(spec.photo)).permute(2, 0, 1)[None].float()  # (1, 3, h, w)
    h, w = src.shape[-2:]
    out = np.empty((spec.frames, spec.height, spec.width, 3), np.uint8)
    aspect = spec.width / spec.height
    for t in range(spec.frames):
        s = t / max(1, spec.frames - 1)
        zoom = 0.85 - 0.15 * s  # the window covers 85% -> 70% of the photo's fitting crop
        ch = min(h, w / aspect) * zoom
        cw = ch * aspect
        y0 = (h - ch) * (0.2 + 0.6 * s)
        x0 = (w - cw) * (0.7 - 0.4 * s)
        # crop by an affine grid: sub-pixel camera motion, as a real pan gives
        ys = torch.linspace(y0, y0 + ch, spec.height) / (h - 1) * 2 - 1
        xs = torch.linspace(x0, x0 + cw, spec.width) / (w - 1) * 2 - 1
        grid = torch.stack(torch.meshgrid(ys, xs, indexing="ij")[::-1], dim=-1)[None]
        frame = F.grid_sample(src, grid, mode="bicubic", align_corners=True)[0].permute(1, 2, 0).numpy()
        frame = frame + rng.normal(0, spec.grain, frame.shape)
        out[t] = np.clip(frame, 0, 255).astype(np.uint8)
    return out


def write_footage(path: Path, spec: FootageSpec) -> Path:
    """Render and encode `spec` to `path` (its suffix is the codec's); returns the path."""
    import av

    codec, _, options, audio_codec = CODECS[spec.codec]
    frames = render(spec)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as out:
        video = out.add_stream(codec, rate=spec.fps)
        video.width, video.height, video.pix_fmt = spec.width, spec.height, "yuv420p"
        video.options = dict(options)
        sound = None
        if spec.audio:
            sound = out.add_stream(audio_codec, rate=48000)
            sound.layout = "stereo"
        samples_per_frame = 48000 // spec.fps
        for i, f in enumerate(frames):
            out.mux(video.encode(av.VideoFrame.from_ndarray(f, format="rgb24")))
            if sound is not None:
                t = (np.arange(samples_per_frame) + i * samples_per_frame) / 48000
                tone = (0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
                chunk = av.AudioFrame.from_ndarray(np.stack([tone, tone]), format="fltp", layout="stereo")
                chunk.sample_rate, chunk.pts = 48000, i * samples_per_frame
                out.mux(sound.encode(chunk))
        out.mux(video.encode())
        if sound is not None:
            out.mux(sound.encode())
    return path
