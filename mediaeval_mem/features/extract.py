"""`mem extract`: videos -> cached frame features, batched, resumable, one bad video never stops the rest.

Pipeline (one split):
    worker threads: decode at full size in chunks -> the encoder's resize (PIL's bicubic) -> crop,
                    uint8 (n, 3, S, S) chunks handed to the main thread as they come (at most AHEAD waiting)
    main thread:    pack frames of consecutive videos into full batches (B, 3, S, S) -> device ->
                    normalise -> encoder under autocast -> (B, D) -> back to their videos
                    (clip-level encoders: windows of at most CLIP_WINDOW frames of one video -> one vector)
    every `flush_every` finished videos: one segment appended to the split's FeatureStore.
On CUDA the workers decode while the device computes; on a CPU the two take turns (see _overlap).
Memory is bounded by the batch and the prefetch depth (workers x 2 videos, each at most AHEAD chunks
ahead), not by the dataset nor by a video's length: a video's pixels are never whole in memory; its
output rows (D float16 per frame) are kept until it is stored.
"""

from __future__ import annotations

import errno
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np
import torch

from mediaeval_mem.core.errors import ConfigError, DecodeError, DiskFullError, MemError
from mediaeval_mem.core.io import atomic_write_json, write_error
from mediaeval_mem.core.progress import progress_bar
from mediaeval_mem.core.runtime import autocast, resolve_device, resolve_dtype
from mediaeval_mem.core.threads import with_threads
from mediaeval_mem.datasets import DatasetIndex, VideoItem, open_dataset
from mediaeval_mem.encoders import ENCODERS, EncoderInfo, EncoderRecipe, FrameEncoder, encoder_recipe
from mediaeval_mem.encoders.preprocess import ImageTransform
from mediaeval_mem.features.captions import CAPTION_PATH, caption_rows, captions_digest
from mediaeval_mem.features.key import cache_dir, feature_key
from mediaeval_mem.features.options import ExtractOptions
from mediaeval_mem.features.pixels import PIXEL_PATH, iter_frames
from mediaeval_mem.features.rows import Rows, fill_store
from mediaeval_mem.features.store import STORE_DTYPE, FeatureStore
from mediaeval_mem.video import Sampling

if TYPE_CHECKING:
    from mediaeval_mem.features.distributed import RayOptions


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
    uncaptioned: dict[str, str] = field(default_factory=dict)  # caption streams: videos given the empty caption


@dataclass
class ExtractReport:
    dataset: str
    encoder: str
    cache_dir: Path
    key: dict
    splits: list[SplitReport]
    unit: str = "frame"  # what SplitReport.frames counts: frame, video, caption or row (EncoderInfo.row_unit)

    @property
    def failed(self) -> int:
        return sum(len(s.failed) for s in self.splits)

    def repairs(self) -> list[str]:
        """One line per damaged cache file that this extraction found, dropped and made again."""
        return [f"repaired damaged feature cache {self.cache_dir / s.split}: {file} {why}; its videos were extracted again"
                for s in self.splits for file, why in s.repaired.items()]


# Frames per forward pass of a clip-level encoder (I3D): a longer video runs in windows (see _Windows).
# The demo's 90- and 210-frame videos (and any video sampled uniform:N with N <= 256) are one window,
# exactly as one forward over the whole video. At 224 px a 256-frame window is 38 MB of uint8, and the
# I3D's first activation over it (64 channels x 128 x 112 x 112) 0.4 GB in float32.
CLIP_WINDOW = 256
# Chunks (of at most video.decode.CHUNK = 32 frames) a video's worker may hold ready for the main thread:
# 256 frames, 38 MB at 224 px. A clip of the challenge's (90 or 210 frames) is then decoded whole in
# one turn, as before: decord decodes the rest of a video ahead of its reader anyway (video/decode.py),
# so stopping earlier would only move that work into the model's turn.
AHEAD = 8


class _Stream:
    """One video's frames on their way from the worker that decodes them to the main thread:
    uint8 (n, 3, S, S) chunks in order, at most AHEAD waiting, then the end (with the reason if it failed)."""

    def __init__(self, item: VideoItem):
        self.item = item
        self.chunks: deque[torch.Tensor] = deque()
        self.cond = threading.Condition()
        self.ended = False
        self.error: str | None = None
        self.cancelled = False  # the extraction stopped: the worker gives up
        self.frames = 0  # handed to the main thread so far

    def put(self, chunk: torch.Tensor) -> bool:
        """(Worker) wait for room, then hand `chunk` over; False once the extraction has stopped."""
        with self.cond:
            while len(self.chunks) >= AHEAD and not self.cancelled:
                self.cond.wait()
            if not self.cancelled:
                self.chunks.append(chunk)
                self.cond.notify_all()
            return not self.cancelled

    def end(self, error: str | None = None) -> None:
        """(Worker) no more chunks: the video is done, or failed with `error`."""
        with self.cond:
            self.ended, self.error = True, error
            self.cond.notify_all()

    def cancel(self) -> None:
        with self.cond:
            self.cancelled = True
            self.cond.notify_all()

    def get(self, turns: _Turns) -> torch.Tensor | None:
        """(Main thread) the next chunk, or None once the video has ended (`error` says if it failed)."""
        with self.cond:
            waiting = not self.chunks and not self.ended
        if waiting:
            turns.decode()
            # On a CPU the workers' turn lasts until this video has AHEAD chunks ready (or has ended),
            # so that turns are not one chunk long; on CUDA the first chunk is taken as it comes.
            enough = AHEAD if turns.alternate else 1
            with self.cond:
                while len(self.chunks) < enough and not self.ended:
                    self.cond.wait()
            turns.compute()
        with self.cond:
            if not self.chunks:
                return None
            chunk = self.chunks.popleft()
            self.cond.notify_all()
        self.frames += len(chunk)
        return chunk


class _Turns:
    """On a CPU, decoding and the model take turns (see _overlap): a worker starts decoding a chunk only
    while the main thread waits for frames. With alternate=False (CUDA) nothing here ever waits."""

    def __init__(self, alternate: bool):
        self.alternate = alternate
        self.cond = threading.Condition()
        self.open = True  # workers may start a chunk
        self.active = 0  # chunks being decoded now

    @contextmanager
    def decoding(self):
        """(Worker) around the decoding of one chunk."""
        if self.alternate:
            with self.cond:
                while not self.open:
                    self.cond.wait()
                self.active += 1
        try:
            yield
        finally:
            if self.alternate:
                with self.cond:
                    self.active -= 1
                    self.cond.notify_all()

    def decode(self) -> None:
        """(Main thread) the workers' turn (also to let them see a cancellation)."""
        if self.alternate:
            with self.cond:
                self.open = True
                self.cond.notify_all()

    def compute(self) -> None:
        """(Main thread) the model's turn: no chunk starts, and the ones under way finish first."""
        if self.alternate:
            with self.cond:
                self.open = False
                while self.active:
                    self.cond.wait()


def _decode(stream: _Stream, transform: ImageTransform, sampling: Sampling, backend: str, turns: _Turns) -> None:
    """(Worker) decode, resize and crop one video into `stream`, chunk by chunk, then end it."""
    item, error = stream.item, None
    try:
        if item.path is None:
            raise DecodeError(f"{item.video_id}: video file not found")
        with closing(iter_frames(item.path, transform, sampling, backend)) as chunks:
            while True:
                with turns.decoding():
                    chunk = None if stream.cancelled else next(chunks, None)
                if chunk is None or not stream.put(chunk):
                    break
    except DecodeError as e:
        error = str(e)
    except Exception as e:  # a bug or a corrupt file deep in a decoder: report it per video
        error = f"{item.path}: {type(e).__name__}: {e}"
    stream.end(error)


class _Rows:
    """One video's encoded rows, float16 (n, D), in a buffer that doubles when full.

    A long video's rows are then a few allocations, not one per batch: small arrays kept alive between
    the batches' large short-lived ones fragment glibc's heap, which grows without bound (measured on a
    2-minute 640x360 video at 224 px: heap 183 -> 559 MB with 150 MB in use; flat with this buffer).
    """

    def __init__(self):
        self.buf: np.ndarray | None = None
        self.n = 0

    def append(self, rows: np.ndarray) -> None:
        if self.buf is None or self.n + len(rows) > len(self.buf):
            grown = np.empty((max(2 * self.n, self.n + len(rows)), rows.shape[1]), rows.dtype)
            if self.buf is not None:
                grown[: self.n] = self.buf[: self.n]
            self.buf = grown
        self.buf[self.n : self.n + len(rows)] = rows
        self.n += len(rows)

    def array(self) -> np.ndarray:
        return self.buf[: self.n]


class _Packer:
    """Packs the frames of consecutive videos into batches and routes the outputs back to their videos.

    A video's frames arrive chunk by chunk (`add`); `end` says that none are left to come; it is
    finished once ended with every frame encoded. `drop` forgets a video whose decoding failed midway.
    """

    def __init__(self):
        self.queue: deque[tuple[str, torch.Tensor]] = deque()  # (video id, uint8 (n, 3, S, S) frames not yet batched)
        self.queued = 0
        self.outputs: dict[str, _Rows] = {}  # video id -> its rows encoded so far
        self.unencoded: dict[str, int] = {}
        self.ended: set[str] = set()
        self.order: deque[str] = deque()

    def add(self, video_id: str, frames: torch.Tensor) -> None:
        if video_id not in self.outputs:
            self.outputs[video_id], self.unencoded[video_id] = _Rows(), 0
            self.order.append(video_id)
        self.queue.append((video_id, frames))
        self.queued += len(frames)
        self.unencoded[video_id] += len(frames)

    def end(self, video_id: str) -> None:
        self.ended.add(video_id)

    def drop(self, video_id: str) -> None:
        if video_id not in self.outputs:
            return
        self.queue = deque((vid, f) for vid, f in self.queue if vid != video_id)
        self.queued = sum(len(f) for _, f in self.queue)
        del self.outputs[video_id], self.unencoded[video_id]
        self.order.remove(video_id)

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
            self.unencoded[vid] -= n
            pos += n

    def finished(self) -> list[tuple[str, np.ndarray]]:
        """Videos ended with every frame encoded, in arrival order."""
        done = []
        while self.order and self.order[0] in self.ended and self.unencoded[self.order[0]] == 0:
            vid = self.order.popleft()
            done.append((vid, self.outputs.pop(vid).array()))
            del self.unencoded[vid]
            self.ended.discard(vid)
        return done


class _Windows:
    """One video through a clip-level encoder, at most CLIP_WINDOW frames per forward -> (1, D).

    Each window's vector is the encoder's own pooled feature (I3D: Mixed_5c averaged over time and
    space, with no normalisation after it); the video's is their mean weighted by frame count, which
    is the average over all the windows' Mixed_5c maps (up to windows whose frame count is not a
    multiple of the network's stride 8). A video of at most CLIP_WINDOW frames is one forward, as
    before. For a longer one the result is close to, not equal to, one forward over all its frames:
    each window is padded at its ends as a clip of its own, so nothing is seen across a boundary.
    No window is shorter than `min_frames` unless the whole video is (then it is padded, as before).
    """

    def __init__(self, run: Callable[[torch.Tensor], torch.Tensor], min_frames: int):
        self.run, self.min_frames = run, min_frames  # run: uint8 (n, 3, S, S) -> float32 (1, D)
        self.held: list[torch.Tensor] = []  # uint8 (n, 3, S, S) chunks not yet run
        self.n_held = 0
        self.vectors: list[tuple[torch.Tensor, int]] = []  # (float32 (1, D), frames) per window run
        self.frames = 0

    def add(self, chunk: torch.Tensor) -> None:
        self.held.append(chunk)
        self.n_held += len(chunk)
        self.frames += len(chunk)
        while self.n_held - CLIP_WINDOW >= self.min_frames:  # a full window, with enough after it for a last one
            self._run(CLIP_WINDOW)

    def finish(self) -> torch.Tensor:
        """float32 (1, D) for the whole video."""
        if self.n_held > CLIP_WINDOW:  # too few frames would be left after a full window: two halves
            self._run(self.n_held // 2)
        self._run(self.n_held)
        if len(self.vectors) == 1:
            return self.vectors[0][0]
        return sum(v * n for v, n in self.vectors) / self.frames

    def _run(self, n: int) -> None:
        held = torch.cat(self.held)
        self.vectors.append((self.run(held[:n]), n))
        self.held, self.n_held = [held[n:]], len(held) - n


def _forward(encoder: FrameEncoder, frames: torch.Tensor, device: torch.device, dtype: str) -> torch.Tensor:
    """uint8 (B, 3, S, S) -> (B, D) on the device (a clip-level encoder: one window (T, 3, S, S) -> (1, D))."""
    if device.type == "cuda":
        frames = frames.pin_memory().to(device, non_blocking=True)
    with torch.inference_mode(), autocast(device, dtype):
        return encoder(encoder.transform.normalize(frames))


def _encode(encoder: FrameEncoder, frames: torch.Tensor, device: torch.device, dtype: str) -> np.ndarray:
    """uint8 (B, 3, S, S) -> float16 (B, D) on the CPU."""
    return _forward(encoder, frames, device, dtype).to(torch.float16).cpu().numpy()


@with_threads("encode")  # an encoder's large batches: every usable core (core/threads.py)
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
    video at a time, in windows of at most CLIP_WINDOW frames, and give one vector for it. A video's
    frames stream through in chunks, so memory does not grow with a video's length (only its output
    rows, D floats per frame, are kept until it is stored). A video that fails midway stores nothing.
    `load_encoder()` is called only if some video is not cached once this process holds the split's
    lock (another process may have just done it).
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
        windows: dict[str, _Windows] = {}  # clip-level encoders: the video being fed

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
            bar.advance(0, frames=len(frames))
            flush()

        def run_window(frames: torch.Tensor) -> torch.Tensor:  # uint8 (n, 3, S, S) -> float32 (1, D)
            report.frames += len(frames)
            bar.advance(0, frames=len(frames))
            return _forward(encoder, frames, device, dtype).float()

        def feed(stream: _Stream, chunk: torch.Tensor) -> None:  # chunk: uint8 (n, 3, S, S)
            vid = stream.item.video_id
            if encoder.clip_level:
                if vid not in windows:
                    windows[vid] = _Windows(run_window, encoder.min_frames)
                windows[vid].add(chunk)
                return
            packer.add(vid, chunk)
            while packer.queued >= opts.batch_size:
                run_batch(opts.batch_size)

        def end(stream: _Stream) -> None:  # the video at the front has no more frames to come
            vid = stream.item.video_id
            error = stream.error or (None if stream.frames else f"{stream.item.path}: no frames")
            if error:  # nothing of it is stored, however much was encoded
                failed[vid] = error
                packer.drop(vid)
                windows.pop(vid, None)
            elif encoder.clip_level:
                clip = windows.pop(vid)
                ready.append((vid, clip.finish().to(torch.float16).cpu().numpy()))
                if clip.frames < encoder.min_frames:
                    padded[vid] = clip.frames
            else:
                packer.end(vid)
            bar.advance(1)
            flush()

        turns = _Turns(alternate=not _overlap(opts, device))
        pool = ThreadPoolExecutor(max(1, opts.workers), thread_name_prefix="decode")
        depth, upcoming, streams = 2 * max(1, opts.workers), iter(todo), deque()

        def fill() -> None:  # keep `depth` videos decoding or decoded ahead of the model
            while len(streams) < depth and (item := next(upcoming, None)) is not None:
                streams.append(_Stream(item))
                pool.submit(_decode, streams[-1], encoder.transform, sampling, opts.backend, turns)

        try:
            with progress_bar(f"{report.split}", len(todo), enabled=progress) as bar:
                # Videos are fed in order, each to its end: the front one's worker always runs (the pool
                # starts them in order), so waiting for it never waits on a worker that waits for room.
                fill()
                while streams:
                    chunk = streams[0].get(turns)
                    if chunk is None:
                        end(streams.popleft())
                        fill()
                    else:
                        feed(streams[0], chunk)
                while packer.queued:
                    run_batch(opts.batch_size)
        except BaseException:
            for stream in streams:
                stream.cancel()
            turns.decode()  # workers waiting for their turn see the cancellation
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
    ray: RayOptions | str | None = None,
) -> ExtractReport:
    """Extract and cache features for `splits` of a dataset; returns what was done, cached and failed.

    What is extracted (encoder, weights, sampling) fixes the cache key, with the compute dtype; how
    (`opts`, `device`, `ray`) does not otherwise. With `ray` (a RayOptions, or an address: "local"
    starts a private Ray here) the videos are encoded by actors on a Ray cluster and stored by this
    process (features/distributed.py): the same cache entry, the same features.

    >>> report = extract_features("memento10k", "clip-demo", data_root="data/demo", sampling="uniform:16")
    >>> report.splits[0].extracted, report.cache_dir
    (120, PosixPath('runs/features/memento10k/clip-demo/3f2c...'))

    The model is loaded only if some video is not cached yet.
    """
    # an unknown name, missing weights: refused here, before any data is read
    recipe = encoder_recipe(encoder, weights) if isinstance(encoder, str) else encoder
    index = dataset if isinstance(dataset, DatasetIndex) else open_dataset(dataset, data_root)
    # segments:N draws its frames afresh every epoch, as batches are cut: it extracts every frame, so it is `all`
    # here and in the key (one cache entry for both)
    asked = Sampling.parse(sampling)
    sampling = asked.extracted
    info = ENCODERS.info(recipe.name) if recipe.name in ENCODERS else EncoderInfo(getattr(recipe, "out_dim", 0))
    if not info.reads_video and str(asked) != "all":
        raise ConfigError(f"sampling {asked} picks video frames; {recipe.name} reads "
                          f"{'captions' if info.input == 'captions' else 'stored features'}: leave --sampling at all")
    if ray is None:
        device = resolve_device(device)
        return _extract(index, recipe, info, splits, sampling, opts, device, resolve_dtype(opts.dtype, device), progress)
    from mediaeval_mem.features.distributed import encoder_pool

    if info.input in ("captions", "features") or isinstance(recipe, torch.nn.Module):
        raise MemError(f"--ray shards videos over actors that build a frame or clip encoder from its recipe; "
                       f"extract {recipe.name} without it")
    with encoder_pool(ray, recipe, sampling, opts, device) as pool:
        return _extract(index, recipe, info, splits, sampling, opts, torch.device(pool.device), pool.dtype, progress, pool)


def _extract(index: DatasetIndex, recipe, info: EncoderInfo, splits: tuple[str, ...], sampling: Sampling,
             opts: ExtractOptions, device: torch.device, dtype: str, progress: bool, pool=None) -> ExtractReport:
    """extract_features once the device and dtype are known; `pool`: the Ray encoder actors, if any."""
    key = _key(index, recipe, info, sampling, dtype)
    folder = cache_dir(key)
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_json(folder / "key.json", key)
    loaded: list = [recipe] if isinstance(recipe, torch.nn.Module) else []

    def load_encoder():  # once, and only if some video is not cached
        if not loaded:
            loaded.append(recipe.load().to(device))
        return loaded[0]

    reports = []
    for split in splits:
        items, store = index.split(split), FeatureStore(folder / split)
        report = SplitReport(split, len(items))
        if {it.video_id for it in items} <= store.done_ids():
            report.cached = len(items)  # nothing to do: no model load, no lock
        elif info.input == "captions":
            rows_for = lambda enc, part: caption_rows(enc, part, device, dtype, opts.batch_size)  # noqa: E731
            fill_store(load_encoder, items, store, rows_for, opts.flush_every, report, progress, "captions")
        elif info.input == "features":
            fill_store(load_encoder, items, store, lambda reader, part: precomputed_rows(reader, index.name, part),
                       opts.flush_every, report, progress, "rows")
        elif pool is not None:
            pool.extract_split(items, store, opts, report, progress)
        else:
            extract_split(load_encoder, items, store, sampling, opts, device, dtype, report, progress)
        reports.append(report)
    # a clip-level encoder still decodes frames: its count is of frames, not of its rows
    return ExtractReport(index.name, recipe.name, folder, key, reports, "frame" if info.clip_level else info.row_unit)


def _key(index: DatasetIndex, recipe, info: EncoderInfo, sampling: Sampling, dtype: str) -> dict:
    """The feature key: what the rows are made from depends on what the encoder reads."""
    if info.input == "captions":  # the captions themselves, by digest, in place of frame sampling
        return feature_key(index.name, index.root, recipe.identity(), f"captions:{captions_digest(index)}", dtype,
                           CAPTION_PATH)
    if info.input == "features":  # copied as they are: no sampling, no compute; keyed on this dataset's files
        files_id = getattr(recipe.transform, "files_id", None)  # precomputed's; a plugin's reader may have none
        identity = {**recipe.identity(), **({"weights": files_id(index.name)} if files_id else {})}
        return feature_key(index.name, index.root, identity, "as stored", "none", "precomputed files")
    window = CLIP_WINDOW if info.clip_level or getattr(recipe, "clip_level", False) else None
    return feature_key(index.name, index.root, recipe.identity(), str(sampling), dtype, PIXEL_PATH, window)


def precomputed_rows(reader, dataset: str, items: list[VideoItem]) -> Rows:
    """The stored rows of `items` from a precomputed-features reader; a video without a file is recorded as failed."""
    videos, failed = [], {}
    for it in items:
        try:
            videos.append((it.video_id, reader.rows(dataset, it.video_id)))
        except DecodeError as e:
            failed[it.video_id] = str(e)
    dims = {rows.shape[1] for _, rows in videos}
    if len(dims) > 1:
        raise MemError(f"precomputed features of {dataset} have several widths ({sorted(dims)}) in {reader.folder}")
    return Rows(videos, failed, inputs=sum(len(rows) for _, rows in videos))
