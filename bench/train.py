"""Training throughput on a Memento10k-scale feature store, and the share of each step spent waiting on data.

    .venv/bin/python bench/train.py                 # 7000 videos x 90 frames x 1024, the paper's model, 1 epoch
    .venv/bin/python bench/train.py --max-steps 200 # quicker: the epoch time is extrapolated from 200 steps

Two data paths feed the same model, optimiser and batch size (the paper's: 8):
  ours: the split's features as one memory-mapped float16 array (the harness's FeatureStore), batches
        cut from it as the training loop does (mediaeval_mem.training.batches.training_batches: inline on
        a CPU, one step ahead in a thread into pinned memory on CUDA)
  peer: one .npy file per video read through a torch DataLoader (2 workers, shuffled, padded per batch),
        the way many video-memorability repos do it
Figures: epoch_s and data_wait_share (time blocked getting the next batch / training time) for each.
The last line printed is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from _common import print_table  # noqa: E402


def make_store(folder: Path, n: int, t: int, d: int, seed: int = 0) -> list[str]:
    """A FeatureStore split of n videos x t frames x d (unit vectors, float16), plus one .npy per video."""
    from mediaeval_mem.features.store import FeatureStore

    rng = np.random.default_rng(seed)
    store, ids = FeatureStore(folder / "store"), [f"{i:05d}" for i in range(n)]
    (folder / "npy").mkdir(parents=True, exist_ok=True)
    with store.writing():
        for start in range(0, n, 250):
            chunk = []
            for vid in ids[start : start + 250]:
                x = rng.standard_normal((t, d), dtype=np.float32)
                x /= np.linalg.norm(x, axis=1, keepdims=True)
                chunk.append((vid, x))
                np.save(folder / "npy" / f"{vid}.npy", x.astype(np.float16))
            store.append(chunk)
        store.consolidate()
    return ids


class NpyVideos(torch.utils.data.Dataset):
    def __init__(self, folder: Path, ids: list[str], scores: np.ndarray):
        self.folder, self.ids, self.scores = folder, ids, scores

    def __len__(self):
        return len(self.ids)

    def __getitem__(self, i):
        x = np.load(self.folder / f"{self.ids[i]}.npy")
        return torch.from_numpy(x[np.random.permutation(len(x))].astype(np.float32)), float(self.scores[i])


def pad_batch(batch):
    xs, ys = zip(*batch)
    t = max(len(x) for x in xs)
    x = torch.zeros(len(xs), t, xs[0].shape[1])
    mask = torch.zeros(len(xs), t, dtype=torch.bool)
    for i, v in enumerate(xs):
        x[i, : len(v)], mask[i, : len(v)] = v, True
    return [(x, mask)], torch.tensor(ys, dtype=torch.float32)


def run_steps(model, batches, max_steps: int, device) -> tuple[float, float, int]:
    """(seconds, seconds waiting on data, steps) of one pass of the paper's training step over `batches`."""
    from mediaeval_mem.training.batches import to_device

    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    loss_fn = torch.nn.L1Loss()
    model.train()
    it, steps, wait, t0 = iter(batches), 0, 0.0, time.perf_counter()
    while max_steps <= 0 or steps < max_steps:
        tw = time.perf_counter()
        try:
            streams, y = next(it)
        except StopIteration:
            break
        streams = to_device(streams, device)
        wait += time.perf_counter() - tw
        loss = loss_fn(model(streams), y.to(device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        steps += 1
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0, wait, steps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--videos", type=int, default=7000)
    ap.add_argument("--frames", type=int, default=90)
    ap.add_argument("--dim", type=int, default=1024)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--max-steps", type=int, default=0, help="stop each pass after this many steps (0: a whole epoch)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--workdir", help="keep the generated store here (default: a temporary folder)")
    args = ap.parse_args()

    from mediaeval_mem.config import load_config
    from mediaeval_mem.features.store import FeatureStore
    from mediaeval_mem.models import build_model
    from mediaeval_mem.core.runtime import resolve_device
    from mediaeval_mem.training.batches import LabelledSplit, training_batches

    device = resolve_device(args.device)
    work = Path(args.workdir or tempfile.mkdtemp(prefix="mem-bench-train-"))
    t0 = time.perf_counter()
    if not (work / "store" / "manifest.json").is_file():
        ids = make_store(work, args.videos, args.frames, args.dim)
    else:
        ids = FeatureStore(work / "store").load().ids
    size_gb = sum(p.stat().st_size for p in (work / "store").glob("seg-*.npy")) / 1e9
    print(f"feature store: {len(ids)} videos x {args.frames} x {args.dim} float16 ({size_gb:.2f} GB) under {work} "
          f"({time.perf_counter() - t0:.0f}s)")
    scores = np.random.default_rng(1).uniform(0.4, 1.0, len(ids)).astype(np.float32)
    steps_per_epoch = -(-len(ids) // args.batch_size)

    def fresh_model():
        torch.manual_seed(0)
        return build_model(load_config(None).model, [args.dim]).to(device)  # the paper's model

    # ours: one memory-mapped array, batches cut as mediaeval_mem.training.loop cuts them
    split = LabelledSplit([FeatureStore(work / "store").load(ids)], scores)
    ours = training_batches(split, args.batch_size, np.random.default_rng(0), True, device)
    secs, wait, steps = run_steps(fresh_model(), ours, args.max_steps, device)
    epoch_s, share = secs * steps_per_epoch / steps, wait / secs

    # peer: a .npy per video through a DataLoader with workers
    loader = torch.utils.data.DataLoader(NpyVideos(work / "npy", ids, scores), batch_size=args.batch_size, shuffle=True,
                                         num_workers=2, collate_fn=pad_batch, pin_memory=device.type == "cuda")
    psecs, pwait, psteps = run_steps(fresh_model(), loader, args.max_steps, device)
    peer_epoch_s, peer_share = psecs * steps_per_epoch / psteps, pwait / psecs

    measured = "a whole epoch" if args.max_steps <= 0 else f"{steps} steps, extrapolated to {steps_per_epoch}"
    print_table([
        ("device / batch / steps per epoch", f"{device} / {args.batch_size} / {steps_per_epoch} ({measured})"),
        ("ours: seconds per epoch", f"{epoch_s:,.1f}"),
        ("ours: waiting on data", f"{share:.2%} of step time"),
        ("peer (.npy per video, DataLoader): s/epoch", f"{peer_epoch_s:,.1f}"),
        ("peer: waiting on data", f"{peer_share:.2%} of step time"),
    ])
    print(json.dumps({"device": str(device), "videos": len(ids), "frames": args.frames, "dim": args.dim,
                      "batch_size": args.batch_size, "steps_measured": steps, "steps_per_epoch": steps_per_epoch,
                      "epoch_s": round(epoch_s, 2), "data_wait_share": round(share, 4),
                      "peer_epoch_s": round(peer_epoch_s, 2), "peer_data_wait_share": round(peer_share, 4)}))


if __name__ == "__main__":
    main()
