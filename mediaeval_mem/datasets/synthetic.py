"""`mem demo-data`: small synthetic stand-ins for Memento10k and VideoMem, in the MediaEval layout.

Each clip shows a coloured background with a moving disc, and has captions. Its memorability score
is a known function of what is visible, of a "story" that only the captions tell, plus noise:

    score = clip(0.30 + 0.30 * brightness + 0.15 * disc_size + 0.30 * story + N(0, noise), 0, 1)

- the frames show brightness and disc size exactly (an oracle on them alone reaches Spearman ~0.72);
- the captions tell the story in five words ("an ordinary" ... "an unforgettable") and the
  brightness in three ("dark", "dim", "bright"), each word off by one level in a quarter of the
  captions (annotators disagree), and never the disc size;

(an oracle on the words of five captions reaches ~0.86, of one ~0.80; on everything ~0.97: simulated with
this noise), so a video stream and a caption stream each learn part of the score, and their fusion learns more
than either; a broken pipeline learns nothing. Memento10k-like clips are 3 s, 30 fps H.264 MP4
with five captions each; VideoMem-like clips are 7 s, 30 fps VP9 WebM with one description, and
about one in twelve has none. Test splits have no scores file.
"""

from __future__ import annotations

import colorsys
import csv
import dataclasses
import shutil
from concurrent.futures import Executor, ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mediaeval_mem.core.io import atomic_write_json, atomic_write_text


@dataclass(frozen=True)
class DemoSpec:
    folder: str
    seconds: float
    codec: str
    ext: str
    counts: tuple[int, int, int]  # train, dev, test
    first_id: int
    options: tuple[tuple[str, str], ...]
    captions: int = 1  # per video
    uncaptioned: float = 0.0  # share of videos without any caption


DEMO_SPECS = {
    "memento10k": DemoSpec("memento10k", 3.0, "libx264", ".mp4", (120, 40, 40), 0, (("crf", "23"), ("preset", "veryfast")),
                           captions=5),
    "videomem": DemoSpec("videomem", 7.0, "libvpx-vp9", ".webm", (80, 30, 30), 7000, (("deadline", "realtime"), ("cpu-used", "8"), ("crf", "32"), ("b", "0")),
                         captions=1, uncaptioned=0.08),
}
# Caption words: the story (not visible) in five levels, the brightness in three; fillers vary the wording.
STORY_WORDS = ("an ordinary", "a plain", "a curious", "a striking", "an unforgettable")
TONE_WORDS = ("dark", "dim", "bright")
SHAPES, MOTIONS, GROUNDS = ("disc", "circle", "ball", "blob"), ("moving", "drifting", "sliding", "gliding"), ("background", "scene", "screen")
FPS = 30
DEMO_MARKER = "demo-data.json"  # marks a data root as generated: grids then use the demo profile
WIDTH, HEIGHT = 128, 72
PARTS = {"train": "train", "dev": "dev", "test": "test"}


def demo_score(brightness: float, size: float, story: float) -> float:
    """The noiseless memorability of a clip with background `brightness`, disc `size` and `story` (each in [0, 1])."""
    return 0.30 + 0.30 * brightness + 0.15 * size + 0.30 * story


def _level(value: float, levels: int, rng: np.random.Generator, slip: float = 0.25) -> int:
    """`value` in [0, 1] as one of `levels` words, one level off with probability `slip`."""
    level = min(levels - 1, int(value * levels))
    if rng.random() < slip:
        level = int(np.clip(level + rng.choice((-1, 1)), 0, levels - 1))
    return level


def demo_captions(rng: np.random.Generator, brightness: float, story: float, n: int) -> list[str]:
    """`n` captions of one clip: its story and brightness in words, each word sometimes one level off."""
    return [f"{STORY_WORDS[_level(story, 5, rng)]} {rng.choice(SHAPES)} {rng.choice(MOTIONS)} over a "
            f"{TONE_WORDS[_level(brightness, 3, rng)]} {rng.choice(GROUNDS)}" for _ in range(n)]


def render_clip(rng: np.random.Generator, brightness: float, size: float, hue: float, n_frames: int,
                width: int = WIDTH, height: int = HEIGHT) -> np.ndarray:
    """(T, H, W, 3) uint8 frames: a textured background and a disc moving along a random line."""
    bg = np.array(colorsys.hsv_to_rgb(hue, 0.55, 0.15 + 0.8 * brightness)) * 255
    disc = np.array(colorsys.hsv_to_rgb((hue + 0.5) % 1.0, 0.9, 0.95)) * 255
    radius = (5 + 20 * size) * height / HEIGHT
    yy, xx = np.mgrid[0:height, 0:width]
    texture = rng.normal(0, 6, size=(height, width, 1))
    start = rng.uniform([0, 0], [width, height])
    velocity = rng.uniform(-1.5, 1.5, size=2)
    frames = np.empty((n_frames, height, width, 3), np.uint8)
    for t in range(n_frames):
        cx, cy = (start + velocity * t) % [width, height]
        inside = ((xx - cx) ** 2 + (yy - cy) ** 2) < radius**2
        img = np.where(inside[..., None], disc, bg + texture)
        frames[t] = np.clip(img, 0, 255).astype(np.uint8)
    return frames


def write_video(path: Path, frames: np.ndarray, codec: str, options: dict[str, str]) -> None:
    """Encode (T, H, W, 3) uint8 frames with PyAV, atomically (temp file, then rename)."""
    import av

    tmp = path.with_name(path.stem + ".partial" + path.suffix)
    with av.open(str(tmp), "w") as out:
        stream = out.add_stream(codec, rate=FPS)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        stream.options = dict(options)
        for f in frames:
            out.mux(stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")))
        out.mux(stream.encode())
    tmp.replace(path)


def _write_csv(path: Path, header: list[str], rows: list[list]) -> None:
    import io

    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    w.writerows(rows)
    atomic_write_text(path, buf.getvalue())


def _render_and_write(path: Path, seed: int, vid: int, brightness: float, disc: float, hue: float, n_frames: int,
                      size: tuple[int, int], spec: DemoSpec) -> None:
    clip_rng = np.random.default_rng([seed, vid])  # per clip, so skipping one keeps the rest the same
    frames = render_clip(clip_rng, brightness, disc, hue, n_frames, *size)
    write_video(path, frames, spec.codec, dict(spec.options))


def generate_dataset(root: Path, spec: DemoSpec, seed: int, noise: float, scale: float = 1.0,
                     size: tuple[int, int] = (WIDTH, HEIGHT), pool: Executor | None = None) -> dict[str, int]:
    """Write one synthetic dataset under root/spec.folder; returns videos per split. With `pool` (processes), the
    clips are rendered and encoded there, the same files (each clip has its own seeded draws)."""
    rng = np.random.default_rng(seed)
    n_frames = int(round(spec.seconds * FPS))
    vid = spec.first_id
    counts = {}
    for split, n in zip(PARTS, spec.counts):
        n = max(2, int(round(n * scale)))
        folder = root / spec.folder / f"{split}_set"
        (folder / "Videos").mkdir(parents=True, exist_ok=True)
        scores, urls, descs, pending = [], [], [], []
        for _ in range(n):
            brightness, disc, hue = rng.uniform(0, 1, 3)
            text_rng = np.random.default_rng([seed, vid, 1])  # apart from `rng`: the clips' draws stay as they were
            story = text_rng.uniform()
            score = float(np.clip(demo_score(brightness, disc, story) + rng.normal(0, noise), 0, 1))
            raw = float(np.clip(score - 0.1 + rng.normal(0, 0.02), 0, 1))
            path = folder / "Videos" / f"{vid:05d}{spec.ext}"
            if not path.exists():  # a rerun after an interruption only writes what is missing
                clip = (path, seed, vid, brightness, disc, hue, n_frames, size, spec)
                if pool is None:
                    _render_and_write(*clip)
                else:
                    pending.append(pool.submit(_render_and_write, *clip))
            scores.append([vid, f"{raw:.6f}", f"{score:.6f}"])
            urls.append([vid, f"https://example.invalid/{spec.folder}/{vid:05d}{spec.ext}"])
            if text_rng.random() >= spec.uncaptioned:
                descs += [[vid, c] for c in demo_captions(text_rng, brightness, story, spec.captions)]
            vid += 1
        for f in pending:
            f.result()  # a clip that failed raises here, before its split's CSVs are written
        if split != "test":
            _write_csv(folder / f"{split}_scores.csv", ["video_id", "scores_raw_short_term", "scores_normalized_short_term"], scores)
        _write_csv(folder / f"{split}_video_urls.csv", ["video_id", "video_url"], urls)
        _write_csv(folder / f"{split}_text_descriptions.csv", ["video_id", "description"], descs)
        counts[split] = n
    return counts


def generate_demo_data(root: Path, seed: int = 0, noise: float = 0.03, scale: float = 1.0,
                       force: bool = False, counts: dict[str, tuple[int, int, int]] | None = None,
                       workers: int = 1) -> dict[str, dict[str, int]]:
    """Generate both demo datasets under `root`; `scale` shrinks the split sizes (tests use ~0.1).

    `counts` replaces a dataset's (train, dev, test) before scaling (e.g. the real 7000, 1500, 1500 for
    bench/season.py); `workers` > 1 renders and encodes the clips in that many processes (the same files).
    Deterministic for a given seed: a second call rewrites the CSVs identically and skips videos that exist.
    `mem demo-data` (experiments/demo.py `make_demo_data`) also writes the demo profile's I3D stand-ins.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    marker = {"made_by": "mem demo-data", "seed": seed, "scale": scale, "noise": noise}
    if counts:
        marker["counts"] = {k: list(v) for k, v in counts.items()}  # only when set: the demo's marker stays as it was
    atomic_write_json(root / DEMO_MARKER, marker)
    pool = ProcessPoolExecutor(workers) if workers > 1 else None
    try:
        out = {}
        for i, (name, spec) in enumerate(DEMO_SPECS.items()):
            if force and (root / spec.folder).exists():
                shutil.rmtree(root / spec.folder)
            if counts and name in counts:
                spec = dataclasses.replace(spec, counts=tuple(counts[name]))
            out[name] = generate_dataset(root, spec, seed + 1000 * i, noise, scale, pool=pool)
        return out
    finally:
        if pool is not None:
            pool.shutdown()
