"""Device and precision: CUDA when present, bf16 where the hardware computes it natively."""

from __future__ import annotations

import functools

import torch

from mediaeval_mem.core.errors import MemError

DTYPES = {"bf16": torch.bfloat16, "fp32": torch.float32}


@functools.cache
def cpu_supports_bf16() -> bool:
    """True on CPUs with native bf16 matrix instructions (AVX512_BF16 or AMX), where bf16 is ~2x fp32."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line for line in f if line.startswith("flags")), "")
    except OSError:
        return False
    return any(flag in flags.split() for flag in ("avx512_bf16", "amx_bf16"))


def resolve_device(name: str = "auto") -> torch.device:
    """'auto' -> cuda if available else cpu; 'cpu', 'cuda', 'cuda:N' as given (checked)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise MemError(f"bad device {name!r}: use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise MemError(f"device {name!r} asked for, but torch sees no CUDA device here: use --device cpu")
    return device


def resolve_dtype(name: str, device: torch.device) -> str:
    """'auto' -> 'bf16' where the device computes bf16 natively, else 'fp32'. Returns 'bf16' or 'fp32'."""
    if name == "auto":
        if device.type == "cuda":
            return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
        return "bf16" if cpu_supports_bf16() else "fp32"
    if name not in DTYPES:
        raise MemError(f"bad dtype {name!r}: use auto, {', '.join(DTYPES)}")
    return name


def autocast(device: torch.device, dtype: str):
    """An autocast context for `dtype` ('bf16' or 'fp32'; fp32 means no autocast)."""
    return torch.autocast(device.type, dtype=DTYPES[dtype], enabled=dtype != "fp32")
