"""Autoscaling-aware scheduling: the planning against a cluster description (node types
and their maxima), and a real autoscaling cluster -- Ray's fake multi-node provider behind a
head of this test's own (own GCS port and temp dir, stopped by PID; Ray's
``AutoscalingCluster`` helper runs a bare ``ray stop --force``, which would end every Ray on
the host, so the test starts the same head itself) whose GPU node type is at zero workers."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from mmbatch.core.resources import Resources
from mmbatch.pipelines.planning import JobRunError, PlannedStep, check_cluster
from mmbatch.pipelines.scaling import ClusterView, NodeType
from mmbatch.pipelines.spec import job_from_dict
from mmbatch.testing.images import write_image_parquet
from tests.pipelines.local_ray import (
    cluster_env,
    free_ports,
    ray_start,
    short_temp_dir,
    stop_cluster,
)


def planned(gpus=0.0, cpus=1.0, concurrency=1):
    job = job_from_dict({"name": "p", "input": {"path": "x", "columns": ["id", "image"]},
                         "steps": [{"op": "decode_image"}, {"op": "embed", "model": "m"}], "output": {"path": "o"}})
    return PlannedStep(job.steps[1], Resources(gpus=gpus, cpus=cpus, concurrency=concurrency), {}, {}, set())


GPU_TYPE = NodeType("gpu", {"CPU": 8, "GPU": 1}, max_workers=4)


def test_an_autoscaling_cluster_at_zero_gpus_accepts_what_a_node_type_can_hold():
    view = ClusterView({"CPU": 4}, autoscaler=True, node_types=[NodeType("cpu", {"CPU": 4}, 2), GPU_TYPE])
    scale = check_cluster([planned(gpus=1, cpus=2, concurrency=(2, 4))], view)
    assert scale is not None and scale.steps == ["steps[1] embed"]
    # the actor pool at its minimum size, and a CPU for reading
    assert scale.bundles == [{"CPU": 1.0}, {"CPU": 2.0, "GPU": 1.0}, {"CPU": 2.0, "GPU": 1.0}]
    # what the nodes up now already hold needs no autoscaler
    assert check_cluster([planned(cpus=1)], view) is None
    # node types unknown (an autoscaler v1): taken as satisfiable, --wait bounds it
    assert check_cluster([planned(gpus=8)], ClusterView({"CPU": 4}, autoscaler=True)) is not None


def test_a_request_no_node_type_holds_fails_fast_naming_the_step_and_the_node_types():
    view = ClusterView({"CPU": 4}, autoscaler=True, node_types=[GPU_TYPE])
    with pytest.raises(JobRunError, match=r"steps\[1\] embed asks for 2 GPUs, 1 CPU per worker.*"
                                          r"no node type.*gpu \(CPU=8, GPU=1 x4\).*--cpu"):
        check_cluster([planned(gpus=2)], view)
    # the actor pools' minimum against the most CPUs the autoscaler can add
    with pytest.raises(JobRunError, match="reserve 40 of the cluster's 36 CPUs \\(at the autoscaler's maximum\\)"):
        check_cluster([planned(cpus=8, concurrency=5)], view)


def test_a_fixed_cluster_keeps_failing_fast():
    view = ClusterView({"CPU": 16})
    with pytest.raises(JobRunError, match="asks for 1 GPU per worker but the Ray cluster has 0 GPUs; run with --cpu"):
        check_cluster([planned(gpus=1)], view)
    with pytest.raises(JobRunError, match="asks for 32 CPUs per worker; the cluster has 16"):
        check_cluster([planned(cpus=32)], view)


# -- a real autoscaling cluster ---------------------------------------------------------
HEAD_TYPE = "ray.head.default"


@pytest.fixture(scope="module")
def autoscaling_cluster():
    """A head with 2 CPUs and an autoscaler (the fake multi-node provider) that can add one
    node of {CPU: 1, GPU: 1}, starting at zero."""
    temp = short_temp_dir()
    gcs, nm, om, agent = free_ports(4)
    config = {
        "cluster_name": "mmbatch-test", "max_workers": 1, "upscaling_speed": 1.0, "idle_timeout_minutes": 5,
        # nodes come up as they are (no setup commands to run on them), as KubeRay's do
        "provider": {"type": "fake_multinode", "gcs_address": f"127.0.0.1:{gcs}",
                     "disable_node_updaters": True, "disable_launch_config_check": True},
        "auth": {"ssh_user": "ray"}, "head_node_type": HEAD_TYPE,
        "available_node_types": {
            HEAD_TYPE: {"resources": {"CPU": 2}, "node_config": {}, "max_workers": 0},
            "gpu": {"resources": {"CPU": 1, "GPU": 1}, "node_config": {}, "min_workers": 0, "max_workers": 1},
        },
        **{k: [] for k in ("cluster_synced_files", "rsync_exclude", "rsync_filter", "initialization_commands",
                           "setup_commands", "head_setup_commands", "worker_setup_commands",
                           "head_start_ray_commands", "worker_start_ray_commands")},
        "file_mounts": {}, "file_mounts_sync_continuously": False,
    }
    path = Path(temp) / "autoscaling.json"
    path.write_text(json.dumps(config))
    env = cluster_env(temp)
    try:
        ray_start(Path(sys.executable), [
            "--head", f"--port={gcs}", "--num-cpus=2", f"--temp-dir={temp}", f"--node-manager-port={nm}",
            f"--object-manager-port={om}", f"--dashboard-agent-listen-port={agent}", "--include-dashboard=false",
            f"--autoscaling-config={path}",
        ], env | {"RAY_FAKE_CLUSTER": "1", "AUTOSCALER_UPDATE_INTERVAL_S": "1"})
        yield f"127.0.0.1:{gcs}", env
    finally:
        stop_cluster(temp, gcs)


def write_job(tmp_path, clip, gpus):
    data = tmp_path / "data"
    if not data.exists():
        write_image_parquet(data, 8, size=(64, 48), shards=2)
    job = {
        "name": "autoscale", "input": {"path": str(data)},
        "steps": [{"op": "decode_image", "resize": 32},
                  # a logical GPU: the actor runs on CPU where torch sees no CUDA
                  {"op": "embed", "model": str(clip), "batch_size": 4, "resources": {"gpus": gpus, "cpus": 1}}],
        "output": {"path": str(tmp_path / f"out-{gpus}")},
    }
    path = tmp_path / f"job-{gpus}.yaml"
    path.write_text(yaml.safe_dump(job))
    return path


def run_cli(env, *args):
    return subprocess.run([sys.executable, "-m", "mmbatch.pipelines.cli", "run", *args], env=env,
                          cwd=env["RAY_TMPDIR"], capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_a_gpu_step_gets_its_node_from_the_autoscaler_and_the_job_finishes(autoscaling_cluster, tmp_path, tiny_models):
    address, env = autoscaling_cluster
    run = run_cli(env, str(write_job(tmp_path, tiny_models("clip"), gpus=1)), "--address", address, "--wait", "120")
    assert run.returncode == 0, run.stderr[-3000:]
    assert "waiting for 1 GPU (autoscaler) for steps[1] embed: 0 s" in run.stderr
    assert "the autoscaler added 1 GPU for steps[1] embed in" in run.stderr
    summary = json.loads((tmp_path / "out-1" / "summary.json").read_text())
    assert summary["input_rows"] == 8 == summary["rows"] and summary["errors"] == 0

    # more than any node can get: on an autoscaler v1 (node types not published) it waits, then says so
    run = run_cli(env, str(write_job(tmp_path, tiny_models("clip"), gpus=2)), "--address", address, "--wait", "3")
    assert run.returncode == 2
    # the GPU node of the first run is still up (idle timeout 5 min): one more GPU is missing
    assert ("error: steps[1] embed: waited 3 s for the autoscaler to add 1 GPU (the cluster has 1 GPU, 3 CPUs)"
            in run.stderr), run.stderr[-2000:]
