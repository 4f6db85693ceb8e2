"""The callables that Ray Data runs for a job's steps: :class:`StepActor` for a model step
(an actor pool), :class:`StepTasks` for a run of consecutive stateless steps (tasks), each
named after its operators (``EmbedActor``, ``DecodeImage+EmbedPrepareTasks``).

How they are laid out in a Ray Dataset is :mod:`mmbatch.pipelines.executor`'s concern.
"""

from __future__ import annotations

import itertools
import time
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

import pyarrow as pa

from mmbatch.operators.base import AnyOperator

from . import io
from .planning import PlannedStep
from .step_stats import Reporter


def _is_bytes(t: pa.DataType) -> bool:
    return pa.types.is_binary(t) or pa.types.is_large_binary(t)


def dropped(table: pa.Table, drop: set[str], drop_binary: set[str]) -> pa.Table:
    """``table`` without ``drop`` and the ``drop_binary`` columns that hold bytes."""
    names = [
        c for c in table.column_names
        if c in drop or (c in drop_binary and _is_bytes(table.schema.field(c).type))
    ]
    return table.drop_columns(names) if names else table


class StepActor:
    """One actor of a model step: builds the operator and calls ``setup`` once.

    Each step gets a subclass named after its operator (``EmbedActor``), which is what
    Ray's progress and dashboard show."""

    def __init__(self, planned: PlannedStep, stats: Any, id_column: str) -> None:
        began = time.perf_counter()
        self.planned, self.id_column = planned, id_column
        self.op = planned.build()
        self.op.unused = planned.drop & set(self.op.outputs())
        self.op.setup()
        self.reporter = Reporter(stats, planned.name)
        self.built = 1
        self.setup_seconds = time.perf_counter() - began

    def __call__(self, table: pa.Table) -> pa.Table:
        start = time.time()
        out = dropped(self.op(table), self.planned.drop, self.planned.drop_binary)
        self.reporter.report(self.op, io.unit_name(table.column(self.id_column)), start, self.built,
                             self.setup_seconds if self.built else 0.0)
        self.built = 0
        return out


# Operators of stateless stages, built once per worker process and kept for the next task
# of the same stage; keyed by the stage's fingerprint (``id`` of the callable would differ
# in every task, since Ray unpickles the callable anew) and bounded, so a long-lived worker
# serving many jobs does not keep every operator it ever built.
_TASK_OPS: OrderedDict[str, tuple[AnyOperator, Reporter]] = OrderedDict()
_TASK_OPS_MAX = 8


class StepTask:
    """One stateless stage of a :class:`StepTasks` group, run in Ray tasks; its operator is
    built once per worker process."""

    def __init__(self, planned: PlannedStep, stats: Any, id_column: str) -> None:
        self.planned, self.stats, self.id_column = planned, stats, id_column

    def operator(self) -> tuple[AnyOperator, Reporter, float | None]:
        """The operator, its reporter, and the seconds it took to build here (None: built by
        an earlier task in this worker process)."""
        key = f"{self.planned.step.fingerprint}|prepare={self.planned.prepare}"
        if key in _TASK_OPS:
            _TASK_OPS.move_to_end(key)
            op, reporter = _TASK_OPS[key]
            if reporter.stats != self.stats:  # an operator kept from an earlier run: report to this one's
                reporter = Reporter(self.stats, self.planned.name, sent=op.stats)
                _TASK_OPS[key] = (op, reporter)
            return op, reporter, None
        began = time.perf_counter()
        op = self.planned.build()
        op.unused = self.planned.drop & set(op.outputs())  # made here and read by nothing
        op.setup()
        _TASK_OPS[key] = (op, Reporter(self.stats, self.planned.name))
        while len(_TASK_OPS) > _TASK_OPS_MAX:
            _TASK_OPS.popitem(last=False)
        return op, _TASK_OPS[key][1], time.perf_counter() - began

    def run(self, tables: Iterable[pa.Table]) -> Iterator[pa.Table]:
        """The stage's outputs over ``tables``, in batches of its ``batch_size`` cut across
        them (the last may be short); an input of no rows is run once, for its columns."""
        batches = rebatch(tables, self.planned.batch_size)
        first = next(batches, None)
        if first is None:
            return
        op, reporter, setup = self.operator()  # once the stage before has given its first batch
        for batch in itertools.chain([first], batches):
            start = time.time()
            out = dropped(op(batch), self.planned.drop, self.planned.drop_binary)
            reporter.report(op, io.unit_name(batch.column(self.id_column)), start, int(setup is not None), setup or 0.0)
            setup = None
            yield out


def rebatch(tables: Iterable[pa.Table], size: int) -> Iterator[pa.Table]:
    """``tables`` as batches of ``size`` rows, cut across them and in order (the last may
    be short); if no rows come at all, the first table alone (for its columns)."""
    pending: list[pa.Table] = []
    rows, sent = 0, False
    first: pa.Table | None = None
    for table in tables:
        first = table if first is None else first
        if not table.num_rows:
            continue
        pending.append(table)
        rows += table.num_rows
        if rows >= size:
            whole = pa.concat_tables(pending, promote_options="permissive")
            cut = rows - rows % size
            for offset in range(0, cut, size):
                yield whole.slice(offset, size)
            pending, rows, sent = ([whole.slice(cut)] if rows > cut else []), rows - cut, True
    if rows:
        yield pa.concat_tables(pending, promote_options="permissive")
    elif not sent and first is not None:
        yield first


class StepTasks:
    """Consecutive stateless stages run as one Ray Data stage of tasks
    (``DecodeImage+EmbedPrepareTasks``): each block goes through them in turn, each stage
    cutting what the one before gave into its own batches.

    Ray Data would fuse such stages into one task too, but it re-forms blocks between them:
    decoded pixels (0.9 MB a row) were cut at the 32 MiB block cap into 37-row blocks, which
    the next stage batched one by one (32 + 5), and so the model actor after them ran
    batches of 32, 5, 32, 24 rather than 32 throughout. Here a stage's output goes straight
    into the next, so only the last stage's output is formed into blocks."""

    def __init__(self, planned: list[PlannedStep], stats: Any, id_column: str) -> None:
        self.stages = [StepTask(p, stats, id_column) for p in planned]

    def __call__(self, table: pa.Table) -> Iterator[pa.Table]:
        """The outputs of ``table`` (a whole block, or a bundle of batches) after every stage."""
        tables: Iterable[pa.Table] = [table]
        for stage in self.stages:
            tables = stage.run(tables)
        yield from tables


W = TypeVar("W", StepActor, StepTasks)


def worker_class(base: type[W], planned: list[PlannedStep]) -> type[W]:
    """``base`` subclassed under the name of the operators it runs (``EmbedActor``,
    ``DecodeImage+EmbedPrepareTasks``), which is what Ray's progress and dashboard show."""
    names = "+".join(p.step.operator_cls.__name__ + ("Prepare" if p.prepare else "") for p in planned)
    suffix = "Actor" if base is StepActor else "Tasks"
    return type(f"{names}{suffix}", (base,), {"__module__": __name__})
