"""Shared fixtures: one local Ray per test session, tiny models built once, job helpers.

Tests never reach a network: the hub is switched off before anything imports it.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")

def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """``@pytest.mark.gpu`` tests run where CUDA is present (a lent GPU machine) and are
    reported as skipped elsewhere; ``@pytest.mark.vllm`` tests run where vLLM is installed
    (CI's second venv, README "The vLLM backend")."""
    import importlib.util

    import torch

    skips = {}
    if not torch.cuda.is_available():
        skips["gpu"] = pytest.mark.skip(reason="needs a CUDA device")
    if importlib.util.find_spec("vllm") is None:
        skips["vllm"] = pytest.mark.skip(reason="needs vllm (pip install 'mmbatch[vllm]')")
    for item in items:
        for mark, skip in skips.items():
            if mark in item.keywords:
                item.add_marker(skip)


# Logical resources of the test cluster: more CPUs than cores so several actor pools fit,
# and logical GPUs so GPU-requesting steps schedule (they run on CPU inside the actors).
RAY_CPUS = 4
RAY_GPUS = 2


@pytest.fixture(scope="session")
def ray_session() -> Any:
    """Start Ray once for the whole test session."""
    import ray

    os.environ["MMBATCH_CACHE"] = os.environ.get("MMBATCH_CACHE") or str(
        Path(os.environ.get("PYTEST_TMPDIR", "/tmp")) / "mmbatch-test-cache"
    )
    if not ray.is_initialized():
        ray.init(num_cpus=RAY_CPUS, num_gpus=RAY_GPUS, include_dashboard=False, configure_logging=False)
    from ray.data import DataContext

    DataContext.get_current().enable_progress_bars = False
    yield ray
    reap_after_shutdown(ray)


def reap_after_shutdown(ray: Any) -> None:
    """``ray.shutdown()``, then end any process of this session's Ray that outlives it.

    Ray 2.60's core worker can deadlock in its own exit handler (a futex in the pubsub
    publisher's destructor): that worker then lives on, orphaned, holding its model. Its
    PIDs are known before the shutdown (the Ray processes this process started, with their
    descendants), so they are waited for and killed, and named on stderr."""
    import psutil

    started: list[psutil.Process] = []
    for child in psutil.Process().children():
        try:
            if f"{os.sep}ray{os.sep}" in " ".join(child.cmdline()):  # gcs_server, raylet, Ray's monitors
                started += [child, *child.children(recursive=True)]
        except psutil.Error:
            pass
    ray.shutdown()
    _, alive = psutil.wait_procs(started, timeout=15)
    for proc in alive:
        try:
            print(f"conftest: killing Ray process {proc.pid} ({proc.name()}) that outlived ray.shutdown()",
                  file=sys.stderr)
            proc.kill()
        except psutil.Error:
            pass


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """``tiny_models("clip")`` -> folder of a tiny random-weight model, built once per session.

    Names map to ``build_tiny_<name>`` in ``mmbatch.testing`` modules."""
    import importlib

    root = tmp_path_factory.mktemp("models")
    built: dict[str, Path] = {}
    modules = ["mmbatch.testing.vision", "mmbatch.testing.audio", "mmbatch.testing.vlm",
               "mmbatch.testing.diffusion", "mmbatch.testing.video"]

    def get(name: str) -> Path:
        if name not in built:
            for module in modules:
                try:
                    mod = importlib.import_module(module)
                except ModuleNotFoundError:
                    continue
                fn = getattr(mod, f"build_tiny_{name}", None)
                if fn is not None:
                    built[name] = Path(fn(root / name))
                    break
            else:
                raise LookupError(f"no builder build_tiny_{name} in {modules}")
        return built[name]

    return get


@pytest.fixture
def run_job_dict(ray_session: Any, tmp_path: Path) -> Callable[..., Any]:
    """Validate a job given as a dict and run it on the session's Ray; returns the summary."""
    from mmbatch.pipelines.run import run_job
    from mmbatch.pipelines.spec import job_from_dict

    def run(data: dict[str, Any], **kwargs: Any) -> Any:
        data = dict(data)
        data.setdefault("name", "test-job")
        data.setdefault("output", {"path": str(tmp_path / "out")})
        return run_job(job_from_dict(data), **kwargs)

    return run
