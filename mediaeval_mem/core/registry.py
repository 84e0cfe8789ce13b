"""Name -> builder registries: a dict plus a decorator (after torchvision's models/_api.py)."""

from __future__ import annotations

from typing import Any, Callable, TypeVar

from mediaeval_mem.core.errors import MemError, UnknownNameError

F = TypeVar("F", bound=Callable)


class RegistryClash(MemError, ValueError):
    """A name registered twice (a plugin reusing a built-in name, say)."""


class Registry(dict):
    """A dict of name -> builder. `@REG.register("name")` adds one; a second use of a name raises.
    Metadata given with the builder (`info=`) is known without building (`REG.info(name)`).

    >>> ENCODERS = Registry("encoder")
    >>> @ENCODERS.register("my-encoder", info=EncoderInfo(width=512))
    ... def build(**kw): ...
    """

    def __init__(self, kind: str):
        super().__init__()
        self.kind, self.infos = kind, {}

    def register(self, name: str, info: Any = None) -> Callable[[F], F]:
        def deco(fn: F) -> F:
            self.add(name, fn, info)
            return fn

        return deco

    def add(self, name: str, entry: Any, info: Any = None) -> None:
        """Register `entry` (a builder, or a record such as a dataset Layout) under `name`; a taken name raises."""
        if name in self:
            where = getattr(self[name], "__module__", None)
            raise RegistryClash(f"{self.kind} {name!r} is registered twice" + (f" (first by {where})" if where else ""))
        self[name], self.infos[name] = entry, info

    def info(self, name: str) -> Any:
        """The metadata registered with `name`'s builder (an unknown name raises, listing the valid ones)."""
        self[name]
        return self.infos[name]

    def __missing__(self, name: str):
        valid = ", ".join(sorted(self)) or "(none)"
        raise UnknownNameError(f"unknown {self.kind} {name!r}; valid names: {valid}")

    def build(self, name: str, **kwargs):
        """Look `name` up and call its builder with `kwargs`."""
        return self[name](**kwargs)
