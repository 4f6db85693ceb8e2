"""What the benchmarks share: the CLIP ViT-B/32 architecture with random weights, a corpus
of synthetic JPEGs, peak memory of a whole process tree, and running each contender in
a process of its own (so each one starts Ray, or not, as its user would)."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mmbatch.pipelines.heap import MODEL_HEAP

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def build_clip_b32(path: Path) -> Path:
    """CLIP ViT-B/32 (transformers' default CLIPConfig) with random weights: the compute of
    the real model, saved with a real processor, loaded through ``from_pretrained``."""
    if (path / "config.json").exists():
        return path
    import torch
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor

    from mmbatch.testing.tokenizers import clip_tokenizer

    torch.manual_seed(0)
    CLIPModel(CLIPConfig()).save_pretrained(path)
    CLIPProcessor(image_processor=CLIPImageProcessor(), tokenizer=clip_tokenizer()).save_pretrained(path)
    return path


def photo_corpus(folder: Path, n: int, size: tuple[int, int] = (640, 480), shards: int = 8,
                 row_group_rows: int | None = None) -> Path:
    """``n`` synthetic JPEGs (``id``, ``image``; flat coloured shapes, about 3 KB at 640x480,
    so quicker to decode than photos) in Parquet shards (of one row group each, or of
    ``row_group_rows``), made once per folder."""
    from mmbatch.testing.images import write_image_parquet

    done = folder / f".done-{n}-{size[0]}x{size[1]}-{shards}-{row_group_rows}"
    if not done.exists():
        write_image_parquet(folder, n, size=size, shards=shards, row_group_rows=row_group_rows)
        done.touch()
    return folder


def row_groups_label(row_group_rows: int | None) -> str:
    """How a corpus's Parquet files are laid out, for a benchmark's header line."""
    return f"row groups of {row_group_rows} rows" if row_group_rows else "one row group each"


def repeat_corpus(src: Path, times: int, row_group_rows: int | None = None) -> Path:
    """``src``'s Parquet shards ``times`` over, each copy's ids suffixed (``img-00000-r1``):
    a corpus ``times`` as big, with the same images, made in seconds (in row groups of
    ``row_group_rows``; default: one per file)."""
    if times == 1:
        return src
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    dst = src.with_name(f"{src.name}-x{times}")
    done = dst / ".done"
    if not done.exists():
        dst.mkdir(parents=True, exist_ok=True)
        for f in sorted(src.glob("*.parquet")):
            table = pq.read_table(f)
            for r in range(times):
                ids = pc.binary_join_element_wise(table.column("id"), pa.scalar(f"r{r}"), "-")
                pq.write_table(table.set_column(table.column_names.index("id"), "id", ids), dst / f"r{r}-{f.name}",
                               row_group_size=row_group_rows)
        done.touch()
    return dst


class TreeMemory:
    """Peak summed PSS (proportional set size: shared pages counted once across processes)
    of this process and all its descendants -- the driver and every Ray process it
    started -- sampled while the ``with`` block runs.

    One sample reads ``smaps_rollup`` of every process: a few ms for one process, but about
    90 ms for a Ray job's dozen processes on 2 cores (the kernel walks each one's mapping of
    the object store). At a fixed 1 s that still took about 9 % of a core from the contenders
    that start Ray, and none from the single-process ones (``py-spy`` on a job's driver: 46
    of its 54 samples). So the pause after each sample is ``budget`` times as long as the
    sample took, at least ``interval``: the sampler costs at most ``1 / budget`` of a core.

    Sparse sampling misses short peaks, and the more so the shorter the run: at 40-50 ms a
    sample, ``budget=100`` samples every 4-5 s. ``budget=0`` samples every ``interval``
    whatever it costs (what :mod:`memory` uses, to compare runs of different lengths)."""

    def __init__(self, interval: float = 0.5, budget: float = 100.0) -> None:
        self.interval, self.budget, self.peak_mib = interval, budget, 0.0
        self._stop = threading.Event()

    def _sample(self) -> None:
        import psutil

        me = psutil.Process()
        while not self._stop.is_set():
            start, total = time.thread_time(), 0
            for p in [me, *me.children(recursive=True)]:
                try:
                    total += p.memory_full_info().pss
                except psutil.Error:
                    pass
            self.peak_mib = max(self.peak_mib, total / 2**20)
            self._stop.wait(max(self.interval, self.budget * (time.thread_time() - start)))

    def __enter__(self) -> TreeMemory:
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def measure(fn: Callable[[], dict[str, Any]], memory: TreeMemory | None = None) -> dict[str, Any]:
    """Run ``fn`` (which returns its figures) under ``memory`` (default: a sparse
    :class:`TreeMemory`) and a wall clock."""
    with memory or TreeMemory() as mem:
        t = time.perf_counter()
        figures = fn()
        wall = time.perf_counter() - t
    return {"wall_s": wall, "peak_pss_mib": mem.peak_mib} | figures


def run_contender(
    script: str, name: str, args: list[str], timeout: float = 3600, model_heap: bool = False,
) -> dict[str, Any]:
    """Run ``script --contender name ARGS`` in a fresh process; its last output line is JSON.

    The process has glibc's default C heap, as a user's script (a job gives its model actors
    on CPUs their own, :mod:`mmbatch.pipelines.heap`); with ``model_heap``, the heap of those
    actors: for a model alone, the ceiling a job's model step is held against."""
    env = {k: v for k, v in os.environ.items() if k not in MODEL_HEAP}
    cmd = [sys.executable, script, "--contender", name, *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env | MODEL_HEAP if model_heap else env)
    if proc.returncode != 0:
        raise RuntimeError(f"{name} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def model_step_alone(spec: Any, calls: int, distinct: int = 4) -> dict[str, Any]:
    """A job's last model step as its Ray actor runs it, in this process and without Ray:
    the engine's own worker callables (:mod:`mmbatch.pipelines.stages`), so what this
    measures and the job's steady rate differ only by Ray (transport, scheduling, waiting
    for the stages upstream).

    The stages before the model step run here first, one after another, on the rows of
    ``distinct`` of its batches (read from the job's Parquet input); then the model step's
    actor takes ``calls`` batches cycled from those: a first alone, then the rest as many at
    once as the engine asks Ray for (two on a GPU). Returns rows/s over all calls (as the
    job's steady rate counts its first batch) and after the first (as a model alone is
    timed after a warm-up), and the first call's seconds against the others' median."""
    import itertools
    from concurrent.futures import ThreadPoolExecutor

    import pyarrow as pa
    import pyarrow.parquet as pq

    from mmbatch.pipelines.executor import stage_groups
    from mmbatch.pipelines.planning import assign_drops, dropped_columns, plan_steps
    from mmbatch.pipelines.stages import StepActor, StepTasks, rebatch

    planned = plan_steps(spec)
    assign_drops(planned, *dropped_columns(spec, planned))
    groups = stage_groups(planned)
    last = max(i for i, g in enumerate(groups) if g[0].stateful)
    model, id_column = groups[last][0], spec.input.id_column
    read = (pa.Table.from_batches([b]) for f in sorted(Path(spec.input.path).glob("*.parquet"))
            for b in pq.ParquetFile(f).iter_batches(batch_size=model.batch_size))
    tables = list(itertools.islice(read, distinct))
    for group in groups[:last]:
        if group[0].stateful:
            upstream = StepActor(group[0], None, id_column)
            tables = [upstream(t) for t in tables]
        else:
            tasks = StepTasks(group, None, id_column)
            tables = [out for t in tables for out in tasks(t)]
    batches = list(rebatch(tables, model.batch_size))
    actor = StepActor(model, None, id_column)
    seconds: list[float] = []

    def call(table: pa.Table) -> int:
        t = time.perf_counter()
        actor(table)
        seconds.append(time.perf_counter() - t)
        return int(table.num_rows)

    at_once = 2 if model.resources.gpus else 1
    with ThreadPoolExecutor(at_once) as pool:  # as Ray Data calls an actor: not in the thread that built it
        start = time.perf_counter()
        first = pool.submit(call, batches[0]).result()
        after_first = time.perf_counter()
        rest = sum(pool.map(call, itertools.islice(itertools.cycle(batches), 1, calls)))
        end = time.perf_counter()
    median = sorted(seconds[1:])[len(seconds[1:]) // 2] if calls > 1 else seconds[0]
    return {"img_s": (first + rest) / (end - start), "img_s_after_first": rest / (end - after_first) if rest else 0.0,
            "note": f"{calls} calls of up to {model.batch_size} rows ({len(batches)} distinct), {at_once} at once after "
                    f"the first: first call {seconds[0]:.2f} s, the others {median:.2f} s (median); "
                    f"{rest / (end - after_first) if rest else 0.0:.1f} rows/s after the first"}


def emit(figures: dict[str, Any]) -> None:
    """A contender's figures, as the last line of its output."""
    print(json.dumps(figures), flush=True)


def print_summary(figures: dict[str, Any]) -> None:
    """A job contender's run summary (per-step rows and busy rates), indented under its line."""
    for line in str(figures.get("summary", "")).splitlines():
        if line.startswith("  steps[") or line.startswith("wall time"):
            print(f"    {line.strip()}")


def ray_init(num_gpus: int | None = None) -> None:
    """A local Ray as a user's script starts it (all cores), quiet progress."""
    import ray
    from ray.data import DataContext

    ray.init(num_gpus=num_gpus, include_dashboard=False, configure_logging=False, log_to_driver=False)
    DataContext.get_current().enable_progress_bars = False


def machine() -> str:
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return f"{os.cpu_count()} cores, {gpu}, torch {torch.__version__}"


def add_contender_args(ap: argparse.ArgumentParser) -> None:
    """The hidden arguments with which the harness starts one contender in its own process."""
    ap.add_argument("--contender", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--data", type=Path, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, default=None, help=argparse.SUPPRESS)
