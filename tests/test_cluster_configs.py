"""The cluster configs run as written: parsed, their fields that matter checked, and the
command each one tells a user to run validated against the shipped jobs."""

import shlex
import subprocess
from pathlib import Path

import yaml

import mmbatch
from mmbatch.pipelines.spec import load_job

CLUSTER = Path(__file__).parents[1] / "cluster"
IMAGE = f"your-registry/mmbatch:{mmbatch.__version__}"


def pods(spec: dict) -> list[dict]:
    groups = [spec["headGroupSpec"], *spec["workerGroupSpecs"]]
    return [g["template"]["spec"] for g in groups]


def check_ray_cluster_spec(spec: dict) -> None:
    assert spec["enableInTreeAutoscaling"] is True
    assert spec["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"
    for pod in pods(spec):
        (container,) = pod["containers"]
        assert container["image"] == IMAGE
        assert {"secretRef": {"name": "mmbatch-object-store"}} in container["envFrom"]
        mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
        assert mounts["dshm"] == "/dev/shm"
        assert {"name": "dshm", "emptyDir": pod["volumes"][0]["emptyDir"]} == pod["volumes"][0]
    gpu = next(g for g in spec["workerGroupSpecs"] if g["groupName"] == "gpu")
    assert gpu["minReplicas"] == 0 and gpu["maxReplicas"] > 0
    pod = gpu["template"]["spec"]
    assert pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert pod["tolerations"][0]["key"] == "nvidia.com/gpu"
    assert {m["name"] for m in pod["containers"][0]["volumeMounts"]} >= {"model-cache"}


def test_raycluster_autoscales_gpu_workers_from_zero_with_shm_cache_and_credentials():
    doc = yaml.safe_load((CLUSTER / "kuberay-raycluster.yaml").read_text())
    assert (doc["apiVersion"], doc["kind"]) == ("ray.io/v1", "RayCluster")
    check_ray_cluster_spec(doc["spec"])


def test_rayjob_entrypoint_runs_a_shipped_job_by_name_on_object_store_data():
    doc = yaml.safe_load((CLUSTER / "kuberay-rayjob.yaml").read_text())
    assert (doc["apiVersion"], doc["kind"]) == ("ray.io/v1", "RayJob")
    check_ray_cluster_spec(doc["spec"]["rayClusterSpec"])
    argv = shlex.split(doc["spec"]["entrypoint"])
    assert argv[:3] == ["mmbatch", "run", "transcribe_archive"] and "--address" in argv
    assert argv[argv.index("--address") + 1] == "auto"
    overrides = [a for a in argv[3:] if "=" in a]
    job = load_job(argv[2], overrides)  # the shipped job, with the entrypoint's overrides, validates
    assert str(job.input.path).startswith("s3://") and job.output.path.startswith("s3://")
    assert job.steps[1].resources.gpus == 1


def test_aws_launcher_runs_the_image_and_documents_ray_job_submit():
    text = (CLUSTER / "ray-cluster.aws.yaml").read_text()
    doc = yaml.safe_load(text)
    assert doc["docker"]["image"] == IMAGE
    assert doc["available_node_types"]["head"]["resources"] == {"CPU": 0}
    assert doc["available_node_types"]["gpu_worker"]["min_workers"] == 0
    assert "ray job submit --address http://127.0.0.1:8265 -- \\" in text and "ray submit" not in text


def test_dockerfile_installs_this_package_with_the_gpu_extras():
    text = (CLUSTER / "Dockerfile").read_text()
    assert text.splitlines()[4].startswith("FROM rayproject/ray:")
    assert "pip install --no-cache-dir '.[all,cluster]'" in text
    for line in text.splitlines():
        if line.startswith("COPY"):
            for src in line.split()[2:-1]:
                assert (CLUSTER.parent / src).exists(), src


def test_local_script_parses_and_never_stops_every_ray_on_the_host():
    script = CLUSTER / "local.sh"
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    lines = [line.strip() for line in script.read_text().splitlines() if not line.strip().startswith("#")]
    assert not any(line.startswith("ray stop") for line in lines)
    assert any("--temp-dir=" in line for line in lines)
