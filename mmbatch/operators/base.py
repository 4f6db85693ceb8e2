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

import numpy as np
import pyarrow as pa
from pydantic import BaseModel, ConfigDict

from mmbatch.core.columns import Column, batch_to_arrow, table_to_columns, take, to_arrow
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
    gpu_batch_size: ClassVar[int | None] = None
    """The default ``batch_size`` where the step has GPUs, if larger batches pay there: a
    step that runs the largest sub-batch that fits (:meth:`ModelOperator.fitted`) halves it
    on a device too small for it."""
    stateful: ClassVar[bool] = True  # True: actor pool (setup once); False: Ray tasks
    null_inputs_are_errors: ClassVar[bool] = True  # False: ``process`` sees the nulls itself
    requires: ClassVar[Requirements] = Requirements()
    """Everything the operator may need; :meth:`requirements` is what this config needs."""

    def __init__(self, config: C, resources: Resources | None = None, label: str = "") -> None:
        self.config = config
        self.unused: set[str] = set()
        """Outputs nothing reads or writes (the engine sets it): computed, not converted to Arrow."""
        self.resources = resources or self.default_resources
        self.label = label or self.name
        self.stats = {"rows": 0, "errors": 0, "seconds": 0.0}
        """rows seen, error rows born in this step, seconds of work"""

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

    def preflight(self) -> None:
        """Checks with I/O, run before Ray starts (``mmbatch validate`` without
        ``--no-probe``, and ``mmbatch run``): raise ``ValueError`` with what is wrong."""

    def upstream_config(self) -> dict[str, dict[str, Any]]:
        """Config keys this step asks of the steps that produce its input columns (column ->
        {key: value}); applied where the job file leaves the key unset. (A ctranslate2
        ``transcribe`` asks ``decode_audio`` for faster-whisper's own resampling.)"""
        return {}

    def media_inputs(self) -> set[str]:
        """Inputs holding encoded media that this step decodes: not written to ``rows/``
        (when they hold bytes) unless the job keeps them."""
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
    def process(self, batch: dict[str, Column]) -> dict[str, Any]:
        """Process rows that have no error. Returns one list (or array) per output column,
        aligned with the input rows. An optional ``"error"`` list marks single rows as
        failed (None = ok). Raising marks the whole batch; the base then bisects it to
        find the rows that fail."""

    # -- preparation in parallel CPU tasks --------------------------------------------------
    def prepared(self) -> dict[str, str]:
        """Columns that :meth:`prepare` computes from this step's inputs (fixed-shape tensors:
        ``pixel_values``, token ids). The engine runs ``prepare`` as its own stage of stateless
        CPU tasks ahead of the model workers, which then read only these columns (and the
        optional inputs). Empty: the step has no such stage."""
        return {}

    def prepared_from(self) -> set[str]:
        """The inputs that :meth:`prepare` turns into the prepared columns (default: all);
        the step itself still reads the others."""
        return set(self.inputs())

    def setup_prepare(self) -> None:  # noqa: B027 - optional hook
        """Load what :meth:`prepare` needs (a processor, never model weights)."""

    def prepare(self, batch: dict[str, Column]) -> dict[str, Any]:
        """CPU preprocessing of rows that have no error: one value or array per prepared
        column (an ``(n, ...)`` array for fixed-shape tensors), like :meth:`process`."""
        raise NotImplementedError(f"operator '{self.name}' declares prepared columns but no prepare()")

    def preparer(self) -> PrepareStage | None:
        """This step's preparation as a stateless operator, or None."""
        return PrepareStage(self) if self.prepared() else None

    # -- the shared batch path ----------------------------------------------------------
    def read_columns(self, available: list[str]) -> list[str]:
        """The input columns this step reads from a table with ``available`` columns: the
        prepared columns when a prepare stage ran before it, else its inputs."""
        prepared = list(self.prepared())
        if prepared and all(c in available for c in prepared):
            consumed = self.prepared_from()
            return prepared + [c for c in self.inputs() if c not in consumed]
        return list(self.inputs())

    def __call__(self, table: pa.Table) -> pa.Table:
        start = time.perf_counter()
        if self.prepared() and not all(c in table.column_names for c in self.prepared()):
            stage = self.preparer()
            assert stage is not None
            table = stage(table)  # called directly (tests, no engine): prepare here first
        n = table.num_rows
        errors: list[str | None] = (
            table.column(ERROR).to_pylist() if ERROR in table.column_names else [None] * n
        )
        failed_before = sum(e is not None for e in errors)
        required = self.read_columns(table.column_names)
        optional = [c for c in self.optional_inputs() if c in table.column_names]
        for name in required if self.null_inputs_are_errors else ():
            nulls = table.column(name).is_null().to_numpy(zero_copy_only=False)
            for i in np.flatnonzero(nulls):
                if errors[i] is None:
                    errors[i] = f"{self.label}: input column '{name}' is null"
        cols = table_to_columns(table, required + optional)
        good = [i for i in range(n) if errors[i] is None]
        results = _Results(list(self.outputs()), n)
        if good:
            self._run({k: take(v, good) for k, v in cols.items()}, list(range(len(good))), results, good, errors)
        types = self.output_types()
        failed = np.array([e is not None for e in errors], dtype=bool)
        for name in self.outputs():
            if name in self.unused:
                continue
            # a row that failed after another row succeeded keeps no partial output
            array = results.arrow(name, failed)
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
        self.stats["errors"] += int(failed.sum()) - failed_before  # errors born in this step
        self.stats["seconds"] += time.perf_counter() - start
        return table

    def _run(
        self,
        sub: dict[str, Column],
        idx: list[int],
        results: _Results,
        good: list[int],
        errors: list[str | None],
    ) -> None:
        """Process rows ``idx`` of ``sub``; on an exception split the rows in halves."""
        part = {k: take(v, idx) for k, v in sub.items()}
        try:
            out = self.process(part)
            for name in results.names:
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
        if row_errors is not None:
            for j, i in enumerate(idx):
                if row_errors[j] is not None:
                    errors[good[i]] = f"{self.label}: {row_errors[j]}"
        results.add([good[i] for i in idx], out)


class _Results:
    """The outputs of one batch, gathered from the ``process`` calls of its parts (several
    when a failing batch is bisected) and assembled into full-length Arrow columns: arrays
    returned as ``(n, ...)`` numpy stay columnar, anything else is placed row by row."""

    def __init__(self, names: list[str], n: int) -> None:
        self.names, self.n = names, n
        self.parts: list[tuple[list[int], dict[str, Any]]] = []

    def add(self, rows: list[int], out: dict[str, Any]) -> None:
        self.parts.append((rows, {name: out[name] for name in self.names}))

    def arrow(self, name: str, failed: np.ndarray) -> pa.Array:
        chunks = [(rows, out[name]) for rows, out in self.parts]
        arrays = [v for _, v in chunks if isinstance(v, np.ndarray) and v.ndim >= 2]
        if chunks and len(arrays) == len(chunks) and len({(a.shape[1:], a.dtype) for a in arrays}) == 1:
            full = np.zeros((self.n, *arrays[0].shape[1:]), dtype=arrays[0].dtype)
            missing = np.ones(self.n, dtype=bool)
            for rows, array in chunks:
                full[rows] = array
                missing[rows] = False
            return batch_to_arrow(full, missing | failed)
        values: list[Any] = [None] * self.n
        for rows, part in chunks:
            for row, value in zip(rows, part, strict=True):
                values[row] = value
        return to_arrow([None if failed[i] else v for i, v in enumerate(values)])


class PrepareStage(Operator[Any]):
    """The ``prepare`` of a step as a stateless operator of its own (run as Ray tasks): it
    reads the step's inputs and writes its prepared columns, under the step's label, so a
    row that cannot be prepared is an error row of that step."""

    stateful = False

    def __init__(self, op: Operator[Any]) -> None:
        super().__init__(op.config, op.resources, op.label)
        self.op = op
        self.name = op.name  # type: ignore[misc]  # an instance shows the wrapped step's name
        self.null_inputs_are_errors = op.null_inputs_are_errors  # type: ignore[misc]

    def inputs(self) -> dict[str, str]:
        consumed = self.op.prepared_from()
        return {c: d for c, d in self.op.inputs().items() if c in consumed}

    def outputs(self) -> dict[str, str]:
        return self.op.prepared()

    def transient_outputs(self) -> set[str]:
        return set(self.op.prepared())

    def setup(self) -> None:
        self.op.setup_prepare()

    def process(self, batch: dict[str, Column]) -> dict[str, Any]:
        return self.op.prepare(batch)


def map_rows(
    batch: dict[str, Column], fn: Callable[..., dict[str, Any]], columns: list[str]
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
