"""The Ray Data adapter for a job's steps: read -> prepare (id, error column, resume filter)
-> one ``map_batches`` per model step (an actor pool, fed blocks of its batch size) and one
per run of consecutive stateless steps (tasks) -> a datasink that writes ``rows/`` and
``errors/`` in one pass and counts both.

Operators never see Ray; every Ray call for the steps is here (metric passes are in
:mod:`mmbatch.pipelines.metric_passes`).
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

from mmbatch.core.columns import is_tensor_type
from mmbatch.operators.base import ERROR

from . import formats, io
from .heap import model_heap_env
from .inputs import InputScan
from .planning import JobRunError, PlannedStep
from .progress import Progress
from .spec import Job, JobSpecError
from .stages import StepActor, StepTasks, dropped, worker_class
from .step_stats import stats_actor

# -- Ray session -----------------------------------------------------------------------
# What workers inherit unless --verbose: no per-model progress bars or info chatter.
QUIET_ENV = {"TRANSFORMERS_VERBOSITY": "error", "HF_HUB_DISABLE_PROGRESS_BARS": "1", "TOKENIZERS_PARALLELISM": "false"}


def _mmbatch_on_nodes() -> list[str | None]:
    """The mmbatch version importable on each alive node (None: not importable)."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    def installed() -> str | None:  # defined here so Ray ships it by value, not as mmbatch code
        try:
            import mmbatch

            return str(mmbatch.__version__)
        except ImportError:
            return None

    probe = ray.remote(num_cpus=0)(installed)
    nodes = [n["NodeID"] for n in ray.nodes() if n.get("Alive")]
    refs = [probe.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n, soft=False)).remote() for n in nodes]
    return list(ray.get(refs, timeout=120))


def _submitted_with_mmbatch() -> bool:
    """True in the driver of a Ray Jobs submission whose runtime env ships mmbatch
    (``mmbatch submit``): its tasks and actors inherit that env."""
    import json

    raw = os.environ.get("RAY_JOB_CONFIG_JSON_ENV_VAR")
    if not raw:
        return False
    try:
        modules = json.loads(raw).get("runtime_env", {}).get("py_modules") or []
    except (ValueError, AttributeError):
        return False
    return bool(modules)


def init_ray(
    address: str | None = None, num_cpus: int | None = None, num_gpus: int | None = None, verbose: bool = False
) -> str:
    """Connect to ``address`` (``auto``, ``host:port``) or start a local Ray in-process.

    On a cluster whose nodes lack this mmbatch (version and all), the job's runtime env
    ships it (``py_modules``: the installed package folder); a cluster image that has it gets
    nothing. Returns how the workers get the code: local, installed or shipped."""
    import ray
    from ray.data import DataContext

    if ray.is_initialized():
        return "existing"
    os.environ.setdefault("RAY_DEDUP_LOGS", "1")
    env: dict[str, Any] = {} if verbose else {"env_vars": QUIET_ENV}
    if not verbose:
        logging.getLogger("ray.data").setLevel(logging.WARNING)
        ctx = DataContext.get_current()
        ctx.enable_progress_bars = False
        ctx.print_on_execution_start = False
    kwargs: dict[str, Any] = {"configure_logging": False, "log_to_driver": verbose}
    if not address:  # local workers inherit this process's environment: no runtime env to set up
        for key, value in env.get("env_vars", {}).items():
            os.environ.setdefault(key, value)
        ray.init(num_cpus=num_cpus, num_gpus=num_gpus, include_dashboard=False, **kwargs)
        return "local"
    if address.startswith("ray://"):
        raise JobRunError(
            f"--address {address}: Ray Client (ray://) cannot run Ray Data jobs. Run mmbatch on the head node "
            "with --address auto, or submit the job through the Ray Jobs API"
        )
    ray.init(address=address, runtime_env=env, **kwargs)
    import mmbatch

    if _submitted_with_mmbatch():
        return "shipped"  # `mmbatch submit`: the job's own runtime env carries the package
    if all(v == mmbatch.__version__ for v in _mmbatch_on_nodes()):
        return "installed"
    ray.shutdown()
    env["py_modules"] = [str(Path(mmbatch.__file__).parent)]
    ray.init(address=address, runtime_env=env, **kwargs)
    return "shipped"


def paths_missing_on_nodes(paths: list[str]) -> dict[str, list[str]]:
    """Of ``paths``, those each alive node cannot see, by node address (nodes that see all
    of them are left out). One zero-CPU task per node."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    def missing(wanted: list[str]) -> list[str]:  # shipped by value: plain Python only
        import os as _os

        return [p for p in wanted if not _os.path.exists(p)]

    probe = ray.remote(num_cpus=0)(missing)
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    refs = [probe.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False)).remote(paths)
            for n in nodes]
    found = ray.get(refs, timeout=120)
    return {f"{n['NodeManagerAddress']} ({n['NodeID'][:8]})": m for n, m in zip(nodes, found, strict=True) if m}


def alive_nodes() -> int:
    import ray

    return sum(1 for n in ray.nodes() if n.get("Alive"))


def cluster_resources() -> dict[str, float]:
    import ray

    return {k: float(v) for k, v in ray.cluster_resources().items()}


def _prepare(
    table: pa.Table, id_column: str, file_column: str | None, done: pa.Array | None,
    duplicates: dict[Any, int] | None,
) -> pa.Table:
    """Name raw-file columns, check the id, add the error column, drop finished rows, and
    make rows whose id other rows share error rows (``input.duplicate_ids: error``)."""
    if file_column is not None and "bytes" in table.column_names:
        table = table.rename_columns([file_column if c == "bytes" else c for c in table.column_names])
    if id_column not in table.column_names:
        raise JobSpecError(f"input.id_column '{id_column}' is not in the input (columns: {table.column_names})")
    if table.column(id_column).null_count:
        raise JobSpecError(f"input.id_column '{id_column}' has null ids; every row needs an id")
    if ERROR not in table.column_names:
        table = table.append_column(ERROR, pa.nulls(table.num_rows, pa.string()))
    if duplicates:
        errors = [
            f"input: duplicate id: {duplicates[i]} rows have id {i!r}" if i in duplicates else e
            for i, e in zip(table.column(id_column).to_pylist(), table.column(ERROR).to_pylist(), strict=True)
        ]
        table = table.set_column(table.column_names.index(ERROR), ERROR, pa.array(errors, pa.string()))
    if done:
        import pyarrow.compute as pc

        keep = pc.invert(pc.is_in(table.column(id_column), value_set=done))
        table = table.filter(keep)
    return table


# Bytes per block: Ray Data's read tasks cut a file's rows into blocks of at most this size
# as they read, so a big Parquet file streams instead of arriving as one block.
BLOCK_BYTES = 32 * 1024 * 1024


def _fusable(p: PlannedStep) -> bool:
    """A stage run as uncapped one-CPU tasks: Ray Data can fuse it with a read or the CPU
    stages around it that run so too."""
    return not p.stateful and remote_args(p) == {"num_cpus": 1} and task_concurrency(p) is None


def fuses_read(job: Job, scan: InputScan, planned: list[PlannedStep], block: int, cpus: float = 1.0) -> bool:
    """Whether the job reads its files in tasks that Ray Data fuses with the CPU steps after
    them (and with the write, after a last CPU step).

    Each task then reads a few whole files, row groups or one big file, decodes them and
    passes the rows on (or writes them) without a stage boundary: no read stage holds a
    share of the CPUs while its output waits (on 2 CPUs decoding ran one task at a time
    beside it), and the file bytes never cross the object store. That takes:

    * Parquet files of at most ``block`` rows (read a few per task, about ``block`` rows),
      or whose row groups are (read in pieces of whole row groups), or enough big files to
      keep every CPU busy on its own (:data:`BLOCKS_PER_CPU` per CPU): a file per task,
      streamed through in batches (and, after a last CPU step, written in files of
      ``input.block_rows`` rows as they come). Otherwise big files are cut into blocks
      after the read, a stage that Ray Data does not fuse;
    * no ``limit``;
    * a first step run as uncapped one-CPU tasks, whose remote args the read tasks then
      share. Those stages (up to the first that runs otherwise) take whole blocks and batch
      them themselves, since Ray Data does not fuse a read into a stage with a batch size."""
    return (
        job.input.file_format.reader is formats.read_parquet and not job.input.limit
        and bool(planned) and _fusable(planned[0])
        and (scan.largest_piece_rows <= block or len(scan.files) >= BLOCKS_PER_CPU * cpus)
    )


def read_source(
    job: Job, scan: InputScan | None = None, done: frozenset[Any] | None = None, block_rows: int | None = None,
    fused: bool = False,
) -> Any:
    """The job's input (the files of ``scan``, else listed anew) as a Ray Dataset of bounded
    blocks (``block_rows`` rows, default ``input.block_rows``; at most :data:`BLOCK_BYTES`),
    with ids checked and an ``error`` column; ``fused`` (see :func:`fuses_read`): whole
    files in read tasks of about ``block_rows`` rows (or one big file each), with the CPU
    tasks' remote args. Files bigger than a block in row groups that are not are read in
    pieces of whole row groups, fused or not."""
    from ray.data import DataContext

    inp = job.input
    fmt = inp.file_format
    ctx = DataContext.get_current()
    ctx.target_max_block_size = min(ctx.target_max_block_size or BLOCK_BYTES, BLOCK_BYTES)
    if scan is None and not fmt.extensions:  # huggingface: a dataset, not files to list
        fs, files = io.filesystem(".")[0], list[str]()
    elif scan is None:
        fs, files = io.list_files(inp.path, fmt.extensions, inp.storage_options)
    else:
        first = inp.path if isinstance(inp.path, str) else inp.path[0]
        fs, files = io.filesystem(first, inp.storage_options)[0], scan.paths
    rows = block_rows or inp.block_rows
    if scan is not None and fmt.reader is formats.read_parquet and scan.largest_file_rows > rows >= scan.largest_piece_rows:
        # files bigger than a block whose row groups are not: read in blocks of whole row groups
        groups = scan.row_groups.values()
        tasks = _read_tasks(sum(map(len, groups)), sum(map(sum, groups)), rows)
        ds = formats.read_parquet_row_groups(files, io.arrow_filesystem(fs), inp.columns, scan.row_groups, tasks, {})
    elif fused and scan is not None:
        # small files a few per task; big ones (as many as the CPUs need) one per task
        tasks = _read_tasks(len(files), scan.rows, rows) if scan.largest_file_rows <= rows else len(files)
        ds = formats.read_parquet(files, io.arrow_filesystem(fs), inp.columns, inp, tasks)
    else:
        ds = fmt.reader(files, io.arrow_filesystem(fs), inp.columns, inp)
    if fmt.file_column is not None and not io.is_local(fs):
        ds = ds.map_batches(_FullPaths(fs), batch_format="pyarrow")
    if inp.limit:
        ds = ds.limit(inp.limit)
    if scan is None or (scan.largest_piece_rows > rows and not fused):  # cut big files (or row groups)
        ds = ds.repartition(target_num_rows_per_block=rows)
    return ds.map_batches(
        _prepare,
        batch_format="pyarrow",
        # the finished ids as one Arrow array, built once here, not per block
        fn_args=(inp.id_column, fmt.file_column, pa.array(list(done)) if done else None,
                 scan.duplicates if scan else None),
        batch_size=None,
    )


def _read_tasks(pieces: int, rows: int, block: int) -> int:
    """Read tasks of about ``block`` rows over ``rows`` rows in ``pieces`` that are not cut:
    at least one, at most one per piece."""
    return max(1, min(pieces, -(-rows // block)))


@dataclass
class _FullPaths:
    """Object-store ``path`` values as full URLs (``bucket/key`` -> ``s3://bucket/key``)."""

    fs: Any

    def __call__(self, t: pa.Table) -> pa.Table:
        paths = pa.array([io.unstrip(self.fs, p) for p in t.column("path").to_pylist()])
        return t.set_column(t.column_names.index("path"), "path", paths)


def remote_args(p: PlannedStep) -> dict[str, Any]:
    """The Ray remote args of a stage's tasks or actors: actors on CPUs alone keep their
    freed heap for the next batch (:mod:`mmbatch.pipelines.heap`)."""
    r = p.resources
    args: dict[str, Any] = {"num_cpus": r.cpus}
    if r.gpus:
        args["num_gpus"] = r.gpus
    if r.memory:
        args["memory"] = r.memory
    if p.stateful and not r.gpus and (env := model_heap_env()):
        args["runtime_env"] = {"env_vars": env}  # merged by Ray with the job's runtime env
    return args


def task_concurrency(p: PlannedStep) -> int | None:
    """Tasks at once of a stateless stage: its ``concurrency`` where the job sets one, else
    None (as many as the CPUs allow); a prepare stage is never capped."""
    r = p.resources
    if not p.prepare and (r.pool[1] > 1 or not isinstance(r.concurrency, int) or r.concurrency != 1):
        return r.pool[1]
    return None


def stage_groups(planned: list[PlannedStep]) -> list[list[PlannedStep]]:
    """The Ray Data stages of ``planned``, in order: each model step alone, each stateless
    stage alone, except that consecutive uncapped one-CPU task stages (decoding, a model's
    prepare stage) form one (:class:`StepTasks`)."""
    groups: list[list[PlannedStep]] = []
    for p in planned:
        if groups and _fusable(p) and _fusable(groups[-1][-1]):  # a group is one stage or all fusable
            groups[-1].append(p)
        else:
            groups.append([p])
    return groups


def add_steps(ds: Any, planned: list[PlannedStep], stats: Any, id_column: str, whole_blocks: bool = False) -> Any:
    """One ``map_batches`` per stage group (:func:`stage_groups`); ``whole_blocks``: the
    first group, if it runs as uncapped one-CPU tasks, takes whole blocks and batches them
    itself (:func:`fuses_read`); another takes bundles of its largest batch size.

    A model step after CPU tasks (a stage group, or the read) gets blocks of its batch size:
    Ray Data's ``repartition(target_num_rows_per_block=...)``, which Ray Data fuses into the
    tasks before it when they run as these do. Ray Data cuts blocks at its byte cap instead
    (32 MiB here), and a model batch bigger than that, or not a whole number of such blocks
    (256 fp16 CLIP inputs of 224 px: 77 MB), would run as a batch and a remainder. Where the
    group before takes bundles of the model's batch size (its own batch sizes divide it),
    the repartition is strict: Ray Data then cuts its input across blocks into exact model
    batches (files read a few per block, 60 clips in blocks of 5, gave batches of 16 and 4).
    The repartition also keeps those tasks from being fused into the model's actors."""
    from ray.data import ActorPoolStrategy

    groups = stage_groups(planned)
    if groups and groups[0][0].stateful:  # the model takes the read's blocks
        ds = ds.repartition(target_num_rows_per_block=groups[0][0].batch_size)
    for group, after in zip(groups, [*groups[1:], None], strict=True):
        p = group[0]
        r = p.resources
        whole_blocks = whole_blocks and _fusable(p)
        kwargs: dict[str, Any] = {"batch_format": "pyarrow", **remote_args(p)}
        if p.stateful:
            lo, hi = r.pool
            overlap: dict[str, Any] = {}
            if r.gpus:  # two calls per actor: one batch's conversion and copies overlap the other's compute
                overlap = {"max_concurrent_calls_per_actor": 2, "enable_true_multi_threading": True}
            pool = ActorPoolStrategy(min_size=lo, max_size=hi, **overlap)
            ds = ds.map_batches(worker_class(StepActor, group), fn_constructor_args=(p, stats, id_column), compute=pool,
                                batch_size=p.batch_size, **kwargs)
            continue
        size = None if whole_blocks else max(q.batch_size for q in group)
        model = after[0].batch_size if after and after[0].stateful else None
        strict = size is not None and model is not None and all(model % q.batch_size == 0 for q in group)
        tasks = worker_class(StepTasks, group)(group, stats, id_column)
        ds = ds.map_batches(tasks, concurrency=task_concurrency(p), batch_size=model if strict else size, **kwargs)
        if model is not None:
            ds = ds.repartition(target_num_rows_per_block=model, strict=strict)
    return ds


@dataclass(frozen=True)
class WriteStage:
    """How the rows reach rows/ and errors/: the write tasks' remote args and concurrency,
    and the rows each file bundles."""

    remote_args: dict[str, Any]
    concurrency: int | None
    file_rows: int | None
    """Rows Ray Data bundles into one write task (None: each task writes what it has)."""
    split_rows: int | None = None
    """A write task's rows go to files of about this many rows, each written as soon as
    its rows have come (None: one file per write task, at its end)."""


def write_stage(
    planned: list[PlannedStep], cpus: float, block: int, file_rows: int, fused_read: bool = False,
) -> WriteStage:
    """The write, after the job's last stage.

    After a CPU task stage (``decode_image`` alone, say) it takes that stage's remote args
    and concurrency, and Ray Data fuses it into that stage's tasks: each task decodes its
    input (about ``block`` rows) and writes it as one file, and no stage of its own holds a
    share of the CPUs (on 2 CPUs the read, decode and write shares left decoding one task at
    a time). Bundling to ``file_rows`` there would hand each task that many rows and leave
    cores idle on a small corpus; when the read fuses into every stage (``fused_read``) it
    bundles nothing, so that Ray Data fuses it in too: each read task writes its files' rows,
    in files of ``file_rows`` rows as they come (a task that reads a whole big file).

    After an actor or a GPU stage, which Ray Data cannot fuse into, write tasks of one CPU
    bundle ``file_rows`` rows per file, at most one task per 8 CPUs of the cluster (as it is
    when the steps start), at least 2. Ray Data reserves an equal share of the CPUs for every
    stage it can bound, and an unbounded write stage holds its share idle: on 16 CPUs, 3
    that the decode tasks then lack. A write task is short next to the batches that feed it."""
    last = planned[-1] if planned else None
    if last is None:  # no steps: the write follows the input's own CPU tasks
        return WriteStage({}, None, block)
    if not last.stateful and not last.resources.gpus:
        if fused_read and all(_fusable(p) for p in planned):  # one task from the read to the write
            return WriteStage(remote_args(last), task_concurrency(last), None, file_rows)
        return WriteStage(remote_args(last), task_concurrency(last), block)
    return WriteStage({"num_cpus": 1}, max(2, int(cpus) // 8), file_rows)


# Input blocks per CPU of the cluster that the block size aims at: enough for every core to
# stay busy to the end, few enough that per-task overhead stays small.
BLOCKS_PER_CPU = 4


def task_rows(block_rows: int, batch: int, rows: int, cpus: float) -> int:
    """Rows per input block: about ``rows / (BLOCKS_PER_CPU * cpus)``, in whole batches of
    the first stage (``batch``), at least one batch and at most ``block_rows``.

    A block is the unit of a task. 12,000 rows in 1,024-row blocks made 12 decode tasks of
    about 7 s on a 16-core machine: cores idle from the start, and a tail of lone tasks.
    Blocks of one batch each fixed that there, but on 2 cores the extra tasks cost more than
    they spread. After a model step the writer bundles blocks back into files of about
    ``block_rows`` rows; a job ending in a CPU step writes a file per task, or per
    ``block_rows`` rows of a task that reads a whole big file (:func:`write_stage`)."""
    target = rows / (BLOCKS_PER_CPU * max(cpus, 1.0))
    whole = max(1, round(target / batch)) * batch
    return max(1, min(block_rows, whole))


def _make_sink(
    out_path: str, storage_options: dict[str, Any], id_column: str, drop: set[str], drop_binary: set[str],
    step_outputs: set[str], file_rows: int | None, split_rows: int | None = None,
) -> Any:
    from ray.data import Datasink

    class SplitParquetSink(Datasink[dict[str, Any]]):
        """Writes each write task's blocks as one file under rows/ and one under errors/
        (with ``split_rows``: one pair per that many rows, as they come), both named
        after the ids they hold (``io.unit_name``): a retried task rewrites the same files
        instead of adding copies. errors/ is written first, so a unit whose rows/ file is
        there is complete.

        errors/ holds a failed row's input columns and ``error`` (which names the step and
        the cause), never step outputs: a row that failed at step 2 would otherwise carry
        typed step-1 columns in one file and all-null ones in the next, and the files of
        errors/ could not be read back as one table."""

        def __init__(self) -> None:
            self.counts = {"rows": 0, "errors": 0, "files": 0}
            self.late: set[str] = set()  # columns that reached the writer only to be dropped

        def get_name(self) -> str:
            return "MmbatchParquet"

        @property
        def min_rows_per_write(self) -> int | None:
            """Blocks are bundled into write tasks of about this many rows: one file each
            (None: each task writes what it has)."""
            return file_rows

        def write(self, blocks: Any, ctx: Any) -> dict[str, Any]:
            counts: dict[str, Any] = {"rows": 0, "errors": 0, "files": 0, "late": []}
            fs, root = io.filesystem(out_path, storage_options)
            late: set[str] = set()
            pending: list[pa.Table] = []
            rows = 0
            for block in blocks:
                table = block if isinstance(block, pa.Table) else pa.Table.from_pandas(block)
                if table.num_rows:
                    pending.append(table)
                    rows += table.num_rows
                if split_rows and rows >= split_rows:  # files of split_rows rows; the rest waits
                    table = pa.concat_tables(pending, promote_options="permissive")
                    while table.num_rows >= split_rows:
                        late |= self._write_unit([table.slice(0, split_rows)], fs, root, counts)
                        table = table.slice(split_rows)
                    pending, rows = [table], table.num_rows
            if rows:
                late |= self._write_unit(pending, fs, root, counts)
            counts["late"] = sorted(late)
            return counts

        @staticmethod
        def _write_unit(tables: list[pa.Table], fs: Any, root: str, counts: dict[str, Any]) -> set[str]:
            """Write ``tables`` as one unit (a rows/ and an errors/ file under ``root``), add
            to ``counts``, and return the columns that reached the writer only to be dropped."""
            import pyarrow.compute as pc

            table = pa.concat_tables(tables, promote_options="permissive")
            before = set(table.column_names)
            table = dropped(table, drop, drop_binary)
            table = table.drop_columns([n for n in table.column_names if is_tensor_type(table.schema.field(n).type)])
            late = before - set(table.column_names)
            failed = pc.is_valid(table.column(ERROR))
            parts = {
                io.ROWS: table.filter(pc.invert(failed)).drop_columns([ERROR]),
                io.ERRORS: table.filter(failed).drop_columns([c for c in table.column_names if c in step_outputs]),
            }
            name = io.unit_name(table.column(id_column))
            for sub in (io.ERRORS, io.ROWS):
                if parts[sub].num_rows:
                    io.write_parquet_atomic(parts[sub], fs, f"{root}/{sub}", name)
                    counts["files"] += 1
            counts["rows"] += parts[io.ROWS].num_rows
            counts["errors"] += parts[io.ERRORS].num_rows
            return late

        def on_write_complete(self, write_result: Any) -> None:
            for r in write_result.write_returns:
                for k in self.counts:
                    self.counts[k] += r[k]
                self.late.update(r["late"])

    return SplitParquetSink()


@dataclass
class StepsResult:
    rows: int
    errors: int
    steps: dict[str, dict[str, float]]
    late_columns: list[str]
    """Columns that travelled to the writer only to be dropped there (none when every stage
    drops what it was the last to read)."""


def run_steps(
    job: Job, scan: InputScan, planned: list[PlannedStep], drop: set[str], drop_binary: set[str], done: frozenset[Any],
    progress: bool = False,
) -> StepsResult:
    """Run the job's stages over its input (minus ``done`` ids) and write rows/ and errors/;
    ``drop``/``drop_binary`` are left out of what is written, wherever they still remain."""
    import ray

    out = job.output
    started = time.time()
    stats = stats_actor()
    cpus = cluster_resources().get("CPU", 1.0)
    first_batch = planned[0].batch_size if planned else job.input.block_rows
    block = task_rows(job.input.block_rows, first_batch, scan.rows - len(done), cpus)
    fused = fuses_read(job, scan, planned, block, cpus)
    ds = add_steps(read_source(job, scan, done or None, block, fused), planned, stats, job.input.id_column, fused)
    outputs = {c for p in planned for c in p.outputs} - {ERROR}
    write = write_stage(planned, cpus, block, job.input.block_rows, fused)
    sink = _make_sink(out.path, out.storage_options, job.input.id_column, drop, drop_binary, outputs,
                      write.file_rows, write.split_rows)
    if progress:
        with Progress(lambda: ray.get(stats.get.remote(), timeout=10)):
            ds.write_datasink(sink, ray_remote_args=write.remote_args, concurrency=write.concurrency)
    else:
        ds.write_datasink(sink, ray_remote_args=write.remote_args, concurrency=write.concurrency)
    steps = ray.get(stats.get.remote(started))
    ray.kill(stats)
    return StepsResult(sink.counts["rows"], sink.counts["errors"], steps, sorted(sink.late))
