"""The Ray Data adapter for a job's steps: read -> prepare (id, error column, resume filter)
-> one ``map_batches`` per step (actor pools for model steps, tasks for stateless ones) ->
a datasink that writes ``rows/`` and ``errors/`` in one pass and counts both.

Operators never see Ray; every Ray call for the steps is here (metric passes are in
:mod:`mmbatch.pipelines.metric_passes`).
"""

from __future__ import annotations

import os
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from mmbatch.core.columns import is_tensor_type
from mmbatch.operators.base import ERROR, AnyOperator

from . import io
from .planning import PlannedStep
from .spec import Job, JobSpecError, Step


# -- Ray session -----------------------------------------------------------------------
def init_ray(address: str | None = None, num_cpus: int | None = None, num_gpus: int | None = None) -> None:
    """Connect to ``address`` (``auto``, ``ray://host:port``) or start a local Ray in-process."""
    import ray

    if ray.is_initialized():
        return
    os.environ.setdefault("RAY_DEDUP_LOGS", "1")
    kwargs: dict[str, Any] = {"include_dashboard": False, "configure_logging": False}
    if address:
        ray.init(address=address, **kwargs)
    else:
        ray.init(num_cpus=num_cpus, num_gpus=num_gpus, **kwargs)


def cluster_resources() -> dict[str, float]:
    import ray

    return {k: float(v) for k, v in ray.cluster_resources().items()}


# -- per-step statistics -------------------------------------------------------------------
class _StepStats:
    """Counters of every step, sent by the workers as deltas (one Ray actor per run)."""

    def __init__(self) -> None:
        self.by_step: dict[str, dict[str, float]] = {}
        self.workers: dict[str, set[str]] = {}

    def record(self, label: str, worker: str, delta: dict[str, float]) -> None:
        s = self.by_step.setdefault(label, {"rows": 0, "errors": 0, "seconds": 0.0, "builds": 0})
        for k, v in delta.items():
            s[k] = s.get(k, 0) + v
        self.workers.setdefault(label, set()).add(worker)

    def get(self) -> dict[str, dict[str, float]]:
        return {label: s | {"workers": len(self.workers.get(label, ()))} for label, s in self.by_step.items()}


def _stats_actor() -> Any:
    import ray

    return ray.remote(num_cpus=0)(_StepStats).remote()


class _Reporter:
    """Sends one worker's counters since its last report to the stats actor."""

    def __init__(self, stats: Any, label: str) -> None:
        self.stats, self.label = stats, label
        self.worker = f"{os.uname().nodename}:{os.getpid()}"
        self.sent: dict[str, float] = {}

    def report(self, op: AnyOperator, builds: int = 0) -> None:
        delta: dict[str, float] = {k: op.stats[k] - self.sent.get(k, 0) for k in op.stats}
        self.sent.update(op.stats)
        if builds:
            delta["builds"] = builds
        if self.stats is not None:
            self.stats.record.remote(self.label, self.worker, delta)


# -- Ray Data callables ------------------------------------------------------------------
class StepActor:
    """One actor of a model step: builds the operator and calls ``setup`` once.

    Each step gets a subclass named after its operator (``EmbedActor``), which is what
    Ray's progress and dashboard show."""

    def __init__(self, step: Step, resources: Any, stats: Any) -> None:
        self.op = step.operator_cls(step.config, resources, step.label)
        self.op.setup()
        self.reporter = _Reporter(stats, step.label)
        self.built = 1

    def __call__(self, table: pa.Table) -> pa.Table:
        out = self.op(table)
        self.reporter.report(self.op, self.built)
        self.built = 0
        return out


# Operators of stateless steps, built once per worker process and kept for the next task
# of the same step; keyed by the step's fingerprint (``id`` of the callable would differ
# in every task, since Ray unpickles the callable anew) and bounded, so a long-lived worker
# serving many jobs does not keep every operator it ever built.
_TASK_OPS: OrderedDict[str, tuple[AnyOperator, _Reporter]] = OrderedDict()
_TASK_OPS_MAX = 8


class StepTask:
    """A stateless step run as Ray tasks (``DecodeImageTask``); the operator is built once
    per worker process."""

    def __init__(self, step: Step, resources: Any, stats: Any) -> None:
        self.step, self.resources, self.stats = step, resources, stats

    def operator(self) -> tuple[AnyOperator, _Reporter, int]:
        key = self.step.fingerprint
        if key in _TASK_OPS:
            _TASK_OPS.move_to_end(key)
            return (*_TASK_OPS[key], 0)
        op = self.step.operator_cls(self.step.config, self.resources, self.step.label)
        op.setup()
        _TASK_OPS[key] = (op, _Reporter(self.stats, self.step.label))
        while len(_TASK_OPS) > _TASK_OPS_MAX:
            _TASK_OPS.popitem(last=False)
        return op, _TASK_OPS[key][1], 1

    def __call__(self, table: pa.Table) -> pa.Table:
        op, reporter, built = self.operator()
        out = op(table)
        reporter.report(op, built)
        return out


def worker_class(step: Step) -> type[StepActor] | type[StepTask]:
    """``StepActor``/``StepTask`` subclassed under the operator's name (``EmbedActor``)."""
    base: type[StepActor] | type[StepTask] = StepActor if step.operator_cls.stateful else StepTask
    suffix = "Actor" if base is StepActor else "Task"
    return type(f"{step.operator_cls.__name__}{suffix}", (base,), {"__module__": __name__})


def _prepare(table: pa.Table, id_column: str, file_column: str | None, done: frozenset[Any] | None) -> pa.Table:
    """Name raw-file columns, check the id, add the error column, drop finished rows."""
    if file_column is not None and "bytes" in table.column_names:
        table = table.rename_columns([file_column if c == "bytes" else c for c in table.column_names])
    if id_column not in table.column_names:
        raise JobSpecError(f"input.id_column '{id_column}' is not in the input (columns: {table.column_names})")
    if table.column(id_column).null_count:
        raise JobSpecError(f"input.id_column '{id_column}' has null ids; every row needs an id")
    if ERROR not in table.column_names:
        table = table.append_column(ERROR, pa.nulls(table.num_rows, pa.string()))
    if done:
        import pyarrow.compute as pc

        keep = pc.invert(pc.is_in(table.column(id_column), value_set=pa.array(list(done))))
        table = table.filter(keep)
    return table


# ``max_calls=0`` is Ray's default for CPU tasks. Stating it makes the remote args of the
# CPU task steps (reading, decoding) differ from the model actors', and Ray Data fuses two
# steps only when those are equal: so decoding stays in parallel tasks instead of running
# serially inside the model actor, which would then wait on it between batches.
CPU_TASK: dict[str, Any] = {"max_calls": 0}


def read_source(job: Job, done: frozenset[Any] | None = None) -> Any:
    """The job's input as a Ray Dataset with ids checked and an ``error`` column."""
    inp = job.input
    fmt = inp.file_format
    fs, files = io.list_files(inp.path, fmt.extensions, inp.storage_options)
    ds = fmt.reader(files, io.arrow_filesystem(fs), inp.columns)
    if fmt.file_column is not None and not io.is_local(fs):
        ds = ds.map_batches(_FullPaths(fs), batch_format="pyarrow")
    if inp.limit:
        ds = ds.limit(inp.limit)
    return ds.map_batches(
        _prepare,
        batch_format="pyarrow",
        fn_args=(inp.id_column, fmt.file_column, done),
        batch_size=None,
        **CPU_TASK,
    )


@dataclass
class _FullPaths:
    """Object-store ``path`` values as full URLs (``bucket/key`` -> ``s3://bucket/key``)."""

    fs: Any

    def __call__(self, t: pa.Table) -> pa.Table:
        paths = pa.array([io.unstrip(self.fs, p) for p in t.column("path").to_pylist()])
        return t.set_column(t.column_names.index("path"), "path", paths)


def add_steps(ds: Any, planned: list[PlannedStep], stats: Any) -> Any:
    from ray.data import ActorPoolStrategy

    for p in planned:
        r = p.resources
        kwargs: dict[str, Any] = {
            "batch_size": p.step.batch_size,
            "batch_format": "pyarrow",
            "num_cpus": r.cpus,
        }
        if r.gpus:
            kwargs["num_gpus"] = r.gpus
        if r.memory:
            kwargs["memory"] = r.memory
        args = (p.step, r, stats)
        cls = worker_class(p.step)
        if p.stateful:
            lo, hi = r.pool
            ds = ds.map_batches(cls, fn_constructor_args=args, compute=ActorPoolStrategy(min_size=lo, max_size=hi), **kwargs)
        else:
            if r.pool[1] > 1 or not isinstance(r.concurrency, int) or r.concurrency != 1:
                kwargs["concurrency"] = r.pool[1]
            ds = ds.map_batches(cls(*args), **kwargs, **({} if r.gpus else CPU_TASK))
    return ds


def _droppable(table: pa.Table, drop: set[str]) -> list[str]:
    return [n for n in table.column_names if n in drop or is_tensor_type(table.schema.field(n).type)]


def _make_sink(out_path: str, storage_options: dict[str, Any], drop: set[str], step_outputs: set[str]) -> Any:
    from ray.data import Datasink

    class SplitParquetSink(Datasink[dict[str, int]]):
        """Writes each write task's blocks as one file under rows/ and one under errors/.

        errors/ holds a failed row's input columns and ``error`` (which names the step and
        the cause), never step outputs: a row that failed at step 2 would otherwise carry
        typed step-1 columns in one file and all-null ones in the next, and the files of
        errors/ could not be read back as one table."""

        def __init__(self) -> None:
            self.counts = {"rows": 0, "errors": 0, "files": 0}

        def get_name(self) -> str:
            return "MmbatchParquet"

        def write(self, blocks: Any, ctx: Any) -> dict[str, int]:
            import pyarrow.compute as pc

            tables = [b if isinstance(b, pa.Table) else pa.Table.from_pandas(b) for b in blocks]
            tables = [t for t in tables if t.num_rows]
            counts = {"rows": 0, "errors": 0, "files": 0}
            if not tables:
                return counts
            table = pa.concat_tables(tables, promote_options="permissive")
            table = table.drop_columns(_droppable(table, drop))
            fs, root = io.filesystem(out_path, storage_options)
            failed = pc.is_valid(table.column(ERROR))
            parts = {
                io.ROWS: table.filter(pc.invert(failed)).drop_columns([ERROR]),
                io.ERRORS: table.filter(failed).drop_columns([c for c in table.column_names if c in step_outputs]),
            }
            for sub, part in parts.items():
                if part.num_rows:
                    io.write_parquet_atomic(part, fs, f"{root}/{sub}", f"part-{ctx.task_idx:05d}")
                    counts["files"] += 1
            counts["rows"] = parts[io.ROWS].num_rows
            counts["errors"] = parts[io.ERRORS].num_rows
            return counts

        def on_write_complete(self, write_result: Any) -> None:
            for r in write_result.write_returns:
                for k in self.counts:
                    self.counts[k] += r[k]

    return SplitParquetSink()


@dataclass
class StepsResult:
    rows: int
    errors: int
    steps: dict[str, dict[str, float]]


def run_steps(job: Job, planned: list[PlannedStep], drop: set[str], done: frozenset[Any]) -> StepsResult:
    """Run the job's steps over its input (minus ``done`` ids) and write rows/ and errors/."""
    import ray

    out = job.output
    stats = _stats_actor()
    ds = add_steps(read_source(job, done or None), planned, stats)
    outputs = {c for p in planned for c in p.outputs} - {ERROR}
    sink = _make_sink(out.path, out.storage_options, drop, outputs)
    ds.write_datasink(sink)
    steps = ray.get(stats.get.remote())
    ray.kill(stats)
    return StepsResult(sink.counts["rows"], sink.counts["errors"], steps)
