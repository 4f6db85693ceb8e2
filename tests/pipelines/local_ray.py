"""Ray clusters of a test's own on loopback: free ports, ``ray start`` with the test's
Python, and a stop that ends only the processes of that cluster (its temp dir or GCS port
in their command line), never a bare ``ray stop``. Ray 2.60 on loopback: token auth off
(``RAY_AUTH_MODE=disabled``) and a short temp dir (socket paths fit in 107 bytes)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import psutil


def free_ports(n: int) -> list[int]:
    socks, ports = [], []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
        ports.append(s.getsockname()[1])
    for s in socks:
        s.close()
    return ports


def short_temp_dir() -> str:
    return tempfile.mkdtemp(prefix="mmbc-")  # short: Ray's socket paths must fit in 107 bytes


def cluster_env(temp: str, **extra: str) -> dict[str, str]:
    """This environment for a loopback cluster of its own: no inherited Ray address, no token
    auth, this venv's ``python`` first on PATH (what a cluster image's entrypoints run)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_ADDRESS")}
    path = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env | {"RAY_TMPDIR": temp, "RAY_AUTH_MODE": "disabled", "PATH": path} | extra


COMMON = ["--disable-usage-stats", "--node-ip-address=127.0.0.1"]


def ray_start(python: Path, args: list[str], env: dict[str, str]) -> None:
    run = subprocess.run([str(python), "-m", "ray.scripts.scripts", "start", *args, *COMMON], env=env,
                         capture_output=True, text=True, timeout=180)
    assert run.returncode == 0, run.stderr[-3000:]


def stop_cluster(temp: str, gcs_port: int) -> None:
    """End the processes of the cluster whose temp dir is ``temp`` (and GCS port ``gcs_port``)."""
    me = os.getpid()
    mine = [p for p in psutil.process_iter(["cmdline"])
            if p.pid != me and any(temp in part or f"{gcs_port}" in part for part in (p.info["cmdline"] or []))]
    for p in mine:
        try:
            p.send_signal(signal.SIGTERM)
        except psutil.Error:
            pass
    gone, alive = psutil.wait_procs(mine, timeout=10)
    for p in alive:
        try:
            p.kill()
        except psutil.Error:
            pass
    shutil.rmtree(temp, ignore_errors=True)
