"""Image embedding: the mmbatch job against its peers, in one run.

CLIP ViT-B/32 architecture with random weights (the compute of the real model), N
synthetic 640x480 JPEGs (flat shapes, about 3 KB each) in Parquet shards (``--repeat K``:
read K times over, with distinct ids). Each contender runs in a fresh process (Ray start
included where it uses Ray) and reports images/s over the whole corpus, and end to end:
over its whole run in that process, model load included:

* forward  - ``get_image_features`` alone on ready pixel tensors (the ceiling), as many
             batches in a row as the corpus makes: sustained, as long as the job's model step;
             on a CPU with the C heap the job gives its model actors (``mmbatch.pipelines.heap``);
* forward-glibc-heap - the same with glibc's default heap, as a plain script runs it;
* chain    - one Python process: ``torchvision.io.decode_jpeg(device=...)`` + the processor
             on the device + the model (on CUDA: nvJPEG; the GPU-decode ceiling); images/s
             of its loop, the corpus in memory and the model loaded, and end to end;
* raydata  - the Ray Data script a user writes from Ray's batch-inference docs: CPU tasks
             decode and preprocess to numpy, one actor runs the model, write_parquet;
* loop     - a plain single-process transformers loop: PIL decode -> processor -> model;
* job      - mmbatch ``decode_image -> embed``: decode and the processor in CPU tasks, the
             model in an actor; wall and steady state (the embed step's rows over the time from
             the start of its first batch to the end of its last);
* actor    - the job's embed actor alone, without Ray: the engine's own worker callables in
             this process (decode and prepare first, on 4 batches), then as many calls as the
             corpus makes batches, cycled over those (two at once on a GPU, as the job runs
             them): what the job's steady rate would be if Ray cost nothing; on a CPU with
             the C heap the job gives its model actors;
* job-gpu-decode - mmbatch ``embed`` with ``decode_on_device``: JPEG bytes to the actor,
             decoded and preprocessed on its device;
* actor-gpu-decode - that job's embed actor alone, without Ray, as ``actor`` (its batches
             are the corpus's JPEG bytes): set against the chain's loop, what the operator
             costs; against ``job-gpu-decode``'s steady rate, what Ray costs;
* job-4actors - as ``job-gpu-decode``, with 4 embed actors sharing the device (0.25 GPU
             each on CUDA): the model step is the bottleneck there, so sharing shows.

Prints each figure, the ratios to the forward pass, the chain and the Ray Data script,
and each contender's peak PSS (whole process tree). Figures only; nothing is asserted.

    python benchmarks/embed.py --n 2000                       # this machine's CPU
    python benchmarks/embed.py --device cuda --dtype float16 --n 12000 --batch-size 256
"""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from common import (  # noqa: E402
    add_contender_args,
    build_clip_b32,
    emit,
    machine,
    measure,
    model_step_alone,
    photo_corpus,
    print_summary,
    ray_init,
    repeat_corpus,
    row_groups_label,
    run_contender,
)

# distinct input batches the forward cycles through (8 x 32 x 3 x 224 x 224 float32: 154 MB)
DISTINCT_INPUTS = 8

CONTENDERS = ("forward", "forward-glibc-heap", "chain", "raydata", "loop", "job", "actor", "job-gpu-decode",
              "actor-gpu-decode", "job-4actors")


def _torch_dtype(name: str) -> Any:
    import torch

    return getattr(torch, name)


def _model(args: argparse.Namespace) -> Any:
    import torch
    from transformers import CLIPModel

    torch.set_num_threads(args.threads)
    return CLIPModel.from_pretrained(args.model, dtype=_torch_dtype(args.dtype)).to(args.device).eval()


def _blobs(data: Path) -> list[bytes]:
    import pyarrow.parquet as pq

    return [b for f in sorted(data.glob("*.parquet")) for b in pq.read_table(f, columns=["image"]).column("image").to_pylist()]


def forward(args: argparse.Namespace) -> dict[str, Any]:
    """The model alone, sustained: as many batches as the corpus makes, in a row, over
    ``DISTINCT_INPUTS`` distinct input tensors cycled (more than the caches hold), so it runs
    as long as the job's model step and on memory as cold. A forward's cost does not depend
    on the pixel values, so the inputs are random."""
    import torch

    model = _model(args)
    batches = -(-args.n // args.batch_size)
    gen = torch.Generator(device=args.device).manual_seed(0)
    shape = (args.batch_size, 3, 224, 224)
    inputs = [torch.randn(shape, generator=gen, device=args.device).to(_torch_dtype(args.dtype))
              for _ in range(min(DISTINCT_INPUTS, batches))]
    times = []
    with torch.inference_mode():
        model.get_image_features(pixel_values=inputs[0])  # warm-up
        _sync(args.device)
        start = time.perf_counter()
        for i in range(batches):
            t = time.perf_counter()
            model.get_image_features(pixel_values=inputs[i % len(inputs)])
            _sync(args.device)
            times.append(time.perf_counter() - t)
        elapsed = time.perf_counter() - start
    windows = [sum(times[i : i + 5]) for i in range(max(1, batches - 4))]  # 5 batches in a row
    span = min(5, batches) * args.batch_size
    return {"img_s": batches * args.batch_size / elapsed,
            "note": f"{batches} batches in a row over {elapsed:.1f} s; any 5 of them in a row: "
                    f"{span / max(windows):.1f} to {span / min(windows):.1f} img/s"}


def _sync(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()


def chain(args: argparse.Namespace) -> dict[str, Any]:
    import torch
    from transformers import CLIPProcessor

    from mmbatch.operators.pixels import decode_batch, processor_inputs

    model = _model(args)
    proc = CLIPProcessor.from_pretrained(args.model).image_processor
    blobs = _blobs(args.data)
    t = time.perf_counter()
    with torch.inference_mode():
        for i in range(0, len(blobs), args.batch_size):
            images = decode_batch(blobs[i : i + args.batch_size], args.device, 2**31).images
            pixels = processor_inputs(proc, images, args.device)["pixel_values"].to(_torch_dtype(args.dtype))
            model.get_image_features(pixel_values=pixels).pooler_output.float().cpu()
    return {"img_s": len(blobs) / (time.perf_counter() - t), "images": len(blobs)}


def loop(args: argparse.Namespace) -> dict[str, Any]:
    import torch
    from PIL import Image
    from transformers import CLIPProcessor

    model = _model(args)
    proc = CLIPProcessor.from_pretrained(args.model)
    blobs = _blobs(args.data)
    t = time.perf_counter()
    with torch.inference_mode():
        for i in range(0, len(blobs), args.batch_size):
            imgs = [Image.open(io.BytesIO(b)).convert("RGB") for b in blobs[i : i + args.batch_size]]
            pixels = proc(images=imgs, return_tensors="pt")["pixel_values"].to(args.device, _torch_dtype(args.dtype))
            model.get_image_features(pixel_values=pixels).pooler_output.float().cpu()
    return {"img_s": len(blobs) / (time.perf_counter() - t), "images": len(blobs)}


def raydata(args: argparse.Namespace) -> dict[str, Any]:
    """The script from Ray Data's batch-inference docs, for this model."""
    import numpy as np
    import ray.data
    import torch
    from PIL import Image
    from transformers import CLIPModel, CLIPProcessor

    model_dir, device, dtype, threads = str(args.model), args.device, args.dtype, args.threads
    np_dtype = np.float16 if dtype == "float16" else np.float32

    proc = CLIPProcessor.from_pretrained(model_dir)  # built once, shipped with the function (as the docs' transforms are)

    def preprocess(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        images = [Image.open(io.BytesIO(b)).convert("RGB") for b in batch["image"]]
        pixels = proc(images=images, return_tensors="np")["pixel_values"].astype(np_dtype)
        return {"id": batch["id"], "pixel_values": pixels}

    class Embedder:
        def __init__(self) -> None:
            torch.set_num_threads(threads)
            self.model = CLIPModel.from_pretrained(model_dir, dtype=getattr(torch, dtype)).to(device).eval()

        def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
            with torch.inference_mode():
                out = self.model.get_image_features(pixel_values=torch.as_tensor(batch["pixel_values"], device=device))
            return {"id": batch["id"], "embedding": out.pooler_output.float().cpu().numpy()}

    t = time.perf_counter()
    ray_init()
    ds = ray.data.read_parquet(str(args.data)).map_batches(preprocess, batch_size=args.batch_size)
    ds = ds.map_batches(Embedder, concurrency=1, num_gpus=1 if device == "cuda" else 0, batch_size=args.batch_size)
    ds.write_parquet(str(args.out / "raydata"))
    return {"img_s": args.n / (time.perf_counter() - t)}


def job_spec(args: argparse.Namespace, device_decode: bool = False, actors: int = 1) -> Any:
    from mmbatch.pipelines.spec import job_from_dict

    gpu = args.device == "cuda"
    embed = {"op": "embed", "model": str(args.model), "batch_size": args.batch_size, "dtype": args.dtype,
             "threads": args.threads, "resources": {"cpus": 1 if gpu else 1 / actors, "gpus": 1 / actors if gpu else 0,
                           "concurrency": actors}}
    steps = [embed | {"image": "image", "decode_on_device": True}] if device_decode else [
        {"op": "decode_image", "batch_size": args.batch_size}, embed]
    return job_from_dict({"name": "bench-embed", "input": {"path": str(args.data), "id_column": "id"},
                          "steps": steps, "output": {"path": str(args.out / ("job-gd" if device_decode else "job"))}})


def job(args: argparse.Namespace, device_decode: bool = False, actors: int = 1) -> dict[str, Any]:
    from mmbatch.pipelines.run import run_job

    spec = job_spec(args, device_decode, actors)
    t = time.perf_counter()
    summary = run_job(spec, overwrite=True)
    wall = time.perf_counter() - t
    s = summary.steps[f"steps[{len(spec.steps) - 1}] embed"]
    return {"img_s": summary.input_rows / wall, "steady_img_s": s["rows"] / (s.get("span") or s["seconds"]), "rows": summary.rows,
            "summary": summary.render()}


def actor(args: argparse.Namespace, device_decode: bool = False) -> dict[str, Any]:
    return model_step_alone(job_spec(args, device_decode), calls=-(-args.n // args.batch_size))


def run_one(args: argparse.Namespace) -> None:
    fn = {"forward": forward, "forward-glibc-heap": forward, "chain": chain, "raydata": raydata, "loop": loop, "job": job,
          "actor": actor, "job-gpu-decode": lambda a: job(a, device_decode=True),
          "actor-gpu-decode": lambda a: actor(a, device_decode=True),
          "job-4actors": lambda a: job(a, device_decode=True, actors=4)}[args.contender]
    emit(measure(lambda: fn(args)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=2000, help="number of 640x480 JPEGs")
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    ap.add_argument("--dtype", choices=("float32", "float16", "bfloat16"), default="float32")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2, help="torch threads of the model (CPU)")
    ap.add_argument("--repeat", type=int, default=1, help="read the N images this many times over (distinct ids): "
                    "a bigger corpus, over which each contender's start-up weighs less")
    ap.add_argument("--row-group-rows", type=int, default=None,
                    help="rows per Parquet row group of the corpus (default: one per file of N/8 rows)")
    ap.add_argument("--only", default=",".join(CONTENDERS), help="comma-separated contenders to run")
    ap.add_argument("--workdir", default=None)
    add_contender_args(ap)
    ap.add_argument("--model", type=Path, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.contender:
        return run_one(args)

    work = Path(args.workdir or tempfile.mkdtemp(prefix="mmbatch-bench-embed-"))
    model = build_clip_b32(work / "clip-vit-b32-random")
    groups = args.row_group_rows
    data = repeat_corpus(photo_corpus(work / f"jpegs-{args.n}-{groups}", args.n, row_group_rows=groups), args.repeat,
                         groups)
    args.n *= args.repeat
    common = ["--n", str(args.n), "--device", args.device, "--dtype", args.dtype, "--batch-size", str(args.batch_size),
              "--threads", str(args.threads),
              "--model", str(model), "--data", str(data), "--out", str(work / "out")]
    print(f"machine: {machine()}")
    print(f"model: CLIP ViT-B/32 (random weights), {args.dtype} on {args.device}, batch {args.batch_size}; "
          f"data: {args.n} synthetic 640x480 JPEGs (flat shapes, ~3 KB) in Parquet files of "
          f"{row_groups_label(groups)}")
    got: dict[str, dict[str, Any]] = {}
    for name in args.only.split(","):
        got[name] = run_contender(__file__, name, common, model_heap=name in ("forward", "actor", "actor-gpu-decode") and args.device == "cpu")
        f = got[name]
        steady = f" (steady {f['steady_img_s']:.1f} img/s)" if "steady_img_s" in f else ""
        e2e = f", end to end {args.n / f['wall_s']:.1f}" if not name.startswith(("forward", "actor")) else ""
        print(f"{name:15s} {f['img_s']:9.1f} img/s{steady}{e2e}   peak PSS {f['peak_pss_mib']:7.0f} MiB", flush=True)
        if "note" in f:
            print(f"    {f['note']}")
        print_summary(f)
    for base in ("forward", "chain", "raydata"):
        if base not in got:
            continue
        b = got[base]["img_s"]
        ratios = ", ".join(f"{k} {v['img_s'] / b:.3f}" for k, v in got.items() if k != base)
        print(f"ratio to {base}: {ratios}")
    if "job-4actors" in got and "job-gpu-decode" in got:
        print(f"4 actors / 1 actor (device decode): {got['job-4actors']['img_s'] / got['job-gpu-decode']['img_s']:.3f} wall, "
              f"{got['job-4actors']['steady_img_s'] / got['job-gpu-decode']['steady_img_s']:.3f} steady")
    if "chain" in got:
        c = args.n / got["chain"]["wall_s"]
        ratios = ", ".join(f"{k} {args.n / v['wall_s'] / c:.3f}" for k, v in got.items()
                           if k != "chain" and not k.startswith(("forward", "actor")))
        if ratios:
            print(f"end to end, ratio to the chain's: {ratios}")
    for job_name, base in (("job", "forward"), ("job", "forward-glibc-heap"), ("job", "actor"),
                           ("job-gpu-decode", "actor-gpu-decode")):
        if job_name in got and base in got:
            print(f"{job_name} steady state / {base}: {got[job_name]['steady_img_s'] / got[base]['img_s']:.3f}")
    if "actor-gpu-decode" in got and "chain" in got:
        print(f"actor-gpu-decode / chain: {got['actor-gpu-decode']['img_s'] / got['chain']['img_s']:.3f}")


if __name__ == "__main__":
    main()
