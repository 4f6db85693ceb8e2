"""``mmbatch`` command line: validate, plan, run, ops, metrics, quickstart."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import Any

from mmbatch import __version__

from .spec import Job, JobSpecError, check_columns, load_job, source_columns

EPILOG = """examples:
  mmbatch quickstart
  mmbatch validate jobs/vqa.yaml
  mmbatch plan jobs/quickstart.yaml input.path=s3://bucket/shards/ --cpu
  mmbatch run jobs/transcribe_archive.yaml steps.1.batch_size=8 --address auto
"""


def _job_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("job", help="job YAML file, or the name of a shipped job (quickstart, vqa, transcribe_archive, ...)")
    p.add_argument(
        "overrides", nargs="*", metavar="KEY=VALUE",
        help="overrides merged before validation, e.g. steps.1.batch_size=8 input.limit=100",
    )


def _load(args: argparse.Namespace, probe: str = "columns") -> Job:
    """The job, validated. ``probe``: ``none`` (no I/O), ``columns`` (column chaining checked
    against the input's schema) or ``full`` (also: the input scanned -- ids, shards -- the
    models found, the output probed for writing: what ``run`` checks before Ray starts)."""
    job = load_job(args.job, args.overrides)
    if probe == "none":
        check_columns(job, source_columns(job))
        return job
    from .io import probe_columns

    if job.input.format == "parquet" and job.input.columns is None:
        try:
            columns = probe_columns(job.input.path, job.input.storage_options)
        except (FileNotFoundError, OSError) as exc:
            raise JobSpecError(f"{args.job}: cannot read input.path: {exc}") from None
        check_columns(job, columns)
    else:
        check_columns(job, source_columns(job))
    if probe == "full":
        from .inputs import scan_input
        from .io import probe_writable
        from .spec import preflight

        scan_input(job.input)
        preflight(job)
        try:
            probe_writable(job.output.path, job.output.storage_options)
        except OSError as exc:
            raise JobSpecError(f"{args.job}: {exc}") from None
    return job


def cmd_validate(args: argparse.Namespace) -> int:
    job = _load(args, probe="none" if args.no_probe else "full")
    print(f"{args.job}: OK ({len(job.steps)} steps, {len(job.metrics)} metrics)")
    return 0


def cmd_plan(args: argparse.Namespace) -> int:
    from .planning import assign_drops, dropped_columns, plan_steps

    job = _load(args)
    inp = job.input
    print(f"job {job.name}")
    print(f"input: {inp.path} (format={inp.format}, id_column={inp.id_column}"
          + (f", limit={inp.limit}" if inp.limit else "") + ")")
    planned = plan_steps(job, args.cpu)
    assign_drops(planned, *dropped_columns(job, planned))
    for p in planned:
        print(p.describe())
    for m in job.metrics:
        print(f"metric: {m.metric} " + ", ".join(f"{k}={v}" for k, v in m.model_dump().items() if k != "metric"))
    print(f"output: {job.output.path}/rows/, {job.output.path}/errors/")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from .run import run_job

    job = _load(args)
    summary = run_job(
        job,
        address=args.address,
        resume=args.resume,
        overwrite=args.overwrite,
        retry_errors=args.retry_errors,
        progress=True,
        verbose=args.verbose,
        cpu_only=args.cpu,
        num_cpus=args.num_cpus,
        num_gpus=args.num_gpus,
    )
    print(summary.render())
    return 0


def _summary_line(doc: str | None) -> str:
    """The first sentence-paragraph of a docstring, on one line."""
    first = (doc or "").strip().split("\n\n")[0]
    return " ".join(first.split())


def _print_keys(config_cls: Any, skip: tuple[str, ...] = ()) -> None:
    for key, f in config_cls.model_fields.items():
        if key in skip:
            continue
        if f.is_required():
            default = "required"
        else:
            value = f.default_factory() if f.default_factory is not None else f.default
            default = f"default {value!r}"
        print(f"    {key}: {default}" + (f" - {' '.join(f.description.split())}" if f.description else ""))


def cmd_ops(args: argparse.Namespace) -> int:
    from mmbatch.operators.base import OPERATORS

    for name in OPERATORS.names():
        cls = OPERATORS.get(name)
        print(f"{name}: {_summary_line(cls.__doc__)}")
        if args.verbose:
            _print_keys(cls.Config)
    return 0


def cmd_metrics(args: argparse.Namespace) -> int:
    from mmbatch.core.metric import METRICS

    for name in METRICS.names():
        cls = METRICS.get(name)
        local = " [per-row: also a score step]" if cls.row_local else ""
        print(f"{name}: {_summary_line(cls.__doc__)}{local}")
        if args.verbose:
            _print_keys(cls.Config, skip=("metric",))
    return 0


def cmd_errors(args: argparse.Namespace) -> int:
    from .errors_report import error_groups, render

    print(render(args.output, error_groups(args.output, args.id_column)))
    return 0


def cmd_quickstart(args: argparse.Namespace) -> int:
    from mmbatch.testing.quickstart import prepare

    root = Path(args.dir).resolve()
    print(f"building synthetic images and tiny random-weight models under {root} ...")
    prepare(root)
    os.environ["MMBATCH_QUICKSTART"] = str(root)
    args.overrides = list(args.overrides)
    args.resume = False
    args.retry_errors = False
    args.overwrite = True
    args.address = None
    args.cpu = False
    args.num_cpus = None
    args.num_gpus = None
    return cmd_run(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mmbatch",
        description="Run multimodal models over large datasets as declarative Ray Data jobs.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"mmbatch {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("validate", help="check a job file (keys, ops, column chaining) without running models")
    _job_args(p)
    p.add_argument("--no-probe", action="store_true",
                   help="no I/O: do not scan the input, look for the models or probe the output")
    p.set_defaults(fn=cmd_validate)

    p = sub.add_parser("plan", help="print the steps, columns and resources a run would use")
    _job_args(p)
    p.add_argument("--cpu", action="store_true", help="drop GPU requests")
    p.set_defaults(fn=cmd_plan)

    p = sub.add_parser("run", help="run a job", formatter_class=argparse.RawDescriptionHelpFormatter,
                       epilog="outputs: <output.path>/rows/, errors/, metrics/ and summary.json")
    _job_args(p)
    p.add_argument("--address", default=None,
                   help="a running Ray cluster: 'auto' (on its head node) or host:port; workers without this "
                        "mmbatch get it shipped in the job's runtime env (default: start a local Ray in-process)")
    p.add_argument("--verbose", action="store_true", default=argparse.SUPPRESS,
                   help="Ray's own progress snapshots and the workers' logs (default: one line per step)")
    p.add_argument("--resume", action="store_true",
                   help="continue an interrupted run of the same job: rows already written are not redone; "
                        "a changed job is refused, a finished one is left as it is")
    p.add_argument("--retry-errors", action="store_true", help="like --resume, and redo the rows in errors/")
    p.add_argument("--overwrite", action="store_true", help="delete an existing output first")
    p.add_argument("--cpu", action="store_true", help="drop every GPU request and run on CPUs")
    p.add_argument("--num-cpus", type=int, default=None, help="CPUs of the local Ray (default: all)")
    p.add_argument("--num-gpus", type=int, default=None, help="GPUs of the local Ray (default: detected)")
    p.set_defaults(fn=cmd_run)

    p = sub.add_parser("ops", help="list operators (-v: with their keys)")
    p.add_argument("-v", "--verbose", action="store_true")
    p.set_defaults(fn=cmd_ops)

    p = sub.add_parser("errors", help="an output's error rows by step and reason, with sample ids")
    p.add_argument("output", help="the job's output.path")
    p.add_argument("--id-column", default="id", help="the id column (default: id; raw-file inputs: path)")
    p.set_defaults(fn=cmd_errors)

    p = sub.add_parser("metrics", help="list metrics for a job's metrics: block (-v: with their keys)")
    p.add_argument("-v", "--verbose", action="store_true")
    p.set_defaults(fn=cmd_metrics)

    p = sub.add_parser(
        "quickstart",
        help="build a synthetic dataset and tiny random-weight models, then run a job on them offline",
    )
    p.add_argument("job", nargs="?", default="quickstart", help="job file or shipped job name (default: quickstart)")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE")
    p.add_argument("--dir", default="mmbatch-quickstart", help="where data, models and outputs go")
    p.set_defaults(fn=cmd_quickstart)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # KEY=VALUE overrides may follow the flags too (`run JOB --cpu steps.1.batch_size=8`)
    if extra:
        stray = [a for a in extra if a.startswith("-") or "=" not in a or not hasattr(args, "overrides")]
        if stray:
            parser.error(f"unrecognized arguments: {' '.join(stray)}")
        args.overrides = [*args.overrides, *extra]
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    from .planning import JobRunError

    try:
        return args.fn(args)
    except (JobSpecError, JobRunError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
