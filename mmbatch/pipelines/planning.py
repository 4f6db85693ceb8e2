"""A job's plan before anything runs: each step's resources, columns and kind of worker,
and the checks against the cluster. No Ray here: ``mmbatch plan`` and the tests use it
without a cluster, and the executor turns the plan into Ray Data calls."""

from __future__ import annotations

from collections.abc import Mapping, Set
from dataclasses import dataclass, field

from mmbatch.core.resources import Resources
from mmbatch.operators.base import AnyOperator

from .scaling import ClusterView, describe, shortfall, summed
from .spec import Job, Step


class JobRunError(RuntimeError):
    """The job cannot run on this cluster as configured."""


def effective_resources(step: Step, cpu_only: bool) -> Resources:
    res = step.resources
    return res.model_copy(update={"gpus": 0.0}) if cpu_only and res.gpus else res


# What a prepare stage reserves: one CPU per task, as many tasks as there are CPUs.
PREPARE_RESOURCES = Resources(cpus=1)


@dataclass
class PlannedStep:
    """One Ray Data stage: a step, or the prepare stage a model step runs ahead of itself."""

    step: Step
    resources: Resources
    inputs: dict[str, str]
    outputs: dict[str, str]
    transient: set[str]
    prepare: bool = False
    """True: the step's ``prepare`` (stateless CPU tasks); False: the step itself."""
    drop: set[str] = field(default_factory=set)
    """Columns this stage drops from its output: their last reader is this stage."""
    drop_binary: set[str] = field(default_factory=set)
    """Columns this stage drops from its output where they hold bytes (encoded media)."""
    batch: int | None = None
    """The step's batch size as planned (a prepare stage's: its model's, on the model's
    resources); None: the step's on this stage's resources."""

    @property
    def stateful(self) -> bool:
        """True: an actor pool (the model loads once per actor); False: Ray tasks."""
        return self.step.operator_cls.stateful and not self.prepare

    @property
    def name(self) -> str:
        """The step's label; a prepare stage's is ``steps[1] embed: prepare``."""
        return f"{self.step.label}: prepare" if self.prepare else self.step.label

    @property
    def batch_size(self) -> int:
        return self.batch if self.batch is not None else self.step.batch_size_on(self.resources)

    def build(self) -> AnyOperator:
        """The operator this stage runs (built without ``setup``: no model is loaded)."""
        op = self.step.build()
        if self.prepare:
            stage = op.preparer()
            assert stage is not None, f"{self.step.label} has no prepare stage"
            return stage
        return op

    def describe(self) -> str:
        r = self.resources
        kind = "actors" if self.stateful else "tasks"
        lo, hi = r.pool
        pool = f"{lo}" if lo == hi else f"{lo}..{hi}"
        if not self.stateful and lo == hi == 1 and self.prepare:
            pool = "N"  # as many tasks as there are free CPUs
        res = f"cpus={r.cpus:g} gpus={r.gpus:g}" + (f" memory={r.memory}" if r.memory else "")
        lines = [
            f"{self.name}: {kind} x{pool}, {res}, batch_size={self.batch_size}",
            "    reads:  " + (", ".join(self.inputs) or "-"),
            "    writes: " + (", ".join(
                f"{c}{' (transient)' if c in self.transient else ''}" for c in self.outputs) or "-"),
        ]
        if self.drop or self.drop_binary:
            lines.append("    drops:  " + ", ".join(sorted(self.drop | self.drop_binary)))
        return "\n".join(lines)


def plan_steps(job: Job, cpu_only: bool = False) -> list[PlannedStep]:
    """The stages of ``job``: each step, preceded by its prepare stage when it has one, each
    dropping the transient columns whose last reader it is."""
    planned: list[PlannedStep] = []
    available = list(job.input.file_format.columns or job.input.columns or [])
    for step in job.steps:
        op = step.build()
        optional = op.optional_inputs()
        resources = effective_resources(step, cpu_only)
        batch = step.batch_size_on(resources)
        stage = op.preparer()
        if stage is not None:
            planned.append(PlannedStep(
                step, PREPARE_RESOURCES, stage.inputs(), op.prepared(), set(op.prepared()), prepare=True, batch=batch,
            ))
            available += list(op.prepared())
        reads = {c: op.inputs().get(c, "") or op.prepared().get(c, "") for c in op.read_columns(available)}
        planned.append(PlannedStep(
            step, resources, reads | optional, op.outputs(), op.transient_outputs(), batch=batch,
        ))
        available += list(op.outputs())
    return planned


def assign_drops(planned: list[PlannedStep], always: set[str], media: Set[str] = frozenset()) -> None:
    """Each transient output, column of ``always`` and media column is dropped by the last
    stage that reads it (never read: by the stage that makes it), so it never crosses the
    object store again. Media columns are dropped only where they hold bytes."""
    droppable = set(always) | set(media)
    transient = {c for p in planned for c in p.transient}
    last: dict[str, int] = {}
    for i, p in enumerate(planned):
        for c in p.outputs:
            if c in transient or c in droppable:
                last.setdefault(c, i)
        for c in p.inputs:
            if c in transient or c in droppable:
                last[c] = i
    for p in planned:
        p.drop, p.drop_binary = set(), set()
    for c, i in last.items():
        (planned[i].drop_binary if c in media and c not in always else planned[i].drop).add(c)


def _per_worker(r: Resources) -> dict[str, float]:
    return {k: v for k, v in (("CPU", r.cpus), ("GPU", r.gpus)) if v}


@dataclass
class ScaleRequest:
    """What to ask an autoscaler for before the steps start."""

    bundles: list[dict[str, float]]
    steps: list[str]
    """The steps the cluster lacks the resources of now."""

    @property
    def why(self) -> str:
        return ", ".join(self.steps) or "the actor pools at their minimum size"


def check_cluster(planned: list[PlannedStep], cluster: ClusterView | Mapping[str, float]) -> ScaleRequest | None:
    """Fail fast on requests this cluster can never satisfy (instead of hanging).

    A fixed cluster must have every step's request now. An autoscaling one may lack it as
    long as a node type it can add holds it (or, its node types unknown, it may): then the
    bundles to ask its autoscaler for are returned -- each actor pool at its minimum size,
    one worker of each GPU task step, and a CPU for reading -- else None."""
    view = cluster if isinstance(cluster, ClusterView) else ClusterView(dict(cluster))
    gpus, cpus = view.total.get("GPU", 0.0), view.total.get("CPU", 0.0)
    scaling: list[str] = []
    for p in planned:
        r = p.resources
        if r.gpus <= gpus and r.cpus <= cpus:
            continue
        if view.autoscaler and view.hosts(_per_worker(r)) is not False:
            scaling.append(p.step.label)
            continue
        if view.autoscaler:
            raise JobRunError(
                f"{p.step.label} asks for {describe(_per_worker(r))} per worker: the cluster has "
                f"{describe({'GPU': gpus, 'CPU': cpus})} now and its autoscaler has no node type that "
                f"holds that (node types: {view.describe_types()}); lower steps.{p.step.index}.resources"
                + (" or run with --cpu" if r.gpus else "")
            )
        if r.gpus > gpus:
            raise JobRunError(
                f"{p.step.label} asks for {r.gpus:g} GPU per worker but the Ray cluster has "
                f"{gpus:g} GPUs; run with --cpu (or steps.{p.step.index}.resources.gpus=0) to use CPUs"
            )
        raise JobRunError(f"{p.step.label} asks for {r.cpus:g} CPUs per worker; the cluster has {cpus:g}")
    reserved = sum(p.resources.cpus * p.resources.pool[0] for p in planned if p.stateful)
    most = view.capacity("CPU")
    if most is not None and reserved > most - 1 + 1e-9:
        raise JobRunError(
            f"the actor pools reserve {reserved:g} of the cluster's {most:g} CPUs"
            + (" (at the autoscaler's maximum)" if view.autoscaler else "")
            + " at their minimum size, leaving less than one CPU for reading, decoding and writing: "
            "the job would hang. Lower resources.cpus (fractions are fine, e.g. 0.5) or the minimum "
            "concurrency of the model steps"
        )
    if not view.autoscaler:
        return None
    bundles = [{"CPU": 1.0}]
    for p in planned:
        if p.stateful:
            bundles += [_per_worker(p.resources)] * p.resources.pool[0]
        elif p.resources.gpus:
            bundles.append(_per_worker(p.resources))
    if not scaling and not shortfall(summed(bundles), view.total):
        return None
    return ScaleRequest(bundles, scaling)


def check_local_models(local: dict[str, list[tuple[str, str]]], missing: dict[str, list[str]]) -> None:
    """Fail when a local model path (``local``: by step, from ``preflight``) is absent on some
    node of a multi-node cluster (``missing``: by node), naming the step, path and node."""
    for where, refs in local.items():
        for what, path in refs:
            lacking = [node for node, paths in missing.items() if path in paths]
            if lacking:
                raise JobRunError(
                    f"{where}: {what} {path} is a local path that {len(lacking)} node(s) of this cluster "
                    f"do not have ({', '.join(lacking[:3])}); on a multi-node cluster a model must be on "
                    "storage every node mounts at the same path, or at an object-store URL (s3://...), "
                    "which each node copies once into its cache"
                )


def dropped_columns(job: Job, planned: list[PlannedStep]) -> tuple[set[str], set[str]]:
    """Columns not written to ``rows/``, each dropped as soon as its last reader is done:
    ``output.drop``, and the encoded media a decode step reads -- a raw-file input's bytes
    column, or a Parquet column of image/audio/video bytes (dropped only where it holds
    bytes, not paths) -- unless ``output.keep_file_bytes`` is set or a metric reads it.
    Returns (always dropped, dropped where binary); transient outputs are dropped too."""
    from mmbatch.core.metric import build_metric

    metric_reads = {c for m in job.metrics for c in build_metric(m).input_columns()}
    media: set[str] = set()
    if not job.output.keep_file_bytes:
        media = {c for p in planned if not p.prepare for c in p.build().media_inputs()}
        if job.input.file_format.file_column is not None:
            media.add(job.input.file_format.file_column)
        media -= metric_reads
    return set(job.output.drop), media
