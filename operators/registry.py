"""The operator registry: an explicit ``@register("name")`` filling one dict."""

from __future__ import annotations

import importlib
from typing import TypeVar

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

_REGISTRY: dict[str, type[Operator]] = {}
_loaded = False
T = TypeVar("T", bound=type[Operator])


def register(name: str):
    """Class decorator: make an operator available to job files as ``op: name``."""

    def deco(cls: T) -> T:
        if name in _REGISTRY:
            raise OperatorError(f"operator '{name}' is registered twice ({_REGISTRY[name]!r}, {cls!r})")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return deco


def _load_builtins() -> None:
    global _loaded
    if not _loaded:
        _loaded = True
        for module in BUILTIN_MODULES:
            importlib.import_module(module)


def get_operator(name: str) -> type[Operator]:
    _load_builtins()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise OperatorError(
            f"unknown op '{name}'; known ops: {', '.join(sorted(_REGISTRY))}"
        ) from None


def operator_names() -> list[str]:
    _load_builtins()
    return sorted(_REGISTRY)
