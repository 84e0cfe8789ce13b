"""Long videos: a video's sound is decoded and encoded window by window, so memory does not grow with its length."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from mediaeval_mem.video.audio import write_sound_video

# One audio extraction of one video in a fresh process (the 48 kHz CLAP stand-in: the heavier of the two rates);
# prints windows encoded, videos failed, stored rows and the process's peak resident memory (KiB).
CHILD = """
import sys
from pathlib import Path
from mediaeval_mem.core.process import one_malloc_arena
one_malloc_arena()  # as `mem` does at start-up
from mediaeval_mem.datasets import DatasetIndex, VideoItem
from mediaeval_mem.features.extract import extract_features
from mediaeval_mem.features.store import FeatureStore
video = Path(sys.argv[1])
index = DatasetIndex("long", video.parent, "files", "none", {"train": [VideoItem("v", video)]})
report = extract_features(index, "clap-audio-demo", ("train",), device="cpu", progress=False)
status = dict(line.split(":", 1) for line in open("/proc/self/status"))
rows = FeatureStore(report.cache_dir / "train").load().lengths.tolist()
print(report.splits[0].frames, len(report.splits[0].failed), *rows, int(status["VmHWM"].split()[0]))
"""


def _write(path: Path, seconds: int) -> Path:
    """AAC at 48 kHz, as commercials come (mono: stereo doubles the encoding time here, 46 s for 10 minutes):
    noise with a slow swell."""
    rng = np.random.default_rng(seconds)
    n = seconds * 48_000
    swell = 0.1 + 0.05 * np.sin(np.linspace(0, seconds / 5, n, dtype=np.float32))
    sound = rng.standard_normal(n, dtype=np.float32) * swell
    return write_sound_video(path, sound, 48_000, "aac")


def _extract_in_child(video: Path, runs: Path) -> tuple[int, int, int, float]:
    env = {**os.environ, "MEM_RUNS_DIR": str(runs)}
    out = subprocess.run([sys.executable, "-c", CHILD, str(video)], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    windows, failed, rows, peak_kib = (int(v) for v in out.stdout.split())
    return windows, failed, rows, peak_kib / 1024


def test_a_ten_minute_videos_audio_extracts_in_the_memory_of_a_ten_second_ones(tmp_path):
    runs = tmp_path / "runs"
    short = _extract_in_child(_write(tmp_path / "short" / "v.mp4", 10), runs)
    long = _extract_in_child(_write(tmp_path / "long" / "v.mp4", 600), runs)
    # AAC's priming samples make the track a little longer than its seconds: 10 s is one full window and a sliver
    assert short[1] == 0 and short[0] in (1, 2) and short[2] == short[0]
    assert long[1] == 0 and long[0] in (60, 61) and long[2] == long[0]
    # Measured on this 2-core machine: 10 s ~440 MB, 10 min ~462 MB (+22; with 1, 4 and 8 windows a forward pass:
    # +0, +41, +63, see WINDOWS_PER_FORWARD). Holding the 10 minutes' samples would cost 115 MB more.
    margin_mb = 60
    assert long[3] <= short[3] + margin_mb, f"peak RSS {long[3]:.0f} MB for 10 min vs {short[3]:.0f} MB for 10 s"
