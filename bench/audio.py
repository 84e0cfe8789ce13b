"""Audio extraction throughput: the `audio` kind end to end (decode + feature extractor + model + store) against
the model alone, for the stand-ins and the full-size CLAP and AST architectures (random weights: nothing to download).

    .venv/bin/python bench/audio.py                                   # all four encoders, 4 videos of 30 s
    .venv/bin/python bench/audio.py --encoders ast-audioset --videos 8 --seconds 60
    .venv/bin/python bench/audio.py --encoders clap-audio --weights /path/to/clap-htsat-unfused

Videos are generated as commercials come (AAC, 48 kHz stereo, noise with a slow swell; tiny frames: the
video stream is not read). Figures per encoder, in windows (10 s of sound) per second:
  e2e_wps         extract_features on the videos, model already loaded (what `mem extract` runs)
  model_wps       the model alone on batches of extractor outputs already made (same batch, dtype, threads),
                  half measured just before the extraction and half just after (a shared machine drifts)
  extractor_wps   the model's Hugging Face feature extractor alone, on windows already decoded
  decode_wps      decoding and resampling alone (video/audio.py)
  e2e_realtime    seconds of sound extracted per second of wall time
The last line printed is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench._common import print_table  # noqa: E402

FULL_SIZE = ("clap-audio", "ast-audioset")


def make_videos(folder: Path, n: int, seconds: float) -> list[Path]:
    from mediaeval_mem.video.audio import write_sound_video

    paths = []
    for i in range(n):
        path = folder / f"ad{i:02d}.mp4"
        if not path.is_file():
            rng = np.random.default_rng(i)
            m = int(seconds * 48_000)
            swell = 0.1 + 0.05 * np.sin(np.linspace(0, seconds / 5, m, dtype=np.float32))
            write_sound_video(path, rng.standard_normal((2, m), dtype=np.float32) * swell, 48_000, "aac")
        paths.append(path)
    return paths


def bench_encoder(name: str, weights: str | None, videos: list[Path], device, dtype: str, work: Path,
                  model_seconds: float) -> dict:
    import torch

    from mediaeval_mem.core.runtime import autocast
    from mediaeval_mem.core.threads import set_threads, threads_for
    from mediaeval_mem.datasets import DatasetIndex, VideoItem
    from mediaeval_mem.encoders import encoder_recipe
    from mediaeval_mem.features.extract import ExtractOptions, extract_features
    from mediaeval_mem.features.inputs.audio import MIN_TAIL_S, WINDOWS_PER_FORWARD
    from mediaeval_mem.video.audio import iter_windows

    runs = work / f"runs-{name}"
    shutil.rmtree(runs, ignore_errors=True)  # an empty cache: everything is extracted
    os.environ["MEM_RUNS_DIR"] = str(runs)
    enc = encoder_recipe(name, weights).load().to(device)
    set_threads(threads_for("encode"))  # as extraction sets them
    rate, window_s = enc.transform.rate, enc.transform.window_s

    t = time.perf_counter()
    windows = [w for v in videos for w in iter_windows(v, rate, window_s, MIN_TAIL_S)]  # the kind's windows
    decode_s = time.perf_counter() - t
    t = time.perf_counter()
    inputs = [enc.inputs([w]) for w in windows]
    extractor_s = time.perf_counter() - t
    batches = [{k: torch.cat([x[k] for x in inputs[i:i + WINDOWS_PER_FORWARD]]).to(device) for k in inputs[0]}
               for i in range(0, len(inputs), WINDOWS_PER_FORWARD)]

    def model_only(budget: float) -> float:  # windows/s of the model alone, for about `budget` seconds
        done, t0 = 0, time.perf_counter()
        while True:
            for batch in batches:
                with torch.inference_mode(), autocast(device, dtype):
                    enc.embed(batch).to(torch.float16).cpu()
                done += len(next(iter(batch.values())))
            if time.perf_counter() - t0 >= budget:
                return done / (time.perf_counter() - t0)

    model_only(0)  # warm-up
    before = model_only(model_seconds / 2)
    index = DatasetIndex("bench-audio", videos[0].parent, "files", "none",
                         {"train": [VideoItem(v.stem, v) for v in videos]})
    opts = ExtractOptions(dtype=dtype)
    report = extract_features(index, enc, ("train",), opts=opts, device=str(device), progress=False).splits[0]
    after = model_only(model_seconds / 2)
    assert report.extracted == len(videos) and not report.failed and report.frames == len(windows), report
    e2e_wps, model_wps = report.frames / report.seconds, (before + after) / 2
    return {
        "encoder": name, "weights": weights or "stand-in", "rate": rate, "windows": len(windows),
        "e2e_wps": round(e2e_wps, 2), "model_wps": round(model_wps, 2),
        "extractor_wps": round(len(windows) / extractor_s, 2), "decode_wps": round(len(windows) / decode_s, 2),
        "e2e_over_model": round(e2e_wps / model_wps, 3),
        "e2e_realtime": round(sum(len(w) for w in windows) / rate / report.seconds, 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--encoders", default="clap-audio-demo,ast-demo,clap-audio,ast-audioset")
    ap.add_argument("--weights", help="a weights folder for the full-size encoders (default: random weights)")
    ap.add_argument("--videos", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=30.0, help="length of each generated video")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--dtype", default="auto")
    ap.add_argument("--model-seconds", type=float, default=10.0, help="how long the model-only loops run")
    ap.add_argument("--workdir", help="keep the generated videos here (default: a temporary folder)")
    args = ap.parse_args()

    import torch

    from mediaeval_mem.core.runtime import resolve_device, resolve_dtype

    work = Path(args.workdir or tempfile.mkdtemp(prefix="mem-bench-audio-"))
    device = resolve_device(args.device)
    dtype = resolve_dtype(args.dtype, device)
    t0 = time.perf_counter()
    videos = make_videos(work / f"videos-{args.videos}x{args.seconds:g}s", args.videos, args.seconds)
    print(f"generated {args.videos} videos of {args.seconds:g} s (AAC, 48 kHz stereo) in "
          f"{time.perf_counter() - t0:.0f}s under {work}")
    results = []
    for name in [n.strip() for n in args.encoders.split(",") if n.strip()]:
        weights = (args.weights or "random") if name in FULL_SIZE else None
        results.append(bench_encoder(name, weights, videos, device, dtype, work, args.model_seconds))
        r = results[-1]
        print(f"{name} ({r['weights']}, {r['rate']} Hz, {r['windows']} windows):")
        print_table([(k, str(v)) for k, v in r.items() if k.endswith(("wps", "model", "realtime"))])
    print(json.dumps({"device": str(device), "dtype": dtype, "threads": torch.get_num_threads(),
                      "videos": args.videos, "seconds": args.seconds, "encoders": results}))


if __name__ == "__main__":
    main()
