"""The only module that touches Ray: a ``Job`` becomes one Ray Data plan.

read (Parquet or raw files) -> prepare (id, error column, resume filter) -> one
``map_batches`` per step (actor pools for model steps, tasks for stateless ones) ->
a datasink that writes ``rows/`` and ``errors/`` in one pass and counts both.
"""

from __future__ import annotations

import logging
import os
import pickle
import time
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from mmbatch.operators.base import ERROR, Operator, Resources
from mmbatch.operators.columns import is_tensor_type

from . import io
from .spec import FILE_COLUMNS, Job, JobSpecError, Step

log = logging.getLogger("mmbatch")


class JobRunError(RuntimeError):
    """The job cannot run on this cluster as configured."""


# -- Ray session -----------------------------------------------------------------------
def init_ray(address: str | None = None, num_cpus: int | None = None, num_gpus: float | None = None) -> None:
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


# -- planning --------------------------------------------------------------------------
def effective_resources(step: Step, cpu_only: bool) -> Resources:
    res = step.resources
    return res.model_copy(update={"gpus": 0.0}) if cpu_only and res.gpus else res


@dataclass
class PlannedStep:
    step: Step
    resources: Resources
    inputs: dict[str, str]
    outputs: dict[str, str]
    transient: set[str]

    def describe(self) -> str:
        r = self.resources
        kind = "actors" if self.step.operator_cls.stateful else "tasks"
        lo, hi = r.pool
        pool = f"{lo}" if lo == hi else f"{lo}..{hi}"
        res = f"cpus={r.cpus:g} gpus={r.gpus:g}" + (f" memory={r.memory}" if r.memory else "")
        lines = [
            f"{self.step.label}: {kind} x{pool}, {res}, batch_size={self.step.batch_size}",
            "    reads:  " + (", ".join(self.inputs) or "-"),
            "    writes: " + (", ".join(
                f"{c}{' (transient)' if c in self.transient else ''}" for c in self.outputs) or "-"),
        ]
        return "\n".join(lines)


def plan_steps(job: Job, cpu_only: bool = False) -> list[PlannedStep]:
    planned = []
    for step in job.steps:
        op = step.build()
        planned.append(
            PlannedStep(step, effective_resources(step, cpu_only), op.inputs(), op.outputs(), op.transient_outputs())
        )
    return planned


def check_cluster(planned: list[PlannedStep], total: dict[str, float]) -> None:
    """Fail fast on requests this cluster can never satisfy (instead of hanging)."""
    gpus, cpus = total.get("GPU", 0.0), total.get("CPU", 0.0)
    for p in planned:
        r = p.resources
        if r.gpus > gpus:
            raise JobRunError(
                f"{p.step.label} asks for {r.gpus:g} GPU per worker but the Ray cluster has "
                f"{gpus:g} GPUs; run with --cpu (or steps.{p.step.index}.resources.gpus=0) to use CPUs"
            )
        if r.cpus > cpus:
            raise JobRunError(f"{p.step.label} asks for {r.cpus:g} CPUs per worker; the cluster has {cpus:g}")
    reserved = sum(p.resources.cpus * p.resources.pool[0] for p in planned if p.step.operator_cls.stateful)
    if reserved > cpus - 1 + 1e-9:
        raise JobRunError(
            f"the actor pools reserve {reserved:g} of the cluster's {cpus:g} CPUs at their minimum size, "
            "leaving less than one CPU for reading, decoding and writing: the job would hang. "
            "Lower resources.cpus (fractions are fine, e.g. 0.5) or the minimum concurrency of the model steps"
        )


# -- Ray Data callables ------------------------------------------------------------------
def _record(stats: Any, op: Operator, t0: dict[str, float]) -> None:
    """Send this worker's counters since the last report to the stats actor."""
    delta = {k: op.stats[k] - t0.get(k, 0) for k in op.stats}
    t0.update(op.stats)
    if stats is not None:
        stats.record.remote(op.label, delta)


class _StepActor:
    """One actor of a model step: builds the operator and calls ``setup`` once."""

    def __init__(self, step: Step, resources: Resources, stats: Any) -> None:
        self.op = step.operator_cls(step.config, resources, step.label)
        self.op.setup()
        self.stats, self.sent = stats, {}

    def __call__(self, table: pa.Table) -> pa.Table:
        out = self.op(table)
        _record(self.stats, self.op, self.sent)
        return out


_TASK_OPS: dict[int, tuple[Operator, dict[str, float]]] = {}


class _StepTask:
    """A stateless step run as Ray tasks; the operator is built once per worker process."""

    def __init__(self, step: Step, resources: Resources, stats: Any) -> None:
        self.step, self.resources, self.stats = step, resources, stats

    def __call__(self, table: pa.Table) -> pa.Table:
        key = id(self)
        if key not in _TASK_OPS:
            op = self.step.operator_cls(self.step.config, self.resources, self.step.label)
            op.setup()
            _TASK_OPS[key] = (op, {})
        op, sent = _TASK_OPS[key]
        out = op(table)
        _record(self.stats, op, sent)
        return out


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


def _droppable(table: pa.Table, drop: set[str]) -> list[str]:
    return [n for n in table.column_names if n in drop or is_tensor_type(table.schema.field(n).type)]


def _make_sink(out_path: str, storage_options: dict[str, Any], drop: set[str], step_outputs: set[str]):  # noqa: ANN202
    from ray.data import Datasink

    class SplitParquetSink(Datasink):
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


# -- running ---------------------------------------------------------------------------
@dataclass
class RunSummary:
    job: str
    output: str
    input_rows: int
    rows: int
    errors: int
    skipped: int
    wall_seconds: float
    steps: dict[str, dict[str, float]] = field(default_factory=dict)
    metrics: list[dict[str, Any]] = field(default_factory=list)

    @property
    def rows_per_second(self) -> float:
        return self.input_rows / self.wall_seconds if self.wall_seconds else 0.0

    def as_dict(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d["rows_per_second"] = self.rows_per_second
        return d

    def render(self) -> str:
        if not self.steps and self.metrics:  # a metrics-only (benchmark) run
            n = max(m["count"] + m.get("errors_excluded", 0) for m in self.metrics)
            lines = [f"job {self.job}: metrics over {n} input rows", f"wall time {self.wall_seconds:.1f} s"]
            lines += [self._metric_line(m) for m in self.metrics]
            lines.append(f"outputs: {self.output}/{io.METRICS}/, {self.output}/{io.SUMMARY}")
            return "\n".join(lines)
        lines = [
            f"job {self.job}: {self.input_rows} input rows -> {self.rows} rows + {self.errors} error rows"
            + (f" ({self.skipped} already done, skipped)" if self.skipped else ""),
            f"wall time {self.wall_seconds:.1f} s, {self.rows_per_second:.2f} rows/s",
        ]
        for label, s in self.steps.items():
            busy = s.get("seconds", 0.0)
            rate = s["rows"] / busy if busy else 0.0
            lines.append(
                f"  {label}: {int(s['rows'])} rows, {int(s['errors'])} error rows, "
                f"{rate:.2f} rows/s per worker-second"
            )
        lines += [self._metric_line(m) for m in self.metrics]
        metrics = f"{self.output}/{io.METRICS}/, " if self.metrics else ""
        lines.append(f"outputs: {self.output}/rows/, {self.output}/errors/, {metrics}{self.output}/{io.SUMMARY}")
        return "\n".join(lines)

    @staticmethod
    def _metric_line(m: dict[str, Any]) -> str:
        excluded = f", {m['errors_excluded']} error rows excluded" if m.get("errors_excluded") else ""
        return f"  metric {m['metric']}: {m['value']!r} over {m['count']} rows{excluded}"


def _stats_actor():  # noqa: ANN202
    import ray

    @ray.remote(num_cpus=0)
    class StepStats:
        def __init__(self) -> None:
            self.by_step: dict[str, dict[str, float]] = {}

        def record(self, label: str, delta: dict[str, float]) -> None:
            s = self.by_step.setdefault(label, {"rows": 0, "errors": 0, "seconds": 0.0})
            for k, v in delta.items():
                s[k] = s.get(k, 0) + v

        def get(self) -> dict[str, dict[str, float]]:
            return self.by_step

    return StepStats.remote()


def _raw_file_column(job: Job) -> set[str]:
    """The file-bytes column of a folder input (``image``/``audio``/``video``): not written
    (``path`` names the file) unless ``output.keep_file_bytes`` is set or a metric reads it."""
    from .metrics import build_metric

    column = FILE_COLUMNS.get(job.input.format)
    if column is None or job.output.keep_file_bytes:
        return set()
    if any(column in build_metric(m).input_columns() for m in job.metrics):
        return set()
    return {column}


# ``max_calls=0`` is Ray's default for CPU tasks. Stating it makes the remote args of the
# CPU task steps (reading, decoding) differ from the model actors', and Ray Data fuses two
# steps only when those are equal: so decoding stays in parallel tasks instead of running
# serially inside the model actor, which would then wait on it between batches.
CPU_TASK: dict[str, Any] = {"max_calls": 0}


def read_source(job: Job, done: frozenset[Any] | None = None) -> Any:
    """The job's input as a Ray Dataset with ids checked and an ``error`` column."""
    import ray.data as rd

    inp = job.input
    fs, files = io.list_files(inp.path, inp.format, inp.storage_options)
    afs = io.arrow_filesystem(fs)
    file_column = FILE_COLUMNS.get(inp.format)
    if file_column is None:
        ds = rd.read_parquet(files, filesystem=afs, columns=inp.columns)
    else:
        ds = rd.read_binary_files(files, filesystem=afs, include_paths=True)
        if not io.is_local(fs):
            ds = ds.map_batches(
                lambda t: t.set_column(
                    t.column_names.index("path"), "path", pa.array([io.unstrip(fs, p) for p in t.column("path").to_pylist()])
                ),
                batch_format="pyarrow",
            )
    if inp.limit:
        ds = ds.limit(inp.limit)
    return ds.map_batches(
        _prepare,
        batch_format="pyarrow",
        fn_args=(inp.id_column, file_column, done),
        batch_size=None,
        **CPU_TASK,
    )


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
        if p.step.operator_cls.stateful:
            lo, hi = r.pool
            ds = ds.map_batches(
                _StepActor, fn_constructor_args=args, compute=ActorPoolStrategy(min_size=lo, max_size=hi), **kwargs
            )
        else:
            if r.pool[1] > 1 or not isinstance(r.concurrency, int) or r.concurrency != 1:
                kwargs["concurrency"] = r.pool[1]
            ds = ds.map_batches(_StepTask(*args), **kwargs, **({} if r.gpus else CPU_TASK))
    return ds


def run_job(
    job: Job,
    *,
    address: str | None = None,
    resume: bool = False,
    overwrite: bool = False,
    cpu_only: bool = False,
    num_cpus: int | None = None,
    num_gpus: float | None = None,
) -> RunSummary:
    """Run ``job`` to completion and return its summary (also written to the output)."""
    import ray

    out = job.output
    start = time.perf_counter()
    if job.steps and io.output_exists(out.path, out.storage_options):
        if overwrite:
            io.clear_output(out.path, out.storage_options)
        elif not resume:
            raise JobRunError(
                f"output {out.path} already holds rows/ or errors/; pass --resume to continue "
                "that run or --overwrite to replace it"
            )
    done = frozenset(io.read_done_ids(out.path, job.input.id_column, out.storage_options)) if resume else frozenset()
    init_ray(address, num_cpus, num_gpus)
    planned = plan_steps(job, cpu_only)
    check_cluster(planned, ray.cluster_resources())

    summary = RunSummary(job.name, out.path, 0, 0, 0, len(done), 0.0)
    if job.steps:
        stats = _stats_actor()
        ds = add_steps(read_source(job, done or None), planned, stats)
        drop = set(out.drop) | {c for p in planned for c in p.transient} | _raw_file_column(job)
        outputs = {c for p in planned for c in p.outputs} - {ERROR}
        sink = _make_sink(out.path, out.storage_options, drop, outputs)
        ds.write_datasink(sink)
        summary.rows, summary.errors = sink.counts["rows"], sink.counts["errors"]
        summary.input_rows = summary.rows + summary.errors
        summary.steps = ray.get(stats.get.remote())
        ray.kill(stats)
    if job.metrics:
        summary.metrics = run_metrics(job)
    summary.wall_seconds = time.perf_counter() - start
    io.write_json(out.path, io.SUMMARY, summary.as_dict(), out.storage_options)
    return summary


# -- metrics ----------------------------------------------------------------------------
def _metric_partial(table: pa.Table, metric: Any, pass_index: int, broadcast: Any, columns: list[str]) -> pa.Table:
    batch = {c: table.column(c).to_pylist() for c in columns[1:]}
    batch["id"] = table.column(columns[0]).to_pylist()  # metrics see the row id as "id"
    state = metric.partial(batch, pass_index, broadcast)
    return pa.table({"state": pa.array([pickle.dumps(state)], type=pa.binary())})


_METRICS: dict[str, Any] = {}


class _MetricTask:
    """Partial states of one metric pass, as Ray tasks; ``setup`` runs once per worker process."""

    def __init__(self, metric: Any, pass_index: int, broadcast: Any, columns: list[str]) -> None:
        self.metric, self.pass_index, self.broadcast, self.columns = metric, pass_index, broadcast, columns

    def __call__(self, table: pa.Table) -> pa.Table:
        key = self.metric.config.model_dump_json()
        if key not in _METRICS:
            self.metric.setup()
            _METRICS[key] = self.metric
        return _metric_partial(table, _METRICS[key], self.pass_index, self.broadcast, self.columns)


def metric_source(job: Job) -> tuple[Any, int]:
    """The rows metrics are computed on and the number of error rows excluded.

    After a model job: its written ``rows/`` (so a resumed job's metrics cover every row).
    Metrics-only job: the input, minus rows whose ``error`` is set."""
    import ray.data as rd

    if job.steps:
        out = job.output
        fs, root = io.filesystem(out.path, out.storage_options)
        rows_dir = f"{root}/{io.ROWS}"
        errors_dir = f"{root}/{io.ERRORS}"
        n_errors = 0
        if fs.exists(errors_dir):
            _, err_files = io.list_files(io.unstrip(fs, errors_dir), "parquet", out.storage_options)
            n_errors = rd.read_parquet(err_files, filesystem=io.arrow_filesystem(fs), columns=[job.input.id_column]).count()
        _, files = io.list_files(io.unstrip(fs, rows_dir), "parquet", out.storage_options)
        return rd.read_parquet(files, filesystem=io.arrow_filesystem(fs)), n_errors
    ds = read_source(job)
    import pyarrow.compute as pc

    def _errors(t: pa.Table) -> pa.Table:
        return pa.table({"n": [int(pc.sum(pc.is_valid(t.column(ERROR))).as_py() or 0)]})

    n_errors = int(sum(r["n"] for r in ds.map_batches(_errors, batch_format="pyarrow", batch_size=None).take_all()))
    ds = ds.map_batches(
        lambda t: t.filter(pc.is_null(t.column(ERROR))), batch_format="pyarrow", batch_size=None
    )
    return ds, n_errors


def run_metrics(job: Job) -> list[dict[str, Any]]:
    """Each metric: per-block partial states in Ray, merged once on the driver."""
    from .metrics import build_metric, check_requirements

    ds, n_errors = metric_source(job)
    results = []
    out = job.output
    fs, root = io.filesystem(out.path, out.storage_options)
    for cfg in job.metrics:
        metric = build_metric(cfg)
        check_requirements(metric)
        columns = list(dict.fromkeys([job.input.id_column, *metric.input_columns()]))
        broadcast = None
        merged = None
        for pass_index in range(metric.passes):
            states = ds.map_batches(
                _MetricTask(metric, pass_index, broadcast, columns),
                batch_format="pyarrow",
                batch_size=None,
                num_cpus=1,
            ).take_all()
            merged = metric.merge([pickle.loads(s["state"]) for s in states])
            if pass_index < metric.passes - 1:
                broadcast = metric.after_pass(pass_index, merged)
        result = metric.finalize(merged, broadcast)
        row = {
            "metric": metric.output_name,
            "value": float(result.value),
            "count": int(result.count),
            "errors_excluded": n_errors,
            "job": job.name,
            "inputs": ",".join(metric.input_columns()),
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "details": {k: float(v) for k, v in result.details.items()},
        }
        results.append(row)
        if result.row_scores:
            io.write_parquet_atomic(pa.table(result.row_scores), fs, f"{root}/{io.METRICS}", f"{metric.output_name}-rows")
    if results:
        schema = pa.schema([
            ("metric", pa.string()), ("value", pa.float64()), ("count", pa.int64()),
            ("errors_excluded", pa.int64()), ("job", pa.string()), ("inputs", pa.string()),
            ("time", pa.string()), ("details", pa.map_(pa.string(), pa.float64())),
        ])
        table = pa.Table.from_pylist(
            [r | {"details": list(r["details"].items())} for r in results], schema=schema
        )
        io.write_parquet_atomic(table, fs, f"{root}/{io.METRICS}", "metrics")
    return results
