"""A real two-node Ray cluster on loopback, with its own ports and temp dir, stopped by PID:
the head reserves no CPU, so every task and actor runs on the worker node, whose Python
environment has Ray, torch and transformers but not mmbatch (as a stock Ray image). The
quickstart job still runs, through ``mmbatch run --address`` and through ``mmbatch submit``
to the head's Jobs API: both ship the package in the runtime env."""

import json
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import pytest

from tests.pipelines.local_ray import (
    cluster_env,
    free_ports,
    ray_start,
    short_temp_dir,
    stop_cluster,
)


def env_without_mmbatch(folder: Path) -> Path:
    """A venv that sees this one's site-packages through a path entry: its packages import,
    but the .pth hooks there (mmbatch's editable install among them) are not run."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(folder)], check=True)
    site = next((folder / "lib").glob("python*/site-packages"))
    (site / "parent.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return folder / "bin" / "python"


@pytest.fixture
def two_nodes(tmp_path):
    worker_python = env_without_mmbatch(tmp_path / "worker-env")
    probe = subprocess.run([str(worker_python), "-c", "import mmbatch"], cwd=tmp_path, capture_output=True)
    assert probe.returncode != 0, "the worker environment must not have mmbatch"
    assert subprocess.run([str(worker_python), "-c", "import ray, torch, transformers"], cwd=tmp_path).returncode == 0
    temp = short_temp_dir()
    gcs, head_nm, head_om, head_agent, dashboard, w_nm, w_om, w_agent = free_ports(8)  # worker ports: the OS picks
    env = cluster_env(temp)
    try:
        ray_start(Path(sys.executable), ["--head", f"--port={gcs}", "--num-cpus=0", f"--temp-dir={temp}",
                                          f"--node-manager-port={head_nm}", f"--object-manager-port={head_om}",
                                          f"--dashboard-agent-listen-port={head_agent}", "--include-dashboard=true",
                                          "--dashboard-host=127.0.0.1", f"--dashboard-port={dashboard}"], env)
        ray_start(worker_python, [f"--address=127.0.0.1:{gcs}", "--num-cpus=3", f"--node-manager-port={w_nm}",
                                  f"--object-manager-port={w_om}", f"--dashboard-agent-listen-port={w_agent}"],
                  env | {"PYTHONPATH": ""})
        yield f"127.0.0.1:{gcs}", f"http://127.0.0.1:{dashboard}", env
    finally:
        stop_cluster(temp, gcs)


@pytest.mark.slow
def test_quickstart_runs_on_a_worker_without_mmbatch(two_nodes, tmp_path):
    from mmbatch.testing.quickstart import prepare

    address, jobs_api, env = two_nodes
    root = tmp_path / "qs"
    prepare(root)
    out = root / "out"
    started = time.time()
    run = subprocess.run(
        [sys.executable, "-m", "mmbatch.pipelines.cli", "run", "quickstart", "--address", address, "--overwrite"],
        cwd=tmp_path, env=env | {"MMBATCH_QUICKSTART": str(root)}, capture_output=True, text=True, timeout=600,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["code"] == "shipped"  # the worker node had no mmbatch: the runtime env carried it
    assert summary["input_rows"] == 101 == summary["rows"] + summary["errors"] and summary["errors"] == 5
    assert "job quickstart: 101 input rows -> 96 rows + 5 error rows" in run.stdout
    # readable progress: Ray's own snapshots are off without --verbose
    assert "Running Dataset" not in run.stderr and time.time() - started < 600

    # the same job submitted through the Jobs API: its driver runs on the head, its tasks
    # and actors on the worker without mmbatch
    out = root / "out-submitted"
    submitted = subprocess.run(
        [sys.executable, "-m", "mmbatch.pipelines.cli", "submit", "quickstart", "--address", jobs_api,
         "--env", f"MMBATCH_QUICKSTART={root}", "input.limit=24", f"output.path={out}", "--follow"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600,
    )
    assert submitted.returncode == 0, submitted.stdout[-3000:] + submitted.stderr[-2000:]
    assert submitted.stdout.splitlines()[0].startswith("raysubmit_")
    summary = json.loads((out / "summary.json").read_text())
    assert summary["code"] == "shipped" and summary["input_rows"] == 24 == summary["rows"] + summary["errors"]
