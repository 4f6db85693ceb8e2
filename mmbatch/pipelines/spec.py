"""The job file: YAML -> validated ``Job``.

``${VAR}`` (and ``${VAR:-default}``) are replaced from the environment; ``key=value``
overrides (``steps.1.batch_size=8``) are merged before validation. Each step's ``op``
picks an operator whose own ``Config`` validates the step's remaining keys; the engine
reserves ``op``, ``resources`` and ``batch_size``. Every error names the file, the step
and the key.
"""

from __future__ import annotations

import copy
import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from mmbatch.core.metric import METRICS, MetricConfig, MetricError, build_metric
from mmbatch.core.requirements import MissingDependency
from mmbatch.core.resources import Resources
from mmbatch.operators.base import OPERATORS, AnyOperator, OpConfig, OperatorError

from .formats import FORMATS, InputFormat

RESERVED = ("op", "resources", "batch_size")
_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class JobSpecError(ValueError):
    """A job file that cannot run; the message names the file, the place and the cause."""


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class InputSpec(_Strict):
    path: str | list[str] = Field(
        description="file, folder, glob or list; local or any fsspec URL; webdataset shards may use brace "
        "ranges (shard-{00000..00099}.tar); huggingface: a dataset name, a local dataset folder or a "
        "save_to_disk folder"
    )
    format: str = Field("parquet", description="; ".join(f"{f.name}: {f.description}" for f in FORMATS.values()))
    id_column: str = Field(
        "id", description="unique row id (for files: the path; webdataset: the column that gets each sample's "
        "key; huggingface: a column of the dataset, or, if it has none of that name, '<split>:<row index>')"
    )
    split: str = Field("train", description="huggingface: the split to read")
    config: str | None = Field(None, description="huggingface: the dataset's configuration (subset) name")
    path_column: str | None = Field(
        None, description="jsonl/csv manifests: the column of media paths or URLs (http(s)://, s3://, gs://, ...); "
        "relative paths are resolved against the manifest's folder. A decode step reads it with column: <name>"
    )
    columns: list[str] | None = Field(None, description="read only these columns")
    limit: int | None = Field(None, ge=1, description="process only the first N rows")
    block_rows: int = Field(
        1024, ge=1, description="rows per output file, and most rows per block: a big file streams through in "
        "blocks of whole batches of the first step, about four per CPU (at most this many rows and 32 MiB), "
        "written in files of about this many rows as they finish (a job ending in a CPU step: a file per block, "
        "or per this many rows of a task that reads a whole big file), "
        "so memory stays flat and a crash loses little"
    )
    storage_options: dict[str, Any] = Field(default_factory=dict, description="fsspec options")
    duplicate_ids: Literal["refuse", "error"] = Field(
        "refuse", description="ids held by several rows: refuse the job before it runs, or make those rows error rows"
    )
    on_bad_file: Literal["error", "skip"] = Field(
        "error", description="an unreadable Parquet shard: refuse the job naming it, or skip it (listed in the manifest)"
    )

    @field_validator("format")
    @classmethod
    def _known_format(cls, v: str) -> str:
        if v not in FORMATS:
            raise ValueError(f"unknown format '{v}'; known formats: {', '.join(FORMATS)}")
        return v

    @model_validator(mode="after")
    def _format_keys(self) -> InputSpec:
        if self.format != "huggingface" and ("split" in self.model_fields_set or "config" in self.model_fields_set):
            raise ValueError(f"split and config are keys of format huggingface, not {self.format}")
        if self.path_column is not None and self.format not in ("jsonl", "csv"):
            raise ValueError(f"path_column is a key of the jsonl and csv formats, not {self.format}")
        if self.format == "huggingface":
            if not isinstance(self.path, str):
                raise ValueError("format huggingface reads one dataset: path is a name or folder, not a list")
            import importlib.util

            if importlib.util.find_spec("datasets") is None:
                raise ValueError("format huggingface needs the datasets package: pip install 'mmbatch[inputs]'")
        return self

    @property
    def file_format(self) -> InputFormat:
        return FORMATS[self.format]


class OutputSpec(_Strict):
    path: str
    drop: list[str] = Field(default_factory=list, description="columns not to write")
    keep_file_bytes: bool = Field(
        False, description="format images/audio/video: also write the files' bytes column (default: path only)"
    )
    storage_options: dict[str, Any] = Field(default_factory=dict)


class _JobFile(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    input: InputSpec
    steps: list[dict[str, Any]] = Field(default_factory=list)
    output: OutputSpec
    metrics: list[dict[str, Any]] = Field(default_factory=list)


@dataclass(frozen=True)
class Step:
    index: int
    op: str
    config: OpConfig
    resources: Resources
    batch_size: int | None
    """As the job sets it; None: the operator's default where the step runs (:meth:`batch_size_on`)."""
    operator_cls: type[AnyOperator]

    @property
    def label(self) -> str:
        return f"steps[{self.index}] {self.op}"

    def batch_size_on(self, resources: Resources) -> int:
        """The step's batch size where it runs with ``resources``: the job's, else the
        operator's default for GPUs (``gpu_batch_size``) or CPUs."""
        if self.batch_size is not None:
            return self.batch_size
        cls = self.operator_cls
        return cls.gpu_batch_size if resources.gpus and cls.gpu_batch_size else cls.default_batch_size

    @property
    def fingerprint(self) -> str:
        """Equal for equal steps, in any process (a cache key that survives pickling)."""
        return f"{self.label}|{self.config.model_dump_json()}|{self.resources.model_dump_json()}|{self.batch_size}"

    def build(self) -> AnyOperator:
        return self.operator_cls(self.config, self.resources, self.label)


@dataclass(frozen=True)
class Job:
    name: str
    input: InputSpec
    steps: list[Step]
    output: OutputSpec
    metrics: list[MetricConfig] = field(default_factory=list)
    source: str = "<job>"
    raw: dict[str, Any] = field(default_factory=dict)
    """The job as resolved: the file after ``${ENV}`` and overrides, before validation."""


# -- loading --------------------------------------------------------------------------
def interpolate(text: str, env: dict[str, str] | None = None) -> str:
    env = dict(os.environ) if env is None else env

    def sub(m: re.Match[str]) -> str:
        name, default = m.group(1), m.group(2)
        if name in env:
            return env[name]
        if default is not None:
            return default
        raise JobSpecError(f"environment variable ${{{name}}} is not set (use ${{{name}:-default}})")

    return _ENV.sub(sub, text)


def apply_override(data: dict[str, Any], override: str) -> None:
    """``a.b.0.c=value`` -> data["a"]["b"][0]["c"] = yaml-parsed value."""
    if "=" not in override:
        raise JobSpecError(f"override '{override}' is not key=value")
    key, raw = override.split("=", 1)
    value = yaml.safe_load(raw) if raw else ""
    parts = key.strip().split(".")
    node: Any = data
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise JobSpecError(f"override '{key}': no list item {part} (there are {len(node)})")
            if last:
                node[int(part)] = value
            else:
                node = node[int(part)]
        elif isinstance(node, dict):
            if last:
                node[part] = value
            else:
                node = node.setdefault(part, {})
        else:
            raise JobSpecError(f"override '{key}': '{'.'.join(parts[:i])}' is not a mapping or list")


def _fmt_pydantic(exc: ValidationError, where: str, valid: list[str] | None = None) -> str:
    lines = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"])
        if err["type"] == "extra_forbidden":
            msg = f"{where}: unknown key '{loc}'"
            if valid:
                msg += f"; valid keys: {', '.join(valid)}"
        elif err["type"] == "missing":
            msg = f"{where}: missing required key '{loc}'"
        else:
            msg = f"{where}: {loc + ': ' if loc else ''}{err['msg']}"
        lines.append(msg)
    return "\n".join(lines)


def build_step(index: int, raw: dict[str, Any], source: str) -> Step:
    where = f"{source}: steps[{index}]"
    if not isinstance(raw, dict) or "op" not in raw:
        raise JobSpecError(f"{where}: a step needs 'op: <name>'")
    op = raw["op"]
    where = f"{where} (op: {op})"
    try:
        cls = OPERATORS.get(op)
    except OperatorError as exc:
        raise JobSpecError(f"{where}: {exc}") from None
    keys = {k: v for k, v in raw.items() if k not in RESERVED}
    valid = [*RESERVED, *cls.Config.model_fields]
    try:
        config = cls.Config(**keys)
    except ValidationError as exc:
        raise JobSpecError(_fmt_pydantic(exc, where, valid)) from None
    assert isinstance(config, OpConfig)
    res_raw = raw.get("resources") or {}
    try:
        resources = cls.default_resources.model_copy(update={}) if not res_raw else Resources(
            **(cls.default_resources.model_dump() | res_raw)
        )
    except ValidationError as exc:
        raise JobSpecError(_fmt_pydantic(exc, f"{where} resources", list(Resources.model_fields))) from None
    batch_size = raw.get("batch_size")
    if batch_size is not None and (not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1):
        raise JobSpecError(f"{where}: batch_size must be a positive integer, got {batch_size!r}")
    step = Step(index, op, config, resources, batch_size, cls)
    try:
        step.build().requirements().check(f"operator '{op}'")
    except (MissingDependency, ValueError) as exc:
        raise JobSpecError(f"{where}: {exc}") from None
    return step


def metric_config(index: int, raw: dict[str, Any], source: str) -> MetricConfig:
    """One ``metrics:`` entry validated by its metric's own config (and its requirements)."""
    where = f"{source}: metrics[{index}]"
    if not isinstance(raw, dict) or "metric" not in raw:
        raise JobSpecError(f"{where}: a metric needs 'metric: <name>'")
    try:
        cls = METRICS.get(raw["metric"])
    except MetricError as exc:
        raise JobSpecError(f"{where}: {exc}") from None
    where = f"{where} (metric: {raw['metric']})"
    try:
        config = cls.Config(**raw)
    except ValidationError as exc:
        raise JobSpecError(_fmt_pydantic(exc, where, list(cls.Config.model_fields))) from None
    assert isinstance(config, MetricConfig)
    try:
        cls(config).requirements().check(f"metric '{cls.name}'", MetricError)
    except MetricError as exc:
        raise JobSpecError(f"{where}: {exc}") from None
    return config


def link_steps(steps: list[Step]) -> list[Step]:
    """Apply what each step asks of the step that produces one of its inputs
    (``Operator.upstream_config``), for keys the job file leaves unset."""
    steps = list(steps)
    producer: dict[str, int] = {}
    for i, step in enumerate(steps):
        op = step.build()
        for column, updates in op.upstream_config().items():
            j = producer.get(column)
            if j is None:
                continue
            config = steps[j].config
            unset = {k: v for k, v in updates.items() if k in type(config).model_fields and k not in config.model_fields_set}
            if unset:
                steps[j] = replace(steps[j], config=config.model_copy(update=unset))
        for column in op.outputs():
            producer[column] = i
    return steps


def input_roots(inp: InputSpec) -> list[str]:
    """The local folders the input lives in (a folder, or a file's or glob's folder)."""
    roots = []
    for item in [inp.path] if isinstance(inp.path, str) else inp.path:
        if "://" in item and not item.startswith("file://"):
            continue
        local = os.path.expanduser(item.removeprefix("file://"))
        if any(ch in local for ch in "*?[{"):
            local = local[: min(local.index(ch) for ch in "*?[{" if ch in local)]
        roots.append(os.path.abspath(local if os.path.isdir(local) else os.path.dirname(local) or "."))
    return roots


def with_input_roots(step: Step, roots: list[str]) -> Step:
    """A step that opens files named in a column may open those under the input's own
    folders, unless the job file says where (``allowed_roots``)."""
    config = step.config
    if "allowed_roots" in type(config).model_fields and "allowed_roots" not in config.model_fields_set:
        return replace(step, config=config.model_copy(update={"allowed_roots": roots}))
    return step


def job_from_dict(data: dict[str, Any], source: str = "<job>") -> Job:
    if not isinstance(data, dict):
        raise JobSpecError(f"{source}: a job file is a mapping with name, input, steps, output")
    try:
        jf = _JobFile(**data)
    except ValidationError as exc:
        raise JobSpecError(_fmt_pydantic(exc, source, list(_JobFile.model_fields))) from None
    steps = link_steps([build_step(i, raw, source) for i, raw in enumerate(jf.steps)])
    steps = [with_input_roots(step, input_roots(jf.input)) for step in steps]
    metrics = [metric_config(i, raw, source) for i, raw in enumerate(jf.metrics)]
    job = Job(jf.name, jf.input, steps, jf.output, metrics, source, copy.deepcopy(data))
    check_columns(job, source_columns(job))
    return job


def preflight(job: Job) -> dict[str, list[tuple[str, str]]]:
    """The checks that need I/O, before any Ray work: every model, ControlNet, metric model
    or weights file the job names can be found (a local path exists and holds a model, an
    object-store URL has something there, a hub id is cached when offline).

    Returns the local model paths by the step or metric that names them (``steps[1] (op:
    embed)`` -> [(what, path)]): on a multi-node cluster every node must see them."""
    from mmbatch.core.models import collect_local_refs

    local: dict[str, list[tuple[str, str]]] = {}
    for step in job.steps:
        where = f"{step.label.split(' ')[0]} (op: {step.op})"
        try:
            with collect_local_refs() as seen:
                step.build().preflight()
        except ValueError as exc:
            raise JobSpecError(f"{job.source}: {where}: {exc}") from None
        if seen:
            local[where] = seen
    for i, config in enumerate(job.metrics):
        where = f"metrics[{i}] (metric: {config.metric})"
        try:
            with collect_local_refs() as seen:
                build_metric(config).preflight()
        except ValueError as exc:
            raise JobSpecError(f"{job.source}: {where}: {exc}") from None
        if seen:
            local[where] = seen
    return local


def shipped_jobs() -> dict[str, Path]:
    """The job files that come with mmbatch (the repository's ``jobs/``), by name: package
    data of an install, or the ``jobs/`` beside the package in a checkout on PYTHONPATH."""
    from importlib.resources import files

    try:
        folder = Path(str(files("mmbatch.jobs")))
    except ModuleNotFoundError:
        import mmbatch

        folder = Path(mmbatch.__file__).resolve().parents[1] / "jobs"
    return {f.stem: f for f in sorted(folder.glob("*.yaml"))}


def resolve_job_path(path: str | Path) -> Path:
    """``path`` if it exists, else the shipped job of that name (``quickstart``,
    ``jobs/vqa.yaml``, ...), so the shipped jobs run from any directory."""
    path = Path(path)
    if path.exists():
        return path
    shipped = shipped_jobs()
    name = path.stem if path.suffix in (".yaml", ".yml") else path.name
    if name in shipped and (len(path.parts) == 1 or path.parent.name == "jobs"):
        return shipped[name]
    raise JobSpecError(f"{path}: no such job file (shipped jobs: {', '.join(sorted(shipped)) or 'none'})")


def load_job(
    path: str | Path, overrides: list[str] | tuple[str, ...] = (), env: dict[str, str] | None = None,
) -> Job:
    """The job file (or shipped job) at ``path`` with ``overrides``, ``${VAR}`` taken from
    ``env`` (default: this process's environment), validated."""
    path = resolve_job_path(path)
    try:
        data = yaml.safe_load(interpolate(path.read_text(), env))
    except yaml.YAMLError as exc:
        raise JobSpecError(f"{path}: invalid YAML: {exc}") from None
    for override in overrides:
        apply_override(data, override)
    return job_from_dict(data, str(path))


# -- column chaining -------------------------------------------------------------------
def source_columns(job: Job) -> list[str] | None:
    """Columns the source provides, or None when they can't be known without reading."""
    inp = job.input
    if inp.file_format.columns is not None:
        return inp.file_format.columns
    if inp.columns:
        return list(inp.columns)
    return None


def check_columns(job: Job, available: list[str] | None) -> None:
    """Every column a step reads is in the source or produced upstream; the id exists."""
    where = job.source
    if available is not None and job.input.id_column not in available:
        raise JobSpecError(
            f"{where}: input.id_column '{job.input.id_column}' is not a source column "
            f"(source columns: {', '.join(available)})"
        )
    have = set(available) if available is not None else None
    for step in job.steps:
        op = step.build()
        if have is not None:
            missing = [c for c in op.inputs() if c not in have]
            if missing:
                raise JobSpecError(
                    f"{where}: steps[{step.index}] (op: {step.op}) reads column(s) "
                    f"{', '.join(repr(m) for m in missing)}, which neither the source nor an "
                    f"earlier step provides (available: {', '.join(sorted(have))})"
                )
            have |= set(op.outputs())
    if have is not None:
        for i, metric in enumerate(job.metrics):
            missing = [c for c in build_metric(metric).input_columns() if c not in have]
            if missing:
                raise JobSpecError(
                    f"{where}: metrics[{i}] ({metric.metric}) reads column(s) "
                    f"{', '.join(repr(m) for m in missing)} that no step or source provides"
                )
