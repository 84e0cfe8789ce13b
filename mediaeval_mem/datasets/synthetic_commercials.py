"""`mem demo-data`'s commercials: a small synthetic stand-in for the challenge's commercials set, with sound.

Written after the Memento10k and VideoMem stand-ins (datasets/synthetic.py), with its own seeded draws, in the
generic layout and declared as `commercials` in the data root's datasets.yaml:

    commercials/
      videos.csv     video_id,path,channel,score,brand_score,weight,caption_1,caption_2,caption_3
      videos/ad-0000.mp4 ...   H.264 128x72 at 25 fps, 3-5 s, AAC stereo 44.1 kHz (7 have no audio track)

120 scored videos (the seeded draw of the generic layout splits them into train and dev) and 40 test videos whose
score cells are empty. Each video belongs to one of 12 channels (brands) of uneven sizes (26 videos down to 5).

What carries each score (a model can learn only what its inputs show):

    score       = 0.15 + 0.30 * brightness + 0.10 * disc_size          (seen)
                       + 0.20 * loudness + 0.15 * jingle               (heard; 0 for a silent video)
                       + channel_effect + N(0, 0.12 / sqrt(weight))    (clipped to [0, 1])
    brand_score = 0.15 + 0.35 * jingle + 0.25 * named + 0.10 * loudness + brand_effect + N(0, 0.15 / sqrt(weight))

- video: the background's brightness and the moving disc's size, per video; the channel's look (its hue and the
  stripes of its background) is the same in all its videos.
- audio: its loudness (a gain over 24 dB) and whether the channel's jingle (its own four-note melody, looping
  through the whole ad over the channel's drone and hiss) plays; the channel's drone pitch and hiss level are its
  sound. A silent video (no audio track) scores as if quiet and without a jingle.
- captions (three per video): the brightness in words ("dark", "dim", "bright", a quarter one level off), the
  shape and motion; the brand's name in most captions of a video whose ad says it (`named`, half the videos)
  and in few of the others; "with a jingle" in some captions of a video with a jingle. Never the loudness
  or the disc size. There is no speech in the sound: a speech (Whisper) stream finds nothing to transcribe.
- the channel: `channel_effect` (sd 0.04) and `brand_effect` (sd 0.05) are per channel, so a model that
  recognises a channel's look or sound learns its effect where random folds put that channel in training and
  test alike; folds grouped by channel leave it unlearnable noise.
- `weight`, the number of annotations (3-20), sets the score's noise: a weighted loss trusts the better-measured
  videos.

Oracles on the generating variables (`make_oracles`: 20 seeds' scored ads, the channel effects left out as
grouped folds leave them): Spearman of the score 0.65 from the seen part alone, 0.70 from the heard part alone,
0.96 from both; of the brand score 0.82 from the jingle alone, 0.49 from `named` alone, 0.95 from both. Measured
with the demo's stand-ins, ridge on pooled features, 5 folds grouped by channel (pooled out-of-fold Spearman of
the score): clip-demo 0.51, clap-audio-demo 0.22, both 0.72; the captions (clip-demo-text) 0.38.
"""

from __future__ import annotations

import colorsys
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mediaeval_mem.core.io import atomic_write_text
from mediaeval_mem.datasets.declared import DECLARATIONS_FILE, read_declarations
from mediaeval_mem.datasets.synthetic import GROUNDS, MOTIONS, SHAPES, TONE_WORDS, _level, _write_csv

NAME = "commercials"  # the declared name, and the folder under the data root
VIDEOS_CSV = "videos.csv"
SCORED, TEST = 120, 40  # videos at scale 1
# Videos per channel at scale 1 (train and test together): uneven, as brands' channels are.
CHANNEL_SIZES = (26, 21, 18, 16, 14, 13, 12, 11, 9, 8, 7, 5)
BRANDS = ("Zestra", "Corvina", "Lumo", "Pelikon", "Vandry", "Oxbel", "Quilla", "Trevo", "Marlune", "Skarp",
          "Delfi", "Nubo")
SECONDS = (3.0, 4.0, 5.0)  # a video's length, drawn per video
FPS = 25
WIDTH, HEIGHT = 128, 72
SAMPLE_RATE = 44_100  # Hz, stereo AAC
AUDIO_BLOCK = 1024  # samples per audio frame handed to the encoder (AAC's frame size)
SILENT_EVERY, SILENT_AT = 25, 7  # the video at position i has no audio track when i % 25 == 7 (7 of 160)
CAPTIONS = 3
VIDEO_OPTIONS = {"crf": "23", "preset": "veryfast"}
AUDIO_OPTIONS = {"aac_coder": "fast"}  # FFmpeg's default coder (twoloop) takes 3x as long here
AUDIO_BITRATE = 64_000  # bits per second: a few seconds of drone, hiss and tones need no more
PENTATONIC = (261.63, 293.66, 329.63, 392.00, 440.00, 523.25, 587.33, 659.25, 783.99, 880.00)  # Hz
JINGLE_LEVEL = 0.8  # the jingle against the bed (drone 0.3, hiss up to 0.12)
SEED_OFFSET = 2000  # the commercials' draws: seed + 2000 (the other demo datasets use seed + 0 and + 1000)


@dataclass(frozen=True)
class Channel:
    """One brand's channel: its look, its sound and its effect on the scores."""

    brand: str
    hue: float  # background hue in [0, 1)
    stripes: tuple[float, float]  # background stripes: (period in px, angle in radians)
    drone_hz: float  # the pitch of the channel's sound bed
    hiss: float  # the bed's noise level relative to the drone
    melody: tuple[float, ...]  # the jingle's four notes, Hz
    note_s: float  # seconds per jingle note
    pan: float  # left/right balance in [-1, 1]
    jingle_rate: float  # share of the channel's videos with the jingle
    channel_effect: float  # added to the score
    brand_effect: float  # added to the brand score


@dataclass(frozen=True)
class Ad:
    """One generated video's design: what it shows and plays, and its scores (None on the test split)."""

    video_id: str
    split: str  # "scored" or "test"
    channel: Channel
    seconds: float
    brightness: float
    size: float
    loudness: float
    jingle: bool
    named: bool  # the ad says its brand: the captions name it
    silent: bool  # no audio track
    weight: int
    score: float
    brand_score: float


def make_channels(rng: np.random.Generator) -> list[Channel]:
    """The 12 channels' styles, drawn in a fixed order."""
    channels = []
    hues = (np.arange(len(BRANDS)) + rng.uniform(0, 1)) / len(BRANDS) % 1.0  # spread around the colour wheel
    for brand, hue in zip(BRANDS, rng.permutation(hues)):
        melody = tuple(float(PENTATONIC[i]) for i in rng.choice(len(PENTATONIC), 4))
        channels.append(Channel(
            brand=brand, hue=float(hue), stripes=(float(rng.uniform(6, 30)), float(rng.uniform(0, np.pi))),
            drone_hz=float(rng.uniform(70, 260)), hiss=float(rng.uniform(0.02, 0.4)), melody=melody,
            note_s=float(rng.uniform(0.15, 0.3)), pan=float(rng.uniform(-0.6, 0.6)),
            jingle_rate=float(rng.uniform(0.25, 0.75)), channel_effect=float(rng.normal(0, 0.04)),
            brand_effect=float(rng.normal(0, 0.05))))
    return channels


def commercial_scores(brightness: float, size: float, loudness: float, jingle: bool, named: bool,
                      silent: bool) -> tuple[float, float]:
    """The noiseless (score, brand_score) of an ad, before the channel's effects; a silent ad is heard as nothing."""
    heard_loud, heard_jingle = (0.0, 0.0) if silent else (loudness, float(jingle))
    score = 0.15 + 0.30 * brightness + 0.10 * size + 0.20 * heard_loud + 0.15 * heard_jingle
    brand = 0.15 + 0.35 * heard_jingle + 0.25 * float(named) + 0.10 * heard_loud
    return score, brand


def design_ads(seed: int, scale: float = 1.0) -> list[Ad]:
    """Every ad's design, scored ones first; `scale` shrinks both splits (each keeps at least 2 videos).

    The full design (160 ads) is always drawn, so a smaller scale takes a prefix of each split and the same
    seed gives the same ads at any scale.
    """
    rng = np.random.default_rng(seed + SEED_OFFSET)
    channels = make_channels(rng)
    owners = rng.permutation(np.repeat(np.arange(len(channels)), CHANNEL_SIZES))  # (160,) channel per position
    ads = []
    for i, owner in enumerate(owners):
        ch = channels[owner]
        seconds = float(rng.choice(SECONDS))
        brightness, size, loudness = rng.uniform(0, 1, 3)
        jingle, named = bool(rng.random() < ch.jingle_rate), bool(rng.random() < 0.5)
        weight = int(rng.integers(3, 21))
        noise = rng.normal(0, 1, 2)
        silent = i % SILENT_EVERY == SILENT_AT
        score, brand = commercial_scores(brightness, size, loudness, jingle, named, silent)
        score = float(np.clip(score + ch.channel_effect + noise[0] * 0.12 / np.sqrt(weight), 0, 1))
        brand = float(np.clip(brand + ch.brand_effect + noise[1] * 0.15 / np.sqrt(weight), 0, 1))
        ads.append(Ad(f"ad-{i:04d}", "scored" if i < SCORED else "test", ch, seconds, float(brightness), float(size),
                      float(loudness), jingle, named, silent, weight, score, brand))
    keep = max(2, int(round(SCORED * scale))), max(2, int(round(TEST * scale)))
    return ads[:keep[0]] + ads[SCORED:SCORED + keep[1]]


def ad_captions(rng: np.random.Generator, ad: Ad) -> list[str]:
    """CAPTIONS captions of one ad: the brightness in words (sometimes a level off), what moves, and, as
    annotators recall them, the brand's name and the jingle."""
    out = []
    for _ in range(CAPTIONS):
        text = f"a {rng.choice(SHAPES)} {rng.choice(MOTIONS)} over a {TONE_WORDS[_level(ad.brightness, 3, rng)]} " \
               f"{rng.choice(GROUNDS)}"
        if rng.random() < (0.8 if ad.named else 0.05):
            text += f" in an ad for {ad.channel.brand}"
        if ad.jingle and not ad.silent and rng.random() < 0.3:
            text += " with a jingle"
        out.append(text)
    return out


def render_ad(rng: np.random.Generator, ad: Ad) -> np.ndarray:
    """(T, H, W, 3) uint8 frames: the channel's striped background at the ad's brightness, a moving disc."""
    ch = ad.channel
    n = int(round(ad.seconds * FPS))
    value = 0.15 + 0.8 * ad.brightness
    bg = np.array(colorsys.hsv_to_rgb(ch.hue, 0.6, value)) * 255  # (3,)
    dark = np.array(colorsys.hsv_to_rgb(ch.hue, 0.6, value * 0.7)) * 255
    disc = np.array(colorsys.hsv_to_rgb((ch.hue + 0.5) % 1.0, 0.9, 0.95)) * 255
    yy, xx = np.mgrid[0:HEIGHT, 0:WIDTH]
    period, angle = ch.stripes
    stripe = (np.sin(2 * np.pi * (xx * np.cos(angle) + yy * np.sin(angle)) / period) > 0)[..., None]  # (H, W, 1)
    background = np.where(stripe, bg, dark) + rng.normal(0, 5, size=(HEIGHT, WIDTH, 1))  # (H, W, 3)
    radius = 5 + 20 * ad.size
    start, velocity = rng.uniform([0, 0], [WIDTH, HEIGHT]), rng.uniform(-1.5, 1.5, size=2)
    frames = np.empty((n, HEIGHT, WIDTH, 3), np.uint8)
    for t in range(n):
        cx, cy = (start + velocity * t) % [WIDTH, HEIGHT]
        inside = ((xx - cx) ** 2 + (yy - cy) ** 2) < radius**2
        frames[t] = np.clip(np.where(inside[..., None], disc, background), 0, 255).astype(np.uint8)
    return frames


def ad_sound(rng: np.random.Generator, ad: Ad) -> np.ndarray:
    """(2, N) float32 stereo samples in [-1, 1] at SAMPLE_RATE, N = seconds * SAMPLE_RATE: the channel's drone
    and hiss, its jingle looping through the ad where it has one, all at the ad's loudness."""
    ch = ad.channel
    n = int(round(ad.seconds * SAMPLE_RATE))
    t = np.arange(n) / SAMPLE_RATE  # (N,) seconds
    tremolo = 1 + 0.3 * np.sin(2 * np.pi * 0.5 * t)
    bed = tremolo * (np.sin(2 * np.pi * ch.drone_hz * t) + 0.5 * np.sin(2 * np.pi * 2 * ch.drone_hz * t)) / 1.5
    bed = 0.3 * bed + ch.hiss * 0.3 * rng.normal(0, 1, n)
    if ad.jingle:
        note_n = int(ch.note_s * SAMPLE_RATE)
        envelope = np.exp(-3 * np.arange(note_n) / note_n)  # (note_n,) each note's decay
        tune = np.concatenate([envelope * (np.sin(2 * np.pi * f * np.arange(note_n) / SAMPLE_RATE)
                                           + 0.3 * np.sin(4 * np.pi * f * np.arange(note_n) / SAMPLE_RATE))
                               for f in ch.melody])  # (4 * note_n,)
        start = int(rng.uniform(0, len(tune)))  # the melody loops through the whole ad, entering at a random note
        bed += JINGLE_LEVEL * np.resize(np.roll(tune, -start), n)
    gain = 10 ** ((-30 + 24 * ad.loudness) / 20)  # -30 dB (quiet) to -6 dB (loud)
    mono = gain * bed
    stereo = np.stack([mono * (1 - 0.5 * ch.pan), mono * (1 + 0.5 * ch.pan)])  # (2, N)
    return np.clip(stereo, -1, 1).astype(np.float32)


def write_ad(path: Path, frames: np.ndarray, sound: np.ndarray | None) -> None:
    """Mux (T, H, W, 3) uint8 frames (H.264) and (2, N) float32 samples (AAC), or no audio track for None,
    into one MP4 with PyAV, atomically (a temporary file, then a rename)."""
    import av

    tmp = path.with_name(path.stem + ".partial" + path.suffix)
    with av.open(str(tmp), "w") as out:
        video = out.add_stream("libx264", rate=FPS)
        video.width, video.height, video.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        video.options = dict(VIDEO_OPTIONS)
        audio = out.add_stream("aac", rate=SAMPLE_RATE, layout="stereo") if sound is not None else None
        if audio is not None:
            audio.options, audio.bit_rate = dict(AUDIO_OPTIONS), AUDIO_BITRATE
        for f in frames:
            out.mux(video.encode(av.VideoFrame.from_ndarray(f, format="rgb24")))
        out.mux(video.encode())
        if audio is not None:
            for at in range(0, sound.shape[1], AUDIO_BLOCK):
                block = av.AudioFrame.from_ndarray(np.ascontiguousarray(sound[:, at:at + AUDIO_BLOCK]), format="fltp",
                                                   layout="stereo")
                block.sample_rate, block.pts = SAMPLE_RATE, at
                out.mux(audio.encode(block))
            out.mux(audio.encode())
    tmp.replace(path)


def declare(root: Path) -> None:
    """Declare the commercials in root/datasets.yaml: a new file, or a line added to one that lacks them."""
    path = root / DECLARATIONS_FILE
    line = f"{NAME}: {{folder: {NAME}}}  # written by mem demo-data (generic layout)\n"
    if not path.is_file():
        atomic_write_text(path, "# Datasets under this data root that are read by name (e.g. mem data check commercials).\n" + line)
    elif NAME not in read_declarations(root):
        text = path.read_text()
        atomic_write_text(path, text + ("" if text.endswith("\n") or not text else "\n") + line)


def generate_commercials(root: Path, seed: int = 0, scale: float = 1.0, force: bool = False) -> dict[str, int]:
    """Write the commercials dataset under root/commercials and declare it; returns videos per split
    ({"train+dev": scored, "test": unscored}: the generic layout draws the dev split when read).

    Deterministic for a seed: a second call rewrites the CSV identically and skips the videos that exist.
    """
    root = Path(root)
    folder = root / NAME
    if force and folder.exists():
        shutil.rmtree(folder)
    (folder / "videos").mkdir(parents=True, exist_ok=True)
    rows = []
    for ad in design_ads(seed, scale):
        index = int(ad.video_id.split("-")[1])
        path = folder / "videos" / f"{ad.video_id}.mp4"
        clip_rng = np.random.default_rng([seed, SEED_OFFSET, index])  # per video: a skipped one leaves the rest as they were
        captions = ad_captions(np.random.default_rng([seed, SEED_OFFSET, index, 1]), ad)
        if not path.exists():
            frames = render_ad(clip_rng, ad)
            write_ad(path, frames, None if ad.silent else ad_sound(clip_rng, ad))
        scored = ad.split == "scored"
        rows.append([ad.video_id, f"videos/{path.name}", ad.channel.brand,
                     f"{ad.score:.6f}" if scored else "", f"{ad.brand_score:.6f}" if scored else "",
                     ad.weight if scored else "", *captions])
    header = ["video_id", "path", "channel", "score", "brand_score", "weight"] + [f"caption_{k + 1}" for k in range(CAPTIONS)]
    _write_csv(folder / VIDEOS_CSV, header, rows)
    declare(root)
    scored = sum(r[3] != "" for r in rows)
    return {"train+dev": scored, "test": len(rows) - scored}


def make_oracles(seeds: range = range(20)) -> dict[str, float]:
    """Spearman of noiseless parts of the design against the scores, pooled over `seeds`' scored ads with the
    channel effects left out (as grouped folds leave them unlearnable): what each kind of input could reach."""
    from scipy.stats import spearmanr

    parts: dict[str, list[float]] = {k: [] for k in ("seen", "heard", "both", "jingle", "named", "brand", "score", "brand_score")}
    for seed in seeds:
        for ad in design_ads(seed):
            if ad.split != "scored":
                continue
            heard = 0.0 if ad.silent else 0.20 * ad.loudness + 0.15 * ad.jingle
            seen = 0.30 * ad.brightness + 0.10 * ad.size
            jingle = 0.0 if ad.silent else float(ad.jingle)
            values = dict(seen=seen, heard=heard, both=seen + heard, jingle=jingle, named=float(ad.named),
                          brand=0.35 * jingle + 0.25 * ad.named, score=ad.score - ad.channel.channel_effect,
                          brand_score=ad.brand_score - ad.channel.brand_effect)
            for k, v in values.items():
                parts[k].append(v)
    rho = lambda a, b: float(spearmanr(parts[a], parts[b])[0])  # noqa: E731
    return {"score~seen": rho("seen", "score"), "score~heard": rho("heard", "score"), "score~both": rho("both", "score"),
            "brand~jingle": rho("jingle", "brand_score"), "brand~named": rho("named", "brand_score"),
            "brand~both": rho("brand", "brand_score")}
