"""The VLM regressor's adapters as an encoder: a Qwen2.5-VL with LoRA adapters trained for memorability
(training/vlm_lora.py trains them), extracting its pooled last hidden state (one vector per video).

Its weights are a folder holding only what the training made, never the base VLM's weights:

    adapter_config.json, adapter_model.safetensors   the LoRA adapters (peft's save_pretrained)
    head.safetensors                                 the regression head trained with them on the pooled state
    lora.json                                        LoraMeta: the base VLM (arch, weights, identity), pooling,
                                                     prompt, rank, alpha, frames, the base's dtype in training

The encoder loads the base VLM as the training did (vlm_source(arch, weights): a hub id, a save_pretrained folder,
'random'), checks its identity against lora.json's, applies the adapters and merges them into the weights, and
returns the pooled hidden state (not L2-normalised: the head was trained on it as it is). Names:
qwen2.5-vl-3b-lora, qwen2.5-vl-7b-lora, qwen2.5-vl-demo-lora (the tiny demo VLM).
"""

from __future__ import annotations

import json
import warnings
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from mediaeval_mem.core.errors import WeightsError
from mediaeval_mem.encoders.base import ENCODERS, EncoderInfo, EncoderRecipe
from mediaeval_mem.encoders.vlm import EMBED_PROMPT, QWEN_ARCHS, EmbedTransform, QwenVL, QwenVLEncoder, vlm_source
from mediaeval_mem.encoders.weights import dir_identity, give_weights, quiet_transformers

LORA_ARCHS = {f"{arch}-lora": arch for arch in QWEN_ARCHS}  # encoder name -> the base VLM's architecture
META = "lora.json"
HEAD = "head.safetensors"
ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")
# the language model's attention projections (the vision tower's are named qkv and proj, so never matched)
TARGET_MODULES = r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj)"


@dataclass(frozen=True)
class LoraMeta:
    """lora.json: what the adapters were trained over and how; the encoder rebuilds the same input from it."""

    arch: str  # a QWEN_ARCHS name
    weights: str | None  # the base weights as given (lora.weights): None the arch's default, a folder, a hub id, 'random'
    weights_id: str  # the base weights' identity when trained (checked when loading)
    pooling: str
    prompt: str
    rank: int
    alpha: float
    dropout: float
    frames: int
    base_dtype: str  # nf4 | bf16 | fp32: the frozen base weights in training
    best_epoch: int = 0
    head: str = "linear"
    head_args: dict | None = None

    def write(self, folder: Path) -> None:
        (folder / META).write_text(json.dumps(asdict(self), indent=1))

    @classmethod
    def read(cls, folder: Path, encoder: str) -> "LoraMeta":
        try:
            return cls(**json.loads((folder / META).read_text()))
        except (OSError, ValueError, TypeError) as e:
            raise WeightsError(f"{encoder}: {folder / META} cannot be read ({type(e).__name__}): is {folder} a folder "
                               f"the LoRA training wrote (runs/finetune/vlm-lora/.../lora)?") from None


@contextmanager
def quiet_peft():
    """peft over transformers 5 warns of a renamed transformers attribute (is_gradient_checkpointing) on every
    wrap: nothing a user can act on."""
    with quiet_transformers(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        yield


def lora_config(rank: int, alpha: float, dropout: float):
    """peft's LoraConfig for the language model's attention projections."""
    from peft import LoraConfig

    return LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=dropout, target_modules=TARGET_MODULES, bias="none")


def stored_bytes(folder: Path) -> int:
    """The bytes a LoRA folder takes (adapters, head, meta)."""
    return sum(p.stat().st_size for p in Path(folder).iterdir() if p.is_file())


def check_folder(folder: Path, encoder: str) -> LoraMeta:
    """The meta of a complete LoRA folder for `encoder`; anything missing or another architecture's raises one line."""
    if not folder.is_dir():
        raise WeightsError(f"{encoder}: LoRA folder {folder} not found: `mem run` makes one first (config section "
                           f"lora), or {give_weights('DIR')} (a runs/finetune/vlm-lora/.../lora folder)")
    missing = [f for f in (*ADAPTER_FILES, HEAD, META) if not (folder / f).is_file()]
    if missing:
        raise WeightsError(f"{encoder}: {folder} lacks {', '.join(missing)}: not a folder the LoRA training wrote")
    meta = LoraMeta.read(folder, encoder)
    if meta.arch != LORA_ARCHS[encoder]:
        raise WeightsError(f"{encoder}: the adapters in {folder} were trained over {meta.arch}, not "
                           f"{LORA_ARCHS[encoder]}: use the encoder {meta.arch}-lora")
    return meta


class QwenVLLoraEncoder(QwenVLEncoder):
    """A Qwen2.5-VL with merged LoRA adapters: one video's frames (T, 3, h, w) -> (1, D) pooled hidden state."""

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        hidden = self.vlm.hidden(self.vlm.inputs(pixels, self.prompt))  # (1, L, D)
        return self.vlm.pool(hidden, self.pooling).float()  # as the LoRA head saw it: not normalised


def load_merged(folder: Path, meta: LoraMeta, encoder: str) -> QwenVL:
    """The base VLM with the adapters of `folder` merged into its weights (fp32: extraction autocasts)."""
    from peft import PeftModel

    src = vlm_source(meta.arch, meta.weights)
    if src.weights_id != meta.weights_id:
        raise WeightsError(f"{encoder}: the base VLM {meta.weights or meta.arch} is not the one the adapters in {folder} "
                           f"were trained over (identity {src.weights_id}, trained over {meta.weights_id}): give "
                           f"those base weights back, or train again")
    vlm = src.load()
    with quiet_peft():
        model = PeftModel.from_pretrained(vlm.model, str(folder)).merge_and_unload()
    return QwenVL(model.eval(), vlm.tokenizer, vlm.transform)


def create_lora_encoder(name: str, weights: str | None) -> EncoderRecipe:
    """Encoder `name` (a LORA_ARCHS name) from the LoRA folder `weights`, or 'random': the architecture with seeded
    random weights and untrained adapters (LoRA's B starts at zero: the base alone), for benches and registry walks."""
    if weights == "random":
        base = vlm_source(LORA_ARCHS[name], "random")
        transform = EmbedTransform(**asdict(base.transform), prompt=EMBED_PROMPT, pooling="answer")
        wid = f"{base.weights_id}+lora:untrained"
        return EncoderRecipe(name, wid, transform,
                             lambda: QwenVLLoraEncoder(name, base.load(), "answer", EMBED_PROMPT, wid))
    if not weights:
        raise WeightsError(f"{name}: needs the LoRA adapters it is trained with; `mem run` / `mem grid` train them "
                           f"first (config section lora), or {give_weights('DIR')} (a runs/finetune/vlm-lora/.../lora "
                           f"folder)")
    folder = Path(weights).expanduser()
    meta = check_folder(folder, name)
    base = vlm_source(meta.arch, meta.weights)
    transform = EmbedTransform(**asdict(base.transform), prompt=meta.prompt, pooling=meta.pooling)
    wid = f"{meta.weights_id}+lora:{dir_identity(folder)}"
    return EncoderRecipe(name, wid, transform,
                         lambda: QwenVLLoraEncoder(name, load_merged(folder, meta, name), meta.pooling, meta.prompt, wid))


def _register(name: str, arch: str) -> None:
    def build(weights: str | None = None) -> EncoderRecipe:
        return create_lora_encoder(name, weights)

    build.__doc__ = (f"{arch} with LoRA adapters trained for memorability by the harness (`mem run` trains them: "
                     f"config section lora); its pooled last hidden state per video.")
    ENCODERS.add(name, build, EncoderInfo(QWEN_ARCHS[arch]["text"]["hidden_size"], input="clip", trainer="vlm-lora"))


for _name, _arch in LORA_ARCHS.items():
    _register(_name, _arch)
