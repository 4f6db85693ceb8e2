"""``run_job``: a validated job from start to summary -- output checks, resume, the steps
on Ray Data, the metric passes, and ``summary.json``."""

from __future__ import annotations

import time

from . import io
from .executor import cluster_resources, init_ray, run_steps
from .metric_passes import run_metrics
from .planning import JobRunError, assign_drops, check_cluster, dropped_columns, plan_steps
from .spec import Job
from .summary import RunSummary


def run_job(
    job: Job,
    *,
    address: str | None = None,
    resume: bool = False,
    overwrite: bool = False,
    cpu_only: bool = False,
    num_cpus: int | None = None,
    num_gpus: int | None = None,
) -> RunSummary:
    """Run ``job`` to completion and return its summary (also written to the output)."""
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
    check_cluster(planned, cluster_resources())

    summary = RunSummary(job.name, out.path, 0, 0, 0, len(done), 0.0)
    if job.steps:
        always, media = dropped_columns(job, planned)
        assign_drops(planned, always, media)
        result = run_steps(job, planned, always, media, done)
        summary.rows, summary.errors, summary.steps = result.rows, result.errors, result.steps
        summary.columns_dropped_at_writer = result.late_columns
        summary.input_rows = summary.rows + summary.errors
    if job.metrics:
        summary.metrics = run_metrics(job)
    summary.wall_seconds = time.perf_counter() - start
    io.write_json(out.path, io.SUMMARY, summary.as_dict(), out.storage_options)
    return summary


__all__ = ["JobRunError", "run_job"]
