"""``mmbatch`` command line: validate, plan, run, submit, status, stop, errors, ops, metrics,
quickstart."""

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
  mmbatch submit quickstart input.path=s3://bucket/images/ --address http://head:8265 --follow
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
        wait=args.wait,
    )
    print(summary.render())
    return 0


def _env_pairs(pairs: list[str]) -> dict[str, str]:
    env = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise JobSpecError(f"--env {pair}: expected VAR=VALUE")
        env[key] = value
    return env


def _passed_run_flags(args: argparse.Namespace) -> list[str]:
    """The ``run`` flags of ``submit``, as the submitted ``mmbatch run`` gets them."""
    flags = [f"--{name.replace('_', '-')}" for name in ("resume", "retry_errors", "overwrite", "cpu")
             if getattr(args, name)]
    if getattr(args, "verbose", False):
        flags.append("--verbose")
    if args.wait != DEFAULT_WAIT:
        flags += ["--wait", f"{args.wait:g}"]
    return flags


def cmd_submit(args: argparse.Namespace) -> int:
    from . import submit as jobs_api
    from .spec import resolve_job_path

    env_vars = _env_pairs(args.env)
    job_file = resolve_job_path(args.job)
    # validated here, without I/O: its paths are read on the cluster (${VAR}: --env, then ours)
    job = load_job(job_file, args.overrides, env=dict(os.environ) | env_vars)
    with jobs_api.staged(job_file, args.overrides, _passed_run_flags(args), env_vars) as submission:
        sid = jobs_api.submit(args.address, submission)
    print(sid, flush=True)
    print(f"submitted job {job.name} ({job_file.name}) to {args.address}: "
          f"mmbatch status {sid} --address {args.address}", file=sys.stderr, flush=True)
    if not args.follow:
        return 0
    state = jobs_api.follow(args.address, sid, lambda text: print(text, end="", flush=True))
    message = jobs_api.status(args.address, sid)[1]
    print(f"{sid}: {state}" + (f": {message}" if message and state != "SUCCEEDED" else ""), file=sys.stderr)
    return 0 if state == "SUCCEEDED" else 1


def cmd_status(args: argparse.Namespace) -> int:
    from . import submit as jobs_api

    state, message = jobs_api.status(args.address, args.submission_id)
    print(f"{args.submission_id}: {state}" + (f": {message}" if message else ""))
    return 1 if state in ("FAILED", "STOPPED") else 0


def cmd_stop(args: argparse.Namespace) -> int:
    from . import submit as jobs_api

    running, state = jobs_api.stop(args.address, args.submission_id)
    if not running:
        print(f"{args.submission_id}: nothing to stop, it is {state}")
        return 0
    print(f"{args.submission_id}: {state}" + ("" if state == "STOPPED" else " (stop requested, not ended yet)"))
    return 0 if state in jobs_api.FINISHED else 1


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
            on_gpus = f" ({cls.gpu_batch_size} where the step has GPUs)" if cls.gpu_batch_size else ""
            print(f"    batch_size: default {cls.default_batch_size}{on_gpus} - rows per call of the step's workers")
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
    args.wait = DEFAULT_WAIT
    return cmd_run(args)


DEFAULT_WAIT = 600.0
"""Seconds ``run`` waits for an autoscaler to add the nodes a job needs."""


def _run_flags(p: argparse.ArgumentParser) -> None:
    """The flags of ``run`` that ``submit`` passes on to the ``run`` on the cluster."""
    p.add_argument("--verbose", action="store_true", default=argparse.SUPPRESS,
                   help="Ray's own progress snapshots and the workers' logs (default: one line per step)")
    p.add_argument("--resume", action="store_true",
                   help="continue an interrupted run of the same job: rows already written are not redone; "
                        "a changed job is refused, a finished one is left as it is")
    p.add_argument("--retry-errors", action="store_true", help="like --resume, and redo the rows in errors/")
    p.add_argument("--overwrite", action="store_true", help="delete an existing output first")
    p.add_argument("--cpu", action="store_true", help="drop every GPU request and run on CPUs")
    p.add_argument("--wait", type=float, default=DEFAULT_WAIT, metavar="SECONDS",
                   help="on an autoscaling cluster, how long to wait for the nodes the steps need before "
                        f"giving up (default: {DEFAULT_WAIT:g}); a fixed cluster that lacks them fails at once")


def _api_address(p: argparse.ArgumentParser) -> None:
    default = os.environ.get("RAY_API_SERVER_ADDRESS")
    p.add_argument("--address", default=default, required=default is None,
                   help="the cluster's Ray Jobs API (dashboard) address, e.g. http://head:8265 "
                        "(default: $RAY_API_SERVER_ADDRESS)")


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
    _run_flags(p)
    p.add_argument("--num-cpus", type=int, default=None, help="CPUs of the local Ray (default: all)")
    p.add_argument("--num-gpus", type=int, default=None, help="GPUs of the local Ray (default: detected)")
    p.set_defaults(fn=cmd_run)

    p = sub.add_parser(
        "submit", help="run a job on a remote cluster through the Ray Jobs API (needs mmbatch[cluster])",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Prints the submission id. The job file travels as written (${VAR} resolved on the cluster;\n"
               "--env sets them there) with this mmbatch package; the cluster runs\n"
               "`mmbatch run JOB KEY=VALUE... --address auto` with the run flags given here.",
    )
    _job_args(p)
    _api_address(p)
    _run_flags(p)
    p.add_argument("--env", action="append", default=[], metavar="VAR=VALUE",
                   help="an environment variable of the job on the cluster (repeatable)")
    p.add_argument("--follow", action="store_true",
                   help="stream the job's logs until it ends; exit status 1 unless it succeeded")
    p.set_defaults(fn=cmd_submit)

    p = sub.add_parser("status", help="the state of a submitted job (exit status 1: failed or stopped)")
    p.add_argument("submission_id")
    _api_address(p)
    p.set_defaults(fn=cmd_status)

    p = sub.add_parser("stop", help="stop a submitted job")
    p.add_argument("submission_id")
    _api_address(p)
    p.set_defaults(fn=cmd_stop)

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
