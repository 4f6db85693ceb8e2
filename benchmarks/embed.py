"""Image-embedding throughput: the mmbatch job against a plain loop and the bare forward pass.

CLIP ViT-B/32 architecture with random weights (the same compute as the real model),
N JPEGs of 640x480 in Parquet shards. Prints, from one run:

* forward  - ``get_image_features`` alone on ready pixel tensors (the ceiling);
* loop     - a plain single-process transformers loop: decode -> processor -> model, batch 32;
* job      - the mmbatch job (decode_image -> embed) on a local Ray: end-to-end wall time
             (Ray start, actor start, read, write included) and steady state (rows per
             second of the embed actor while busy);

and the ratios to the forward pass, plus peak RSS. Figures only; nothing is asserted.

    python benchmarks/embed.py --n 2000
"""

from __future__ import annotations

import argparse
import io
import os
import resource
import statistics
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def build_clip_b32(path: Path) -> Path:
    import torch
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor

    from mmbatch.testing.tokenizers import clip_tokenizer

    torch.manual_seed(0)
    model = CLIPModel(CLIPConfig())  # defaults: ViT-B/32 vision tower, 224x224
    model.save_pretrained(path)
    CLIPProcessor(image_processor=CLIPImageProcessor(), tokenizer=clip_tokenizer()).save_pretrained(path)
    return path


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class TreeMemory:
    """Peak summed RSS of this process and all its descendants (Ray's raylet and workers
    included), sampled every ``interval`` seconds while the ``with`` block runs."""

    def __init__(self, interval: float = 0.5) -> None:
        self.interval, self.peak = interval, 0.0
        self._stop = threading.Event()

    def _sample(self) -> None:
        import psutil

        me = psutil.Process()
        while not self._stop.is_set():
            total = 0
            for p in [me, *me.children(recursive=True)]:
                try:
                    total += p.memory_info().rss
                except psutil.Error:
                    pass
            self.peak = max(self.peak, total / 2**20)
            self._stop.wait(self.interval)

    def __enter__(self) -> TreeMemory:
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def bench_forward(model_dir: Path, images: list, batch: int, threads: int, batches: int) -> float:
    import numpy as np
    import torch
    from transformers import CLIPModel, CLIPProcessor

    torch.set_num_threads(threads)
    model = CLIPModel.from_pretrained(model_dir).eval()
    proc = CLIPProcessor.from_pretrained(model_dir)
    pixel_values = proc(images=[np.asarray(i) for i in images[:batch]], return_tensors="pt")["pixel_values"]
    with torch.inference_mode():
        model.get_image_features(pixel_values=pixel_values)  # warm-up
        t = time.perf_counter()
        for _ in range(batches):
            model.get_image_features(pixel_values=pixel_values)
        return batches * batch / (time.perf_counter() - t)


def bench_loop(model_dir: Path, data: Path, batch: int, threads: int) -> tuple[float, int]:
    import pyarrow.parquet as pq
    import torch
    from PIL import Image
    from transformers import CLIPModel, CLIPProcessor

    torch.set_num_threads(threads)
    model = CLIPModel.from_pretrained(model_dir).eval()
    proc = CLIPProcessor.from_pretrained(model_dir)
    n = 0
    t = time.perf_counter()
    for shard in sorted(data.glob("*.parquet")):
        blobs = pq.read_table(shard, columns=["image"]).column("image").to_pylist()
        for i in range(0, len(blobs), batch):
            imgs = [Image.open(io.BytesIO(b)).convert("RGB") for b in blobs[i : i + batch]]
            with torch.inference_mode():
                model.get_image_features(**proc(images=imgs, return_tensors="pt"))
            n += len(imgs)
    return n / (time.perf_counter() - t), n


def bench_job(model_dir: Path, data: Path, out: Path, batch: int, threads: int) -> tuple[float, float, int]:
    from mmbatch.pipelines.run import run_job
    from mmbatch.pipelines.spec import job_from_dict

    job = job_from_dict({
        "name": "bench-embed",
        "input": {"path": str(data), "id_column": "id"},
        "steps": [
            {"op": "decode_image", "resize": 224, "batch_size": batch},
            {"op": "embed", "model": str(model_dir), "batch_size": batch, "threads": threads,
             "resources": {"cpus": 1}},
        ],
        "output": {"path": str(out)},
    })
    t = time.perf_counter()
    summary = run_job(job, overwrite=True)
    wall = time.perf_counter() - t
    s = summary.steps["steps[1] embed"]
    return summary.input_rows / wall, s["rows"] / s["seconds"], summary.rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=2000, help="number of 640x480 JPEGs")
    ap.add_argument("--shards", type=int, default=8)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch threads (default: all cores)")
    ap.add_argument("--forward-batches", type=int, default=5, help="timed batches per forward-pass repeat")
    ap.add_argument("--repeats", type=int, default=3, help="forward-pass repeats (median reported)")
    ap.add_argument("--workdir", default=None)
    args = ap.parse_args()

    from mmbatch.testing.images import synthetic_image, write_image_parquet

    work = Path(args.workdir or tempfile.mkdtemp(prefix="mmbatch-bench-"))
    model_dir = build_clip_b32(work / "clip-vit-b32-random")
    data = work / "data"
    t = time.perf_counter()
    write_image_parquet(data, args.n, size=(640, 480), shards=args.shards)
    print(f"data: {args.n} JPEGs 640x480 in {args.shards} shards ({time.perf_counter() - t:.0f} s to make)")
    print(f"model: CLIP ViT-B/32 (random weights), batch {args.batch_size}, {args.threads} torch threads, "
          f"{os.cpu_count()} cores")

    images = [synthetic_image(i, (640, 480)) for i in range(args.batch_size)]
    forward = [bench_forward(model_dir, images, args.batch_size, args.threads, args.forward_batches)
               for _ in range(args.repeats)]
    fwd = statistics.median(forward)
    print(f"forward pass alone : {fwd:7.2f} img/s  (median of {args.repeats}: "
          + ", ".join(f"{f:.2f}" for f in forward) + ")")
    with TreeMemory() as loop_mem:
        loop, n = bench_loop(model_dir, data, args.batch_size, args.threads)
    print(f"plain loop         : {loop:7.2f} img/s  ({n} images)   ratio to forward {loop / fwd:.3f}")
    with TreeMemory() as job_mem:
        job_wall, job_steady, rows = bench_job(model_dir, data, work / "out", args.batch_size, args.threads)
    print(f"mmbatch job (wall) : {job_wall:7.2f} img/s  ({rows} rows; Ray + actor start included) "
          f"ratio to forward {job_wall / fwd:.3f}")
    print(f"mmbatch job (embed actor, steady): {job_steady:7.2f} img/s   ratio to forward {job_steady / fwd:.3f}")
    print(f"peak RSS: plain loop {loop_mem.peak:.0f} MiB; mmbatch job {job_mem.peak:.0f} MiB "
          f"(driver + Ray processes); this process alone {peak_rss_mib():.0f} MiB")


if __name__ == "__main__":
    main()
