"""The VLM regressor (the Qwen-VL + LoRA recipe of Martin-Fernandez, Sensors 2025): LoRA adapters on a Qwen2.5-VL's
language model and a regression head on its pooled last hidden state, trained for memorability.

Videos are decoded on the fly in DataLoader workers (lora.frames frames, uniform; the VLM's own preprocessing,
encoders/vlm.py VideoTransform) and turned into the model's inputs there (the chat prompt with the video's tokens,
the patches). The model is the frozen base VLM with peft LoRA adapters on the language model's q/k/v/o projections
(lora.rank, lora.alpha, lora.dropout) -> last hidden states (1, L, D) per video -> pooled (lora.pooling) -> a head
from the heads registry (lora.head), trained by the one training loop with the run's recipe (lora.epochs /
batch_size / lr / patience over train's loss, schedule and holdout selection). Its per-epoch checkpoints hold only
what trains (adapters, head, optimizer state): an interrupted training resumes after its last finished epoch.

The frozen base weights: 4-bit NF4 (bitsandbytes, bf16 compute, peft's prepare_model_for_kbit_training) on CUDA
(lora.quantize auto or nf4; auto without bitsandbytes says so and keeps bf16), else the run's compute dtype
(extract.dtype: auto = bf16 where the device computes it natively, else fp32). The adapters and the head are fp32.

The best epoch's adapters and head are written as a LoRA folder (encoders/vlm_lora.py: no base weights in it), which
is then the qwen2.5-vl-*-lora feature extractor (training/trainers.py registers this as the trainer `vlm-lora`).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np
import torch
from torch import nn

from mediaeval_mem.core.errors import MemError, WeightsError
from mediaeval_mem.core.io import atomic_save, atomic_write_json, file_lock
from mediaeval_mem.core.paths import runs_dir
from mediaeval_mem.core.runtime import DTYPES, resolve_dtype
from mediaeval_mem.core.schema import digest, to_dict
from mediaeval_mem.datasets import DatasetIndex, VideoItem
from mediaeval_mem.encoders.vlm import EMBED_PROMPT, QWEN_IDS, VideoTransform, VlmSource, header_length, pool_hidden, video_inputs, vlm_source
from mediaeval_mem.encoders.vlm_lora import HEAD, LORA_ARCHS, LoraMeta, check_folder, lora_config, quiet_peft, stored_bytes
from mediaeval_mem.features.pixels import frames_for
from mediaeval_mem.models import HEADS
from mediaeval_mem.training.loop import seed_everything, train_model
from mediaeval_mem.training.losses import describe_loss

if TYPE_CHECKING:
    from mediaeval_mem.config import RunConfig

UNKEYED = ("workers",)  # lora settings that change how fast, not what is trained
CUDA_EXTRA = "pip install 'mediaeval-mem[cuda]'"


# --------------------------------------------------------------------------- the model
class LoraRegressor(nn.Module):
    """A Qwen2.5-VL with LoRA adapters (a peft model) and a head: a batch of videos' inputs -> (B,) scores.

    Its state_dict holds only what trains (the adapters and the head): that is what the training loop's checkpoints
    and best-epoch copies keep, never the frozen base weights."""

    def __init__(self, lm: nn.Module, head: nn.Module, pooling: str, header_len: int):
        super().__init__()
        self.lm, self.head, self.pooling, self.header_len = lm, head, pooling, header_len

    def forward(self, videos: list[dict[str, torch.Tensor]]) -> torch.Tensor:
        """Each video's keyword inputs (batch 1, any device) -> (B,) (or (B, K)); videos differ in length, so one
        forward each (the sequence of a video is hundreds of tokens: the batch dimension buys little)."""
        device = next(self.head.parameters()).device
        vlm = self.lm.get_base_model().model  # Qwen2_5_VLModel, the LoRA layers in it
        pooled = [pool_hidden(vlm(**{k: v.to(device) for k, v in x.items()}).last_hidden_state,  # (1, L, D)
                              self.pooling, self.header_len) for x in videos]
        return self.head(torch.cat(pooled).float())  # (B, D) -> (B,)

    def state_dict(self, *args, **kwargs) -> dict[str, torch.Tensor]:
        return {n: p.detach() for n, p in self.named_parameters() if p.requires_grad}

    def load_state_dict(self, state, strict: bool = True, assign: bool = False):
        params = {n: p for n, p in self.named_parameters() if p.requires_grad}
        missing, unexpected = sorted(params.keys() - state.keys()), sorted(state.keys() - params.keys())
        if missing or unexpected:
            raise RuntimeError(f"adapters and head do not match: missing {missing[:3]}, unexpected {unexpected[:3]}")
        with torch.no_grad():
            for n, p in params.items():
                p.copy_(state[n])


# --------------------------------------------------------------------------- the data
class VideoInputs(torch.utils.data.Dataset):
    """(index, the VLM's inputs for the video (CPU), score) per video, decoded when asked for (in a worker)."""

    def __init__(self, items: list[VideoItem], frames: int, tokenizer, transform: VideoTransform, prompt: str):
        self.items, self.frames, self.tokenizer, self.transform, self.prompt = items, frames, tokenizer, transform, prompt

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        item = self.items[i]
        try:  # extraction's own pixel path: uint8 (T, 3, h, w), the aspect kept
            x = frames_for(item.path, self.transform, f"uniform:{self.frames}")
        except MemError:
            return None  # left out of the batch; a prediction for it is NaN
        inputs = video_inputs(self.tokenizer, self.transform, self.transform.normalize(x), self.prompt)
        return i, inputs, torch.tensor(item.score if item.score is not None else float("nan"), dtype=torch.float32)


def _collate(batch):
    batch = [b for b in batch if b is not None]
    if not batch:
        return None
    return torch.tensor([b[0] for b in batch]), [b[1] for b in batch], torch.stack([b[2] for b in batch])


@dataclass
class VideoData:
    """Videos as the VLM's inputs: the training loop's TrainData for the LoRA regressor."""

    items: list[VideoItem]
    frames: int
    tokenizer: object
    transform: VideoTransform
    workers: int
    prompt: str = EMBED_PROMPT

    @property
    def scores(self) -> np.ndarray:
        return np.array([it.score for it in self.items], np.float32)

    def __len__(self) -> int:
        return len(self.items)

    def _loader(self, train: bool, batch_size: int, generator: torch.Generator | None = None):
        data = VideoInputs(self.items, self.frames, self.tokenizer, self.transform, self.prompt)
        return torch.utils.data.DataLoader(data, batch_size=batch_size, shuffle=train, generator=generator,
                                           num_workers=self.workers, collate_fn=_collate)

    def batches(self, cfg, rng: np.random.Generator, device: torch.device):
        shuffle = torch.Generator().manual_seed(int(rng.integers(2**31)))
        for batch in self._loader(True, cfg.batch_size, shuffle):
            if batch is not None:  # every video of the batch failed to decode
                _, videos, y = batch
                yield videos, y

    @torch.inference_mode()
    def predict(self, model: nn.Module, device: torch.device, batch_size: int = 4) -> np.ndarray:
        model.eval()
        out = np.full(len(self.items), np.nan, np.float32)
        for batch in self._loader(False, batch_size):
            if batch is not None:
                idx, videos, _ = batch
                out[idx.numpy()] = model(videos).float().cpu().numpy()
        return out


# --------------------------------------------------------------------------- precision and the base model
def base_precision(quantize: str, device: torch.device, compute: str, random_weights: bool,
                   echo: Callable[[str], None]) -> str:
    """How the frozen base weights are held in training: nf4 | bf16 | fp32 (`compute`: the run's compute dtype)."""
    if quantize == "none":
        return compute
    if device.type != "cuda":
        if quantize == "nf4":
            raise WeightsError("lora.quantize=nf4: 4-bit base weights need CUDA (bitsandbytes): set lora.quantize "
                               "to auto or none on this machine")
        return compute
    if random_weights:  # quantized as from_pretrained loads a checkpoint; random weights are made in place
        echo("note: LoRA over random base weights: kept in bf16, not 4-bit (4-bit applies to loaded checkpoints)")
        return "bf16"
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        if quantize == "nf4":
            raise WeightsError(f"lora.quantize=nf4 needs bitsandbytes: {CUDA_EXTRA} (or set lora.quantize=none: "
                               f"bf16 base weights)") from None
        echo(f"note: bitsandbytes is not installed: the LoRA base weights stay bf16, not 4-bit ({CUDA_EXTRA})")
        return "bf16"
    return "nf4"


def load_base(src: VlmSource, precision: str, device: torch.device):
    """The base QwenVL with its weights as `precision` says (nf4: 4-bit, prepared for k-bit training)."""
    if precision != "nf4":
        return src.load(dtype=DTYPES[precision])
    from peft import prepare_model_for_kbit_training
    from transformers import BitsAndBytesConfig

    quant = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.bfloat16,
                               bnb_4bit_use_double_quant=True)
    index = device.index if device.index is not None else torch.cuda.current_device()
    vlm = src.load(dtype=torch.bfloat16, quantization_config=quant, device_map={"": index})  # loaded onto the GPU
    prepare_model_for_kbit_training(vlm.model, use_gradient_checkpointing=True)  # fp32 norms, checkpointed layers
    return vlm


# --------------------------------------------------------------------------- the training
@dataclass
class LoraResult:
    folder: Path  # the LoRA folder: adapters, head, lora.json (encoders/vlm_lora.py)
    history: list[dict] = field(default_factory=list)  # EpochLog fields per epoch
    best_epoch: int = 0
    size_bytes: int = 0  # what the folder stores
    base_dtype: str = ""
    cached: bool = False


def lora_key(index: DatasetIndex, fit: list[VideoItem], select: list[VideoItem], arch: str, base_id: str,
             cfg: RunConfig) -> str:
    """What fixes a LoRA regressor: data (ids, folder, the target scored), the base VLM, the lora settings (not
    lora.workers) and the recipe; not the device or the base's precision (recorded in lora.json)."""
    t = to_dict(cfg.train)
    recipe = {k: t[k] for k in ("lr_decay", "lr_step_epochs", "loss", "seed", "holdout_fraction", "monitor")}
    settings = {k: v for k, v in to_dict(cfg.lora).items() if k not in UNKEYED}
    blob = {"dataset": index.name, "root": str(index.root.resolve()), "fit": [i.video_id for i in fit],
            "select": [i.video_id for i in select], "arch": arch, "base": base_id, "prompt": EMBED_PROMPT,
            "lora": settings, "recipe": recipe, "target": index.target}
    return digest(blob, 12)


def train_vlm_lora(index: DatasetIndex, fit: list[VideoItem], select: list[VideoItem], encoder: str, cfg: RunConfig,
                   device: torch.device, echo: Callable[[str], None] = print) -> LoraResult:
    """Train (or find already trained) the LoRA regressor of encoder `encoder` (a qwen2.5-vl-*-lora name) on `fit`,
    selecting the epoch on `select`."""
    if encoder not in LORA_ARCHS:
        raise MemError(f"the vlm-lora trainer makes {', '.join(LORA_ARCHS)}, not {encoder}")
    fit = [it for it in fit if it.path is not None]
    select = [it for it in select if it.path is not None]
    arch = LORA_ARCHS[encoder]
    try:
        src = vlm_source(arch, cfg.lora.weights)
    except WeightsError as e:  # its advice names a stream's weights; a LoRA stream's base is lora.weights
        reason = str(e).split(" On a machine with internet")[0].split(": give ")[0].rstrip(".")
        hub = QWEN_IDS.get(arch, arch)
        raise WeightsError(f"{encoder}: the base VLM: {reason}. Give its weights as `lora.weights: DIR` in the run "
                           f"config (a save_pretrained folder of {hub}), or run `hf download {hub}` on a machine with "
                           f"internet and copy ~/.cache/huggingface here") from None
    folder = runs_dir() / "finetune" / "vlm-lora" / index.name / lora_key(index, fit, select, arch, src.weights_id, cfg)

    def finished() -> LoraResult | None:
        if (folder / "done.json").is_file():
            done = json.loads((folder / "done.json").read_text())
            check_folder(folder / "lora", encoder)
            return LoraResult(folder / "lora", done["history"], done["best_epoch"], done["size_bytes"],
                              done["base_dtype"], cached=True)
        return None

    if (result := finished()) is not None:
        return result
    # one process trains a given regressor; another asking for the same one waits, then finds it done
    with file_lock(folder.with_name(f"{folder.name}.lock"),
                   on_wait=lambda: echo(f"waiting: another process is training these LoRA adapters in {folder}")):
        return finished() or _train(folder, src, encoder, fit, select, cfg, device, echo)


def _train(folder: Path, src: VlmSource, encoder: str, fit: list[VideoItem], select: list[VideoItem], cfg: RunConfig,
           device: torch.device, echo: Callable[[str], None]) -> LoraResult:
    """The training itself, on the one training loop, resumable from `folder`/last.safetensors."""
    from peft import get_peft_model

    lo, recipe = cfg.lora, cfg.lora.recipe(cfg.train)
    precision = base_precision(lo.quantize, device, resolve_dtype(cfg.extract.dtype, device), src.folder is None, echo)
    vlm = load_base(src, precision, device)
    seed_everything(recipe.seed)  # the adapters' and the head's initial weights follow the seed
    with quiet_peft():
        lm = get_peft_model(vlm.model, lora_config(lo.rank, lo.alpha, lo.dropout))  # adapters fp32, base frozen
    head = HEADS.build(lo.head, in_dim=vlm.width, **dict(lo.head_args))
    model = LoraRegressor(lm, head, lo.pooling, header_length(vlm.tokenizer))
    last = folder / "last.safetensors"
    if last.is_file():
        echo(f"LoRA training {encoder}: resuming from {last}")

    def on_epoch(log) -> None:
        echo(f"LoRA training {encoder}: epoch {log.epoch}  train {describe_loss(recipe.loss)} {log.train_loss:.4f}  "
             f"select SROCC {log.select_srocc:.4f}  ({log.seconds:.0f}s)")

    data = [VideoData(items, lo.frames, vlm.tokenizer, vlm.transform, lo.workers) for items in (fit, select)]
    result = train_model(model, *data, recipe, device, on_epoch, checkpoint=last)
    if result.best_epoch == 0:
        raise MemError(f"LoRA training in {folder}: no epoch could be evaluated (a selection SROCC needs two videos that "
                       f"decode; the selection has {len(select)}): raise train.holdout_fraction or check the videos")
    meta = LoraMeta(LORA_ARCHS[encoder], lo.weights, src.weights_id, lo.pooling, EMBED_PROMPT, lo.rank, lo.alpha,
                    lo.dropout, lo.frames, precision, result.best_epoch, lo.head, dict(lo.head_args))
    out = folder / "lora"
    shutil.rmtree(out, ignore_errors=True)  # a folder a crash left before done.json

    def write(tmp: Path) -> None:  # the best epoch's adapters and head (restored by the loop), no base weights
        from safetensors.torch import save_file

        with quiet_peft():
            lm.save_pretrained(str(tmp))  # adapter_config.json, adapter_model.safetensors
        (tmp / "README.md").unlink(missing_ok=True)  # peft's blank model card
        save_file({k: v.detach().cpu().contiguous() for k, v in head.state_dict().items()}, str(tmp / HEAD))
        meta.write(tmp)

    atomic_save(out, write)
    size, history = stored_bytes(out), [asdict(h) for h in result.history]
    atomic_write_json(folder / "done.json", {"history": history, "best_epoch": result.best_epoch, "size_bytes": size,
                                             "base_dtype": precision})
    last.unlink(missing_ok=True)  # done: the resume state is no longer needed
    return LoraResult(out, history, result.best_epoch, size, precision)
