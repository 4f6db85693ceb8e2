"""``run_job``: a validated job from start to summary.

Before Ray starts: the output is probed for writing, the input is scanned (files, ids,
duplicates, corrupt shards), and an earlier run's manifest is held against this job
(``--resume`` refuses a changed job; an unchanged finished run is a no-op). Then the steps
run on Ray Data, every id is checked to be written exactly once, the metric passes run, and
``summary.json`` and ``manifest.json`` record the result."""

from __future__ import annotations

import time
from typing import Any

from . import io
from .executor import alive_nodes, cluster_resources, init_ray, paths_missing_on_nodes, run_steps
from .inputs import InputScan, scan_input
from .manifest import Manifest, read_manifest
from .metric_passes import run_metrics
from .planning import (
    JobRunError,
    PlannedStep,
    assign_drops,
    check_cluster,
    check_local_models,
    dropped_columns,
    plan_steps,
)
from .scaling import ScaleUp, describe_cluster, release
from .spec import Job, preflight
from .summary import RunSummary


def _refuse_changed(previous: Manifest, manifest: Manifest, path: str) -> None:
    changes = previous.step_changes(manifest)
    if changes:
        more = f" (and {len(changes) - 1} more changes)" if len(changes) > 1 else ""
        raise JobRunError(
            f"--resume refused: {changes[0]}{more}; {path} holds the rows of the earlier job. "
            "Pass --overwrite to replace them, or give this job a new output.path"
        )


def _intact(job: Job, previous: Manifest) -> bool:
    """The output still holds what the finished run wrote (no file lost since)."""
    rows, errors, twice = io.written_counts(job.output.path, job.input.id_column, job.output.storage_options)
    return not twice and previous.counts.get("rows") == rows and previous.counts.get("errors") == errors


def run_job(
    job: Job,
    *,
    address: str | None = None,
    resume: bool = False,
    overwrite: bool = False,
    retry_errors: bool = False,
    cpu_only: bool = False,
    num_cpus: int | None = None,
    num_gpus: int | None = None,
    progress: bool = False,
    verbose: bool = False,
    wait: float = 600.0,
) -> RunSummary:
    """Run ``job`` to completion and return its summary (also written to the output).

    ``resume`` continues an interrupted run of the same job (rows already in ``rows/`` or
    ``errors/`` are not redone); ``retry_errors`` also redoes the rows in ``errors/``. On an
    autoscaling cluster, ``wait`` bounds the seconds spent waiting for the nodes the steps
    need (requested from its autoscaler before they start)."""
    out, so = job.output, job.output.storage_options
    start = time.perf_counter()
    try:
        io.probe_writable(out.path, so)
    except OSError as exc:
        raise JobRunError(str(exc)) from None
    scan = scan_input(job.input)
    local_models = preflight(job)
    manifest = Manifest.of(job, scan)
    previous = read_manifest(out.path, so)
    continuing = resume or retry_errors
    if job.steps and (previous is not None or io.output_exists(out.path, so)):
        if overwrite:
            io.clear_output(out.path, so)
            previous = None
        elif not continuing:
            raise JobRunError(
                f"output {out.path} already holds rows/ or errors/; pass --resume to continue "
                "that run or --overwrite to replace it"
            )
        elif previous is not None:
            _refuse_changed(previous, manifest, out.path)
            if (
                previous.state == "complete" and not retry_errors and previous.metrics == manifest.metrics
                and previous.inputs == manifest.inputs and _intact(job, previous)
            ):
                last = io.read_json(out.path, io.SUMMARY, so)
                summary = RunSummary.from_dict(last) if last else RunSummary(job.name, out.path, 0, 0, 0, 0, 0.0)
                summary.note = "nothing left to do: the output is complete (no Ray started, no model loaded)"
                return summary
    if retry_errors:
        io.remove_files(out.path, io.ERRORS, so)  # their rows are redone (a crash now: --resume redoes them)
    done = frozenset(io.read_done_ids(out.path, job.input.id_column, so)) if continuing else frozenset()
    phases: dict[str, float] = {}
    end_phase(phases, "input scan", start)

    summary_code = init_ray(address, num_cpus, num_gpus, verbose)
    if address and local_models and alive_nodes() > 1:
        paths = sorted({path for refs in local_models.values() for _, path in refs})
        check_local_models(local_models, paths_missing_on_nodes(paths))
    planned = plan_steps(job, cpu_only)
    scale = check_cluster(planned, describe_cluster() if address else cluster_resources())
    try:
        if scale is not None:
            ScaleUp(scale.bundles, wait, scale.why).run(cluster_resources)
        end_phase(phases, "Ray start", start)
        manifest.save(out.path, so)  # only now: a job refused before any step ran leaves no run behind
        return _run_steps_and_metrics(job, scan, planned, done, manifest, summary_code, progress, start, phases)
    finally:
        if scale is not None:
            release()


def end_phase(phases: dict[str, float], name: str, start: float) -> None:
    """Record phase ``name`` as ending now: the seconds since ``start`` (``perf_counter``)
    that the phases before it do not account for."""
    phases[name] = time.perf_counter() - start - sum(phases.values())


def _run_steps_and_metrics(
    job: Job, scan: InputScan, planned: list[PlannedStep], done: frozenset[Any], manifest: Manifest,
    summary_code: str, progress: bool, start: float, phases: dict[str, float],
) -> RunSummary:
    """The steps and metric passes; ``phases`` holds the seconds spent before them, by name,
    and gets theirs."""
    out, so = job.output, job.output.storage_options
    summary = RunSummary(job.name, out.path, scan.rows, 0, 0, len(done), 0.0)
    summary.code = summary_code
    summary.phases = phases

    if job.steps:
        always, media = dropped_columns(job, planned)
        assign_drops(planned, always, media)
        result = run_steps(job, scan, planned, always, media, done, progress)
        end_phase(phases, "steps", start)
        summary.steps = result.steps
        summary.columns_dropped_at_writer = result.late_columns
        summary.rows, summary.errors, twice = io.written_counts(out.path, job.input.id_column, so)
        twice = [i for i in twice if i not in scan.duplicates]  # duplicate_ids: error writes each of their rows
        if twice:
            raise JobRunError(f"{len(twice)} ids are written more than once under {out.path}, e.g. {twice[:3]}")
        if summary.rows + summary.errors != scan.rows:
            raise JobRunError(
                f"counts do not add up: the input holds {scan.rows} rows, {out.path} holds "
                f"{summary.rows} rows + {summary.errors} error rows"
            )
        end_phase(phases, "output check", start)
    if job.metrics:
        summary.metrics = run_metrics(job)
        end_phase(phases, "metrics", start)
    summary.skipped_files = scan.skipped
    summary.wall_seconds = time.perf_counter() - start
    io.write_json(out.path, io.SUMMARY, summary.as_dict(), so)
    manifest.state = "complete"
    manifest.counts = {"input_rows": scan.rows, "rows": summary.rows, "errors": summary.errors}
    manifest.save(out.path, so)
    return summary


__all__ = ["JobRunError", "run_job"]
