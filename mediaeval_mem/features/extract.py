"""`mem extract`: videos -> cached frame features, batched, resumable, one bad video never stops the rest.

Pipeline (one split):
    worker threads: decode at full size in chunks -> the encoder's resize (PIL's bicubic) -> crop, uint8 (T, 3, S, S)
    main thread:    pack frames of consecutive videos into full batches (B, 3, S, S) -> device ->
                    normalise -> encoder under autocast -> (B, D) -> back to their videos
    every `flush_every` finished videos: one segment appended to the split's FeatureStore.
On CUDA the workers decode while the device computes; on a CPU the two alternate (see _overlap).
Memory is bounded by the batch and the prefetch depth (workers x 2 videos), not by the dataset.
"""

from __future__ import annotations

import errno
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import wait as futures_wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from mediaeval_mem.core.errors import DecodeError, DiskFullError, MemError
from mediaeval_mem.core.io import atomic_write_json, write_error
from mediaeval_mem.core.progress import progress_bar
from mediaeval_mem.core.runtime import autocast, resolve_device, resolve_dtype
from mediaeval_mem.datasets import DatasetIndex, VideoItem, open_dataset
from mediaeval_mem.encoders import ENCODERS, EncoderRecipe, FrameEncoder, encoder_recipe
from mediaeval_mem.features.key import cache_dir, feature_key
from mediaeval_mem.features.options import ExtractOptions
from mediaeval_mem.features.pixels import PIXEL_PATH, frames_for
from mediaeval_mem.features.store import STORE_DTYPE, FeatureStore
from mediaeval_mem.video import Sampling


@dataclass
class SplitReport:
    split: str
    total: int
    extracted: int = 0
    cached: int = 0
    frames: int = 0
    seconds: float = 0.0
    failed: dict[str, str] = field(default_factory=dict)
    padded: dict[str, int] = field(default_factory=dict)  # clip-level encoders: videos shorter than the network needs
    repaired: dict[str, str] = field(default_factory=dict)  # damaged cache files dropped (file -> why): their videos redone


@dataclass
class ExtractReport:
    dataset: str
    encoder: str
    cache_dir: Path
    key: dict
    splits: list[SplitReport]

    @property
    def failed(self) -> int:
        return sum(len(s.failed) for s in self.splits)

    def repairs(self) -> list[str]:
        """One line per damaged cache file that this extraction found, dropped and made again."""
        return [f"repaired damaged feature cache {self.cache_dir / s.split}: {file} {why}; its videos were extracted again"
                for s in self.splits for file, why in s.repaired.items()]


def _load_video(item: VideoItem, encoder: FrameEncoder, sampling: Sampling, backend: str) -> torch.Tensor:
    """Decode + resize + crop one video: uint8 (T, 3, S, S). Runs in a worker thread."""
    if item.path is None:
        raise DecodeError(f"{item.video_id}: video file not found")
    return frames_for(item.path, encoder.transform, sampling, backend)


class _Packer:
    """Packs the frames of consecutive videos into batches and routes the outputs back to their videos."""

    def __init__(self):
        self.queue: deque[tuple[str, torch.Tensor]] = deque()  # (video id, frames not yet batched)
        self.queued = 0
        self.outputs: dict[str, list[np.ndarray]] = {}
        self.remaining: dict[str, int] = {}
        self.order: deque[str] = deque()

    def add(self, video_id: str, frames: torch.Tensor) -> None:
        self.queue.append((video_id, frames))
        self.queued += len(frames)
        self.outputs[video_id], self.remaining[video_id] = [], len(frames)
        self.order.append(video_id)

    def take(self, n: int) -> tuple[torch.Tensor, list[tuple[str, int]]]:
        """Up to n frames from the front of the queue: (frames, [(video id, count)])."""
        parts, owners = [], []
        while n > 0 and self.queue:
            vid, frames = self.queue.popleft()
            head, rest = frames[:n], frames[n:]
            parts.append(head)
            owners.append((vid, len(head)))
            n -= len(head)
            self.queued -= len(head)
            if len(rest):
                self.queue.appendleft((vid, rest))
        return torch.cat(parts), owners

    def give(self, out: np.ndarray, owners: list[tuple[str, int]]) -> None:
        pos = 0
        for vid, n in owners:
            self.outputs[vid].append(out[pos : pos + n])
            self.remaining[vid] -= n
            pos += n

    def finished(self) -> list[tuple[str, np.ndarray]]:
        """Videos whose every frame has been encoded, in arrival order."""
        done = []
        while self.order and self.remaining[self.order[0]] == 0:
            vid = self.order.popleft()
            done.append((vid, np.concatenate(self.outputs.pop(vid))))
            del self.remaining[vid]
        return done


def _encode(encoder: FrameEncoder, frames: torch.Tensor, device: torch.device, dtype: str) -> np.ndarray:
    """uint8 (B, 3, S, S) -> float16 (B, D) on the CPU."""
    if device.type == "cuda":
        frames = frames.pin_memory().to(device, non_blocking=True)
    with torch.inference_mode(), autocast(device, dtype):
        out = encoder(encoder.transform.normalize(frames))
    return out.to(torch.float16).cpu().numpy()


def extract_split(
    load_encoder: Callable[[], FrameEncoder],
    items: list[VideoItem],
    store: FeatureStore,
    sampling: Sampling,
    opts: ExtractOptions,
    device: torch.device,
    dtype: str,
    report: SplitReport,
    progress: bool = True,
) -> SplitReport:
    """Extract every video of `items` not yet in `store`. Ctrl-C keeps every finished video.

    Frame-level encoders (CLIP) see batches packed across videos; clip-level ones (I3D) see one
    whole video at a time and give one vector for it. `load_encoder()` is called only if some video
    is not cached once this process holds the split's lock (another process may have just done it).
    A failed write (a full disk) raises one line with the space the rest of the split needs.
    """
    with store.writing() as repaired:
        report.repaired = repaired
        done = store.done_ids()
        todo = [it for it in items if it.video_id not in done]
        report.cached = len(items) - len(todo)
        if not todo:
            store.consolidate()
            return report
        encoder = load_encoder()
        t0 = time.perf_counter()
        packer, ready, failed, padded = _Packer(), [], {}, {}

        def flush(force: bool = False) -> None:
            nonlocal ready, failed, padded
            ready.extend(packer.finished())
            if ready and (force or len(ready) >= opts.flush_every) or (force and failed):
                # Take the batch before storing it: a Ctrl-C landing after the store wrote it must not
                # make the final flush store the same videos twice (one that lands before loses them:
                # they are simply extracted again next time).
                batch, batch_failed, batch_padded = ready, failed, padded
                ready, failed, padded = [], {}, {}
                try:
                    store.append(batch, batch_failed, batch_padded)
                except DiskFullError:  # say how much the rest of the split needs, not just this segment
                    left = len(todo) - report.extracted
                    rows = 1 if encoder.clip_level else report.frames / max(1, report.extracted + len(batch))
                    needed = int(rows * encoder.out_dim * np.dtype(STORE_DTYPE).itemsize * left)
                    raise write_error(OSError(errno.ENOSPC, "No space left on device"), store.folder, needed,
                                      f"the {left} video(s) left in {report.split}") from None
                report.extracted += len(batch)
                report.failed.update(batch_failed)
                report.padded.update(batch_padded)

        def run_batch(n: int) -> None:
            frames, owners = packer.take(n)
            packer.give(_encode(encoder, frames, device, dtype), owners)
            report.frames += len(frames)
            bar.advance(sum(1 for vid, _ in owners if packer.remaining[vid] == 0), frames=len(frames))
            flush()

        def take(entry) -> None:
            item, frames = _result(entry, failed, bar)
            if frames is None:
                return
            if encoder.clip_level:  # one forward per video: (T, 3, S, S) -> (1, D)
                ready.append((item.video_id, _encode(encoder, frames, device, dtype)))
                if len(frames) < encoder.min_frames:
                    padded[item.video_id] = len(frames)
                report.frames += len(frames)
                bar.advance(1, frames=len(frames))
                flush()
                return
            packer.add(item.video_id, frames)
            while packer.queued >= opts.batch_size:
                run_batch(opts.batch_size)

        pool = ThreadPoolExecutor(max(1, opts.workers), thread_name_prefix="decode")
        depth, upcoming, pending = 2 * max(1, opts.workers), iter(todo), deque()

        def fill() -> None:  # keep `depth` videos decoding or decoded ahead of the model
            while len(pending) < depth and (item := next(upcoming, None)) is not None:
                pending.append((item, pool.submit(_load_video, item, encoder, sampling, opts.backend)))

        try:
            with progress_bar(f"{report.split}", len(todo), enabled=progress) as bar:
                if _overlap(opts, device):  # GPU: the CPU decodes while the device computes
                    fill()
                    while pending:
                        take(pending.popleft())
                        fill()
                else:  # CPU: alternate, so decoding never steals cores from the model's threads
                    fill()
                    while pending:
                        futures_wait([f for _, f in pending])
                        while pending:
                            take(pending.popleft())
                        fill()
                while packer.queued:
                    run_batch(opts.batch_size)
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            try:
                flush(force=True)  # whatever finished is kept, interrupted or not
            except MemError:
                pass  # the disk is still full: the first error says so; what was stored before stays
            raise
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
            report.seconds = time.perf_counter() - t0
        flush(force=True)
        store.consolidate()
    return report


def _overlap(opts: ExtractOptions, device: torch.device) -> bool:
    """Decode while the model runs? Yes on CUDA. Not on the CPU: there both compete for the same cores, and
    a decoding thread that preempts one of the model's threads stalls the whole parallel matrix product
    (measured on 2 cores, CLIP B/32: 70.9 frames/s overlapped vs 78.7 alternating, 81.7 for the model alone)."""
    return device.type == "cuda" if opts.overlap == "auto" else opts.overlap == "on"


def _result(entry, failed: dict[str, str], bar) -> tuple[VideoItem, torch.Tensor | None]:
    """A decoded video's frames, or None with the reason recorded in `failed`."""
    item, future = entry
    try:
        frames = future.result()
    except DecodeError as e:
        failed[item.video_id] = str(e)
    except Exception as e:  # a bug or a corrupt file deep in a decoder: report it per video
        failed[item.video_id] = f"{item.path}: {type(e).__name__}: {e}"
    else:
        if len(frames):
            return item, frames
        failed[item.video_id] = f"{item.path}: no frames"
    bar.advance(1)
    return item, None


def extract_features(
    dataset: str | DatasetIndex,
    encoder: str | EncoderRecipe | FrameEncoder,
    splits: tuple[str, ...] = ("train", "dev", "test"),
    weights: str | None = None,
    data_root: str | Path | None = None,
    sampling: str | Sampling = "all",
    opts: ExtractOptions = ExtractOptions(),
    device: str = "auto",
    progress: bool = True,
) -> ExtractReport:
    """Extract and cache features for `splits` of a dataset; returns what was done, cached and failed.

    What is extracted (encoder, weights, sampling) fixes the cache key, with the compute dtype; how
    (`opts`, `device`) does not otherwise.

    >>> report = extract_features("memento10k", "clip-demo", data_root="data/demo", sampling="uniform:16")
    >>> report.splits[0].extracted, report.cache_dir
    (120, PosixPath('runs/features/memento10k/clip-demo/3f2c...'))

    The model is loaded only if some video is not cached yet.
    """
    if isinstance(encoder, str):
        ENCODERS[encoder]  # an unknown name fails here, before any data is read
    index = dataset if isinstance(dataset, DatasetIndex) else open_dataset(dataset, data_root)
    device = resolve_device(device)
    dtype = resolve_dtype(opts.dtype, device)
    sampling = Sampling.parse(sampling)
    recipe = encoder_recipe(encoder, weights) if isinstance(encoder, str) else encoder
    key = feature_key(index.name, index.root, recipe.identity(), str(sampling), dtype, PIXEL_PATH)
    folder = cache_dir(key)
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_json(folder / "key.json", key)
    loaded: list[FrameEncoder] = [encoder] if isinstance(encoder, FrameEncoder) else []

    def load_encoder() -> FrameEncoder:  # once, and only if some video is not cached
        if not loaded:
            loaded.append(recipe.load().to(device))
        return loaded[0]

    reports = []
    for split in splits:
        items, store = index.split(split), FeatureStore(folder / split)
        report = SplitReport(split, len(items))
        if {it.video_id for it in items} <= store.done_ids():
            report.cached = len(items)  # nothing to do: no model load, no lock
        else:
            extract_split(load_encoder, items, store, sampling, opts, device, dtype, report, progress)
        reports.append(report)
    return ExtractReport(index.name, recipe.name, folder, key, reports)
