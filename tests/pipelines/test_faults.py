"""Fault injection: ``mmbatch run`` in a process of its own (its own local Ray, temp dir and
ports), with a ``sitecustomize`` on PYTHONPATH that makes a write task exit right after its
rows/ file lands, kills a model actor, or slows decoding so the driver can be SIGKILLed
midway. Every run must end with each input id exactly once in rows/ + errors/."""

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import psutil
import pyarrow.parquet as pq
import pytest

from mmbatch.testing.images import write_image_parquet

SITE = textwrap.dedent('''
    import os

    fault, marker = os.environ.get("MMBATCH_TEST_FAULT", ""), os.environ.get("MMBATCH_TEST_MARKER", "")
    if fault:
        import time

        import mmbatch.operators.image as _image
        import mmbatch.pipelines.io as _io
        import mmbatch.pipelines.stages as _stages

        def _once():
            if os.path.exists(marker):
                return False
            open(marker, "w").close()
            return True

        if "slow" in fault:
            _process = _image.DecodeImage.process
            def _slow(self, batch):
                time.sleep(0.3)
                return _process(self, batch)
            _image.DecodeImage.process = _slow
        if "exit-after-write" in fault:
            _write = _io.write_parquet_atomic
            def _exit_after(table, fs, directory, name):
                path = _write(table, fs, directory, name)
                if directory.rstrip("/").endswith("/rows") and _once():
                    os._exit(1)  # the write task dies right after its rows/ file landed
                return path
            _io.write_parquet_atomic = _exit_after
        if "kill-actor" in fault:
            _call = _stages.StepActor.__call__
            def _die_once(self, table):
                if _once():
                    os._exit(1)  # the model actor dies on its first batch
                return _call(self, table)
            _stages.StepActor.__call__ = _die_once
''')


@pytest.fixture
def corpus(tmp_path):
    data = tmp_path / "data.parquet"
    write_image_parquet(data, 400, size=(16, 16), fmt="PNG")
    return data


def job_file(tmp_path: Path, data: Path, out: Path, model: str | None = None) -> Path:
    steps = [{"op": "decode_image", "batch_size": 50}]
    if model:
        steps.append({"op": "embed", "model": model, "batch_size": 50, "resources": {"cpus": 0.5}})
    path = tmp_path / "job.yaml"
    path.write_text(json.dumps({"name": "faults", "input": {"path": str(data), "block_rows": 100},
                                "steps": steps, "output": {"path": str(out)}}))
    return path


@pytest.fixture(autouse=True)
def ray_tmp(monkeypatch):
    """A short temp dir for the runs' own Ray (its socket paths must fit in 107 bytes)."""
    folder = tempfile.mkdtemp(prefix="mmbr-")
    monkeypatch.setenv("MMBATCH_TEST_RAY_TMP", folder)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def env_for(tmp_path: Path, fault: str) -> dict[str, str]:
    site = tmp_path / "site"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(SITE)
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_ADDRESS")}
    ray_tmp = os.environ["MMBATCH_TEST_RAY_TMP"]
    return env | {"PYTHONPATH": str(site), "MMBATCH_TEST_FAULT": fault,
                  "MMBATCH_TEST_MARKER": str(tmp_path / f"marker-{fault}"), "RAY_TMPDIR": ray_tmp}


def mmbatch(args: list[str], env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mmbatch.pipelines.cli", *args, "--num-cpus", "2"],
                          env=env, capture_output=True, text=True, timeout=timeout)


def written(out: Path) -> list:
    ids = []
    for sub in ("rows", "errors"):
        if (out / sub).exists():
            ids += [i for f in sorted((out / sub).glob("*.parquet")) for i in pq.read_table(f, columns=["id"]).column("id").to_pylist()]
    return ids


@pytest.mark.slow
def test_a_write_task_that_dies_after_its_file_landed_is_retried_without_duplicates(tmp_path, corpus):
    out = tmp_path / "out"
    env = env_for(tmp_path, "exit-after-write")
    done = mmbatch(["run", str(job_file(tmp_path, corpus, out))], env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert (tmp_path / "marker-exit-after-write").exists()  # the fault happened
    ids = written(out)
    assert len(ids) == 400 == len(set(ids))
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["input_rows"], summary["rows"], summary["errors"]) == (400, 400, 0)


@pytest.mark.slow
def test_a_task_reading_a_whole_file_dies_after_its_first_file_and_is_retried_without_duplicates(tmp_path):
    """8 files of 50 rows on 2 CPUs, blocks of 20 rows: each file is read, decoded and
    written in one task, in files of 20 rows as they come. The first task to write dies
    right after its first file landed; its retry writes the same files again, not copies."""
    data, out = tmp_path / "data", tmp_path / "out"
    write_image_parquet(data, 400, size=(16, 16), fmt="PNG", shards=8)
    job = tmp_path / "job.yaml"
    job.write_text(json.dumps({"name": "faults", "input": {"path": str(data), "block_rows": 20},
                               "steps": [{"op": "decode_image", "batch_size": 10}], "output": {"path": str(out)}}))
    done = mmbatch(["run", str(job)], env_for(tmp_path, "exit-after-write"))
    assert done.returncode == 0, done.stderr[-2000:]
    assert (tmp_path / "marker-exit-after-write").exists()  # the fault happened
    ids = written(out)
    assert len(ids) == 400 == len(set(ids))
    sizes = sorted(pq.read_metadata(f).num_rows for f in (out / "rows").glob("*.parquet"))
    assert sizes == [10] * 8 + [20] * 16  # per file: 20 + 20 + 10 rows


@pytest.mark.slow
def test_a_killed_model_actor_is_replaced_and_its_batch_counted_once(tmp_path, corpus, tiny_models):
    out = tmp_path / "out"
    env = env_for(tmp_path, "kill-actor")
    done = mmbatch(["run", str(job_file(tmp_path, corpus, out, str(tiny_models("clip"))))], env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert (tmp_path / "marker-kill-actor").exists()
    ids = written(out)
    assert len(ids) == 400 == len(set(ids))
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"]["steps[1] embed"]["rows"] == 400  # the retried batch is not counted twice


@pytest.mark.slow
def test_a_driver_killed_midway_resumes_without_redoing_written_blocks(tmp_path):
    data = tmp_path / "one.parquet"
    write_image_parquet(data, 1200, size=(16, 16), fmt="PNG")
    out = tmp_path / "out"
    job = job_file(tmp_path, data, out)
    env = env_for(tmp_path, "slow")
    driver = subprocess.Popen([sys.executable, "-m", "mmbatch.pipelines.cli", "run", str(job), "--num-cpus", "2"],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 240
    while time.time() < deadline and len(list((out / "rows").glob("part-*.parquet"))) < 2:
        assert driver.poll() is None, "the run ended before it could be killed"
        time.sleep(0.2)
    family = [driver.pid] + [p.pid for p in psutil.Process(driver.pid).children(recursive=True)]
    os.killpg(driver.pid, signal.SIGKILL)
    for pid in family:  # the local Ray it started goes down with it
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    driver.wait()
    before = written(out)
    assert 200 <= len(before) < 1200 and len(before) == len(set(before))
    assert json.loads((out / "manifest.json").read_text())["state"] == "running"

    resumed = mmbatch(["run", str(job), "--resume"], env_for(tmp_path, ""))
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    ids = written(out)
    assert len(ids) == 1200 == len(set(ids))
    summary = json.loads((out / "summary.json").read_text())
    assert summary["skipped"] == len(before)
    assert summary["steps"]["steps[0] decode_image"]["rows"] == 1200 - len(before)  # nothing redone
    assert json.loads((out / "manifest.json").read_text())["state"] == "complete"
