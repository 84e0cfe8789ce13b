"""Batches cut straight from the features' arrays: no file per video, no DataLoader.

A batch of videos i_1..i_B becomes, per feature stream, x (B, T_max, D) zero-padded (float16, as
stored) and mask (B, T_max) bool; a single-stream model simply has one stream. A segments:N stream
(video/sampling.py) has every frame cached and takes N of them per video as its batch is cut: random
ones in a training batch, the centre ones otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from mediaeval_mem.features.store import SplitFeatures
from mediaeval_mem.video import Sampling


@dataclass
class LabelledSplit:
    """The same videos in every feature stream (same ids, same order), with their scores where known."""

    streams: list[SplitFeatures]
    scores: np.ndarray | None  # (N,) float32, (N, K) for K targets; None for an unscored (test) split
    sampling: tuple[Sampling, ...] = ()  # per stream, as its StreamCfg says (strings parsed); () = all for each
    weights: np.ndarray | None = None  # (N,) float32 loss weights (data.weight_column); None: unweighted

    def __post_init__(self):
        if any(s.ids != self.streams[0].ids for s in self.streams[1:]):
            raise ValueError("every stream must list the same videos in the same order")
        self.sampling = tuple(Sampling.parse(s) for s in self.sampling) or (Sampling("all"),) * len(self.streams)
        if len(self.sampling) != len(self.streams):
            raise ValueError(f"{len(self.streams)} streams, {len(self.sampling)} samplings: give one per stream")

    def __len__(self) -> int:
        return len(self.streams[0])

    @property
    def ids(self) -> list[str]:
        return self.streams[0].ids

    @property
    def dims(self) -> list[int]:
        return [s.dim for s in self.streams]

    def subset(self, idx: np.ndarray) -> "LabelledSplit":
        return LabelledSplit([s.subset(idx) for s in self.streams], None if self.scores is None else self.scores[idx],
                             self.sampling, None if self.weights is None else self.weights[idx])

    @staticmethod
    def concat(parts: list["LabelledSplit"]) -> "LabelledSplit":
        """One split of several scored ones (a dataset's train and dev videos), each stream's rows copied into one array."""
        if len(parts) == 1:
            return parts[0]
        streams = []
        for per_split in zip(*(p.streams for p in parts)):
            rows = [np.concatenate([f[i] for i in range(len(f))]) if len(f) else np.zeros((0, f.dim), f.frames.dtype)
                    for f in per_split]
            lengths = np.concatenate([f.lengths for f in per_split])
            starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
            streams.append(SplitFeatures([v for f in per_split for v in f.ids], np.concatenate(rows), starts, lengths))
        weights = None if any(p.weights is None for p in parts) else np.concatenate([p.weights for p in parts])
        return LabelledSplit(streams, np.concatenate([p.scores for p in parts]), parts[0].sampling, weights)

    # the loop's TrainData interface
    def batches(self, cfg, rng: np.random.Generator, device: torch.device):
        """One epoch of shuffled batches ([(x, mask)] on `device`, y), frame order shuffled if cfg says so,
        segments:N streams' frames drawn afresh (all with `rng`, the loop's: seeded, saved with each checkpoint).
        A weighted split's batches carry the loss weights (B,) third."""
        for streams, y, *w in training_batches(self, cfg.batch_size, rng, cfg.shuffle_frames, device):
            yield to_device(streams, device), y, *w

    def predict(self, model, device: torch.device) -> np.ndarray:
        return predict(model, self, device=device)


def to_device(streams, device: torch.device):
    """[(x, mask)] -> the device, x as float32 (batches travel as float16)."""
    return [(x.to(device, non_blocking=True).float(), m.to(device, non_blocking=True)) for x, m in streams]


@torch.inference_mode()
def predict(model, split: LabelledSplit, batch_size: int = 64, device: torch.device = torch.device("cpu")) -> np.ndarray:
    """(N,) scores for every video of a feature split, in order ((N, K) for a model of K targets)."""
    model.eval()
    out = []
    for idx in batch_indices(len(split), batch_size):
        streams = collate(split, idx)[0]
        out.append(model(to_device(streams, device)).float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros(0, np.float32)


def _pad(f: SplitFeatures, idx: np.ndarray, sampling: Sampling, rng: np.random.Generator | None,
         shuffle: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Videos `idx` of one stream -> (x (B, T_max, D) zero-padded, mask (B, T_max)), in two vectorised copies:
    one gather of the chosen frame rows from the (memory-mapped) array, one masked scatter into the padded batch.
    rng (a training batch): segments:N draws its frames with it; each video's frame order is permuted if `shuffle`."""
    rows = [s + sampling.rows(n, rng) for s, n in zip(f.starts[idx], f.lengths[idx])]  # each (T_i,), temporal order
    if rng is not None and shuffle:
        rows = [r[rng.permutation(len(r))] for r in rows]
    lengths = np.array([len(r) for r in rows])
    mask = np.arange(int(lengths.max()))[None, :] < lengths[:, None]  # (B, T_max), rows filled left to right
    x = np.zeros((len(idx), mask.shape[1], f.dim), f.frames.dtype)
    x[mask] = f.frames[np.concatenate(rows)]
    return torch.from_numpy(x), torch.from_numpy(mask)


def collate(split: LabelledSplit, idx: np.ndarray, rng: np.random.Generator | None = None,
            shuffle_frames: bool = True):
    """Videos `idx` -> ([(x (B, T, D), mask (B, T) bool) per stream], y (B,) or (B, K), or None), and the loss
    weights (B,) third where the split has them.

    x keeps the stored dtype (float16): half the bytes to copy; `training.loop.to_device` makes it
    float32 on the device. rng: cut a training batch: segments:N streams draw random frames, and each
    video's frame order is permuted (the paper's augmentation) unless shuffle_frames is False.
    Without rng: every cached frame, or segments:N's centre frames, in order (evaluation, prediction).
    """
    streams = [_pad(f, idx, s, rng, shuffle_frames) for f, s in zip(split.streams, split.sampling)]
    y = None if split.scores is None else torch.from_numpy(split.scores[idx])
    if split.weights is not None:
        return streams, y, torch.from_numpy(split.weights[idx])
    return streams, y


def batch_indices(n: int, batch_size: int, rng: np.random.Generator | None = None) -> list[np.ndarray]:
    """Split range(n) into batches; shuffled when an rng is given."""
    order = rng.permutation(n) if rng is not None else np.arange(n)
    return [order[i : i + batch_size] for i in range(0, n, batch_size)]


def training_batches(split: LabelledSplit, batch_size: int, rng: np.random.Generator, shuffle_frames: bool,
                     device: torch.device):
    """One epoch of shuffled, collated batches. On CUDA they are cut one step ahead in a background
    thread into pinned memory, so the GPU never waits for the CPU to slice the next batch; on a CPU the
    model's threads already use every core, and cutting inline costs ~1% of a step (bench/train.py)."""
    batches = (collate(split, idx, rng, shuffle_frames) for idx in batch_indices(len(split), batch_size, rng))
    return prefetch(batches, pin=True) if device.type == "cuda" else batches


def prefetch(items, depth: int = 3, pin: bool = False):
    """Iterate `items` (batches) produced by a background thread, `depth` ahead; tensors pinned if `pin`."""
    import queue
    import threading

    q: queue.Queue = queue.Queue(depth)
    done = object()
    stop = threading.Event()

    def pinned(batch):
        streams, y, *w = batch
        streams = [(x.pin_memory(), m.pin_memory()) for x, m in streams]
        return streams, (y.pin_memory() if y is not None else None), *(t.pin_memory() for t in w)

    def work():
        try:
            for item in items:
                if stop.is_set():
                    return
                q.put(pinned(item) if pin else item)
        except BaseException as e:  # surfaces in the consumer
            q.put(e)
        q.put(done)

    thread = threading.Thread(target=work, daemon=True, name="batches")
    thread.start()
    try:
        while (item := q.get()) is not done:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while thread.is_alive():  # unblock a producer waiting on a full queue
            try:
                q.get_nowait()
            except queue.Empty:
                thread.join(timeout=0.05)
