"""Names -> classes, for operators (``op: embed``) and metrics (``metric: cider``).

An entry is added by a ``@REGISTRY.register("name")`` class decorator. The built-in
entries are *discovered*: on the first lookup every module of the registry's package
(``mmbatch.operators``, ``mmbatch.metrics``) is imported, so a new module with a
``@register`` is all it takes to add one. Third-party packages add theirs through an
entry point group of the same name as the package (``mmbatch.operators``), whose entries
name modules to import.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Generic, TypeVar

T = TypeVar("T", bound=type)


class RegistryError(ValueError):
    """An unknown or twice-registered name."""


class Registry(Generic[T]):
    """One kind of named class (``op``, ``metric``), discovered from ``package``."""

    def __init__(self, kind: str, package: str, error: type[Exception] = RegistryError) -> None:
        self.kind, self.package, self.error = kind, package, error
        self.classes: dict[str, T] = {}
        self._discovered = False

    def register(self, name: str) -> Callable[[T], T]:
        """Class decorator: make the class available as ``name`` (sets ``cls.name``)."""

        def deco(cls: T) -> T:
            if name in self.classes and self.classes[name] is not cls:
                raise self.error(f"{self.kind} '{name}' is registered twice ({self.classes[name]!r}, {cls!r})")
            cls.name = name  # type: ignore[attr-defined]  # every registered class has a ClassVar ``name``
            self.classes[name] = cls
            return cls

        return deco

    def unregister(self, name: str) -> None:
        """Remove ``name`` (tests that register a throw-away class)."""
        self.classes.pop(name, None)

    def discover(self) -> None:
        """Import every module of the package and of the entry-point group, once."""
        if self._discovered:
            return
        self._discovered = True
        package = importlib.import_module(self.package)
        for info in pkgutil.iter_modules(package.__path__, prefix=f"{self.package}."):
            importlib.import_module(info.name)
        for ep in entry_points(group=self.package):
            importlib.import_module(ep.value.split(":", 1)[0])

    def get(self, name: str) -> T:
        self.discover()
        try:
            return self.classes[name]
        except KeyError:
            raise self.error(
                f"unknown {self.kind} '{name}'; known {self.kind}s: {', '.join(sorted(self.classes))}"
            ) from None

    def names(self) -> list[str]:
        self.discover()
        return sorted(self.classes)
