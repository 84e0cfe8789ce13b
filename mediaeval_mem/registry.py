"""Name -> builder registries: a dict plus a decorator (after torchvision's models/_api.py)."""

from __future__ import annotations

from typing import Callable, TypeVar

from mediaeval_mem.errors import UnknownNameError

F = TypeVar("F", bound=Callable)


class Registry(dict):
    """A dict of name -> builder. `@REG.register("name")` adds one; a second use of a name raises.

    >>> ENCODERS = Registry("encoder")
    >>> @ENCODERS.register("my-encoder")
    ... def build(**kw): ...
    """

    def __init__(self, kind: str):
        super().__init__()
        self.kind = kind

    def register(self, name: str) -> Callable[[F], F]:
        def deco(fn: F) -> F:
            if name in self:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self[name] = fn
            return fn

        return deco

    def __missing__(self, name: str):
        valid = ", ".join(sorted(self)) or "(none)"
        raise UnknownNameError(f"unknown {self.kind} {name!r}; valid names: {valid}")

    def build(self, name: str, **kwargs):
        """Look `name` up and call its builder with `kwargs`."""
        return self[name](**kwargs)
