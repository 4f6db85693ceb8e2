"""Corpus metrics on Ray Data: per-block partial states in Ray workers (with each metric's
own ``resources``: GPUs for FID and CLIPScore), merged once on the driver, then written
as ``metrics/metrics.parquet`` (and ``<name>-rows.parquet`` for per-row scores)."""

from __future__ import annotations

import pickle
import time
from typing import Any

import pyarrow as pa

from mmbatch.core.metric import AnyMetric, build_metric, check_requirements
from mmbatch.operators.base import ERROR

from . import io
from .executor import read_source
from .spec import Job

METRICS_SCHEMA = pa.schema([
    ("metric", pa.string()), ("value", pa.float64()), ("count", pa.int64()),
    ("errors_excluded", pa.int64()), ("job", pa.string()), ("inputs", pa.string()),
    ("time", pa.string()), ("details", pa.map_(pa.string(), pa.float64())),
])


def _partial(table: pa.Table, metric: AnyMetric, pass_index: int, broadcast: Any, columns: list[str]) -> pa.Table:
    batch = {c: table.column(c).to_pylist() for c in columns[1:]}
    batch["id"] = table.column(columns[0]).to_pylist()  # metrics see the row id as "id"
    state = metric.partial(batch, pass_index, broadcast)
    return pa.table({"state": pa.array([pickle.dumps(state)], type=pa.binary())})


# Rows per partial state of a metric on GPUs (Ray asks GPU workers for a batch size; CPU
# passes take whole blocks). Large enough that FID's 2048x2048 moment matrices stay few.
GPU_PASS_ROWS = 1024

# Metrics set up in this worker process, by config (a GPU metric loads its model once).
_READY: dict[str, AnyMetric] = {}


class MetricPass:
    """Partial states of one metric pass; ``setup`` runs once per worker process (tasks) or
    per actor (metrics that reserve GPUs)."""

    def __init__(self, metric: AnyMetric, pass_index: int, broadcast: Any, columns: list[str]) -> None:
        self.metric, self.pass_index, self.broadcast, self.columns = metric, pass_index, broadcast, columns

    def __call__(self, table: pa.Table) -> pa.Table:
        key = self.metric.config.model_dump_json()
        if key not in _READY:
            self.metric.setup()
            _READY[key] = self.metric
        return _partial(table, _READY[key], self.pass_index, self.broadcast, self.columns)


def metric_source(job: Job) -> tuple[Any, int]:
    """The rows metrics are computed on and the number of error rows excluded.

    After a model job: its written ``rows/`` (so a resumed job's metrics cover every row).
    Metrics-only job: the input, minus rows whose ``error`` is set."""
    import pyarrow.compute as pc
    import ray.data as rd

    if job.steps:
        out = job.output
        fs, root = io.filesystem(out.path, out.storage_options)
        rows_dir = f"{root}/{io.ROWS}"
        errors_dir = f"{root}/{io.ERRORS}"
        n_errors = 0
        if fs.exists(errors_dir):
            _, err_files = io.list_files(io.unstrip(fs, errors_dir), io.PARQUET, out.storage_options)
            n_errors = rd.read_parquet(err_files, filesystem=io.arrow_filesystem(fs), columns=[job.input.id_column]).count()
        _, files = io.list_files(io.unstrip(fs, rows_dir), io.PARQUET, out.storage_options)
        return rd.read_parquet(files, filesystem=io.arrow_filesystem(fs)), n_errors
    ds = read_source(job)

    def _errors(t: pa.Table) -> pa.Table:
        return pa.table({"n": [int(pc.sum(pc.is_valid(t.column(ERROR))).as_py() or 0)]})

    n_errors = int(sum(r["n"] for r in ds.map_batches(_errors, batch_format="pyarrow", batch_size=None).take_all()))
    ds = ds.map_batches(lambda t: t.filter(pc.is_null(t.column(ERROR))), batch_format="pyarrow", batch_size=None)
    return ds, n_errors


def _pass_states(ds: Any, metric: AnyMetric, pass_index: int, broadcast: Any, columns: list[str]) -> list[Any]:
    """One pass over ``ds``: the pickled partial state of every block, loaded."""
    from ray.data import ActorPoolStrategy

    r = metric.config.resources
    kwargs: dict[str, Any] = {"batch_format": "pyarrow", "batch_size": None, "num_cpus": r.cpus}
    if r.memory:
        kwargs["memory"] = r.memory
    args = (metric, pass_index, broadcast, columns)
    if r.gpus:  # an actor keeps its model on the GPU across blocks (GPU tasks would reload it)
        lo, hi = r.pool
        kwargs |= {"batch_size": GPU_PASS_ROWS, "num_gpus": r.gpus}
        mapped = ds.map_batches(MetricPass, fn_constructor_args=args,
                                compute=ActorPoolStrategy(min_size=lo, max_size=hi), **kwargs)  # fmt: skip
    else:
        mapped = ds.map_batches(MetricPass(*args), **kwargs)
    return [pickle.loads(s["state"]) for s in mapped.take_all()]


def run_metrics(job: Job) -> list[dict[str, Any]]:
    """Each metric: per-block partial states in Ray, merged once on the driver."""
    ds, n_errors = metric_source(job)
    results: list[dict[str, Any]] = []
    out = job.output
    fs, root = io.filesystem(out.path, out.storage_options)
    for cfg in job.metrics:
        metric = build_metric(cfg)
        check_requirements(metric)
        columns = list(dict.fromkeys([job.input.id_column, *metric.input_columns()]))
        broadcast = None
        merged = None
        for pass_index in range(metric.passes):
            merged = metric.merge(_pass_states(ds, metric, pass_index, broadcast, columns))
            if pass_index < metric.passes - 1:
                broadcast = metric.after_pass(pass_index, merged)
        result = metric.finalize(merged, broadcast)
        results.append({
            "metric": metric.output_name,
            "value": float(result.value),
            "count": int(result.count),
            "errors_excluded": n_errors,
            "job": job.name,
            "inputs": ",".join(metric.input_columns()),
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "details": {k: float(v) for k, v in result.details.items()},
        })
        if result.row_scores:
            io.write_parquet_atomic(pa.table(result.row_scores), fs, f"{root}/{io.METRICS}", f"{metric.output_name}-rows")  # replaces a rerun's
    if results:
        table = pa.Table.from_pylist([r | {"details": list(r["details"].items())} for r in results], schema=METRICS_SCHEMA)
        io.write_parquet_atomic(table, fs, f"{root}/{io.METRICS}", "metrics")
    return results
