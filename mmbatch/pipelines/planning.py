"""A job's plan before anything runs: each step's resources, columns and kind of worker,
and the checks against the cluster. No Ray here: ``mmbatch plan`` and the tests use it
without a cluster, and the executor turns the plan into Ray Data calls."""

from __future__ import annotations

from dataclasses import dataclass

from mmbatch.core.resources import Resources

from .spec import Job, Step


class JobRunError(RuntimeError):
    """The job cannot run on this cluster as configured."""


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

    @property
    def stateful(self) -> bool:
        """True: an actor pool (the model loads once per actor); False: Ray tasks."""
        return self.step.operator_cls.stateful

    def describe(self) -> str:
        r = self.resources
        kind = "actors" if self.stateful else "tasks"
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
    reserved = sum(p.resources.cpus * p.resources.pool[0] for p in planned if p.stateful)
    if reserved > cpus - 1 + 1e-9:
        raise JobRunError(
            f"the actor pools reserve {reserved:g} of the cluster's {cpus:g} CPUs at their minimum size, "
            "leaving less than one CPU for reading, decoding and writing: the job would hang. "
            "Lower resources.cpus (fractions are fine, e.g. 0.5) or the minimum concurrency of the model steps"
        )


def dropped_columns(job: Job, planned: list[PlannedStep]) -> set[str]:
    """Columns not written to ``rows/``: ``output.drop``, transient step outputs, and the
    file-bytes column of a raw-file input (``path`` names the file) unless
    ``output.keep_file_bytes`` is set or a metric reads it."""
    from mmbatch.core.metric import build_metric

    drop = set(job.output.drop) | {c for p in planned for c in p.transient}
    column = job.input.file_format.file_column
    if column is None or job.output.keep_file_bytes:
        return drop
    if any(column in build_metric(m).input_columns() for m in job.metrics):
        return drop
    return drop | {column}
