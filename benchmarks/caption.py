"""Captioning: the mmbatch job against ``generate`` alone at the batch size the job chose.

The BLIP-base architecture (ViT-B/16 at 384 px, BERT-base decoder; random weights, the
compute of the real model; ``--arch tiny`` for a quick run), N synthetic 640x480 JPEGs (flat shapes, about 3 KB each),
``--tokens`` new tokens, greedy. Each contender runs in a fresh process:

* job      - mmbatch ``decode_image -> caption`` (Ray start included); the summary says the
             sub-batch size the caption step settled on (largest that fits the device);
* job-gpu-decode - the job with ``caption`` alone, ``decode_on_device``: JPEG bytes to the
             actor, decoded (nvJPEG on CUDA) and preprocessed there, no prepare tasks;
* actor    - the job's caption actor alone, without Ray: the engine's own worker callables in
             this process, on prepared batches of that size (two calls at once on a GPU, as
             the job runs them): what the job's steady rate would be if Ray cost nothing;
* actor-gpu-decode - the same for ``job-gpu-decode``'s actor, its batches the corpus's JPEG
             bytes;
* generate - ``model.generate`` alone on ready tensors at that batch size (the ceiling; on
             a CPU, and for ``actor``, with the C heap the job gives its model actors,
             ``mmbatch.pipelines.heap``);
* loop     - a plain single-process loop: PIL decode -> processor -> generate.

Figures only; nothing is asserted.

    python benchmarks/caption.py --n 64 --arch tiny
    python benchmarks/caption.py --device cuda --dtype float16 --n 4096 --batch-size 256
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
    emit,
    machine,
    measure,
    model_step_alone,
    photo_corpus,
    print_summary,
    run_contender,
)

ARCHS = {"base": {"image_size": 384, "patch_size": 16, "hidden_size": 768, "num_layers": 12},
         "tiny": {"image_size": 64, "patch_size": 16, "hidden_size": 128, "num_layers": 2}}


def build(path: Path, arch: str) -> Path:
    if not (path / "config.json").exists():
        from mmbatch.testing.vision import build_tiny_blip_captioner

        build_tiny_blip_captioner(path, **ARCHS[arch])
    return path


def _model(args: argparse.Namespace) -> tuple[Any, Any]:
    import torch
    from transformers import BlipForConditionalGeneration, BlipProcessor

    torch.set_num_threads(args.threads)
    model = BlipForConditionalGeneration.from_pretrained(args.model, dtype=getattr(torch, args.dtype))
    return model.to(args.device).eval(), BlipProcessor.from_pretrained(args.model)


def generate(args: argparse.Namespace) -> dict[str, Any]:
    import numpy as np
    import torch

    from mmbatch.testing.images import synthetic_image

    model, proc = _model(args)
    images = [np.asarray(synthetic_image(i, (640, 480))) for i in range(args.batch_size)]
    pixels = proc(images=images, return_tensors="pt")["pixel_values"].to(args.device, model.dtype)
    kw = {"max_new_tokens": args.tokens, "min_new_tokens": args.tokens}
    with torch.inference_mode():
        model.generate(pixel_values=pixels, **kw)  # warm-up
        t = time.perf_counter()
        for _ in range(args.repeats):
            model.generate(pixel_values=pixels, **kw)
        if args.device == "cuda":
            torch.cuda.synchronize()
    return {"img_s": args.repeats * args.batch_size / (time.perf_counter() - t)}


def loop(args: argparse.Namespace) -> dict[str, Any]:
    import pyarrow.parquet as pq
    import torch
    from PIL import Image

    model, proc = _model(args)
    blobs = [b for f in sorted(args.data.glob("*.parquet")) for b in pq.read_table(f, columns=["image"]).column("image").to_pylist()]
    t = time.perf_counter()
    with torch.inference_mode():
        for i in range(0, len(blobs), args.batch_size):
            imgs = [Image.open(io.BytesIO(b)).convert("RGB") for b in blobs[i : i + args.batch_size]]
            inputs = proc(images=imgs, return_tensors="pt").to(args.device)
            out = model.generate(pixel_values=inputs["pixel_values"].to(model.dtype), max_new_tokens=args.tokens,
                                 min_new_tokens=args.tokens)
            proc.batch_decode(out, skip_special_tokens=True)
    return {"img_s": len(blobs) / (time.perf_counter() - t)}


def job_spec(args: argparse.Namespace, device_decode: bool = False) -> Any:
    from mmbatch.pipelines.spec import job_from_dict

    gpu = args.device == "cuda"
    caption = {"op": "caption", "model": str(args.model), "batch_size": args.batch_size, "dtype": args.dtype,
               "max_new_tokens": args.tokens, "min_new_tokens": args.tokens, "threads": args.threads,
               "resources": {"cpus": 1, "gpus": 1 if gpu else 0}}
    steps = [caption | {"image": "image", "decode_on_device": True}] if device_decode else [
        {"op": "decode_image", "batch_size": 64}, caption]
    return job_from_dict({
        "name": "bench-caption", "input": {"path": str(args.data), "id_column": "id"},
        "steps": steps, "output": {"path": str(args.out / ("job-gd" if device_decode else "job"))},
    })


def job(args: argparse.Namespace, device_decode: bool = False) -> dict[str, Any]:
    from mmbatch.pipelines.run import run_job

    spec = job_spec(args, device_decode)
    t = time.perf_counter()
    summary = run_job(spec, overwrite=True)
    wall = time.perf_counter() - t
    s = summary.steps[f"steps[{len(spec.steps) - 1}] caption"]
    return {"img_s": summary.input_rows / wall, "steady_img_s": s["rows"] / (s.get("span") or s["seconds"]), "batch": int(s.get("batch", 0)),
            "summary": summary.render()}


def actor(args: argparse.Namespace, device_decode: bool = False) -> dict[str, Any]:
    return model_step_alone(job_spec(args, device_decode), calls=max(2, args.n // args.batch_size))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=64)
    ap.add_argument("--arch", choices=tuple(ARCHS), default="base")
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    ap.add_argument("--dtype", choices=("float32", "float16", "bfloat16"), default="float32")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--tokens", type=int, default=20)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--only", default="job,job-gpu-decode,actor,actor-gpu-decode,generate,loop",
                    help="comma-separated contenders to run (without job: generate and loop at --batch-size)")
    ap.add_argument("--workdir", default=None)
    add_contender_args(ap)
    ap.add_argument("--model", type=Path, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.contender:
        fn = {"job": job, "job-gpu-decode": lambda a: job(a, device_decode=True), "actor": actor,
              "actor-gpu-decode": lambda a: actor(a, device_decode=True), "generate": generate, "loop": loop}[args.contender]
        return emit(measure(lambda: fn(args)))
    work = Path(args.workdir or tempfile.mkdtemp(prefix="mmbatch-bench-caption-"))
    model = build(work / f"blip-{args.arch}-random", args.arch)
    data = photo_corpus(work / f"jpegs-{args.n}", args.n, shards=2)
    common = ["--n", str(args.n), "--device", args.device, "--dtype", args.dtype, "--tokens", str(args.tokens),
              "--threads", str(args.threads), "--repeats", str(args.repeats),
              "--model", str(model), "--data", str(data), "--out", str(work / "out")]
    print(f"machine: {machine()}; BLIP-{args.arch} (random weights), {args.dtype} on {args.device}, "
          f"{args.tokens} new tokens, {args.n} JPEGs")
    jobs = ("job", "job-gpu-decode")
    names = [n for n in (*jobs, "actor", "actor-gpu-decode", "generate", "loop") if n in args.only.split(",")]
    got: dict[str, dict[str, Any]] = {}
    for name in (n for n in names if n in jobs):
        got[name] = run_contender(__file__, name, [*common, "--batch-size", str(args.batch_size)])
    chosen = (got["job"]["batch"] or args.batch_size) if "job" in got else args.batch_size
    for name in (n for n in names if n not in jobs):
        got[name] = run_contender(__file__, name, [*common, "--batch-size", str(chosen)],
                                  model_heap=name in ("generate", "actor", "actor-gpu-decode") and args.device == "cpu")
    for name, f in got.items():
        steady = f" (steady {f['steady_img_s']:.2f} img/s)" if "steady_img_s" in f else ""
        print(f"{name:14s} {f['img_s']:8.2f} img/s{steady}   peak PSS {f['peak_pss_mib']:6.0f} MiB")
        if "note" in f:
            print(f"    {f['note']}")
        print_summary(f)
    if "generate" in got:
        g = got["generate"]["img_s"]
        if "job" in got:
            print(f"job chose sub-batches of {chosen}")
        for name in (n for n in jobs if n in got):
            print(f"{name} / generate: wall {got[name]['img_s'] / g:.3f}, steady {got[name]['steady_img_s'] / g:.3f}")
        for name in (n for n in ("actor", "actor-gpu-decode") if n in got):
            a = got[name]
            print(f"{name} / generate: {a['img_s'] / g:.3f} over all calls, {a['img_s_after_first'] / g:.3f} after the first")
        if "loop" in got:
            print(f"loop / generate {got['loop']['img_s'] / g:.3f}")
    for job_name, actor_name in (("job", "actor"), ("job-gpu-decode", "actor-gpu-decode")):
        if job_name in got and actor_name in got:
            print(f"{job_name} steady / {actor_name} alone {got[job_name]['steady_img_s'] / got[actor_name]['img_s']:.3f}")


if __name__ == "__main__":
    main()
