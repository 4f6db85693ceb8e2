"""``mmbatch submit | status | stop``: a job run on a remote Ray cluster through the Ray Jobs
API (the dashboard's HTTP address, ``http://head:8265``), from a machine outside the cluster.

What a submission carries, in its runtime env:

- ``py_modules``: this mmbatch package folder (as ``init_ray`` ships it), so the driver on
  the head and every worker run the code that was validated here, whatever the image has;
- ``working_dir``: a folder holding only the job file, **as written** (``${VAR}`` not yet
  replaced). The file travels as a file rather than embedded in the entrypoint: the
  entrypoint the dashboard shows stays a readable ``mmbatch run job.yaml KEY=VALUE ...``,
  and ``${VAR}`` references (credentials, buckets) are resolved on the cluster, in the
  driver's environment (``--env VAR=VALUE`` sets them there), so no secret is copied into
  the entrypoint or the job's metadata;
- ``env_vars``: the ``--env`` pairs.

The entrypoint is ``python -m mmbatch.pipelines.cli run <job file> <overrides> --address auto``
plus the ``run`` flags given to ``submit``. Paths in a submitted job are read on the cluster:
use object-store URLs or shared storage.
"""

from __future__ import annotations

import asyncio
import shlex
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .planning import JobRunError

INSTALL_HINT = "pip install 'mmbatch[cluster]'"
FINISHED = frozenset({"SUCCEEDED", "FAILED", "STOPPED"})
"""Job states after which a submission changes no more."""


def client(address: str) -> Any:
    """A ``JobSubmissionClient`` for the dashboard at ``address``, or a ``JobRunError`` that
    says what to install or what could not be reached."""
    try:
        from ray.job_submission import JobSubmissionClient
    except ImportError as exc:
        raise JobRunError(f"the Ray Jobs API needs ray[default] ({exc}); {INSTALL_HINT}") from None
    try:
        return JobSubmissionClient(address)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise JobRunError(
            f"cannot reach the Ray Jobs API at {address} (the dashboard address, e.g. http://head:8265): {exc}"
        ) from None


def _call(what: str, fn: Callable[[], Any]) -> Any:
    """``fn()``, its Ray errors (unknown submission id, dashboard gone) as ``JobRunError``."""
    try:
        return fn()
    except (ConnectionError, RuntimeError) as exc:
        raise JobRunError(f"{what}: {exc}") from None


@dataclass
class Submission:
    """What ``submit`` sends: the entrypoint and its runtime env (``working_dir`` names a
    temporary folder that exists while ``staged`` is open)."""

    entrypoint: str
    runtime_env: dict[str, Any] = field(default_factory=dict)


@contextmanager
def staged(
    job_file: Path, overrides: list[str], run_flags: list[str], env_vars: dict[str, str] | None = None,
) -> Iterator[Submission]:
    """The submission of ``job_file`` (a file that exists), its working dir on disk for as
    long as the context is open (Ray uploads it during ``submit_job``)."""
    import mmbatch

    folder = Path(tempfile.mkdtemp(prefix="mmbatch-submit-"))
    try:
        shutil.copyfile(job_file, folder / job_file.name)
        argv = ["python", "-m", "mmbatch.pipelines.cli", "run", job_file.name, *overrides,
                "--address", "auto", *run_flags]
        env: dict[str, Any] = {
            "working_dir": str(folder),
            "py_modules": [str(Path(mmbatch.__file__).parent)],
        }
        if env_vars:
            env["env_vars"] = dict(env_vars)
        yield Submission(shlex.join(argv), env)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def submit(address: str, submission: Submission) -> str:
    """Submit; returns the submission id."""
    jobs = client(address)
    sid: str = _call(f"submitting to {address}", lambda: jobs.submit_job(
        entrypoint=submission.entrypoint, runtime_env=submission.runtime_env,
    ))
    return sid


def status(address: str, submission_id: str) -> tuple[str, str]:
    """(state, Ray's message) of a submission: PENDING, RUNNING, SUCCEEDED, FAILED, STOPPED."""
    jobs = client(address)
    info = _call(f"submission {submission_id}", lambda: jobs.get_job_info(submission_id))
    return str(info.status.value if hasattr(info.status, "value") else info.status), str(info.message or "")


def wait(address: str, submission_id: str, timeout: float, states: frozenset[str] = FINISHED) -> str:
    """Poll until the submission's state is one of ``states`` (or ``timeout`` seconds pass);
    returns the last state seen."""
    deadline = time.monotonic() + timeout
    while True:
        state = status(address, submission_id)[0]
        if state in states or time.monotonic() >= deadline:
            return state
        time.sleep(0.5)


def follow(address: str, submission_id: str, write: Callable[[str], Any]) -> str:
    """Stream the submission's logs through ``write`` until it ends; returns its final state."""
    jobs = client(address)

    async def tail() -> None:
        async for lines in jobs.tail_job_logs(submission_id):
            write(lines)

    try:
        asyncio.run(tail())
    except ImportError as exc:  # the log stream needs aiohttp (ray[default])
        raise JobRunError(f"following logs needs ray[default] ({exc}); {INSTALL_HINT}") from None
    except (ConnectionError, RuntimeError) as exc:
        raise JobRunError(f"submission {submission_id}: {exc}") from None
    # the stream closes when the driver exits; the state follows a moment later
    return wait(address, submission_id, timeout=30)


def stop(address: str, submission_id: str, timeout: float = 60) -> tuple[bool, str]:
    """Ask Ray to stop the submission; returns (whether it was still running, its state once
    it has ended or ``timeout`` passed)."""
    jobs = client(address)
    stopped = bool(_call(f"submission {submission_id}", lambda: jobs.stop_job(submission_id)))
    return stopped, wait(address, submission_id, timeout)
