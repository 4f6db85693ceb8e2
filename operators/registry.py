"""The operator registry: an explicit ``@register("name")`` filling one dict."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Generic, TypeVar

from .base import Operator, OperatorError

# Modules holding the built-in operators, imported on first lookup. They import only
# light dependencies at module level (heavy ones inside ``setup``).
BUILTIN_MODULES = (
    "mmbatch.operators.image",
    "mmbatch.operators.embed",
    "mmbatch.operators.classify",
    "mmbatch.operators.caption",
    "mmbatch.operators.answer",
    "mmbatch.operators.generate",
    "mmbatch.operators.canny",
    "mmbatch.operators.video",
    "mmbatch.operators.audio",
    "mmbatch.operators.transcribe",
    "mmbatch.operators.classify_audio",
    "mmbatch.operators.score",
)

T = TypeVar("T", bound=type)


class Registry(Generic[T]):
    """Names -> classes, filled by a ``register(name)`` class decorator; the modules holding
    the built-in entries are imported on the first lookup. Shared by operators and metrics."""

    def __init__(self, kind: str, modules: tuple[str, ...], error: type[Exception]) -> None:
        self.kind, self.modules, self.error = kind, modules, error
        self.classes: dict[str, T] = {}
        self._loaded = False

    def register(self, name: str) -> Callable[[T], T]:
        def deco(cls: T) -> T:
            if name in self.classes:
                raise self.error(f"{self.kind} '{name}' is registered twice ({self.classes[name]!r}, {cls!r})")
            cls.name = name  # type: ignore[attr-defined]
            self.classes[name] = cls
            return cls

        return deco

    def _load_builtins(self) -> None:
        if not self._loaded:
            self._loaded = True
            for module in self.modules:
                importlib.import_module(module)

    def get(self, name: str) -> T:
        self._load_builtins()
        try:
            return self.classes[name]
        except KeyError:
            raise self.error(
                f"unknown {self.kind} '{name}'; known {self.kind}s: {', '.join(sorted(self.classes))}"
            ) from None

    def names(self) -> list[str]:
        self._load_builtins()
        return sorted(self.classes)


OPERATORS: Registry[type[Operator]] = Registry("op", BUILTIN_MODULES, OperatorError)


def register(name: str) -> Callable[[type[Operator]], type[Operator]]:
    """Class decorator: make an operator available to job files as ``op: name``."""
    return OPERATORS.register(name)


def get_operator(name: str) -> type[Operator]:
    return OPERATORS.get(name)


def operator_names() -> list[str]:
    return OPERATORS.names()
