"""The operator contract: a typed config, resources as plain data, declared columns,
a lifecycle (``setup`` once per worker, then batches), and per-row error handling.

Operators never import Ray: ``mmbatch.pipelines.executor`` maps them onto Ray Data.
A batch is a ``pyarrow.Table``; ``Operator.__call__`` hands ``process`` the rows that
have no error yet, as Python values, and writes its outputs back as Arrow columns.
A row that fails gets ``error = "<step>: <Type>: <message>"`` and is passed through
untouched by every later step.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, ClassVar, TypeVar

import pyarrow as pa
from pydantic import BaseModel, ConfigDict

from mmbatch.core.columns import scatter, table_to_columns, to_arrow
from mmbatch.core.configured import Configured
from mmbatch.core.registry import Registry
from mmbatch.core.requirements import Requirements
from mmbatch.core.resources import Resources

ERROR = "error"


class OperatorError(ValueError):
    """A configuration or dependency problem found before any data is processed."""


class OpConfig(BaseModel):
    """Base of every operator's config: frozen, and unknown keys are errors."""

    model_config = ConfigDict(frozen=True, extra="forbid", protected_namespaces=())


C = TypeVar("C", bound=OpConfig)


class Operator(Configured[C], ABC):
    """One step of a job. Subclasses name their config as the type argument
    (``class Canny(Operator[CannyConfig])``), set the class attributes and implement
    ``process``."""

    name: ClassVar[str]
    default_resources: ClassVar[Resources] = Resources()
    default_batch_size: ClassVar[int] = 16
    stateful: ClassVar[bool] = True  # True: actor pool (setup once); False: Ray tasks
    null_inputs_are_errors: ClassVar[bool] = True  # False: ``process`` sees the nulls itself
    requires: ClassVar[Requirements] = Requirements()
    """Everything the operator may need; :meth:`requirements` is what this config needs."""

    def __init__(self, config: C, resources: Resources | None = None, label: str = "") -> None:
        self.config = config
        self.resources = resources or self.default_resources
        self.label = label or self.name
        self.stats = {"rows": 0, "errors": 0, "seconds": 0.0}

    # -- declared columns -------------------------------------------------------------
    def inputs(self) -> dict[str, str]:
        """Columns this step reads (name -> description). Null values make the row an error."""
        return {}

    def optional_inputs(self) -> dict[str, str]:
        """Columns this step reads when present; null values are allowed."""
        return {}

    def outputs(self) -> dict[str, str]:
        """Columns this step writes (name -> description)."""
        return {}

    def transient_outputs(self) -> set[str]:
        """Outputs that only feed later steps (decoded pixels, waveforms): not written."""
        return set()

    def output_types(self) -> dict[str, pa.DataType]:
        """Arrow types of outputs whose type cannot be inferred from every batch: a column
        that is all null or all empty lists in one batch must still get the type it has in
        the others, or the Parquet files of one output cannot be read as one table."""
        return {}

    # -- lifecycle ----------------------------------------------------------------------
    def requirements(self) -> Requirements:
        """What this configured step needs (an option may add a package)."""
        return self.requires

    def setup(self) -> None:  # noqa: B027 - optional hook
        """Load models etc. Called once per worker before the first batch."""

    @abstractmethod
    def process(self, batch: dict[str, list[Any]]) -> dict[str, Any]:
        """Process rows that have no error. Returns one list (or array) per output column,
        aligned with the input rows. An optional ``"error"`` list marks single rows as
        failed (None = ok). Raising marks the whole batch; the base then bisects it to
        find the rows that fail."""

    # -- the shared batch path ----------------------------------------------------------
    def __call__(self, table: pa.Table) -> pa.Table:
        start = time.perf_counter()
        n = table.num_rows
        errors: list[str | None] = (
            table.column(ERROR).to_pylist() if ERROR in table.column_names else [None] * n
        )
        required = list(self.inputs())
        optional = [c for c in self.optional_inputs() if c in table.column_names]
        cols = table_to_columns(table, required + optional)
        for name in required if self.null_inputs_are_errors else ():
            for i, v in enumerate(cols[name]):
                if errors[i] is None and v is None:
                    errors[i] = f"{self.label}: input column '{name}' is null"
        good = [i for i in range(n) if errors[i] is None]
        results: dict[str, list[Any]] = {name: [None] * len(good) for name in self.outputs()}
        if good:
            sub = {k: [v[i] for i in good] for k, v in cols.items()}
            self._run(sub, list(range(len(good))), results, good, errors)
        types = self.output_types()
        for name in self.outputs():
            values = scatter(results[name], good, n)
            # a row that failed after another row succeeded keeps no partial output
            values = [None if errors[i] is not None else v for i, v in enumerate(values)]
            array = to_arrow(values)
            if name in types and array.type != types[name]:
                array = array.cast(types[name])
            if name in table.column_names:
                table = table.set_column(table.column_names.index(name), name, array)
            else:
                table = table.append_column(name, array)
        error_array = pa.array(errors, type=pa.string())
        if ERROR in table.column_names:
            table = table.set_column(table.column_names.index(ERROR), ERROR, error_array)
        else:
            table = table.append_column(ERROR, error_array)
        self.stats["rows"] += n
        self.stats["errors"] += sum(e is not None for e in errors)
        self.stats["seconds"] += time.perf_counter() - start
        return table

    def _run(
        self,
        sub: dict[str, list[Any]],
        idx: list[int],
        results: dict[str, list[Any]],
        good: list[int],
        errors: list[str | None],
    ) -> None:
        """Process rows ``idx`` of ``sub``; on an exception split the rows in halves."""
        part = {k: [v[i] for i in idx] for k, v in sub.items()}
        try:
            out = self.process(part)
            for name in self.outputs():
                if name not in out:
                    raise RuntimeError(f"operator '{self.name}' returned no column '{name}'")
                if len(out[name]) != len(idx):
                    raise RuntimeError(
                        f"operator '{self.name}' returned {len(out[name])} values for "
                        f"'{name}' on {len(idx)} rows"
                    )
        except Exception as exc:  # noqa: BLE001 - one bad row must not fail the job
            if len(idx) == 1:
                errors[good[idx[0]]] = f"{self.label}: {type(exc).__name__}: {exc}"
                return
            mid = len(idx) // 2
            self._run(sub, idx[:mid], results, good, errors)
            self._run(sub, idx[mid:], results, good, errors)
            return
        row_errors = out.get(ERROR)
        for j, i in enumerate(idx):
            if row_errors is not None and row_errors[j] is not None:
                errors[good[i]] = f"{self.label}: {row_errors[j]}"
                continue
            for name in self.outputs():
                results[name][i] = out[name][j]


def map_rows(
    batch: dict[str, list[Any]], fn: Callable[..., dict[str, Any]], columns: list[str]
) -> dict[str, list[Any]]:
    """Apply ``fn`` row by row; an exception marks that row only (the ``"error"`` list).

    For stateless per-row work (decoding) where bisection would redo good rows."""
    n = len(next(iter(batch.values()))) if batch else 0
    out: dict[str, list[Any]] = {c: [None] * n for c in columns}
    errors: list[str | None] = [None] * n
    for i in range(n):
        try:
            row = fn(**{k: v[i] for k, v in batch.items()})
        except Exception as exc:  # noqa: BLE001
            errors[i] = f"{type(exc).__name__}: {exc}"
            continue
        for c in columns:
            out[c][i] = row[c]
    out[ERROR] = errors
    return out


AnyOperator = Operator[Any]

OPERATORS: Registry[type[AnyOperator]] = Registry("op", "mmbatch.operators", OperatorError)


def register(name: str) -> Callable[[type[AnyOperator]], type[AnyOperator]]:
    """Class decorator: make an operator available to job files as ``op: name``."""
    return OPERATORS.register(name)
