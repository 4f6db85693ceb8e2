"""``mmbatch submit | status | stop`` against a real Ray head on loopback with its dashboard
(the Jobs API) on a free port, its own temp dir, stopped by PID; one head for the module."""

import json
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest

import mmbatch
from mmbatch.pipelines.cli import main
from mmbatch.pipelines.spec import resolve_job_path
from mmbatch.pipelines.submit import staged
from tests.pipelines.local_ray import (
    cluster_env,
    free_ports,
    ray_start,
    short_temp_dir,
    stop_cluster,
)


@pytest.fixture(scope="module")
def jobs_api(tmp_path_factory):
    """(dashboard URL, env, quickstart root): a one-node head with the dashboard on."""
    from mmbatch.testing.quickstart import prepare

    root = tmp_path_factory.mktemp("qs")
    prepare(root)
    temp = short_temp_dir()
    gcs, dashboard, nm, om, agent = free_ports(5)
    env = cluster_env(temp)
    try:
        ray_start(Path(sys.executable), [
            "--head", f"--port={gcs}", "--num-cpus=3", f"--temp-dir={temp}", f"--node-manager-port={nm}",
            f"--object-manager-port={om}", f"--dashboard-agent-listen-port={agent}", "--include-dashboard=true",
            "--dashboard-host=127.0.0.1", f"--dashboard-port={dashboard}",
        ], env)
        yield f"http://127.0.0.1:{dashboard}", env, root
    finally:
        stop_cluster(temp, gcs)


def mmbatch_cli(env, *args, timeout=300):
    return subprocess.run([sys.executable, "-m", "mmbatch.pipelines.cli", *args], env=env, cwd=Path(env["RAY_TMPDIR"]),
                          capture_output=True, text=True, timeout=timeout)


def submission_id(run) -> str:
    first = run.stdout.splitlines()[0]
    assert re.fullmatch(r"raysubmit_\w+", first), run.stdout[:500]
    return first


def wait_for(env, url, sid, state, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        got = mmbatch_cli(env, "status", sid, "--address", url)
        if f"{sid}: {state}" in got.stdout:
            return got
        time.sleep(0.5)
    raise AssertionError(f"{sid} never reached {state}: {got.stdout} {got.stderr}")


@pytest.mark.slow
def test_submit_follow_runs_the_job_on_the_cluster_and_writes_its_rows(jobs_api):
    url, env, root = jobs_api
    out = root / "out-follow"
    run = mmbatch_cli(env, "submit", "quickstart", "--address", url, "--env", f"MMBATCH_QUICKSTART={root}",
                      "input.limit=24", f"output.path={out}", "--overwrite", "--follow")
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    sid = submission_id(run)
    # the job's own output, streamed: the summary line of `mmbatch run` on the cluster
    assert "job quickstart: 24 input rows ->" in run.stdout
    assert "--address auto --overwrite" in run.stdout  # the entrypoint Ray echoes
    summary = json.loads((out / "summary.json").read_text())
    assert summary["input_rows"] == 24 == summary["rows"] + summary["errors"] and summary["rows"] > 0
    assert summary["code"] == "shipped"  # mmbatch came in the submission's runtime env
    assert len(list((out / "rows").glob("*.parquet"))) > 0
    status = mmbatch_cli(env, "status", sid, "--address", url)
    assert status.returncode == 0 and status.stdout.startswith(f"{sid}: SUCCEEDED")


@pytest.mark.slow
def test_a_failing_submission_exits_non_zero_with_rays_message(jobs_api):
    url, env, root = jobs_api
    run = mmbatch_cli(env, "submit", "quickstart", "--address", url, "--env", f"MMBATCH_QUICKSTART={root}",
                      "steps.1.model=/nowhere/clip", f"output.path={root}/out-fail", "--follow")
    assert run.returncode == 1
    sid = submission_id(run)
    # the cluster's run refuses the job before Ray Data starts, naming the step
    assert "steps[1] (op: embed): model /nowhere/clip: no such file or folder" in run.stdout
    assert f"{sid}: FAILED" in run.stderr
    status = mmbatch_cli(env, "status", sid, "--address", url)
    assert status.returncode == 1 and f"{sid}: FAILED" in status.stdout


@pytest.mark.slow
def test_stop_ends_a_running_submission(jobs_api):
    url, env, root = jobs_api
    out = root / "out-stopped"
    run = mmbatch_cli(env, "submit", "quickstart", "--address", url, "--env", f"MMBATCH_QUICKSTART={root}",
                      f"output.path={out}")
    assert run.returncode == 0, run.stderr[-2000:]
    sid = submission_id(run)
    wait_for(env, url, sid, "RUNNING")
    stop = mmbatch_cli(env, "stop", sid, "--address", url)
    assert stop.returncode == 0 and stop.stdout.strip() == f"{sid}: STOPPED", stop.stdout + stop.stderr
    status = mmbatch_cli(env, "status", sid, "--address", url)
    assert status.returncode == 1 and status.stdout.startswith(f"{sid}: STOPPED")
    assert not (out / "summary.json").exists()  # it never finished
    again = mmbatch_cli(env, "stop", sid, "--address", url)
    assert again.returncode == 0 and "nothing to stop, it is STOPPED" in again.stdout


def test_staged_submission_carries_the_job_file_as_written_and_this_package(tmp_path):
    job = tmp_path / "my-job.yaml"
    job.write_text(resolve_job_path("quickstart").read_text())
    with staged(job, ["input.limit=5"], ["--overwrite", "--wait", "30"], {"MMBATCH_QUICKSTART": "/data"}) as sub:
        folder = Path(sub.runtime_env["working_dir"])
        assert [p.name for p in folder.iterdir()] == ["my-job.yaml"]
        assert (folder / "my-job.yaml").read_text() == job.read_text()  # ${VAR} left for the cluster
        assert "${MMBATCH_QUICKSTART:-./mmbatch-quickstart}" in (folder / "my-job.yaml").read_text()
        assert sub.runtime_env["py_modules"] == [str(Path(mmbatch.__file__).parent)]
        assert sub.runtime_env["env_vars"] == {"MMBATCH_QUICKSTART": "/data"}
        assert shlex.split(sub.entrypoint) == [
            "python", "-m", "mmbatch.pipelines.cli", "run", "my-job.yaml", "input.limit=5",
            "--address", "auto", "--overwrite", "--wait", "30",
        ]
    assert not folder.exists()


def test_submit_commands_name_the_missing_extra_and_an_unreachable_address(monkeypatch, capsys):
    port = free_ports(1)[0]
    assert main(["status", "raysubmit_x", "--address", f"http://127.0.0.1:{port}"]) == 2
    err = capsys.readouterr().err
    assert f"cannot reach the Ray Jobs API at http://127.0.0.1:{port}" in err
    monkeypatch.setitem(sys.modules, "ray.job_submission", None)  # as without ray[default]
    assert main(["stop", "raysubmit_x", "--address", "http://127.0.0.1:8265"]) == 2
    assert "pip install 'mmbatch[cluster]'" in capsys.readouterr().err
    # an invalid job is refused here, before anything is submitted
    assert main(["submit", "quickstart", "steps.1.batch_size=0", "--address", "http://127.0.0.1:8265"]) == 2
    assert "batch_size must be a positive integer" in capsys.readouterr().err
