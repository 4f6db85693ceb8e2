"""The one dependency check of operators and metrics: Python packages (with the pip extra
that provides them) and programs on ``PATH`` (with how to install them).

A class declares everything it may need (``requires``, checked by ``mmbatch ops``); a
configured instance may narrow or widen that (``requirements()``: no Java for CIDEr on
pre-tokenised text, ``whisper_normalizer`` only with that normaliser). Validation checks
the instance before Ray starts; the message names what is missing and the command to fix it.
"""

from __future__ import annotations

import importlib.util
import shutil
from dataclasses import dataclass

# How to get a missing executable, by name.
EXECUTABLE_HINTS = {
    "java": (
        "Java is required by pycocoevalcap's PTBTokenizer and METEOR "
        "(install it with: apt-get install -y default-jre-headless)"
    ),
}


class MissingDependency(ValueError):
    """A package or program that a step or metric needs is not installed."""


@dataclass(frozen=True)
class Requirements:
    """Import names (each provided by ``pip install 'mmbatch[<extra>]'``) and executables."""

    modules: tuple[str, ...] = ()
    extra: str = "all"
    executables: tuple[str, ...] = ()
    more: tuple[Requirements, ...] = ()
    """Requirements from other extras (a metric option that needs another package)."""

    def with_modules(self, *modules: str, extra: str | None = None) -> Requirements:
        """These requirements plus ``modules`` (from ``extra``, default: the same extra)."""
        added = Requirements(tuple(modules), extra or self.extra)
        return Requirements(self.modules, self.extra, self.executables, (*self.more, added))

    def without_executables(self) -> Requirements:
        return Requirements(self.modules, self.extra, (), self.more)

    def problems(self) -> list[str]:
        found: list[str] = []
        for req in (self, *self.more):
            for mod in req.modules:
                if importlib.util.find_spec(mod) is None:
                    found.append(f"Python package '{mod}' is missing: pip install 'mmbatch[{req.extra}]'")
            for exe in req.executables:
                if shutil.which(exe) is None:
                    found.append(f"'{exe}' not found on PATH. " + EXECUTABLE_HINTS.get(exe, ""))
        return found

    def check(self, who: str, error: type[Exception] = MissingDependency) -> None:
        """Raise ``error`` naming ``who`` and every missing piece with its fix."""
        problems = self.problems()
        if problems:
            raise error(f"{who} cannot run: " + "; ".join(problems))
