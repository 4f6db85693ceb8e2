"""Actors that run a model on their CPUs keep their freed heap for the next batch
(:mod:`mmbatch.pipelines.heap`): glibc honours the settings, Ray starts such actors with
them, and nothing else gets them."""

import subprocess
import sys

import numpy as np

from mmbatch.pipelines.executor import remote_args
from mmbatch.pipelines.heap import MODEL_HEAP, model_heap_env
from tests.pipelines.test_run import _planned

# A batch's activations as a model's forward makes them, in Ray Data's call thread: blocks
# of 8-48 MiB from malloc, written and freed, batch after batch. Prints the minor page
# faults of 12 batches after the first 12.
BATCHES = """
import ctypes, resource, threading

libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]

def batches():
    for _ in range(12):
        blocks = [(libc.malloc(n << 20), n << 20) for n in (8, 24, 48, 16)]
        for p, n in blocks:
            ctypes.memset(p, 1, n)
        for p, _ in blocks:
            libc.free(p)

for _ in range(2):  # the first 12: the heap grows
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    t = threading.Thread(target=batches)
    t.start()
    t.join()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _faults(env: dict[str, str]) -> int:
    out = subprocess.run([sys.executable, "-c", BATCHES], env=env, capture_output=True, text=True, check=True)
    return int(out.stdout)


def test_the_model_heap_keeps_what_a_batch_frees_for_the_next():
    plain = _faults({})
    kept = _faults(dict(MODEL_HEAP))
    # glibc's defaults: the 48 MiB block (above the largest dynamic mmap threshold) is mapped
    # anew in every batch, 12,288 pages each time
    assert plain > 12 * 12_000
    assert kept < 100
    # the thresholds alone do not reach a thread's own arena: hence one arena
    thresholds = {k: v for k, v in MODEL_HEAP.items() if k != "MALLOC_ARENA_MAX"}
    assert _faults(thresholds) > 12 * 12_000


def test_only_actors_on_cpus_get_the_model_heap(monkeypatch):
    for key in MODEL_HEAP:
        monkeypatch.delenv(key, raising=False)
    assert remote_args(_planned(cpus=2)) == {"num_cpus": 2, "runtime_env": {"env_vars": MODEL_HEAP}}
    assert remote_args(_planned(gpus=1, cpus=1)) == {"num_cpus": 1, "num_gpus": 1}
    assert remote_args(_planned(cpus=1, step=0)) == {"num_cpus": 1}  # decode_image: tasks
    # a variable set where the job runs is the user's choice: left as it is
    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    assert model_heap_env() == {k: v for k, v in MODEL_HEAP.items() if k != "MALLOC_ARENA_MAX"}
    for key in MODEL_HEAP:
        monkeypatch.setenv(key, "1")
    assert "runtime_env" not in remote_args(_planned(cpus=2))


class _Environment:
    """An actor's call that reports the heap variables its process started with."""

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import os

        n = len(batch["id"])
        return {k: np.array([os.environ.get(k, "")] * n) for k in MODEL_HEAP}


def test_ray_starts_a_cpu_model_actor_with_the_model_heap(ray_session, monkeypatch):
    import ray.data
    from ray.data import ActorPoolStrategy

    for key in MODEL_HEAP:
        monkeypatch.delenv(key, raising=False)
    args = remote_args(_planned(cpus=1))
    rows = ray.data.range(4).map_batches(_Environment, compute=ActorPoolStrategy(size=1), **args).take_all()
    assert rows == [dict(MODEL_HEAP)] * 4
