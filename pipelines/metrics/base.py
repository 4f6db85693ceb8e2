"""The metric contract: corpus metrics computed from mergeable per-block partial states.

A metric never sees the whole corpus at once. For each pass ``p`` (``0 .. passes-1``) the
engine calls ``partial(batch, p, broadcast)`` on every block (in Ray tasks, or in-process via
:func:`compute_local`), collects the picklable states on the driver and ``merge``s them.
Between passes, ``after_pass(p, merged)`` turns the merged state into the ``broadcast`` that
every block of pass ``p + 1`` receives (CIDEr-D broadcasts the corpus document frequencies).
After the last pass, ``finalize(merged, broadcast)`` returns the :class:`MetricResult`;
``broadcast`` there is the one the last pass received (``None`` for one-pass metrics).

``batch`` maps column names to Python lists (``pyarrow`` ``to_pylist``) and always holds the
row ids under ``"id"``. Rows that failed an earlier step never reach a metric. Nothing here
imports Ray.
"""

from __future__ import annotations

import importlib.util
import shutil
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict

from mmbatch.operators.registry import Registry

ID = "id"

# Modules holding the built-in metrics; imported on the first registry lookup.
BUILTIN_MODULES = (
    "mmbatch.pipelines.metrics.cider",
    "mmbatch.pipelines.metrics.bleu",
    "mmbatch.pipelines.metrics.rouge",
    "mmbatch.pipelines.metrics.meteor",
    "mmbatch.pipelines.metrics.wer",
    "mmbatch.pipelines.metrics.fid",
    "mmbatch.pipelines.metrics.clip_score",
    "mmbatch.pipelines.metrics.vqa",
    "mmbatch.pipelines.metrics.recall",
)

# How to get a missing executable, by name.
EXECUTABLE_HINTS = {
    "java": (
        "Java is required by pycocoevalcap's PTBTokenizer and METEOR "
        "(install it with: apt-get install -y default-jre-headless)"
    ),
}


class MetricError(ValueError):
    """A configuration, dependency or input problem of a metric."""


class MetricConfig(BaseModel):
    """Keys shared by every metric entry of a job's ``metrics:`` list.

    Each metric subclasses this with its own keys (columns it reads, options)."""

    model_config = ConfigDict(frozen=True, extra="forbid", protected_namespaces=(), use_attribute_docstrings=True)

    metric: str
    """The registry name, e.g. ``cider``."""
    name: str | None = None
    """Output name (metrics table row, per-row score column); defaults to ``metric``."""

    @property
    def output_name(self) -> str:
        return self.name or self.metric


@dataclass
class MetricResult:
    """One corpus metric value.

    ``count`` is the number of items scored (rows, or queries for retrieval). ``details``
    holds further numbers (``bleu_1`` .. ``bleu_4``, substitution counts, ...).
    ``row_scores`` is ``{"id": [...], <name>: [...]}`` when the config asked ``per_row``."""

    name: str
    value: float
    count: int
    details: dict[str, float] = field(default_factory=dict)
    row_scores: dict[str, list] | None = None


class Metric(ABC):
    """A corpus metric. Subclasses set the class attributes and implement the methods below
    (``after_pass`` only when ``passes > 1``)."""

    name: ClassVar[str]
    Config: ClassVar[type[MetricConfig]]
    passes: ClassVar[int] = 1
    requires: ClassVar[tuple[tuple[str, str], ...]] = ()
    """``(import name, pip extra)`` pairs checked by :func:`check_requirements`."""
    executables: ClassVar[tuple[str, ...]] = ()
    """Programs that must be on ``PATH`` (``java``), checked by :func:`check_requirements`."""
    row_local: ClassVar[bool] = False
    """A row's per-row score depends on that row alone (so a ``score`` step can compute it)."""

    def __init__(self, config: MetricConfig) -> None:
        if not isinstance(config, self.Config):
            raise MetricError(
                f"metric '{self.name}' needs a {self.Config.__name__}, got {type(config).__name__}"
            )
        if config.metric != self.name:
            raise MetricError(f"config for metric '{config.metric}' given to metric '{self.name}'")
        self.config = config

    @property
    def output_name(self) -> str:
        return self.config.output_name

    def required_modules(self) -> tuple[tuple[str, str], ...]:
        """``requires`` of this configured metric (an option may add an import)."""
        return self.requires

    def required_executables(self) -> tuple[str, ...]:
        """Executables this configured metric needs (an option may drop one)."""
        return self.executables

    @abstractmethod
    def input_columns(self) -> list[str]:
        """Columns this metric reads (besides ``id``), for the engine's pre-launch check."""

    def setup(self) -> None:  # noqa: B027 - optional hook, a no-op by default
        """Heavy loads (Inception, CLIP, a JVM). Called once per worker before ``partial``."""

    @abstractmethod
    def partial(self, batch: dict[str, list], pass_index: int, broadcast: Any) -> Any:
        """The picklable partial state of one block for pass ``pass_index``."""

    @abstractmethod
    def merge(self, states: list[Any]) -> Any:
        """Combine the states of all blocks of one pass (the result is itself a state)."""

    def after_pass(self, pass_index: int, merged: Any) -> Any:
        """The broadcast for pass ``pass_index + 1``, from the merged state of this pass."""
        return merged

    @abstractmethod
    def finalize(self, merged: Any, broadcast: Any) -> MetricResult:
        """The result, from the merged state of the last pass."""


_METRICS: Registry[type[Metric]] = Registry("metric", BUILTIN_MODULES, MetricError)
_REGISTRY = _METRICS.classes


def register_metric(name: str) -> Callable[[type[Metric]], type[Metric]]:
    """Class decorator: make a metric available to job files as ``metric: name``."""
    return _METRICS.register(name)


def get_metric(name: str) -> type[Metric]:
    return _METRICS.get(name)


def metric_names() -> list[str]:
    return _METRICS.names()


def build_metric(entry: dict[str, Any] | MetricConfig) -> Metric:
    """A metric from one ``metrics:`` entry (a dict, validated by the metric's own Config)."""
    if isinstance(entry, MetricConfig):
        return get_metric(entry.metric)(entry)
    if "metric" not in entry:
        raise MetricError(f"metric entry without a 'metric' key: {entry!r}")
    cls = get_metric(entry["metric"])
    return cls(cls.Config.model_validate(entry))


def check_requirements(metric: type[Metric] | Metric) -> None:
    """Raise :class:`MetricError` naming what to install when a dependency is missing.

    Accepts a class (checks everything it may need) or a configured instance (checks what
    that configuration needs: e.g. no Java for ``tokenizer: none``)."""
    cls = metric if isinstance(metric, type) else type(metric)
    modules = cls.requires if isinstance(metric, type) else metric.required_modules()
    missing = [(mod, extra) for mod, extra in modules if importlib.util.find_spec(mod) is None]
    problems = [
        f"Python package '{mod}' is missing: pip install 'mmbatch[{extra}]'" for mod, extra in missing
    ]
    exes = cls.executables if isinstance(metric, type) else metric.required_executables()
    for exe in exes:
        if shutil.which(exe) is None:
            problems.append(f"'{exe}' not found on PATH. " + EXECUTABLE_HINTS.get(exe, ""))
    if problems:
        raise MetricError(f"metric '{cls.name}' cannot run: " + "; ".join(problems))


def compute_local(metric: Metric, batches: list[dict[str, list]], *, ready: bool = False) -> MetricResult:
    """Run every pass of ``metric`` in this process; each batch stands for one block.

    The reference for how an engine drives a metric: ``setup`` once, then per pass one
    ``partial`` per block, ``merge``, ``after_pass`` between passes, ``finalize`` at the end."""
    if not ready:  # ``ready``: the caller already checked requirements and ran ``setup``
        check_requirements(metric)
        metric.setup()
    broadcast: Any = None
    merged: Any = None
    for p in range(metric.passes):
        merged = metric.merge([metric.partial(batch, p, broadcast) for batch in batches])
        if p < metric.passes - 1:
            broadcast = metric.after_pass(p, merged)
    return metric.finalize(merged, broadcast)
