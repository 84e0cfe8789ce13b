"""The training loop's per-epoch resume checkpoint: one safetensors file, no pickle.

Every tensor (the model's, the best epoch's, the optimizer's moments) is a safetensors tensor; everything
else (epoch, history, early-stopping state, the scheduler, the RNG states of python, numpy and torch) is
JSON in the file's metadata, where a tensor is written as {"__tensor__": name} and a dict whose keys are
not all strings as {"__dict__": [[key, value], ...]}. One file, written atomically: a crash leaves the
previous epoch's checkpoint or this one, never half of each. Reading it runs no code (unlike a pickle).
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import torch

from mediaeval_mem.core.errors import DamagedError
from mediaeval_mem.core.io import atomic_save

FORMAT = "mem-resume-1"  # the metadata entry that holds the JSON state
TAGS = {"__tensor__", "__dict__"}  # the two JSON objects that stand for something else


def _split(obj, name: str, tensors: dict[str, torch.Tensor]):
    """`obj` as JSON-able data, its tensors moved to `tensors` under a path-like name."""
    if isinstance(obj, torch.Tensor):
        tensors[name] = obj.detach().to("cpu", copy=True).contiguous()  # safetensors refuses shared memory
        return {"__tensor__": name}
    if isinstance(obj, dict):
        if all(isinstance(k, str) for k in obj) and not TAGS & obj.keys():  # a JSON object as it is
            return {k: _split(v, f"{name}/{k}", tensors) for k, v in obj.items()}
        # keys kept with their type: an optimizer's state is keyed by int
        return {"__dict__": [[k, _split(v, f"{name}/{k}", tensors)] for k, v in obj.items()]}
    if isinstance(obj, (list, tuple)):
        return [_split(v, f"{name}/{i}", tensors) for i, v in enumerate(obj)]
    if obj is None or isinstance(obj, (str, bool, int, float)):
        return obj
    raise TypeError(f"resume checkpoint: cannot store {type(obj).__name__} at {name}")


def _join(data, tensors: dict[str, torch.Tensor]):
    """The inverse of `_split`."""
    if isinstance(data, dict):
        if "__tensor__" in data:
            return tensors[data["__tensor__"]]
        if "__dict__" in data:
            return {k: _join(v, tensors) for k, v in data["__dict__"]}
        return {k: _join(v, tensors) for k, v in data.items()}
    if isinstance(data, list):
        return [_join(v, tensors) for v in data]
    return data


def rng_states(rng: np.random.Generator) -> dict:
    """The RNG states of python, numpy (global and `rng`) and torch (CPU, and the GPUs in use), as JSON-able data."""
    version, internal, gauss = random.getstate()
    name, key, pos, has_gauss, cached = np.random.get_state()
    states = {"python": [version, list(internal), gauss],
              "numpy": [name, key.tolist(), pos, has_gauss, cached],
              "generator": rng.bit_generator.state,
              "torch": torch.get_rng_state().tolist()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():  # a training on GPUs: theirs too
        states["cuda"] = [s.tolist() for s in torch.cuda.get_rng_state_all()]
    return states


def set_rng_states(states: dict, rng: np.random.Generator) -> None:
    """Put back what `rng_states` returned."""
    version, internal, gauss = states["python"]
    random.setstate((version, tuple(internal), gauss))
    name, key, pos, has_gauss, cached = states["numpy"]
    np.random.set_state((name, np.asarray(key, np.uint32), pos, has_gauss, cached))
    rng.bit_generator.state = states["generator"]
    torch.set_rng_state(torch.tensor(states["torch"], dtype=torch.uint8))
    if "cuda" in states and torch.cuda.is_available() and len(states["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all([torch.tensor(s, dtype=torch.uint8) for s in states["cuda"]])


def save_checkpoint(path: Path, state: dict) -> None:
    """Write `state` (nested dicts and lists of tensors and JSON values) to `path` atomically."""
    from safetensors.torch import save_file


    tensors: dict[str, torch.Tensor] = {}
    meta = json.dumps(_split(state, "", tensors))
    atomic_save(path, lambda tmp: save_file(tensors, str(tmp), metadata={FORMAT: meta}))


def load_checkpoint(path: Path) -> dict:
    """The state `save_checkpoint` wrote. A file it did not write (an older pickle, a damaged copy) -> DamagedError."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = (f.metadata() or {}).get(FORMAT)
        if meta is None:
            raise ValueError("no resume state in it")
        return _join(json.loads(meta), load_file(str(path)))
    except (SafetensorError, OSError, ValueError, KeyError, TypeError) as e:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise DamagedError(f"resume checkpoint {path} cannot be read ({reason}): delete it to train from the first epoch") from None
