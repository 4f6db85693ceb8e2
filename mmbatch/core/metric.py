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

The contract lives here, below both ``mmbatch.metrics`` (the implementations, discovered
by the registry) and ``mmbatch.operators`` (the ``score`` step reaches metrics through
:data:`METRICS`), so neither of those depends on the other.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

from pydantic import BaseModel, ConfigDict

from .columns import Column
from .configured import Configured
from .models import check_model_ref
from .registry import Registry
from .requirements import Requirements
from .resources import Resources

ID = "id"


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
    resources: Resources = Resources(cpus=1)
    """What each worker of this metric's passes reserves, e.g. ``{gpus: 1}`` for FID or CLIPScore."""

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
    row_scores: dict[str, list[Any]] | None = None


MC = TypeVar("MC", bound=MetricConfig)


class Metric(Configured[MC], ABC):
    """A corpus metric. Subclasses name their config as the type argument
    (``class Wer(Metric[ErrorRateConfig])``) and implement the methods below
    (``after_pass`` only when ``passes > 1``)."""

    name: ClassVar[str]
    passes: ClassVar[int] = 1
    requires: ClassVar[Requirements] = Requirements()
    """Everything the metric may need; :meth:`requirements` is what this config needs."""
    row_local: ClassVar[bool] = False
    """A row's per-row score depends on that row alone (so a ``score`` step can compute it)."""

    def __init__(self, config: MC) -> None:
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

    def requirements(self) -> Requirements:
        """What this configured metric needs (an option may add a package or drop Java)."""
        return self.requires

    def preflight(self) -> None:
        """Checks with I/O before Ray starts: every model or file the config names can be
        loaded (``ValueError`` otherwise)."""
        config = self.config.model_dump()
        for key in ("model", "weights", "reference_stats"):
            value = config.get(key)
            if isinstance(value, str) and value:
                check_model_ref(value, config.get("storage_options"), f"{self.name} {key}")

    @abstractmethod
    def input_columns(self) -> list[str]:
        """Columns this metric reads (besides ``id``), for the engine's pre-launch check."""

    def setup(self) -> None:  # noqa: B027 - optional hook, a no-op by default
        """Heavy loads (Inception, CLIP, a JVM). Called once per worker before ``partial``."""

    @abstractmethod
    def partial(self, batch: dict[str, list[Any]], pass_index: int, broadcast: Any) -> Any:
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


AnyMetric = Metric[Any]

METRICS: Registry[type[AnyMetric]] = Registry("metric", "mmbatch.metrics", MetricError)


def register_metric(name: str) -> Callable[[type[AnyMetric]], type[AnyMetric]]:
    """Class decorator: make a metric available to job files as ``metric: name``."""
    return METRICS.register(name)


def get_metric(name: str) -> type[AnyMetric]:
    return METRICS.get(name)


def metric_names() -> list[str]:
    return METRICS.names()


def build_metric(entry: dict[str, Any] | MetricConfig) -> AnyMetric:
    """A metric from one ``metrics:`` entry (a dict, validated by the metric's own Config)."""
    if isinstance(entry, MetricConfig):
        return get_metric(entry.metric)(entry)
    if "metric" not in entry:
        raise MetricError(f"metric entry without a 'metric' key: {entry!r}")
    cls = get_metric(entry["metric"])
    return cls(cls.Config.model_validate(entry))


def check_requirements(metric: type[AnyMetric] | AnyMetric) -> None:
    """Raise :class:`MetricError` naming what to install when a dependency is missing.

    Accepts a class (checks everything it may need) or a configured instance (checks what
    that configuration needs: e.g. no Java for ``tokenizer: none``)."""
    if isinstance(metric, type):
        metric.requires.check(f"metric '{metric.name}'", MetricError)
    else:
        metric.requirements().check(f"metric '{metric.name}'", MetricError)


def compute_local(metric: AnyMetric, batches: list[dict[str, list[Any]]], *, ready: bool = False) -> MetricResult:
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


def row_scores(metric: AnyMetric, columns: Mapping[str, Column]) -> list[float | None]:
    """Each row's score under a row-local ``metric`` that was built with ``per_row`` and set
    up; a row with a null in any of the metric's columns gets None (not an error)."""
    names = metric.input_columns()
    n = len(columns[names[0]])
    scores: list[float | None] = [None] * n
    keep = [i for i in range(n) if all(columns[c][i] is not None for c in names)]
    if keep:
        sub: dict[str, list[Any]] = {c: [columns[c][i] for i in keep] for c in names}
        sub[ID] = keep  # positions: metrics key their per-row scores by "id"
        rows = compute_local(metric, [sub], ready=True).row_scores or {}
        for i, s in zip(rows.get(ID, []), rows.get(metric.output_name, []), strict=True):
            scores[i] = float(s)
    return scores
