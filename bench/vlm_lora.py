"""The LoRA regressor's training step: forward, backward and Adam step of a batch of videos through a Qwen2.5-VL with
LoRA adapters on its language model and a linear head (training/vlm_lora.py LoraRegressor), random base weights.

    .venv/bin/python bench/vlm_lora.py                               # the tiny demo VLM, 8 frames, batch 4
    .venv/bin/python bench/vlm_lora.py --arch qwen2.5-vl-3b --steps 3 # the full-size 3B architecture (needs ~16 GB)

The videos are generated (Memento10k-like, 3 s, 640x360 unless --size) and turned into the model's inputs once, as
the training's decoding workers do; the figures time the model alone: step_s (median over --steps, after one warm-up
step), videos_per_s, frames_per_s, and the tokens per video. The random base is bf16 on CUDA (bitsandbytes quantises
weights as they load from a folder, so the 4-bit step of a real checkpoint is not what this times) and, on a CPU,
bf16 where it computes bf16 natively, else fp32 (as the training chooses);
peak_mem_mb is the GPU's peak allocation there, the process's peak RSS on a CPU. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from _common import peak_rss_mb, print_table  # noqa: E402


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--arch", default="qwen2.5-vl-demo")
    p.add_argument("--frames", type=int, default=8)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--rank", type=int, default=16)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--size", default="640x360")
    p.add_argument("--device", default="auto")
    a = p.parse_args(argv)

    from mediaeval_mem.core.runtime import resolve_device, resolve_dtype
    from mediaeval_mem.core.threads import passive_waiting
    from mediaeval_mem.datasets.synthetic import render_clip, write_video
    from mediaeval_mem.encoders.vlm import EMBED_PROMPT, header_length, vlm_source
    from mediaeval_mem.encoders.vlm_lora import lora_config, quiet_peft
    from mediaeval_mem.models import HEADS
    from mediaeval_mem.training.vlm_lora import LoraRegressor, VideoInputs, base_precision, load_base
    from peft import get_peft_model

    passive_waiting()
    device = resolve_device(a.device)
    src = vlm_source(a.arch, "random")
    precision = base_precision("auto", device, resolve_dtype("auto", device), True, print)
    vlm = load_base(src, precision, device)
    torch.manual_seed(0)
    with quiet_peft():
        lm = get_peft_model(vlm.model, lora_config(a.rank, 2 * a.rank, 0.05))
    model = LoraRegressor(lm, HEADS.build("linear", in_dim=vlm.width), "answer", header_length(vlm.tokenizer)).to(device)
    opt = torch.optim.Adam([q for q in model.parameters() if q.requires_grad], lr=1e-4)
    trainable = sum(q.numel() for q in model.parameters() if q.requires_grad)

    w, h = (int(x) for x in a.size.split("x"))
    with tempfile.TemporaryDirectory() as tmp:
        from mediaeval_mem.datasets import VideoItem

        items = []
        for i in range(a.batch):
            path = Path(tmp) / f"{i}.mp4"
            rng = np.random.default_rng(i)
            write_video(path, render_clip(rng, *rng.uniform(0, 1, 3), 90, w, h), "libx264", {"crf": "23", "preset": "veryfast"})
            items.append(VideoItem(str(i), path, score=float(rng.uniform())))
        data = VideoInputs(items, a.frames, vlm.tokenizer, vlm.transform, EMBED_PROMPT)
        batch = [data[i][1] for i in range(a.batch)]
    y = torch.rand(a.batch, device=device)
    tokens = int(np.mean([x["input_ids"].shape[1] for x in batch]))

    def step() -> float:
        if device.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        loss = torch.nn.functional.l1_loss(model(batch), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - t

    model.train()
    step()  # warm-up
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times = [step() for _ in range(a.steps)]
    step_s = statistics.median(times)
    mem = torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else peak_rss_mb()
    out = {"arch": a.arch, "device": str(device), "base_dtype": precision, "rank": a.rank, "trainable_params": trainable,
           "frames": a.frames, "batch": a.batch, "tokens_per_video": tokens, "step_s": round(step_s, 4),
           "videos_per_s": round(a.batch / step_s, 2), "frames_per_s": round(a.batch * a.frames / step_s, 1),
           "peak_mem_mb": round(mem), "threads": torch.get_num_threads()}
    print_table([(k, str(v)) for k, v in out.items()])
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()
